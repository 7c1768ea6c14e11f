//! Operator commands in the console input ([`spumone_abi::operator`]): the escape byte, then
//! a command letter. Everything else goes on to the focused guest unchanged; a doubled escape
//! sends one escape byte, and an escape before an unknown letter sends both.

use spumone_abi::operator::{ESCAPE, PAUSE, RESUME};

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Resume the partition the DSM paused.
    Resume,
    /// Pause the partition the DSM checks.
    Pause,
}

/// Finds commands in a console byte stream (the escape may end one read and its letter start
/// the next).
#[derive(Debug, Default)]
pub struct Escapes {
    after_escape: bool,
}

impl Escapes {
    pub const fn new() -> Self {
        Self {
            after_escape: false,
        }
    }

    /// Takes one input byte; the bytes meant for the guest go to `forward`.
    pub fn feed(&mut self, byte: u8, forward: &mut dyn FnMut(u8)) -> Option<Command> {
        if !core::mem::take(&mut self.after_escape) {
            if byte == ESCAPE {
                self.after_escape = true;
            } else {
                forward(byte);
            }
            return None;
        }
        match byte {
            RESUME => Some(Command::Resume),
            PAUSE => Some(Command::Pause),
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

    #[test]
    fn a_doubled_escape_sends_one_and_an_unknown_letter_sends_both() {
        assert_eq!(run(&[b"\x1d\x1dr"]), (b"\x1dr".to_vec(), vec![]));
        assert_eq!(run(&[b"\x1dq"]), (b"\x1dq".to_vec(), vec![]));
        assert_eq!(run(&[b"\x1d\x1dp"]), (b"\x1dp".to_vec(), vec![]));
        // A lone trailing escape is held until the next byte says what it is.
        assert_eq!(run(&[b"z\x1d"]), (b"z".to_vec(), vec![]));
    }
}
