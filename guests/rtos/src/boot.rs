//! What the boot registers say about where the RTOS runs.

use core::fmt;
use spumone_abi::hvc::BOOT_MAGIC;

/// Boot argument bit that asks for the fault-containment probe (`rtos-fault` scenario).
pub const BOOT_ARG_FAULT_PROBE: u64 = 1 << 0;
/// Boot argument bit that makes a task overflow its stack on purpose, to show the guard page.
pub const BOOT_ARG_STACK_OVERFLOW: u64 = 1 << 1;
/// Boot argument bit that keeps the latency probe running round after round, one line per
/// round, instead of powering off after one (`demo`: the RTOS outlives Linux's runs).
pub const BOOT_ARG_CONTINUOUS: u64 = 1 << 2;

/// Who entered the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// A vCPU of spumone: console and exit go through hypercalls.
    Spumone { vcpu: u64 },
    /// Alone on the machine: the RTOS drives the PL011 itself.
    Bare,
}

impl Platform {
    pub fn is_bare(self) -> bool {
        self == Platform::Bare
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Platform::Spumone { vcpu } => write!(f, "under spumone, vcpu {vcpu}"),
            Platform::Bare => f.write_str("bare metal"),
        }
    }
}

/// The decoded boot registers `x0..x2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    pub platform: Platform,
    pub boot_arg: u64,
}

impl BootInfo {
    /// spumone enters with `x0` = [`BOOT_MAGIC`], `x1` = boot argument, `x2` = vCPU number.
    /// Anything else is a bare boot, whose registers carry nothing for us.
    pub fn from_registers(x0: u64, x1: u64, x2: u64) -> Self {
        if x0 == BOOT_MAGIC {
            BootInfo {
                platform: Platform::Spumone { vcpu: x2 },
                boot_arg: x1,
            }
        } else {
            BootInfo {
                platform: Platform::Bare,
                boot_arg: 0,
            }
        }
    }

    pub fn fault_probe_requested(&self) -> bool {
        self.boot_arg & BOOT_ARG_FAULT_PROBE != 0
    }

    pub fn stack_overflow_requested(&self) -> bool {
        self.boot_arg & BOOT_ARG_STACK_OVERFLOW != 0
    }

    pub fn continuous_requested(&self) -> bool {
        self.boot_arg & BOOT_ARG_CONTINUOUS != 0
    }

    /// The first line the RTOS prints.
    pub fn banner(&self) -> Banner {
        Banner(self.platform)
    }
}

/// `spumone rtos <major>.<minor> (<platform>)`.
pub struct Banner(Platform);

impl fmt::Display for Banner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spumone rtos {}.{} ({})",
            env!("CARGO_PKG_VERSION_MAJOR"),
            env!("CARGO_PKG_VERSION_MINOR"),
            self.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_selects_spumone_and_keeps_arguments() {
        let info = BootInfo::from_registers(BOOT_MAGIC, 0x5, 3);
        assert_eq!(info.platform, Platform::Spumone { vcpu: 3 });
        assert_eq!(info.boot_arg, 0x5);
        assert!(info.fault_probe_requested());
        assert!(info.continuous_requested());
        assert!(!info.stack_overflow_requested());
    }

    #[test]
    fn demo_boot_argument_asks_for_rounds_only() {
        // demo.toml: bit 2 and 1000 samples in bits [31:8].
        let info = BootInfo::from_registers(BOOT_MAGIC, 0x3_E804, 0);
        assert!(info.continuous_requested());
        assert!(!info.fault_probe_requested());
        assert!(!info.stack_overflow_requested());
    }

    #[test]
    fn anything_else_is_bare_with_no_argument() {
        // A bare loader may leave a DTB pointer in x0 and junk in x1.
        let info = BootInfo::from_registers(0x4000_0000, 0xffff, 7);
        assert_eq!(info.platform, Platform::Bare);
        assert_eq!(info.boot_arg, 0);
        assert!(!info.fault_probe_requested());
        assert!(!info.continuous_requested());
    }

    #[test]
    fn probe_bit_is_bit_zero_only() {
        assert!(!BootInfo::from_registers(BOOT_MAGIC, 0b10, 0).fault_probe_requested());
        assert!(BootInfo::from_registers(BOOT_MAGIC, 0b11, 0).fault_probe_requested());
        assert!(BootInfo::from_registers(BOOT_MAGIC, 0b10, 0).stack_overflow_requested());
        assert!(!BootInfo::from_registers(BOOT_MAGIC, 0b01, 0).stack_overflow_requested());
    }

    #[test]
    fn banners() {
        let hv = BootInfo::from_registers(BOOT_MAGIC, 0, 0);
        assert_eq!(
            hv.banner().to_string(),
            "spumone rtos 0.1 (under spumone, vcpu 0)"
        );
        let bare = BootInfo::from_registers(0, 0, 0);
        assert_eq!(bare.banner().to_string(), "spumone rtos 0.1 (bare metal)");
    }
}
