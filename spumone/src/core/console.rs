//! Guest console text for the plain-text log: bytes arrive in hypercall-sized pieces and
//! leave as whole lines, so each line can carry its partition's prefix.

/// Longest line kept whole; a longer one is emitted in pieces of this size.
pub const LINE_MAX: usize = 160;

/// Collects bytes until a line is complete.
pub struct LineBuffer {
    bytes: [u8; LINE_MAX],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    pub const fn new() -> Self {
        LineBuffer {
            bytes: [0; LINE_MAX],
            len: 0,
        }
    }

    /// Adds one byte. Returns the finished line (without `\n` or a trailing `\r`) when `byte`
    /// ends it, or the whole buffer once it fills up.
    pub fn push(&mut self, byte: u8) -> Option<&[u8]> {
        if byte == b'\n' {
            let mut len = core::mem::take(&mut self.len);
            if len > 0 && self.bytes[len - 1] == b'\r' {
                len -= 1;
            }
            return Some(&self.bytes[..len]);
        }
        self.bytes[self.len] = byte;
        self.len += 1;
        if self.len == LINE_MAX {
            self.len = 0;
            return Some(&self.bytes[..]);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Vec<u8>> {
        let mut buf = LineBuffer::new();
        input
            .iter()
            .filter_map(|&b| buf.push(b).map(<[u8]>::to_vec))
            .collect()
    }

    #[test]
    fn splits_on_newline_and_drops_carriage_return() {
        assert_eq!(
            lines(b"hello\r\nworld\n\npartial"),
            [b"hello".to_vec(), b"world".to_vec(), Vec::new()]
        );
    }

    #[test]
    fn long_line_comes_out_in_pieces() {
        let mut input = vec![b'a'; LINE_MAX + 3];
        input.push(b'\n');
        let out = lines(&input);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), LINE_MAX);
        assert_eq!(out[1], b"aaa".to_vec());
    }
}
