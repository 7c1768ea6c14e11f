//! SHA-256 for checkers, on top of the guest's digest service ([`Guest::sha256_compress`]).
//!
//! The checker keeps the message schedule's bookkeeping (buffering, padding, length); the
//! hypervisor only compresses whole blocks, so it can use the CPU's SHA-256 instructions at
//! EL2 while host tests use the `sha2` crate's software compression.

use crate::Guest;

/// A SHA-256 compression function: whole 64-byte blocks into the state.
pub type Compress<'a> = dyn FnMut(&mut [u32; 8], &[[u8; 64]]) + 'a;

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
pub const SHA256_INIT: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The software compression (the `sha2` crate's).
pub fn compress_soft(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    sha2::block_api::compress256(state, blocks);
}

/// An incremental SHA-256 whose compression is the guest's digest service.
#[derive(Debug, Clone, Copy)]
pub struct Sha256 {
    state: [u32; 8],
    /// Bytes of a partial block.
    buf: [u8; 64],
    fill: usize,
    /// Message length in bytes.
    len: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    pub const fn new() -> Self {
        Self {
            state: SHA256_INIT,
            buf: [0; 64],
            fill: 0,
            len: 0,
        }
    }

    /// Hashes `data` with the guest's digest service.
    pub fn update(&mut self, guest: &dyn Guest, data: &[u8]) {
        self.update_with(&mut |s, b| guest.sha256_compress(s, b), data);
    }

    /// Pads and returns the digest, compressing with the guest's digest service.
    pub fn finalize(self, guest: &dyn Guest) -> [u8; 32] {
        self.finalize_with(&mut |s, b| guest.sha256_compress(s, b))
    }

    /// [`Sha256::update`] with any compression function (a self-test of a hardware one).
    pub fn update_with(&mut self, compress: &mut Compress, mut data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        if self.fill > 0 {
            let n = (64 - self.fill).min(data.len());
            self.buf[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill < 64 {
                return;
            }
            compress(&mut self.state, &[self.buf]);
            self.fill = 0;
        }
        let (blocks, rest) = data.as_chunks::<64>();
        if !blocks.is_empty() {
            compress(&mut self.state, blocks);
        }
        self.buf[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    /// [`Sha256::finalize`] with any compression function.
    pub fn finalize_with(mut self, compress: &mut Compress) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut tail = [0u8; 128];
        tail[..self.fill].copy_from_slice(&self.buf[..self.fill]);
        tail[self.fill] = 0x80;
        // One block if the length still fits after the 0x80 byte, else two.
        let blocks = if self.fill < 56 { 1 } else { 2 };
        tail[64 * blocks - 8..64 * blocks].copy_from_slice(&bits.to_be_bytes());
        let (full, _) = tail[..64 * blocks].as_chunks::<64>();
        compress(&mut self.state, full);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn digest(parts: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        for p in parts {
            h.update_with(&mut compress_soft, p);
        }
        h.finalize_with(&mut compress_soft)
    }

    #[test]
    fn matches_sha2_for_every_split_and_length() {
        let data: std::vec::Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 300] {
            let want: [u8; 32] = sha2::Sha256::digest(&data[..len]).into();
            for split in [0, 1, 31, 64, len / 2, len] {
                let split = split.min(len);
                let got = digest(&[&data[..split], &data[split..len]]);
                assert_eq!(got, want, "len {len} split {split}");
            }
        }
    }

    #[test]
    fn known_answer() {
        // FIPS 180-4 example "abc".
        let d = digest(&[b"abc"]);
        assert_eq!(&d[..4], &[0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(&d[28..], &[0xf2, 0x00, 0x15, 0xad]);
    }
}
