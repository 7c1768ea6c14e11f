//! Reads of the system registers the RTOS needs.

use core::arch::asm;

macro_rules! read_sysreg {
    ($name:ident, $reg:literal) => {
        #[inline(always)]
        pub fn $name() -> u64 {
            let value: u64;
            // SAFETY: reading this register has no side effects and is allowed at EL1.
            unsafe {
                asm!(concat!("mrs {}, ", $reg), out(reg) value, options(nomem, nostack, preserves_flags));
            }
            value
        }
    };
}

read_sysreg!(current_el_raw, "CurrentEL");
read_sysreg!(esr_el1, "esr_el1");
read_sysreg!(far_el1, "far_el1");
read_sysreg!(id_aa64mmfr0_el1, "id_aa64mmfr0_el1");
read_sysreg!(ctr_el0, "ctr_el0");

/// The exception level we run at (0..=3).
pub fn current_el() -> u64 {
    (current_el_raw() >> 2) & 3
}
