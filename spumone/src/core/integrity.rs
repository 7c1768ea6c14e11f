//! The integrity digest: SHA-256 of the images nothing may change (spumone's own code and
//! read-only data, the RTOS's), taken at boot and compared when Linux stops, so a run can
//! show that no probe or attack from Linux (a device's DMA included) changed them.
//!
//! The hashing and the comparison are here; `arch` only says where the images lie and when
//! to look, and prints the result.

use dsm_api::digest::{Compress, Sha256};

/// A measured image: its name in the report and its bytes' range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    pub name: &'static str,
    pub base: u64,
    pub len: u64,
}

/// SHA-256 of `bytes`, hashed in chunks so a caller can bound each compression call.
pub fn digest(bytes: &[u8], compress: &mut Compress) -> [u8; 32] {
    let mut h = Sha256::new();
    for chunk in bytes.chunks(64 * 1024) {
        h.update_with(compress, chunk);
    }
    h.finalize_with(compress)
}

/// How an image compares with its boot-time digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    Unchanged { digest: [u8; 32] },
    Changed { was: [u8; 32], now: [u8; 32] },
}

impl Finding {
    pub fn of(baseline: [u8; 32], now: [u8; 32]) -> Finding {
        if baseline == now {
            Finding::Unchanged { digest: now }
        } else {
            Finding::Changed { was: baseline, now }
        }
    }

    pub fn unchanged(&self) -> bool {
        matches!(self, Finding::Unchanged { .. })
    }

    /// The word the report uses.
    pub fn word(&self) -> &'static str {
        if self.unchanged() {
            "unchanged"
        } else {
            "CHANGED"
        }
    }

    /// The first 8 bytes of the current digest, big-endian (what the report prints).
    pub fn prefix(&self) -> u64 {
        let d = match self {
            Finding::Unchanged { digest } => digest,
            Finding::Changed { now, .. } => now,
        };
        prefix(d)
    }

    /// The boot-time digest's prefix.
    pub fn was_prefix(&self) -> u64 {
        match self {
            Finding::Unchanged { digest } => prefix(digest),
            Finding::Changed { was, .. } => prefix(was),
        }
    }
}

pub fn prefix(d: &[u8; 32]) -> u64 {
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// A guest image as the host tools measured it (`(base, len)`), if it is sane: not empty
/// and inside the RAM of the partition `name` (`(base, size)`).
pub fn guest_image(name: &'static str, measured: (u64, u64), ram: (u64, u64)) -> Option<Image> {
    let (base, len) = measured;
    let end = base.checked_add(len)?;
    let (ram_base, ram_len) = ram;
    (len > 0 && base >= ram_base && end <= ram_base + ram_len).then_some(Image { name, base, len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn soft(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
        dsm_api::digest::compress_soft(state, blocks);
    }

    #[test]
    fn digest_is_sha256_over_chunks() {
        let bytes: Vec<u8> = (0..200_000u32).map(|n| (n * 7 + n / 13) as u8).collect();
        let want: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        assert_eq!(digest(&bytes, &mut soft), want);
        assert_eq!(
            digest(&[], &mut soft),
            <[u8; 32]>::from(sha2::Sha256::digest([]))
        );
    }

    #[test]
    fn a_changed_byte_is_found() {
        let mut bytes = vec![0x5au8; 4096];
        let before = digest(&bytes, &mut soft);
        let same = Finding::of(before, digest(&bytes, &mut soft));
        assert!(same.unchanged());
        assert_eq!(same.word(), "unchanged");
        bytes[4000] ^= 1;
        let changed = Finding::of(before, digest(&bytes, &mut soft));
        assert!(!changed.unchanged());
        assert_eq!(changed.word(), "CHANGED");
        assert_eq!(changed.was_prefix(), prefix(&before));
        assert_ne!(changed.prefix(), changed.was_prefix());
    }

    #[test]
    fn the_rtos_range_must_lie_in_its_ram() {
        let ram = (0x4400_0000, 0x0400_0000);
        let rtos = |m| guest_image("rtos", m, ram);
        assert_eq!(
            rtos((0x4400_0000, 0xe700)),
            Some(Image {
                name: "rtos",
                base: 0x4400_0000,
                len: 0xe700
            })
        );
        assert_eq!(rtos((0x4400_0000, 0)), None);
        assert_eq!(rtos((0x4000_0000, 0x100)), None, "spumone's");
        assert_eq!(rtos((0x47ff_f000, 0x2000)), None, "runs past");
        assert_eq!(rtos((u64::MAX, 2)), None, "wraps");
    }
}
