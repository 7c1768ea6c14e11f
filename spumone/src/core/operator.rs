//! Operator commands in the console input ([`spumone_abi::operator`]): the escape byte, then
//! a command letter. Everything else goes on to the focused guest unchanged; a doubled escape
//! sends one escape byte, and an escape before an unknown letter sends both.
//!
//! The escape and [`MANAGE`] start a management request ([`spumone_abi::mgmt`]): a line of
//! printable ASCII that never reaches the guest. A line too long, or a byte that is neither
//! printable nor a terminator, ends it as a [`FrameError`].

use spumone_abi::mgmt::{is_request_byte, is_terminator, FrameError, MANAGE, MAX_REQUEST};
use spumone_abi::operator::{ESCAPE, PAUSE, RESUME};

/// A management request line, without its terminator (printable ASCII).
pub type RequestLine = heapless::String<MAX_REQUEST>;

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Resume the partition the DSM paused.
    Resume,
    /// Pause the partition the DSM checks.
    Pause,
    /// A management request line, to be parsed and answered.
    Request(RequestLine),
    /// Bytes after the management escape that were not a request line.
    BadFrame(FrameError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    AfterEscape,
    Request,
    /// A request line grew past [`MAX_REQUEST`]: its rest is dropped up to its end.
    Overflow,
}

/// Finds commands in a console byte stream (the escape may end one read and its letter start
/// the next; a request line may span reads).
#[derive(Debug)]
pub struct Escapes {
    mode: Mode,
    line: heapless::Vec<u8, MAX_REQUEST>,
}

impl Default for Escapes {
    fn default() -> Self {
        Self::new()
    }
}

impl Escapes {
    pub const fn new() -> Self {
        Self {
            mode: Mode::Text,
            line: heapless::Vec::new(),
        }
    }

    /// Takes one input byte; the bytes meant for the guest go to `forward`.
    pub fn feed(&mut self, byte: u8, forward: &mut dyn FnMut(u8)) -> Option<Command> {
        match self.mode {
            Mode::Text => {
                if byte == ESCAPE {
                    self.mode = Mode::AfterEscape;
                } else {
                    forward(byte);
                }
                None
            }
            Mode::AfterEscape => {
                self.mode = Mode::Text;
                match byte {
                    RESUME => Some(Command::Resume),
                    PAUSE => Some(Command::Pause),
                    MANAGE => {
                        self.line.clear();
                        self.mode = Mode::Request;
                        None
                    }
                    ESCAPE => {
                        forward(ESCAPE);
                        None
                    }
                    other => {
                        forward(ESCAPE);
                        forward(other);
                        None
                    }
                }
            }
            Mode::Request => self.request_byte(byte),
            Mode::Overflow => {
                if is_request_byte(byte) {
                    return None;
                }
                self.mode = Mode::Text;
                Some(Command::BadFrame(FrameError::TooLong))
            }
        }
    }

    fn request_byte(&mut self, byte: u8) -> Option<Command> {
        if is_terminator(byte) {
            self.mode = Mode::Text;
            let mut line = RequestLine::new();
            // Only printable ASCII was kept, and the capacities match.
            for &b in &self.line {
                let _ = line.push(char::from(b));
            }
            return Some(Command::Request(line));
        }
        if !is_request_byte(byte) {
            self.mode = Mode::Text;
            return Some(Command::BadFrame(FrameError::BadByte(byte)));
        }
        if self.line.push(byte).is_err() {
            self.mode = Mode::Overflow;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spumone_abi::operator::{PAUSE_SEQUENCE, RESUME_SEQUENCE};

    /// (bytes for the guest, commands) from feeding `reads` in turn to one parser.
    fn run(reads: &[&[u8]]) -> (Vec<u8>, Vec<Command>) {
        let mut e = Escapes::new();
        let (mut out, mut cmds) = (Vec::new(), Vec::new());
        for read in reads {
            for &b in *read {
                cmds.extend(e.feed(b, &mut |b| out.push(b)));
            }
        }
        (out, cmds)
    }

    #[test]
    fn plain_input_passes_through() {
        assert_eq!(run(&[b"ls -l\r"]), (b"ls -l\r".to_vec(), vec![]));
    }

    #[test]
    fn the_resume_sequence_is_taken_out_even_split_across_reads() {
        let mut whole = b"ab".to_vec();
        whole.extend(RESUME_SEQUENCE);
        whole.extend(b"cd");
        assert_eq!(run(&[&whole]), (b"abcd".to_vec(), vec![Command::Resume]));
        let split = run(&[b"x\x1d", b"ry"]);
        assert_eq!(split, (b"xy".to_vec(), vec![Command::Resume]));
    }

    #[test]
    fn pause_and_resume_alternate_in_one_stream() {
        let mut whole = PAUSE_SEQUENCE.to_vec();
        whole.extend(b"k");
        whole.extend(RESUME_SEQUENCE);
        whole.extend(PAUSE_SEQUENCE);
        assert_eq!(
            run(&[&whole]),
            (
                b"k".to_vec(),
                vec![Command::Pause, Command::Resume, Command::Pause]
            )
        );
    }

    fn request(line: &str) -> Command {
        Command::Request(RequestLine::try_from(line).unwrap())
    }

    #[test]
    fn a_request_line_is_taken_out_even_split_across_reads() {
        let (out, cmds) = run(&[b"ls\x1dm3 st", b"atus\rpwd\r"]);
        assert_eq!(out, b"lspwd\r");
        assert_eq!(cmds, vec![request("3 status")]);
        // `\n` ends a line too; an empty line is still a request (the parser refuses it).
        let (out, cmds) = run(&[b"\x1dm1 pause linux\n\x1dm\r"]);
        assert!(out.is_empty());
        assert_eq!(cmds, vec![request("1 pause linux"), request("")]);
    }

    #[test]
    fn a_request_of_the_longest_length_is_kept_and_one_byte_more_is_refused() {
        let longest = "9".repeat(MAX_REQUEST);
        let mut stream = b"\x1dm".to_vec();
        stream.extend(longest.as_bytes());
        stream.push(b'\r');
        assert_eq!(run(&[&stream]), (vec![], vec![request(&longest)]));
        // One more: the whole line is dropped, however long, up to its end; then typing
        // reaches the guest again.
        let mut stream = b"\x1dm".to_vec();
        stream.extend("x".repeat(MAX_REQUEST + 1000).as_bytes());
        stream.extend(b"\rok");
        assert_eq!(
            run(&[&stream]),
            (b"ok".to_vec(), vec![Command::BadFrame(FrameError::TooLong)])
        );
    }

    #[test]
    fn a_control_byte_ends_a_request_as_malformed_and_is_dropped() {
        assert_eq!(
            run(&[b"\x1dm1 sta\x03tus\r"]),
            (
                b"tus\r".to_vec(),
                vec![Command::BadFrame(FrameError::BadByte(3))]
            )
        );
        // An escape inside a request is no command either, and a 0x00 no terminator.
        assert_eq!(
            run(&[b"\x1dm1 \x1dp", b"\x1dm2 status\x00"]),
            (
                b"p".to_vec(),
                vec![
                    Command::BadFrame(FrameError::BadByte(ESCAPE)),
                    Command::BadFrame(FrameError::BadByte(0))
                ]
            )
        );
        // A line overflowing into a control byte ends there.
        let mut stream = b"\x1dm".to_vec();
        stream.extend("y".repeat(MAX_REQUEST + 1).as_bytes());
        stream.extend(b"\x1bz");
        assert_eq!(
            run(&[&stream]),
            (b"z".to_vec(), vec![Command::BadFrame(FrameError::TooLong)])
        );
    }

    #[test]
    fn a_doubled_escape_sends_one_and_an_unknown_letter_sends_both() {
        assert_eq!(run(&[b"\x1d\x1dr"]), (b"\x1dr".to_vec(), vec![]));
        assert_eq!(run(&[b"\x1dq"]), (b"\x1dq".to_vec(), vec![]));
        assert_eq!(run(&[b"\x1d\x1dp"]), (b"\x1dp".to_vec(), vec![]));
        // A lone trailing escape is held until the next byte says what it is.
        assert_eq!(run(&[b"z\x1d"]), (b"z".to_vec(), vec![]));
    }
}
