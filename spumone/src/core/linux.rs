//! Checks on a Linux arm64 `Image` before its partition is entered (see the kernel's
//! `Documentation/arch/arm64/booting.rst`: a 64-byte header with `text_offset` at 8,
//! `image_size` at 16 and the magic "ARM\x64" at 56).

use board::rt::MemRange;

/// Bytes of the header read here.
pub const HEADER_SIZE: usize = 64;
const MAGIC: u32 = u32::from_le_bytes(*b"ARM\x64");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// No arm64 `Image` magic: nothing (or something else) was loaded there.
    NoMagic,
    /// Where it sits is not a 2 MiB-aligned base plus its `text_offset`.
    Misplaced { text_offset: u64 },
    /// Its `image_size` (BSS included) exceeds the room the config gives it.
    TooBig { image_size: u64 },
}

/// The entry point of the `Image` loaded at `kernel.base`, if it may run there.
pub fn check_image(header: &[u8; HEADER_SIZE], kernel: MemRange) -> Result<u64, ImageError> {
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let magic = u32::from_le_bytes([header[56], header[57], header[58], header[59]]);
    if magic != MAGIC {
        return Err(ImageError::NoMagic);
    }
    let text_offset = u64_at(8);
    let image_size = u64_at(16);
    if !kernel
        .base
        .wrapping_sub(text_offset)
        .is_multiple_of(0x20_0000)
    {
        return Err(ImageError::Misplaced { text_offset });
    }
    // Very old kernels leave image_size 0: nothing to check.
    if image_size > kernel.size {
        return Err(ImageError::TooBig { image_size });
    }
    Ok(kernel.base)
}

/// Bytes a pristine copy of the `Image` must keep: its `image_size` (a header of 0, from very
/// old kernels, means the whole room).
pub fn image_len(header: &[u8; HEADER_SIZE], kernel: MemRange) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&header[16..24]);
    match u64::from_le_bytes(b) {
        0 => kernel.size,
        size => size.min(kernel.size),
    }
}

/// Where the pristine copies of a partition's `Image` (`image_len` bytes) and initrd
/// (`initrd_len` bytes) go inside its `reset_copy` range: the Image first, the initrd on the
/// next page. `None` if they do not fit.
pub fn pristine_layout(
    reset_copy: MemRange,
    image_len: u64,
    initrd_len: u64,
) -> Option<(MemRange, MemRange)> {
    const PAGE: u64 = 4096;
    let initrd_base = reset_copy
        .base
        .checked_add(image_len.checked_next_multiple_of(PAGE)?)?;
    let end = initrd_base.checked_add(initrd_len)?;
    (end <= reset_copy.end()).then_some((
        MemRange::new(reset_copy.base, image_len),
        MemRange::new(initrd_base, initrd_len),
    ))
}

/// The seeds one boot of a Linux partition gets in its device tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSeeds {
    /// `/chosen/kaslr-seed`: where the kernel places itself.
    pub kaslr: u64,
    /// `/chosen/rng-seed`: credited to the kernel's entropy pool.
    pub rng: [u8; 32],
}

/// The seeds for the `resets`-th boot (0: the first) of a partition, drawn at counter value
/// `counter` from the host's `secret` (the boot-info seed, which no guest can read). Each is
/// a SHA-256 of the three, so a Linux that reads its seeds (they are in its DTB, in its RAM)
/// learns nothing of the secret and cannot predict the next boot's: the secret itself never
/// appears in a device tree, and the counter makes two boots differ even for one `resets`.
pub fn boot_seeds(secret: u64, resets: u32, counter: u64) -> BootSeeds {
    let digest = |domain: &[u8]| {
        let mut h = dsm_api::digest::Sha256::new();
        let mut compress = dsm_api::digest::compress_soft;
        h.update_with(&mut compress, domain);
        h.update_with(&mut compress, &secret.to_le_bytes());
        h.update_with(&mut compress, &resets.to_le_bytes());
        h.update_with(&mut compress, &counter.to_le_bytes());
        h.finalize_with(&mut compress)
    };
    let kaslr = digest(b"spumone kaslr-seed");
    let mut first = [0u8; 8];
    first.copy_from_slice(&kaslr[..8]);
    BootSeeds {
        kaslr: u64::from_le_bytes(first),
        rng: digest(b"spumone rng-seed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[56..60].copy_from_slice(b"ARM\x64");
        h
    }

    const ROOM: MemRange = MemRange::new(0x4820_0000, 0x0600_0000);

    #[test]
    fn a_fitting_image_enters_at_its_base() {
        assert_eq!(check_image(&header(0, 0x0300_0000), ROOM), Ok(0x4820_0000));
    }

    #[test]
    fn the_copy_keeps_image_size_bytes() {
        assert_eq!(image_len(&header(0, 0x0230_0000), ROOM), 0x0230_0000);
        assert_eq!(image_len(&header(0, 0), ROOM), ROOM.size);
        assert_eq!(image_len(&header(0, u64::MAX), ROOM), ROOM.size);
    }

    #[test]
    fn pristine_copies_fit_or_are_refused() {
        let room = MemRange::new(0xB800_0000, 0x0800_0000);
        let (kernel, initrd) = pristine_layout(room, 0x0230_0123, 0x17_0000).unwrap();
        assert_eq!(kernel, MemRange::new(0xB800_0000, 0x0230_0123));
        assert_eq!(initrd, MemRange::new(0xBA30_1000, 0x17_0000));
        assert!(pristine_layout(room, 0x0800_0000, 0).is_some());
        assert!(pristine_layout(room, 0x0800_0000, 1).is_none());
        assert!(pristine_layout(room, u64::MAX, 1).is_none());
        assert!(pristine_layout(MemRange::new(u64::MAX - 4095, 4096), 4096, 1).is_none());
    }

    #[test]
    fn every_boot_draws_fresh_seeds_that_hide_the_secret() {
        let secret = 0x1234_5678_9abc_def0;
        let boot = boot_seeds(secret, 0, 1_000);
        assert_ne!(boot.kaslr, secret, "the secret never reaches a DTB");
        assert!(!boot.rng.windows(8).any(|w| w == secret.to_le_bytes()));
        let mut seen = std::collections::HashSet::new();
        for resets in 0..50 {
            for counter in [1_000, 1_001, 9_999_999] {
                let s = boot_seeds(secret, resets, counter);
                assert!(
                    seen.insert(s.kaslr),
                    "a repeated seed at {resets}/{counter}"
                );
                assert_ne!(s.rng, boot.rng.map(|b| !b));
            }
        }
        assert_eq!(boot, boot_seeds(secret, 0, 1_000), "deterministic");
        assert_ne!(boot.kaslr, boot_seeds(secret ^ 1, 0, 1_000).kaslr);
        assert_ne!(boot.rng[..8], boot.kaslr.to_le_bytes(), "separate domains");
    }

    #[test]
    fn refuses_no_magic_misplaced_and_too_big() {
        assert_eq!(
            check_image(&[0; HEADER_SIZE], ROOM),
            Err(ImageError::NoMagic)
        );
        assert_eq!(
            check_image(&header(0x8_0000, 0x100_0000), ROOM),
            Err(ImageError::Misplaced {
                text_offset: 0x8_0000
            })
        );
        assert_eq!(
            check_image(&header(0, 0x0600_1000), ROOM),
            Err(ImageError::TooBig {
                image_size: 0x0600_1000
            })
        );
    }
}
