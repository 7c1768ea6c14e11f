//! Records spumone sends on the `HV_EVENT` channel.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A partition stopped (it powered off, exited, or was stopped by spumone).
    PartitionStopped { name: String, code: i64 },
    /// spumone is powering the machine off.
    Shutdown { code: i64 },
    /// A DSM checker found partition `partition` compromised.
    DsmAlert { checker: String, partition: String },
    /// The DSM froze partition `name` (policy `pause`).
    PartitionPaused { name: String },
    /// An operator command resumed partition `name` after a DSM pause.
    PartitionResumed { name: String },
    /// A record this version of xtask does not know, kept as received.
    Other(String),
}

impl Event {
    /// Parses one record; anything not understood becomes [`Event::Other`].
    pub fn parse(text: &str) -> Event {
        let text = text.trim();
        let mut words = text.split_whitespace();
        let kind = words.next().unwrap_or("");
        let mut name = None;
        let mut code = None;
        let mut checker = None;
        let mut partition = None;
        for word in words {
            match word.split_once('=') {
                Some(("name", v)) if !v.is_empty() => name = Some(v.to_string()),
                Some(("code", v)) => code = parse_int(v),
                Some(("checker", v)) if !v.is_empty() => checker = Some(v.to_string()),
                Some(("partition", v)) if !v.is_empty() => partition = Some(v.to_string()),
                _ => return Event::Other(text.to_string()),
            }
        }
        match (kind, name, code, checker, partition) {
            ("partition-stopped", Some(name), Some(code), None, None) => {
                Event::PartitionStopped { name, code }
            }
            ("shutdown", None, Some(code), None, None) => Event::Shutdown { code },
            ("partition-paused", Some(name), None, None, None) => Event::PartitionPaused { name },
            ("partition-resumed", Some(name), None, None, None) => Event::PartitionResumed { name },
            ("dsm-alert", None, None, Some(checker), Some(partition)) => {
                Event::DsmAlert { checker, partition }
            }
            _ => Event::Other(text.to_string()),
        }
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let value = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i64>().ok()?,
    };
    Some(if negative { -value } else { value })
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::PartitionStopped { name, code } => {
                write!(f, "partition-stopped name={name} code={code}")
            }
            Event::Shutdown { code } => write!(f, "shutdown code={code}"),
            Event::DsmAlert { checker, partition } => {
                write!(f, "dsm-alert checker={checker} partition={partition}")
            }
            Event::PartitionPaused { name } => write!(f, "partition-paused name={name}"),
            Event::PartitionResumed { name } => write!(f, "partition-resumed name={name}"),
            Event::Other(text) => write!(f, "{text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dsm_alert() {
        let e = Event::parse("dsm-alert checker=syscall-table partition=linux");
        assert_eq!(
            e,
            Event::DsmAlert {
                checker: "syscall-table".into(),
                partition: "linux".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "dsm-alert checker=syscall-table partition=linux"
        );
        for odd in [
            "dsm-alert checker=vectors",
            "dsm-alert partition=linux",
            "dsm-alert checker=vectors partition=linux code=1",
            "shutdown code=0 checker=x",
        ] {
            assert_eq!(Event::parse(odd), Event::Other(odd.into()), "{odd}");
        }
    }

    #[test]
    fn parses_pause_and_resume() {
        for (text, want) in [
            (
                "partition-paused name=linux",
                Event::PartitionPaused {
                    name: "linux".into(),
                },
            ),
            (
                "partition-resumed name=linux",
                Event::PartitionResumed {
                    name: "linux".into(),
                },
            ),
        ] {
            assert_eq!(Event::parse(text), want);
            assert_eq!(want.to_string(), text);
        }
        for odd in ["partition-paused", "partition-resumed name=linux code=1"] {
            assert_eq!(Event::parse(odd), Event::Other(odd.into()), "{odd}");
        }
    }

    #[test]
    fn parses_partition_stopped() {
        assert_eq!(
            Event::parse("partition-stopped name=rtos code=3"),
            Event::PartitionStopped {
                name: "rtos".into(),
                code: 3
            }
        );
    }

    #[test]
    fn parses_shutdown_with_negative_and_hex_codes() {
        assert_eq!(
            Event::parse("shutdown code=0\n"),
            Event::Shutdown { code: 0 }
        );
        assert_eq!(
            Event::parse("shutdown code=-2"),
            Event::Shutdown { code: -2 }
        );
        assert_eq!(
            Event::parse("shutdown code=0x10"),
            Event::Shutdown { code: 16 }
        );
    }

    #[test]
    fn unknown_or_malformed_records_are_kept() {
        for text in [
            "reboot",
            "shutdown",
            "shutdown code=abc",
            "partition-stopped code=1",
            "partition-stopped name=linux code=1 extra",
            "",
        ] {
            assert_eq!(
                Event::parse(text),
                Event::Other(text.trim().to_string()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for event in [
            Event::Shutdown { code: 7 },
            Event::PartitionStopped {
                name: "linux".into(),
                code: -1,
            },
        ] {
            assert_eq!(Event::parse(&event.to_string()), event);
        }
    }
}
