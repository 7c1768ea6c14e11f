//! The spumone hypercall ABI (`HVC #0` from EL1).
//!
//! Calls follow the SMC Calling Convention: the function id in `x0`, arguments in `x1..x7`,
//! the result in `x0`. Ids sit in the SMCCC "vendor-specific hypervisor service" range
//! (owner 6, fast calls, SMC64), so they never collide with PSCI or the Arm architecture calls.
//!
//! | id            | name            | arguments                                   | result |
//! |---------------|-----------------|---------------------------------------------|--------|
//! | `0xC600_0000` | `VERSION`       | —                                           | `(major << 16) \| minor` |
//! | `0xC600_0001` | `CONSOLE_WRITE` | `x1` = length (≤ 48), `x2..x7` = bytes, little-endian | bytes written |
//! | `0xC600_0002` | `YIELD`         | —                                           | `SUCCESS` |
//! | `0xC600_0003` | `EXIT`          | `x1` = exit code                            | does not return |
//!
//! Console bytes travel in registers, so the hypervisor never reads guest memory or walks
//! guest page tables to serve a write. An unknown id returns [`NOT_SUPPORTED`]; a bad
//! argument returns [`INVALID_PARAMETERS`]; neither disturbs anything else.

/// ABI version returned by [`VERSION`].
pub const ABI_VERSION: u64 = 1 << 16;

pub const VERSION: u64 = 0xC600_0000;
pub const CONSOLE_WRITE: u64 = 0xC600_0001;
pub const YIELD: u64 = 0xC600_0002;
pub const EXIT: u64 = 0xC600_0003;

/// Most bytes one `CONSOLE_WRITE` carries (`x2..x7`).
pub const CONSOLE_WRITE_MAX: usize = 48;

pub const SUCCESS: u64 = 0;
/// SMCCC `NOT_SUPPORTED` (-1).
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
/// SMCCC-style `INVALID_PARAMETERS` (-2).
pub const INVALID_PARAMETERS: u64 = -2i64 as u64;

/// Boot protocol: spumone enters a guest vCPU with `x0` = [`BOOT_MAGIC`], `x1` = the
/// partition's configured boot argument, `x2` = the vCPU number within its partition.
/// A guest that finds any other `x0` is running without spumone.
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"SPUMONE\0");

/// Packs up to [`CONSOLE_WRITE_MAX`] bytes into the six argument registers `x2..x7`.
pub fn pack_console_bytes(bytes: &[u8]) -> [u64; 6] {
    let mut regs = [0u64; 6];
    for (i, &b) in bytes.iter().take(CONSOLE_WRITE_MAX).enumerate() {
        regs[i / 8] |= u64::from(b) << (8 * (i % 8));
    }
    regs
}

/// Unpacks `len` console bytes from `x2..x7`; `None` if `len` is out of range.
pub fn unpack_console_bytes(
    len: u64,
    regs: &[u64; 6],
    out: &mut [u8; CONSOLE_WRITE_MAX],
) -> Option<usize> {
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= CONSOLE_WRITE_MAX)?;
    for (i, slot) in out.iter_mut().take(len).enumerate() {
        *slot = (regs[i / 8] >> (8 * (i % 8))) as u8;
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_bytes_round_trip() {
        let text = b"hello from the rtos, 48 bytes exactly...........";
        assert_eq!(text.len(), CONSOLE_WRITE_MAX);
        let regs = pack_console_bytes(text);
        let mut out = [0u8; CONSOLE_WRITE_MAX];
        assert_eq!(
            unpack_console_bytes(text.len() as u64, &regs, &mut out),
            Some(48)
        );
        assert_eq!(&out, text);
    }

    #[test]
    fn console_length_out_of_range_is_rejected() {
        let mut out = [0u8; CONSOLE_WRITE_MAX];
        assert_eq!(unpack_console_bytes(49, &[0; 6], &mut out), None);
        assert_eq!(unpack_console_bytes(u64::MAX, &[0; 6], &mut out), None);
    }

    #[test]
    fn magic_spells_the_name() {
        assert_eq!(&BOOT_MAGIC.to_le_bytes(), b"SPUMONE\0");
    }
}
