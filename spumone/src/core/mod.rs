//! The hypervisor's decisions, as plain Rust without register or MMIO access. Everything
//! here builds and is unit-tested on the host.

pub mod alone;
pub mod capture;
pub mod console;
pub mod el2map;
pub mod esr;
pub mod health;
pub mod hold;
pub mod hypercall;
pub mod inject;
pub mod integrity;
pub mod lifecycle;
pub mod linux;
pub mod loglimit;
pub mod mgmt;
pub mod migrate;
pub mod mmio;
pub mod operator;
pub mod platform;
pub mod policy;
pub mod sched;
pub mod smmu;
pub mod smp;
pub mod stage2;
pub mod vcpu;
pub mod vfdt;
pub mod vgic;
pub mod vpsci;
pub mod vsgi;
pub mod vuart;
pub mod watch;

/// Most physical cores spumone supports (stacks and per-core state are sized by it).
pub const MAX_CORES: usize = 8;

/// Most partitions one config may hold.
pub const MAX_PARTITIONS: usize = 8;
