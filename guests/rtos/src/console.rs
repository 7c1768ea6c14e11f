//! Console output, cut into the pieces the backends want.
//!
//! A hypercall carries at most [`CHUNK`] bytes, so text is gathered into a small buffer and
//! handed to the backend when the buffer fills, at each newline (so a line reaches the
//! console as soon as it is complete), and when the writer is dropped.

use core::fmt;
use spumone_abi::hvc::CONSOLE_WRITE_MAX;

/// Largest piece handed to a backend at once.
pub const CHUNK: usize = CONSOLE_WRITE_MAX;

/// Where console bytes end up (a hypercall, a UART, a test buffer).
pub trait ConsoleSink {
    /// Writes `bytes` (1..=[`CHUNK`] of them).
    fn write_chunk(&mut self, bytes: &[u8]);
}

/// A `fmt::Write` that batches text into chunks for a [`ConsoleSink`].
pub struct ChunkWriter<S: ConsoleSink> {
    sink: S,
    buf: [u8; CHUNK],
    len: usize,
}

impl<S: ConsoleSink> ChunkWriter<S> {
    pub fn new(sink: S) -> Self {
        ChunkWriter {
            sink,
            buf: [0; CHUNK],
            len: 0,
        }
    }

    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.buf[self.len] = b;
            self.len += 1;
            if self.len == CHUNK || b == b'\n' {
                self.flush();
            }
        }
    }

    /// Hands any buffered bytes to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            self.sink.write_chunk(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<S: ConsoleSink> fmt::Write for ChunkWriter<S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

impl<S: ConsoleSink> Drop for ChunkWriter<S> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;
    use std::cell::RefCell;

    struct Recorder<'a>(&'a RefCell<Vec<Vec<u8>>>);

    impl ConsoleSink for Recorder<'_> {
        fn write_chunk(&mut self, bytes: &[u8]) {
            self.0.borrow_mut().push(bytes.to_vec());
        }
    }

    fn chunks_of(write: impl FnOnce(&mut ChunkWriter<Recorder<'_>>)) -> Vec<Vec<u8>> {
        let log = RefCell::new(Vec::new());
        {
            let mut w = ChunkWriter::new(Recorder(&log));
            write(&mut w);
        }
        log.into_inner()
    }

    #[test]
    fn long_text_is_split_into_full_chunks_then_the_rest() {
        let text: String = (0..130)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let chunks = chunks_of(|w| w.write_str(&text).unwrap());
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [48, 48, 34]);
        assert_eq!(chunks.concat(), text.as_bytes());
    }

    #[test]
    fn newline_ends_a_chunk() {
        let chunks = chunks_of(|w| write!(w, "one\ntwo {}\nthree", 2).unwrap());
        assert_eq!(
            chunks,
            [b"one\n".to_vec(), b"two 2\n".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn nothing_written_means_no_call() {
        assert!(chunks_of(|_| {}).is_empty());
    }

    #[test]
    fn explicit_flush_does_not_duplicate_on_drop() {
        let chunks = chunks_of(|w| {
            w.write_bytes(b"abc");
            w.flush();
        });
        assert_eq!(chunks, [b"abc".to_vec()]);
    }

    #[test]
    fn exactly_one_chunk_then_newline() {
        let line = [b'x'; CHUNK];
        let chunks = chunks_of(|w| {
            w.write_bytes(&line);
            w.write_bytes(b"\n");
        });
        assert_eq!(chunks, [line.to_vec(), b"\n".to_vec()]);
    }
}
