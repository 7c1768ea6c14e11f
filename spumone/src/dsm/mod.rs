//! The D-System Monitor runtime: what the hypervisor offers the compiled-in checkers
//! ([`guest::LinuxGuest`], a `dsm_api::Guest` for a Linux partition) and when they run
//! ([`runtime::Runtime`]: baseline, periods, budgets, response policy).
//!
//! Everything here is plain Rust, host-tested; the registers and memory come through
//! [`guest::Backend`], which `arch` implements.

pub mod guest;
pub mod runtime;
pub mod vitals;

use board::rt::{Config, Partition};

/// Why the DSM cannot run for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementError {
    NoVcpu,
    /// The core of its vCPU 0 also hosts another partition's vCPU (the RTOS's, say): EL2
    /// work there would delay that partition.
    SharedCore(u8),
}

/// The core the DSM runs on for `partition`: the core of its vCPU 0, from its EL2 tick.
/// Until the per-core scheduler can give the DSM a slot of its own, that is a core where only
/// the checked Linux runs, so a check only ever delays Linux itself.
pub fn placement(config: &Config, partition: &Partition) -> Result<u8, PlacementError> {
    let core = partition.vcpus.first().ok_or(PlacementError::NoVcpu)?.core;
    let shared = config
        .partitions
        .iter()
        .any(|p| p.index != partition.index && p.vcpu_on_core(core).is_some());
    if shared {
        return Err(PlacementError::SharedCore(core));
    }
    Ok(core)
}

#[cfg(test)]
mod tests {
    use super::*;
    use board::rt::{MemRange, Vcpu};

    const fn part(name: &'static str, index: u8, vcpus: &'static [Vcpu]) -> Partition {
        Partition {
            name,
            index,
            image: name,
            ram: &[],
            devices: &[],
            entry: 0,
            boot_arg: 0,
            vcpus,
            console_channel: 0x10 + index,
            preload_ns: 0,
        }
    }

    fn config(parts: &'static [Partition]) -> Config {
        Config {
            board: "t",
            cores: 4,
            dtb_hint: 0,
            hypervisor_ram: MemRange::new(0, 0),
            board_ram: &[],
            partitions: parts,
            smmus: &[],
            console_intid: 33,
        }
    }

    #[test]
    fn runs_on_linux_vcpu0_core_unless_shared() {
        static APART: [Partition; 2] = [
            part("rtos", 0, &[Vcpu { core: 0 }]),
            part("linux", 1, &[Vcpu { core: 2 }, Vcpu { core: 1 }]),
        ];
        assert_eq!(placement(&config(&APART), &APART[1]), Ok(2));
        static SHARED: [Partition; 2] = [
            part("rtos", 0, &[Vcpu { core: 0 }]),
            part("linux", 1, &[Vcpu { core: 0 }, Vcpu { core: 1 }]),
        ];
        assert_eq!(
            placement(&config(&SHARED), &SHARED[1]),
            Err(PlacementError::SharedCore(0))
        );
        let lone = part("x", 0, &[]);
        assert_eq!(placement(&config(&[]), &lone), Err(PlacementError::NoVcpu));
    }
}
