//! Channel framing on the shared UART.
//!
//! One frame is `COBS(channel ‖ payload) ‖ 0x00`. COBS keeps `0x00` out of the encoded bytes,
//! so a reader that joins mid-stream, or sees stray text from a guest that writes the UART
//! directly, resynchronises at the next `0x00`. Bytes that do not decode as a frame are handed
//! back as [`Frame::Garbage`] so nothing printed is ever silently dropped.

/// Largest payload one frame carries. Longer writes are split by the sender.
pub const MAX_PAYLOAD: usize = 240;

/// Bytes an encoded frame may need: COBS overhead, channel byte, terminator.
pub const MAX_ENCODED: usize = cobs::max_encoding_length(MAX_PAYLOAD + 1) + 1;

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The payload is longer than [`MAX_PAYLOAD`].
    PayloadTooLong,
    /// The output buffer cannot hold the encoded frame.
    OutputTooSmall,
}

/// Encodes one frame into `out` and returns its length, terminator included.
pub fn encode(channel: u8, payload: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(EncodeError::PayloadTooLong);
    }
    let needed = cobs::max_encoding_length(payload.len() + 1) + 1;
    if out.len() < needed {
        return Err(EncodeError::OutputTooSmall);
    }
    let body_len = {
        let mut enc = cobs::CobsEncoder::new(&mut out[..needed - 1]);
        enc.push(&[channel])
            .and_then(|()| enc.push(payload))
            .map_err(|_| EncodeError::OutputTooSmall)?;
        enc.finalize()
    };
    out[body_len] = 0;
    Ok(body_len + 1)
}

/// What the decoder found when a `0x00` closed a run of bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A well-formed frame.
    Data { channel: u8, payload: &'a [u8] },
    /// Bytes that were not a valid frame (for example raw text), as received.
    Garbage(&'a [u8]),
}

/// Size of the decoder's buffer; a longer run without `0x00` is returned as garbage.
pub const DECODER_CAPACITY: usize = 1024;

/// Streaming decoder: feed bytes one at a time, get a [`Frame`] at each terminator.
pub struct Decoder {
    raw: [u8; DECODER_CAPACITY],
    raw_len: usize,
    decoded: [u8; DECODER_CAPACITY],
    overflowed: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub const fn new() -> Self {
        Decoder {
            raw: [0; DECODER_CAPACITY],
            raw_len: 0,
            decoded: [0; DECODER_CAPACITY],
            overflowed: false,
        }
    }

    /// Bytes received since the last terminator (for flushing a partial run at exit).
    pub fn pending(&self) -> &[u8] {
        &self.raw[..self.raw_len]
    }

    /// Feeds one byte. Returns a frame when `byte` is the terminator; a full buffer is also
    /// returned, as garbage, so a stream that never frames still comes out.
    pub fn push(&mut self, byte: u8) -> Option<Frame<'_>> {
        if byte != 0 {
            if self.raw_len == DECODER_CAPACITY {
                self.overflowed = true;
                self.decoded.copy_from_slice(&self.raw);
                self.raw[0] = byte;
                self.raw_len = 1;
                return Some(Frame::Garbage(&self.decoded[..]));
            }
            self.raw[self.raw_len] = byte;
            self.raw_len += 1;
            return None;
        }
        let len = core::mem::take(&mut self.raw_len);
        let overflowed = core::mem::take(&mut self.overflowed);
        if len == 0 {
            return None;
        }
        self.decoded[..len].copy_from_slice(&self.raw[..len]);
        if overflowed {
            return Some(Frame::Garbage(&self.decoded[..len]));
        }
        match cobs::decode_in_place(&mut self.decoded[..len]) {
            Ok(n) if n >= 1 => Some(Frame::Data {
                channel: self.decoded[0],
                payload: &self.decoded[1..n],
            }),
            _ => {
                self.decoded[..len].copy_from_slice(&self.raw[..len]);
                Some(Frame::Garbage(&self.decoded[..len]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[derive(Debug, PartialEq)]
    enum Owned {
        Data(u8, Vec<u8>),
        Garbage(Vec<u8>),
    }

    fn decode_all(bytes: &[u8]) -> Vec<Owned> {
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        for &b in bytes {
            match dec.push(b) {
                Some(Frame::Data { channel, payload }) => {
                    out.push(Owned::Data(channel, payload.to_vec()))
                }
                Some(Frame::Garbage(g)) => out.push(Owned::Garbage(g.to_vec())),
                None => {}
            }
        }
        out
    }

    fn enc(channel: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED];
        let n = encode(channel, payload, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn round_trip_with_zero_bytes() {
        let payload = [0u8, 1, 0, 0, 255, 0];
        let bytes = enc(0x10, &payload);
        assert_eq!(
            bytes.iter().filter(|&&b| b == 0).count(),
            1,
            "only the terminator is zero"
        );
        assert_eq!(*bytes.last().unwrap(), 0);
        assert_eq!(decode_all(&bytes), [Owned::Data(0x10, payload.to_vec())]);
    }

    #[test]
    fn round_trip_every_length() {
        for len in 0..=MAX_PAYLOAD {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let bytes = enc(3, &payload);
            assert_eq!(
                decode_all(&bytes),
                [Owned::Data(3, payload)],
                "length {len}"
            );
        }
    }

    #[test]
    fn consecutive_frames_on_different_channels() {
        let mut stream = enc(chan_hv(), b"hello");
        stream.extend(enc(0x11, b"world\n"));
        assert_eq!(
            decode_all(&stream),
            [
                Owned::Data(0, b"hello".to_vec()),
                Owned::Data(0x11, b"world\n".to_vec())
            ]
        );
    }

    fn chan_hv() -> u8 {
        crate::chan::HV_LOG
    }

    #[test]
    fn raw_text_is_returned_as_garbage_and_decoder_resyncs() {
        let mut stream = b"raw text".to_vec();
        stream.push(0);
        stream.extend(enc(0x10, b"ok"));
        let frames = decode_all(&stream);
        assert_eq!(frames.len(), 2);
        assert!(matches!(&frames[0], Owned::Garbage(_) | Owned::Data(..)));
        assert_eq!(frames[1], Owned::Data(0x10, b"ok".to_vec()));
    }

    #[test]
    fn corrupt_frame_is_garbage_with_original_bytes() {
        // A COBS code byte pointing past the end of the frame is invalid.
        let stream = [9u8, b'a', b'b', 0];
        assert_eq!(
            decode_all(&stream),
            [Owned::Garbage(std::vec![9, b'a', b'b'])]
        );
    }

    #[test]
    fn overlong_run_comes_out_as_garbage() {
        let stream = std::vec![b'x'; DECODER_CAPACITY + 5];
        let mut with_end = stream.clone();
        with_end.push(0);
        let frames = decode_all(&with_end);
        let total: usize = frames
            .iter()
            .map(|f| match f {
                Owned::Garbage(g) => g.len(),
                Owned::Data(..) => panic!("no frame expected: {f:?}"),
            })
            .sum();
        assert_eq!(total, DECODER_CAPACITY + 5, "every byte comes back");
    }

    #[test]
    fn payload_too_long_is_rejected() {
        let mut buf = [0u8; 2 * MAX_ENCODED];
        assert_eq!(
            encode(0, &[1; MAX_PAYLOAD + 1], &mut buf),
            Err(EncodeError::PayloadTooLong)
        );
        assert_eq!(
            encode(0, &[1; 10], &mut buf[..5]),
            Err(EncodeError::OutputTooSmall)
        );
    }

    #[test]
    fn guest_channels_map_both_ways() {
        use crate::chan;
        assert_eq!(chan::guest(0), Some(chan::GUEST_BASE));
        assert_eq!(chan::guest_index(chan::GUEST_BASE + 2), Some(2));
        assert_eq!(chan::guest_index(chan::HV_LOG), None);
        assert_eq!(chan::guest(100), None);
    }
}
