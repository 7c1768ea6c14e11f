//! Splits QEMU's serial output into prefixed lines, one source per line.

use crate::defmt_log::DefmtLog;
use crate::event::Event;
use spumone_abi::chan;
use spumone_abi::frame::{Decoder, Frame};
use std::collections::BTreeMap;

/// A partial line longer than this is emitted anyway, so a stream without newlines still shows.
const MAX_LINE: usize = 4096;

/// Where a line came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// spumone: its defmt log, plain text and events.
    Hv,
    /// The console of the partition with this index (config order).
    Partition(usize),
    /// Bytes that were not a valid frame.
    Raw,
    /// A line already prefixed by its sender (spumone's plain-log build).
    Passthrough,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub source: Source,
    pub text: String,
    /// Set on `[hv] event: ...` lines.
    pub event: Option<Event>,
    /// Set on `[hv] mgmt: ...` lines: one frame of an answer to a management request
    /// ([`spumone_abi::mgmt::Answer`]), as sent.
    pub answer: Option<String>,
}

/// How the serial stream is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// spumone's framed channels.
    Framed,
    /// Plain text from one partition (a native run): every line gets its prefix.
    Native,
    /// spumone's plain-log build: lines are already prefixed.
    PlainLog,
}

pub struct Demux {
    mode: Mode,
    partitions: Vec<String>,
    defmt: Option<DefmtLog>,
    frames: Decoder,
    /// Unfinished lines, per source.
    pending: BTreeMap<Source, Vec<u8>>,
    /// A source whose text is also kept byte for byte, for a terminal that shows it as it
    /// comes (prompts have no newline), with what was kept since the last take.
    tap: Option<(Source, Vec<u8>)>,
}

impl Demux {
    /// `partitions` are the partition names in config order (channel `0x10 + n`); for a native
    /// run, the one image name. `defmt` decodes `HV_LOG` frames.
    pub fn new(mode: Mode, partitions: Vec<String>, defmt: Option<DefmtLog>) -> Demux {
        Demux {
            mode,
            partitions,
            defmt,
            frames: Decoder::new(),
            pending: BTreeMap::new(),
            tap: None,
        }
    }

    /// Also keeps `source`'s text as it comes, for [`Demux::take_tapped`].
    pub fn tap(&mut self, source: Source) {
        self.tap = Some((source, Vec::new()));
    }

    /// The tapped source's bytes since the last call.
    pub fn take_tapped(&mut self) -> Vec<u8> {
        self.tap
            .as_mut()
            .map(|(_, bytes)| std::mem::take(bytes))
            .unwrap_or_default()
    }

    /// The prefix a line of `source` gets.
    pub fn prefix(&self, source: &Source) -> String {
        match source {
            Source::Hv => "[hv] ".to_string(),
            Source::Partition(n) => match self.partitions.get(*n) {
                Some(name) => format!("[{name}] "),
                None => format!("[partition{n}] "),
            },
            Source::Raw => "[raw] ".to_string(),
            Source::Passthrough => String::new(),
        }
    }

    /// `line` with its source prefix, as shown and logged.
    pub fn prefixed(&self, line: &Line) -> String {
        format!("{}{}", self.prefix(&line.source), line.text)
    }

    /// Feeds serial bytes; complete lines are appended to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Line>) {
        match self.mode {
            Mode::Native => self.text(Source::Partition(0), bytes, out),
            Mode::PlainLog => self.text(Source::Passthrough, bytes, out),
            Mode::Framed => {
                for &byte in bytes {
                    let frame = match self.frames.push(byte) {
                        None => continue,
                        Some(Frame::Data { channel, payload }) => {
                            Owned::Data(channel, payload.to_vec())
                        }
                        Some(Frame::Garbage(raw)) => Owned::Garbage(raw.to_vec()),
                    };
                    match frame {
                        Owned::Data(channel, payload) => self.frame(channel, &payload, out),
                        Owned::Garbage(raw) => self.garbage(&raw, out),
                    }
                }
            }
        }
    }

    /// Emits whatever is left: unfinished lines and bytes not yet closed by a terminator.
    pub fn flush(&mut self, out: &mut Vec<Line>) {
        let rest = self.frames.pending().to_vec();
        self.frames = Decoder::new();
        if !rest.is_empty() {
            self.garbage(&rest, out);
        }
        for (source, bytes) in std::mem::take(&mut self.pending) {
            if !bytes.is_empty() {
                out.push(text_line(source, &bytes));
            }
        }
    }

    fn frame(&mut self, channel: u8, payload: &[u8], out: &mut Vec<Line>) {
        match channel {
            chan::HV_LOG => {
                let text = match &self.defmt {
                    Some(log) => log.format(payload).unwrap_or_else(|e| e),
                    None => format!(
                        "defmt record (no table to decode it): {}",
                        crate::defmt_log::hex(payload)
                    ),
                };
                for piece in text.split('\n') {
                    out.push(plain(Source::Hv, piece));
                }
            }
            chan::HV_TEXT => self.text(Source::Hv, payload, out),
            chan::HV_EVENT => {
                let text = String::from_utf8_lossy(payload);
                let event = Event::parse(&text);
                out.push(Line {
                    source: Source::Hv,
                    text: format!("event: {event}"),
                    event: Some(event),
                    answer: None,
                });
            }
            chan::HV_MGMT => {
                let text = String::from_utf8_lossy(payload).into_owned();
                out.push(Line {
                    source: Source::Hv,
                    text: format!("mgmt: {text}"),
                    event: None,
                    answer: Some(text),
                });
            }
            _ => match chan::guest_index(channel) {
                Some(n) => self.text(Source::Partition(n), payload, out),
                None => out.push(plain(
                    Source::Raw,
                    &format!(
                        "frame on unknown channel {channel:#04x}: {}",
                        escape(payload)
                    ),
                )),
            },
        }
    }

    /// Handles bytes that did not decode. A guest or a panic path that wrote the UART directly
    /// leaves text in front of the next frame; when the bytes after one of its newlines form a
    /// valid frame on a known channel, that frame is kept.
    fn garbage(&mut self, raw: &[u8], out: &mut Vec<Line>) {
        for (nl, _) in raw.iter().enumerate().filter(|(_, &b)| b == b'\n') {
            let (text, tail) = raw.split_at(nl + 1);
            let mut decoded = tail.to_vec();
            if let Ok(n) = cobs::decode_in_place(&mut decoded) {
                if n >= 1 && self.known_channel(decoded[0]) {
                    self.raw_lines(text, out);
                    self.frame(decoded[0], &decoded[1..n], out);
                    return;
                }
            }
        }
        self.raw_lines(raw, out);
    }

    fn raw_lines(&self, raw: &[u8], out: &mut Vec<Line>) {
        for piece in raw.split(|&b| b == b'\n') {
            let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
            if !piece.is_empty() {
                out.push(plain(Source::Raw, &escape(piece)));
            }
        }
    }

    fn known_channel(&self, channel: u8) -> bool {
        matches!(
            channel,
            chan::HV_LOG | chan::HV_TEXT | chan::HV_EVENT | chan::HV_MGMT
        ) || chan::guest_index(channel).is_some_and(|n| n < self.partitions.len())
    }

    /// Appends text to `source`'s unfinished line and emits every completed line.
    fn text(&mut self, source: Source, bytes: &[u8], out: &mut Vec<Line>) {
        if let Some((_, tapped)) = self.tap.as_mut().filter(|(s, _)| *s == source) {
            tapped.extend_from_slice(bytes);
        }
        let buf = self.pending.entry(source.clone()).or_default();
        for &byte in bytes {
            if byte == b'\n' {
                out.push(text_line(source.clone(), buf));
                buf.clear();
            } else {
                buf.push(byte);
                if buf.len() >= MAX_LINE {
                    out.push(text_line(source.clone(), buf));
                    buf.clear();
                }
            }
        }
    }
}

enum Owned {
    Data(u8, Vec<u8>),
    Garbage(Vec<u8>),
}

fn plain(source: Source, text: &str) -> Line {
    Line {
        source,
        text: text.to_string(),
        event: None,
        answer: None,
    }
}

fn text_line(source: Source, bytes: &[u8]) -> Line {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let mut line = plain(source, &String::from_utf8_lossy(bytes));
    // spumone's plain-log build prints its events and answers as ordinary `[hv] event: ...`
    // and `[hv] mgmt: ...` lines.
    if line.source == Source::Passthrough {
        if let Some(record) = line.text.strip_prefix("[hv] event: ") {
            line.event = Some(Event::parse(record));
        } else if let Some(answer) = line.text.strip_prefix("[hv] mgmt: ") {
            line.answer = Some(answer.to_string());
        }
    }
    line
}

/// Printable ASCII as is, everything else as `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b == b'\t' || (0x20..0x7f).contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use spumone_abi::frame::{encode, MAX_ENCODED};

    fn enc(channel: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED];
        let n = encode(channel, payload, &mut buf).expect("encodable");
        buf[..n].to_vec()
    }

    fn framed() -> Demux {
        Demux::new(Mode::Framed, vec!["rtos".into(), "linux".into()], None)
    }

    fn run(demux: &mut Demux, chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Vec::new();
        for chunk in chunks {
            demux.feed(chunk, &mut lines);
        }
        demux.flush(&mut lines);
        lines.iter().map(|l| demux.prefixed(l)).collect()
    }

    #[test]
    fn guest_lines_split_across_frames_are_joined() {
        let mut stream = enc(0x10, b"hel");
        stream.extend(enc(0x11, b"linux says hi\r\n"));
        stream.extend(enc(0x10, b"lo\nsecond"));
        let mut d = framed();
        assert_eq!(
            run(&mut d, &[&stream]),
            ["[linux] linux says hi", "[rtos] hello", "[rtos] second"]
        );
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_lines() {
        let mut stream = enc(0x01, b"panic: oops\n");
        stream.extend(enc(0x10, b"a\nb\n"));
        let mut d = framed();
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            run(&mut d, &chunks),
            ["[hv] panic: oops", "[rtos] a", "[rtos] b"]
        );
    }

    #[test]
    fn events_are_parsed_and_shown() {
        let mut stream = enc(0x02, b"partition-stopped name=rtos code=0");
        stream.extend(enc(0x02, b"shutdown code=3"));
        let mut d = framed();
        let mut lines = Vec::new();
        d.feed(&stream, &mut lines);
        let shown: Vec<String> = lines.iter().map(|l| d.prefixed(l)).collect();
        assert_eq!(
            shown,
            [
                "[hv] event: partition-stopped name=rtos code=0",
                "[hv] event: shutdown code=3"
            ]
        );
        assert_eq!(lines[1].event, Some(Event::Shutdown { code: 3 }));
    }

    #[test]
    fn raw_text_before_a_frame_is_shown_and_the_frame_kept() {
        let mut stream = b"early text\r\nmore\n".to_vec();
        stream.extend(enc(0x10, b"after\n"));
        let mut d = framed();
        assert_eq!(
            run(&mut d, &[&stream]),
            ["[raw] early text", "[raw] more", "[rtos] after"]
        );
    }

    #[test]
    fn binary_garbage_is_escaped_not_dropped() {
        // The first byte claims four more bytes than there are: not a frame.
        let stream = [5u8, b'a', 0x01, 0];
        let mut d = framed();
        assert_eq!(run(&mut d, &[&stream]), ["[raw] \\x05a\\x01"]);
    }

    #[test]
    fn unterminated_bytes_and_partial_lines_come_out_at_flush() {
        let mut stream = enc(0x11, b"no newline");
        stream.extend(b"tail");
        let mut d = framed();
        assert_eq!(
            run(&mut d, &[&stream]),
            ["[raw] tail", "[linux] no newline"]
        );
    }

    #[test]
    fn unknown_channels_are_reported() {
        let mut stream = enc(0x15, b"x\n");
        stream.extend(enc(0x05, b"y"));
        let mut d = framed();
        assert_eq!(
            run(&mut d, &[&stream]),
            ["[partition5] x", "[raw] frame on unknown channel 0x05: y"]
        );
    }

    #[test]
    fn defmt_records_are_decoded() {
        let table = crate::defmt_log::tests::synthetic_table(true);
        let log = DefmtLog::from_table(table).unwrap();
        let mut d = Demux::new(Mode::Framed, vec!["rtos".into()], Some(log));
        let stream = enc(0x00, &[1, 0, 0xd2, 0x04, 0, 0, 2]);
        assert_eq!(
            run(&mut d, &[&stream]),
            ["[hv] 0.001234 INFO  core 2 online"]
        );
    }

    #[test]
    fn defmt_records_without_a_table_are_shown_as_hex() {
        let mut d = framed();
        let lines = run(&mut d, &[&enc(0x00, &[1, 0, 0xff])]);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("[hv] ") && lines[0].ends_with("01 00 ff"),
            "{lines:?}"
        );
    }

    #[test]
    fn native_mode_prefixes_every_line() {
        let mut d = Demux::new(Mode::Native, vec!["rtos".into()], None);
        assert_eq!(
            run(&mut d, &[b"boot\r\nre", b"ady\nend"]),
            ["[rtos] boot", "[rtos] ready", "[rtos] end"]
        );
    }

    #[test]
    fn plain_log_events_are_recognised() {
        let mut d = Demux::new(Mode::PlainLog, vec!["rtos".into()], None);
        let mut lines = Vec::new();
        d.feed(
            b"[hv] event: shutdown code=0\n[rtos] event: shutdown code=1\n",
            &mut lines,
        );
        assert_eq!(lines[0].event, Some(Event::Shutdown { code: 0 }));
        assert_eq!(lines[1].event, None, "only spumone sends events");
    }

    #[test]
    fn management_answers_are_kept_as_sent_in_both_builds() {
        let mut d = framed();
        let mut lines = Vec::new();
        d.feed(
            &enc(
                chan::HV_MGMT,
                b"3 err invalid-state linux is paused already",
            ),
            &mut lines,
        );
        assert_eq!(
            d.prefixed(&lines[0]),
            "[hv] mgmt: 3 err invalid-state linux is paused already"
        );
        assert_eq!(
            lines[0].answer.as_deref(),
            Some("3 err invalid-state linux is paused already")
        );
        assert_eq!(lines[0].event, None);
        let mut d = Demux::new(Mode::PlainLog, vec!["rtos".into()], None);
        let mut lines = Vec::new();
        d.feed(
            b"[hv] mgmt: 4 ok status\n[hv] event: shutdown code=0\n",
            &mut lines,
        );
        assert_eq!(lines[0].answer.as_deref(), Some("4 ok status"));
        assert_eq!(lines[1].answer, None);
        // A management frame after raw text is recognised like the others.
        let mut stream = b"junk\n".to_vec();
        stream.extend(enc(chan::HV_MGMT, b"0 err malformed x"));
        let mut d = framed();
        assert_eq!(
            run(&mut d, &[&stream]),
            ["[raw] junk", "[hv] mgmt: 0 err malformed x"]
        );
    }

    #[test]
    fn a_guest_cannot_forge_an_answer_on_its_console() {
        // Linux printing a request and an answer frame: both stay its console's text.
        let mut forged = b"\x1dm1 stop linux\r\n".to_vec();
        forged.extend(enc(chan::HV_MGMT, b"1 ok linux stopped"));
        forged.push(b'\n');
        let mut d = framed();
        let mut lines = Vec::new();
        d.feed(&enc(0x11, &forged), &mut lines);
        assert!(!lines.is_empty());
        for line in &lines {
            assert_eq!(line.source, Source::Partition(1), "{line:?}");
            assert_eq!(line.answer, None, "{line:?}");
        }
    }

    #[test]
    fn plain_log_mode_passes_lines_through() {
        let mut d = Demux::new(Mode::PlainLog, vec!["rtos".into()], None);
        assert_eq!(
            run(&mut d, &[b"[hv] up\n[rtos] hi\n"]),
            ["[hv] up", "[rtos] hi"]
        );
    }

    #[test]
    fn a_tapped_source_is_kept_as_it_comes() {
        let mut d = framed();
        d.tap(Source::Partition(1));
        let mut stream = enc(0x11, b"~ # ");
        stream.extend(enc(0x10, b"rtos\n"));
        stream.extend(enc(0x11, b"\x1b[6n"));
        let mut lines = Vec::new();
        d.feed(&stream, &mut lines);
        assert_eq!(d.take_tapped(), b"~ # \x1b[6n");
        assert!(d.take_tapped().is_empty());
        assert_eq!(
            lines.len(),
            1,
            "the partial line still waits for its newline"
        );
    }

    #[test]
    fn overlong_lines_are_split() {
        let mut d = Demux::new(Mode::Native, vec!["rtos".into()], None);
        let long = vec![b'x'; MAX_LINE + 10];
        let lines = run(&mut d, &[&long]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), "[rtos] ".len() + MAX_LINE);
    }
}
