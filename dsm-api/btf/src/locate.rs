//! Finding the `.BTF` section inside a kernel `Image` by its content: the Image carries no
//! section table, so every occurrence of the magic is tried until one parses completely.

use crate::format::{Btf, Header, MAGIC, VERSION};
use crate::Error;

/// The first four header bytes: magic (little-endian), version 1, flags 0.
const SIGNATURE: [u8; 4] = [MAGIC as u8, (MAGIC >> 8) as u8, VERSION, 0];

/// Offset in `image` and the validated blob of the first embedded BTF blob.
pub fn find_in_image(image: &[u8]) -> Result<(usize, Btf<'_>), Error> {
    let mut pos = 0;
    while let Some(hit) = image
        .get(pos..)
        .and_then(|rest| rest.windows(SIGNATURE.len()).position(|w| w == SIGNATURE))
    {
        let at = pos + hit;
        let rest = &image[at..];
        // Header sanity first: a stray magic almost never has sections that tile and fit.
        if let Ok(header) = Header::parse(rest) {
            if let Some(blob) = rest.get(..header.total_len()) {
                if let Ok(btf) = Btf::parse(blob) {
                    return Ok((at, btf));
                }
            }
        }
        pos = at + 1;
    }
    Err(Error::NotInImage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testblob::kitchen_sink;
    use std::vec::Vec;

    #[test]
    fn skips_decoys_and_finds_the_blob() {
        let blob = kitchen_sink();
        let mut image: Vec<u8> = (0..4099u32).map(|i| (i * 31 % 251) as u8).collect();
        // A bare signature, then a valid header whose sections run past the image's blob.
        image.extend_from_slice(&SIGNATURE);
        image.extend_from_slice(&blob[..40]);
        let mut bad = blob.clone();
        // A string section far longer than what follows.
        bad[20..24].copy_from_slice(&0x0010_0000u32.to_le_bytes());
        image.extend_from_slice(&bad[..200]);
        let at = image.len();
        image.extend_from_slice(&blob);
        image.extend_from_slice(&[0x9f, 0xeb, 1, 0, 0xff, 0xff]);
        let (found, btf) = find_in_image(&image).unwrap();
        assert_eq!(found, at);
        assert_eq!(btf.count(), Btf::parse(&blob).unwrap().count());
        assert_eq!(btf.offset_of("task.comm"), Ok(40));
    }

    #[test]
    fn no_blob_is_an_error() {
        assert_eq!(find_in_image(&[]).unwrap_err(), Error::NotInImage);
        let blob = kitchen_sink();
        // A damaged blob (one record's kind made unknown) is no blob at all.
        let mut image = std::vec![0u8; 64];
        image.extend_from_slice(&blob);
        image[64 + 24 + 7] = 0x1f;
        assert_eq!(find_in_image(&image).unwrap_err(), Error::NotInImage);
        let mut truncated = std::vec![0u8; 64];
        truncated.extend_from_slice(&blob[..blob.len() - 1]);
        assert_eq!(find_in_image(&truncated).unwrap_err(), Error::NotInImage);
    }
}
