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
