//! The management channel: requests the host tools put on the console input, and the answers
//! spumone sends back on [`crate::chan::HV_MGMT`].
//!
//! A request is the escape byte, [`MANAGE`], then one line of printable ASCII (at most
//! [`MAX_REQUEST`] bytes) ended by `\r` or `\n`: `SEQ COMMAND [ARG...]`, `SEQ` a number
//! 0..=255 that the answer repeats. Text rather than a binary frame: QEMU's `-nographic`
//! console takes `0x01` as its own escape, and a person can type a request by hand.
//!
//! Each answer frame is one line of text, `SEQ rec RECORD` (one record of the answer, more
//! follow), then `SEQ ok MESSAGE` or `SEQ err CODE MESSAGE`. A request spumone could not read
//! far enough to know its `SEQ` is answered with `SEQ` 0. Records are `KIND key=value...`;
//! values hold no spaces.

use core::fmt;

/// After [`crate::operator::ESCAPE`]: a management request line follows.
pub const MANAGE: u8 = b'm';
/// Longest request line, terminator excluded.
pub const MAX_REQUEST: usize = 80;

/// Whether `byte` may appear in a request line.
pub const fn is_request_byte(byte: u8) -> bool {
    matches!(byte, 0x20..=0x7e)
}

/// Whether `byte` ends a request line.
pub const fn is_terminator(byte: u8) -> bool {
    matches!(byte, b'\r' | b'\n')
}

/// One command to spumone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Partitions, vCPU placement, migration, the DSM and its checkers.
    Status,
    Pause(&'a str),
    Resume(&'a str),
    Stop(&'a str),
    Restart(&'a str),
    /// Move vCPU `vcpu` of `partition` to `core`.
    Migrate {
        partition: &'a str,
        vcpu: u8,
        core: u8,
    },
    /// The Linux partition's migration policy from now on.
    Policy(&'a str),
    /// Run one DSM checker now.
    Check(&'a str),
}

/// The command words, in the order `ctl` lists them.
pub const COMMANDS: [&str; 8] = [
    "status", "pause", "resume", "stop", "restart", "migrate", "policy", "check",
];

/// Why a request line could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// No `SEQ`, or one that is not a number 0..=255.
    BadSequence,
    /// No command after `SEQ`.
    NoCommand,
    UnknownCommand,
    /// The command needs this argument.
    Missing(&'static str),
    /// More words than the command takes.
    Extra,
    /// This argument is not a number 0..=255.
    BadNumber(&'static str),
}

impl RequestError {
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::UnknownCommand => ErrorCode::UnknownCommand,
            _ => ErrorCode::Malformed,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSequence => write!(f, "a request starts with its number, 0 to 255"),
            Self::NoCommand => write!(f, "no command after the request's number"),
            Self::UnknownCommand => write!(
                f,
                "unknown command (status, pause, resume, stop, restart, migrate, policy, check)"
            ),
            Self::Missing(what) => write!(f, "missing {what}"),
            Self::Extra => write!(f, "too many arguments"),
            Self::BadNumber(what) => write!(f, "{what} must be a number 0 to 255"),
        }
    }
}

/// Why the bytes after [`MANAGE`] were not a request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Longer than [`MAX_REQUEST`].
    TooLong,
    /// A byte that is neither printable nor a terminator.
    BadByte(u8),
}

impl FrameError {
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::TooLong => ErrorCode::TooLong,
            Self::BadByte(_) => ErrorCode::Malformed,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "request longer than {MAX_REQUEST} bytes"),
            Self::BadByte(b) => write!(f, "byte {b:#04x} in a request (printable ASCII only)"),
        }
    }
}

/// The `SEQ` of a request line, to answer even one that cannot be read (0 if it has none).
pub fn sequence(line: &str) -> u8 {
    line.split_ascii_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or(0)
}

fn number(word: Option<&str>, what: &'static str) -> Result<u8, RequestError> {
    word.ok_or(RequestError::Missing(what))?
        .parse()
        .map_err(|_| RequestError::BadNumber(what))
}

impl<'a> Request<'a> {
    /// Reads a request line: its `SEQ` and command.
    pub fn parse(line: &'a str) -> Result<(u8, Request<'a>), RequestError> {
        let mut words = line.split_ascii_whitespace();
        let seq = words
            .next()
            .and_then(|w| w.parse::<u8>().ok())
            .ok_or(RequestError::BadSequence)?;
        let command = words.next().ok_or(RequestError::NoCommand)?;
        let mut arg = |what| words.next().ok_or(RequestError::Missing(what));
        let request = match command {
            "status" => Request::Status,
            "pause" => Request::Pause(arg("partition")?),
            "resume" => Request::Resume(arg("partition")?),
            "stop" => Request::Stop(arg("partition")?),
            "restart" => Request::Restart(arg("partition")?),
            "policy" => Request::Policy(arg("policy name")?),
            "check" => Request::Check(arg("checker")?),
            "migrate" => {
                let partition = arg("partition")?;
                let vcpu = number(words.next(), "vcpu")?;
                let core = number(words.next(), "core")?;
                Request::Migrate {
                    partition,
                    vcpu,
                    core,
                }
            }
            _ => return Err(RequestError::UnknownCommand),
        };
        match words.next() {
            Some(_) => Err(RequestError::Extra),
            None => Ok((seq, request)),
        }
    }

    /// The command word.
    pub const fn verb(&self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Pause(_) => "pause",
            Self::Resume(_) => "resume",
            Self::Stop(_) => "stop",
            Self::Restart(_) => "restart",
            Self::Migrate { .. } => "migrate",
            Self::Policy(_) => "policy",
            Self::Check(_) => "check",
        }
    }
}

/// The command and its arguments, as [`Request::parse`] reads them after `SEQ`.
impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())?;
        match self {
            Self::Status => Ok(()),
            Self::Pause(p) | Self::Resume(p) | Self::Stop(p) | Self::Restart(p) => {
                write!(f, " {p}")
            }
            Self::Policy(name) | Self::Check(name) => write!(f, " {name}"),
            Self::Migrate {
                partition,
                vcpu,
                core,
            } => write!(f, " {partition} {vcpu} {core}"),
        }
    }
}

/// What kind of error an answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request could not be read.
    Malformed,
    /// The request line was too long.
    TooLong,
    UnknownCommand,
    UnknownPartition,
    UnknownChecker,
    /// The command makes no sense in the partition's state (pausing a paused one, say).
    InvalidState,
    /// The command is never allowed on that partition (the RTOS), or the config rules it out.
    NotAllowed,
    /// spumone cannot do that (yet), or not in this run.
    NotSupported,
    /// Something under way must finish first.
    Busy,
    /// Tried, and it did not work.
    Failed,
}

const CODES: [(ErrorCode, &str); 10] = [
    (ErrorCode::Malformed, "malformed"),
    (ErrorCode::TooLong, "too-long"),
    (ErrorCode::UnknownCommand, "unknown-command"),
    (ErrorCode::UnknownPartition, "unknown-partition"),
    (ErrorCode::UnknownChecker, "unknown-checker"),
    (ErrorCode::InvalidState, "invalid-state"),
    (ErrorCode::NotAllowed, "not-allowed"),
    (ErrorCode::NotSupported, "not-supported"),
    (ErrorCode::Busy, "busy"),
    (ErrorCode::Failed, "failed"),
];

impl ErrorCode {
    pub fn name(self) -> &'static str {
        CODES
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("failed", |(_, n)| n)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        CODES.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }
}

/// One answer frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer<'a> {
    pub seq: u8,
    pub kind: AnswerKind<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind<'a> {
    /// One record; more frames of the answer follow.
    Record(&'a str),
    /// The answer ends: done.
    Ok(&'a str),
    /// The answer ends: refused or failed.
    Err(ErrorCode, &'a str),
}

impl<'a> Answer<'a> {
    /// Reads one answer frame; `None` if it is not one.
    pub fn parse(text: &'a str) -> Option<Answer<'a>> {
        let (seq, rest) = text.split_once(' ')?;
        let seq = seq.parse().ok()?;
        let (kind, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let kind = match kind {
            "rec" => AnswerKind::Record(rest),
            "ok" => AnswerKind::Ok(rest),
            "err" => {
                let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                AnswerKind::Err(ErrorCode::from_name(code)?, message)
            }
            _ => return None,
        };
        Some(Answer { seq, kind })
    }

    /// Whether this frame ends its answer.
    pub fn is_final(&self) -> bool {
        !matches!(self.kind, AnswerKind::Record(_))
    }
}

/// The start of an answer frame (`SEQ rec `, `SEQ ok `, `SEQ err CODE `); the sender writes
/// the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u8,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Record,
    Ok,
    Err(ErrorCode),
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outcome {
            Outcome::Record => write!(f, "{} rec ", self.seq),
            Outcome::Ok => write!(f, "{} ok ", self.seq),
            Outcome::Err(code) => write!(f, "{} err {} ", self.seq, code.name()),
        }
    }
}

/// Records of a `status` answer.
pub mod record {
    use core::fmt;

    /// What a partition is doing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum State {
        Running,
        /// Its vCPUs are held in EL2 (by the DSM or the operator).
        Paused,
        /// Coming back from its pristine copy.
        Restarting,
        Stopped {
            code: i64,
        },
    }

    impl fmt::Display for State {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Running => write!(f, "state=running"),
                Self::Paused => write!(f, "state=paused"),
                Self::Restarting => write!(f, "state=restarting"),
                Self::Stopped { code } => write!(f, "state=stopped code={code}"),
            }
        }
    }

    /// `partition name=.. kind=rtos|linux state=.. [code=..] restarts=..`
    pub struct Partition<'a> {
        pub name: &'a str,
        pub kind: &'a str,
        pub state: State,
        pub restarts: u32,
    }

    impl fmt::Display for Partition<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "partition name={} kind={} {} restarts={}",
                self.name, self.kind, self.state, self.restarts
            )
        }
    }

    /// `vcpu partition=.. vcpu=.. core=.. on=yes|no`: where a vCPU lives (or goes).
    pub struct Vcpu<'a> {
        pub partition: &'a str,
        pub vcpu: usize,
        pub core: usize,
        pub on: bool,
    }

    impl fmt::Display for Vcpu<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let on = if self.on { "yes" } else { "no" };
            write!(
                f,
                "vcpu partition={} vcpu={} core={} on={}",
                self.partition, self.vcpu, self.core, on
            )
        }
    }

    /// `migration partition=.. policy=.. count=..` (the count is the machine's).
    pub struct Migration<'a> {
        pub partition: &'a str,
        pub policy: &'a str,
        pub count: u64,
    }

    impl fmt::Display for Migration<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "migration partition={} policy={} count={}",
                self.partition, self.policy, self.count
            )
        }
    }

    /// `dsm partition=.. core=.. phase=.. policy=.. alerts=.. spent_us=.. uptime_us=..`
    pub struct Dsm<'a> {
        pub partition: &'a str,
        pub core: usize,
        pub phase: &'a str,
        pub policy: &'a str,
        pub alerts: u32,
        /// The DSM's time on its core so far, and the machine's uptime (for its share).
        pub spent_us: u64,
        pub uptime_us: u64,
    }

    impl fmt::Display for Dsm<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "dsm partition={} core={} phase={} policy={} alerts={} spent_us={} uptime_us={}",
                self.partition,
                self.core,
                self.phase,
                self.policy,
                self.alerts,
                self.spent_us,
                self.uptime_us
            )
        }
    }

    /// `checker name=.. passes=.. last_pass_ns=.. last_pass_at_ms=.. findings=..`
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Checker<'a> {
        pub name: &'a str,
        /// Completed passes.
        pub passes: u32,
        /// The last pass's checking time, and when it ended (uptime).
        pub last_pass_ns: u64,
        pub last_pass_at_ms: u64,
        pub findings: u32,
    }

    impl fmt::Display for Checker<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "checker name={} passes={} last_pass_ns={} last_pass_at_ms={} findings={}",
                self.name, self.passes, self.last_pass_ns, self.last_pass_at_ms, self.findings
            )
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::string::ToString;

    #[test]
    fn every_command_parses_and_prints_back() {
        for (line, want) in [
            ("7 status", Request::Status),
            ("1 pause linux", Request::Pause("linux")),
            ("2 resume linux", Request::Resume("linux")),
            ("3 stop linux", Request::Stop("linux")),
            ("4 restart linux", Request::Restart("linux")),
            (
                "5 migrate linux 2 0",
                Request::Migrate {
                    partition: "linux",
                    vcpu: 2,
                    core: 0,
                },
            ),
            ("6 policy load", Request::Policy("load")),
            ("255 check text-hash", Request::Check("text-hash")),
        ] {
            let (seq, request) = Request::parse(line).unwrap();
            assert_eq!(request, want, "{line}");
            assert_eq!(format!("{seq} {request}"), line);
            assert!(COMMANDS.contains(&request.verb()));
        }
        // Extra blanks between words are fine.
        assert_eq!(
            Request::parse("  0   pause   rtos "),
            Ok((0, Request::Pause("rtos")))
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (line, want) in [
            ("", RequestError::BadSequence),
            ("status", RequestError::BadSequence),
            ("256 status", RequestError::BadSequence),
            ("-1 status", RequestError::BadSequence),
            ("3", RequestError::NoCommand),
            ("3 frobnicate", RequestError::UnknownCommand),
            ("3 STATUS", RequestError::UnknownCommand),
            ("3 pause", RequestError::Missing("partition")),
            ("3 status now", RequestError::Extra),
            ("3 pause linux rtos", RequestError::Extra),
            ("3 migrate linux", RequestError::Missing("vcpu")),
            ("3 migrate linux 1", RequestError::Missing("core")),
            ("3 migrate linux x 1", RequestError::BadNumber("vcpu")),
            ("3 migrate linux 1 300", RequestError::BadNumber("core")),
            ("3 migrate linux 1 2 3", RequestError::Extra),
            ("3 check", RequestError::Missing("checker")),
        ] {
            assert_eq!(Request::parse(line), Err(want), "{line:?}");
            assert!(!want.to_string().is_empty());
        }
        assert_eq!(sequence("12 frobnicate"), 12);
        assert_eq!(sequence("frobnicate"), 0);
        assert_eq!(sequence("999 status"), 0);
        assert_eq!(
            RequestError::UnknownCommand.code(),
            ErrorCode::UnknownCommand
        );
        assert_eq!(RequestError::Extra.code(), ErrorCode::Malformed);
        assert_eq!(FrameError::TooLong.code(), ErrorCode::TooLong);
        assert_eq!(
            FrameError::BadByte(3).to_string(),
            "byte 0x03 in a request (printable ASCII only)"
        );
    }

    #[test]
    fn answers_round_trip() {
        let frames = [
            (
                Head {
                    seq: 4,
                    outcome: Outcome::Record,
                },
                "partition name=linux kind=linux state=running restarts=0",
            ),
            (
                Head {
                    seq: 4,
                    outcome: Outcome::Ok,
                },
                "status",
            ),
            (
                Head {
                    seq: 9,
                    outcome: Outcome::Err(ErrorCode::InvalidState),
                },
                "linux is already paused",
            ),
        ];
        for (head, rest) in frames {
            let text = format!("{head}{rest}");
            let answer = Answer::parse(&text).unwrap();
            assert_eq!(answer.seq, head.seq);
            match (answer.kind, head.outcome) {
                (AnswerKind::Record(r), Outcome::Record) => assert_eq!(r, rest),
                (AnswerKind::Ok(m), Outcome::Ok) => assert_eq!(m, rest),
                (AnswerKind::Err(code, m), Outcome::Err(want)) => {
                    assert_eq!((code, m), (want, rest))
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(answer.is_final(), head.outcome != Outcome::Record);
        }
        assert_eq!(
            Answer::parse("0 ok"),
            Some(Answer {
                seq: 0,
                kind: AnswerKind::Ok("")
            })
        );
        for bad in ["", "x ok done", "3 maybe", "3 err nonsense text", "300 ok"] {
            assert_eq!(Answer::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn error_codes_have_unique_names() {
        for (code, name) in CODES {
            assert_eq!(code.name(), name);
            assert_eq!(ErrorCode::from_name(name), Some(code));
        }
        assert_eq!(ErrorCode::from_name("nope"), None);
    }

    #[test]
    fn records_print_as_key_value_words() {
        use record::*;
        let p = Partition {
            name: "linux",
            kind: "linux",
            state: State::Stopped { code: 255 },
            restarts: 2,
        };
        assert_eq!(
            p.to_string(),
            "partition name=linux kind=linux state=stopped code=255 restarts=2"
        );
        let v = Vcpu {
            partition: "linux",
            vcpu: 1,
            core: 2,
            on: true,
        };
        assert_eq!(v.to_string(), "vcpu partition=linux vcpu=1 core=2 on=yes");
        let c = Checker {
            name: "vectors",
            passes: 3,
            last_pass_ns: 1200,
            last_pass_at_ms: 4000,
            findings: 0,
        };
        assert_eq!(
            c.to_string(),
            "checker name=vectors passes=3 last_pass_ns=1200 last_pass_at_ms=4000 findings=0"
        );
        let d = Dsm {
            partition: "linux",
            core: 1,
            phase: "running",
            policy: "stop",
            alerts: 0,
            spent_us: u64::MAX,
            uptime_us: u64::MAX,
        };
        // The longest record still fits one frame with its head.
        let framed = format!("255 rec {d}");
        assert!(framed.len() <= crate::frame::MAX_PAYLOAD, "{framed}");
    }
}
