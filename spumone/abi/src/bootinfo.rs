//! The boot-info blob the host tools load for a Linux partition: what only they know at run
//! time (the initrd's actual size, a KASLR seed, extra kernel arguments such as `--cmd`, and
//! per-run switches of spumone itself such as `--no-dsm`).
//!
//! Little-endian, loaded at [`ADDR`] (the last page of spumone's region):
//! `magic: u64 | initrd_size: u64 | kaslr_seed: u64 | bootargs_len: u32 | flags: u32 |
//! bootargs: [u8; bootargs_len]` (UTF-8, appended to the config's bootargs after a space),
//! and optionally, in the last [`TRAILER`] bytes of the page, the range spumone digests at boot
//! and again when Linux stops (the RTOS's code and read-only data, read from its ELF by the
//! host tools): `"MEASURED" | base: u64 | len: u64`.

/// Where the blob is loaded: the last 4 KiB page of spumone's 64 MiB region.
pub const ADDR: u64 = 0x4000_0000 + 0x0400_0000 - SIZE as u64;
/// Room for the blob.
pub const SIZE: usize = 4096;
/// "SPUMBOOT" read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SPUMBOOT");
const HEADER: usize = 32;
/// Bytes of the measured-range trailer at the end of the page.
pub const TRAILER: usize = 24;
const TRAILER_MAGIC: u64 = u64::from_le_bytes(*b"MEASURED");
/// Most bytes of extra bootargs.
pub const MAX_BOOTARGS: usize = SIZE - HEADER - TRAILER;
/// `flags` bit: leave the D-System Monitor off for this run (a baseline for its cost).
pub const FLAG_NO_DSM: u32 = 1 << 0;
/// `flags` bits 1-3: the migration policy of every Linux partition for this run, in place of
/// its config's (`POLICY_*`; 0 keeps the config's).
pub const POLICY_SHIFT: u32 = 1;
pub const POLICY_MASK: u32 = 0b111 << POLICY_SHIFT;
/// Policy names in `flags` order, after 0 (the config's own).
pub const POLICIES: [&str; 4] = ["pinned", "spumone", "load", "rotate"];
/// The `flags` bits this version knows; a blob with others is refused (a newer host tool).
pub const KNOWN_FLAGS: u32 = FLAG_NO_DSM | POLICY_MASK | FLAG_DSM_PAUSE;

/// `flags` bit: the DSM answers a finding with policy `pause` for this run, whatever the
/// config says (to exercise the pause and the operator's resume).
pub const FLAG_DSM_PAUSE: u32 = 1 << 4;

/// The `flags` bits that choose policy `name` for the run; `None` for an unknown name.
pub fn policy_flags(name: &str) -> Option<u32> {
    let n = POLICIES.iter().position(|&p| p == name)?;
    Some((n as u32 + 1) << POLICY_SHIFT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootInfo<'a> {
    pub initrd_size: u64,
    pub kaslr_seed: u64,
    pub bootargs: &'a str,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// `(base, len)` of a guest image to digest at boot and when Linux stops.
    pub measured: Option<(u64, u64)>,
}

impl<'a> BootInfo<'a> {
    /// Parses a blob; `None` without the magic, with a bad length, non-UTF-8 bootargs or
    /// unknown flags.
    pub fn parse(blob: &'a [u8]) -> Option<Self> {
        let u64_at = |o: usize| -> Option<u64> {
            Some(u64::from_le_bytes(blob.get(o..o + 8)?.try_into().ok()?))
        };
        if u64_at(0)? != MAGIC {
            return None;
        }
        let len = u32::from_le_bytes(blob.get(24..28)?.try_into().ok()?) as usize;
        if len > MAX_BOOTARGS {
            return None;
        }
        let flags = u32::from_le_bytes(blob.get(28..32)?.try_into().ok()?);
        if flags & !KNOWN_FLAGS != 0 {
            return None;
        }
        // A policy number past the names this version knows (a newer host tool).
        if ((flags & POLICY_MASK) >> POLICY_SHIFT) as usize > POLICIES.len() {
            return None;
        }
        let bootargs = core::str::from_utf8(blob.get(HEADER..HEADER + len)?).ok()?;
        let t = SIZE - TRAILER;
        let measured = (blob.len() == SIZE && u64_at(t)? == TRAILER_MAGIC)
            .then(|| Some((u64_at(t + 8)?, u64_at(t + 16)?)))
            .flatten();
        Some(Self {
            initrd_size: u64_at(8)?,
            kaslr_seed: u64_at(16)?,
            bootargs,
            flags,
            measured,
        })
    }

    /// The migration policy the host tools chose for this run, if any (a name of [`POLICIES`]).
    pub fn policy(&self) -> Option<&'static str> {
        let n = (self.flags & POLICY_MASK) >> POLICY_SHIFT;
        POLICIES.get((n as usize).checked_sub(1)?).copied()
    }

    /// Writes the blob into `out`; returns its length (the whole page with a measured
    /// range), or `None` if it does not fit.
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.bootargs.len();
        if len > MAX_BOOTARGS || out.len() < HEADER + len {
            return None;
        }
        if let Some((base, size)) = self.measured {
            let t = SIZE - TRAILER;
            let trailer = out.get_mut(t..SIZE)?;
            trailer[0..8].copy_from_slice(&TRAILER_MAGIC.to_le_bytes());
            trailer[8..16].copy_from_slice(&base.to_le_bytes());
            trailer[16..24].copy_from_slice(&size.to_le_bytes());
        }
        out[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        out[8..16].copy_from_slice(&self.initrd_size.to_le_bytes());
        out[16..24].copy_from_slice(&self.kaslr_seed.to_le_bytes());
        out[24..28].copy_from_slice(&(len as u32).to_le_bytes());
        out[28..32].copy_from_slice(&self.flags.to_le_bytes());
        out[HEADER..HEADER + len].copy_from_slice(self.bootargs.as_bytes());
        if self.measured.is_some() {
            out[HEADER + len..SIZE - TRAILER].fill(0);
            return Some(SIZE);
        }
        Some(HEADER + len)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    #[test]
    fn round_trip() {
        let info = BootInfo {
            initrd_size: 0x123_4567,
            kaslr_seed: 0xdead_beef_0bad_cafe,
            bootargs: "quiet spumone.cmd=bnByb2M=",
            flags: FLAG_NO_DSM,
            measured: None,
        };
        let mut buf = [0u8; SIZE];
        let n = info.write(&mut buf).unwrap();
        assert_eq!(n, 32 + info.bootargs.len());
        assert_eq!(BootInfo::parse(&buf[..n]), Some(info));
    }

    #[test]
    fn rejects_bad_magic_and_lengths() {
        let info = BootInfo {
            initrd_size: 1,
            kaslr_seed: 2,
            bootargs: "x",
            flags: 0,
            measured: None,
        };
        let mut buf = [0u8; 64];
        let n = info.write(&mut buf).unwrap();
        assert!(BootInfo::parse(&buf[..n - 1]).is_none(), "truncated");
        buf[0] ^= 1;
        assert!(BootInfo::parse(&buf[..n]).is_none(), "magic");
        assert!(BootInfo::parse(&[0u8; SIZE]).is_none(), "zeroes");
        buf[0] ^= 1;
        buf[28] = 0x80;
        assert!(BootInfo::parse(&buf[..n]).is_none(), "unknown flag");
        buf[28] = FLAG_NO_DSM as u8;
        assert_eq!(
            BootInfo::parse(&buf[..n]).map(|i| i.flags),
            Some(FLAG_NO_DSM)
        );
        let long: String = "a".repeat(MAX_BOOTARGS + 1);
        let too_long = BootInfo {
            bootargs: &long,
            ..info
        };
        assert!(too_long.write(&mut [0u8; SIZE * 2]).is_none());
    }

    #[test]
    fn policy_override_round_trips() {
        let mut info = BootInfo {
            initrd_size: 0,
            kaslr_seed: 0,
            bootargs: "",
            flags: FLAG_NO_DSM,
            measured: None,
        };
        assert_eq!(info.policy(), None);
        for name in POLICIES {
            info.flags = FLAG_NO_DSM | policy_flags(name).unwrap();
            let mut buf = [0u8; 64];
            let n = info.write(&mut buf).unwrap();
            let back = BootInfo::parse(&buf[..n]).unwrap();
            assert_eq!(back.policy(), Some(name));
            assert_ne!(back.flags & FLAG_NO_DSM, 0);
        }
        assert_eq!(policy_flags("fast"), None);
        // Every name fits the field, which no other flag overlaps.
        assert!(POLICIES.len() <= (POLICY_MASK >> POLICY_SHIFT) as usize);
        assert_eq!(POLICY_MASK & (FLAG_NO_DSM | FLAG_DSM_PAUSE), 0);
        let beyond = (POLICIES.len() as u32 + 1) << POLICY_SHIFT;
        info.flags = beyond;
        let mut buf = [0u8; 64];
        let n = info.write(&mut buf).unwrap();
        assert_eq!(
            BootInfo::parse(&buf[..n]),
            None,
            "an unknown policy number is refused"
        );
    }

    #[test]
    fn a_measured_range_rides_at_the_end_of_the_page() {
        let info = BootInfo {
            initrd_size: 5,
            kaslr_seed: 6,
            bootargs: "quiet",
            flags: 0,
            measured: Some((0x4400_0000, 0x1_2340)),
        };
        let mut buf = [0xffu8; SIZE];
        assert_eq!(info.write(&mut buf), Some(SIZE));
        assert_eq!(BootInfo::parse(&buf), Some(info));
        // Cut short, the trailer is not there: no range, the rest still parses.
        let cut = BootInfo::parse(&buf[..SIZE - 1]).unwrap();
        assert_eq!(cut.measured, None);
        assert_eq!(cut.bootargs, "quiet");
        // The longest bootargs still leave it room.
        let long = "b".repeat(MAX_BOOTARGS);
        let full = BootInfo {
            bootargs: &long,
            ..info
        };
        assert_eq!(full.write(&mut buf), Some(SIZE));
        assert_eq!(BootInfo::parse(&buf), Some(full));
        // A page that is too small for the trailer is refused.
        assert_eq!(info.write(&mut [0u8; 64]), None);
    }

    #[test]
    fn sits_at_the_end_of_the_hypervisor_region() {
        assert_eq!(ADDR, 0x43FF_F000);
    }
}
