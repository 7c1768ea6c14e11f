//! What the progress watchdog and the panic check read of a running Linux (`hvcore::health`
//! judges it): the kernel's `panic_cpu` and `jiffies`, found through the kernel text like the
//! checkers' data symbols, once per boot (KASLR moves them).

use dsm_api::xref::data_symbol;
use dsm_api::{CheckError, Guest};

/// Where one boot of Linux keeps its vitals (physical addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vitals {
    panic_cpu: u64,
    jiffies: u64,
}

impl Vitals {
    /// Finds them in the booted kernel (its place known to `guest`).
    pub fn locate(guest: &dyn Guest) -> Result<Self, CheckError> {
        let k = guest.kernel()?;
        let pa = |name| {
            let va = data_symbol(guest, name)?;
            k.image_va_to_pa(va).ok_or(CheckError::MissingSymbol(name))
        };
        Ok(Self {
            panic_cpu: pa("panic_cpu")?,
            jiffies: pa("jiffies")?,
        })
    }

    /// `panic_cpu` and `jiffies` now (`None`: that read failed). Linux may write either at
    /// any time; a torn or hostile value only makes the watchdog see a panic or progress,
    /// which Linux could cause anyway.
    pub fn read(&self, guest: &dyn Guest) -> (Option<i32>, Option<u64>) {
        let mut word = [0u8; 4];
        let panic_cpu = guest
            .read_phys(self.panic_cpu, &mut word)
            .ok()
            .map(|()| i32::from_le_bytes(word));
        (panic_cpu, guest.read_u64_phys(self.jiffies).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hvcore::health::PANIC_CPU_INVALID;
    use dsm_api::test_support::MemGuest;

    #[test]
    fn reads_the_booted_kernels_panic_cpu_and_jiffies() {
        let mut g = MemGuest::linux();
        let v = Vitals::locate(&g).unwrap();
        // Before boot the image holds the static initializers.
        let initial_jiffies = u64::from((-300i32 * 250) as u32);
        assert_eq!(v.read(&g), (Some(PANIC_CPU_INVALID), Some(initial_jiffies)));
        g.write_phys(v.panic_cpu, &2i32.to_le_bytes()).unwrap();
        g.write_u64_phys(v.jiffies, 12_345).unwrap();
        assert_eq!(v.read(&g), (Some(2), Some(12_345)));
    }
}
