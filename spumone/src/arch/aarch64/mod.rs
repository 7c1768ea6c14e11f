//! aarch64 EL2 mechanism: entry, vectors, MMU, GIC, timer, PSCI and guest entry.

mod boot;
pub mod config;
pub mod cpu;
pub mod exception;
mod fatal;
pub mod guest;
pub mod log;
pub mod percore;
pub mod psci;
pub mod timer;
pub mod uart;

pub use cpu::park;

/// The boot core's first Rust code. `dtb` is whatever the loader left in `x0`.
extern "C" fn boot_main(dtb: u64) -> ! {
    info!("spumone starting on core 0 (x0 {:#x})", dtb);
    info!("timer frequency {} Hz", timer::frequency_hz());
    psci::system_off()
}

/// A secondary core's first Rust code, started by `CPU_ON` with its logical number.
extern "C" fn secondary_main(core: u64) -> ! {
    info!("core {} online", core);
    park()
}
