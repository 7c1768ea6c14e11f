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
