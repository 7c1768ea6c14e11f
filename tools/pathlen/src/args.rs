//! The plugin's arguments: `-plugin file=libspumone_pathlen.so,KEY=VALUE,...`.
//!
//! ```text
//! out=PATH           where the JSON report goes (required)
//! flush=SECS         also rewrite it every SECS seconds of host time (default 1; 0: at exit only)
//! exact=LO-HI        count the instructions in [LO, HI) one by one (repeatable)
//! span=NAME:LO-HI    a span: time spent in [LO, HI), per vCPU (repeatable)
//! window=NAME:start=A|B:end=C[:tag=NAME@A|NAME@B][:disturb=A|B][:vcpu=0|1]
//!                    a window kind (repeatable): opened at any start address, closed at any
//!                    end address; the first tag hit labels it; a disturb hit distorts it;
//!                    only on the vCPUs listed (all by default)
//! ```
//!
//! Addresses are hexadecimal with `0x` or decimal. Names are letters, digits, `_`, `-`, `.`.
//! No value holds a comma, so QEMU's option parser passes each as one argument.

use std::fmt;

/// One window kind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WindowKind {
    pub name: String,
    pub starts: Vec<u64>,
    pub ends: Vec<u64>,
    pub tags: Vec<(String, u64)>,
    pub disturbs: Vec<u64>,
    /// `None`: every vCPU.
    pub vcpus: Option<Vec<u32>>,
}

impl WindowKind {
    pub fn applies_to(&self, vcpu: u32) -> bool {
        self.vcpus.as_ref().is_none_or(|list| list.contains(&vcpu))
    }
}

/// A named address range, `[lo, hi)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub name: String,
    pub lo: u64,
    pub hi: u64,
}

/// Every argument, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub out: String,
    /// Seconds between rewrites of the report; 0 writes it at exit only.
    pub flush_secs: u64,
    pub exact: Vec<(u64, u64)>,
    pub spans: Vec<Span>,
    pub windows: Vec<WindowKind>,
}

/// Seconds between rewrites when `flush=` is not given: a run that xtask kills (rather than
/// one that powers off) still leaves a report at most this old.
pub const DEFAULT_FLUSH_SECS: u64 = 1;

/// Why the arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spumone-pathlen: {}", self.0)
    }
}

fn err<T>(message: String) -> Result<T, ArgError> {
    Err(ArgError(message))
}

/// An address or a count: `0x` hexadecimal or decimal.
pub fn parse_number(text: &str) -> Result<u64, ArgError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.or_else(|_| err(format!("`{text}` is not a number (0x... or decimal)")))
}

fn parse_name(text: &str, what: &str) -> Result<String, ArgError> {
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(text.to_string())
    } else {
        err(format!(
            "{what} name `{text}`: use letters, digits, `_`, `-` and `.` only"
        ))
    }
}

fn parse_range(text: &str) -> Result<(u64, u64), ArgError> {
    let Some((lo, hi)) = text.split_once('-') else {
        return err(format!("`{text}` is not a range LO-HI"));
    };
    let (lo, hi) = (parse_number(lo)?, parse_number(hi)?);
    if lo >= hi {
        return err(format!("range `{text}` is empty (LO must be below HI)"));
    }
    Ok((lo, hi))
}

fn parse_list<T>(
    text: &str,
    item: impl Fn(&str) -> Result<T, ArgError>,
) -> Result<Vec<T>, ArgError> {
    text.split('|').map(item).collect()
}

fn parse_window(text: &str) -> Result<WindowKind, ArgError> {
    let mut fields = text.split(':');
    let name = parse_name(fields.next().unwrap_or(""), "window")?;
    let mut kind = WindowKind {
        name,
        ..WindowKind::default()
    };
    let label = kind.name.clone();
    let within = move |e: ArgError| ArgError(format!("window `{label}`: {}", e.0));
    for field in fields {
        let Some((key, value)) = field.split_once('=') else {
            return Err(within(ArgError(format!("`{field}` is not KEY=VALUE"))));
        };
        let seen = match key {
            "start" => !kind.starts.is_empty(),
            "end" => !kind.ends.is_empty(),
            "tag" => !kind.tags.is_empty(),
            "disturb" => !kind.disturbs.is_empty(),
            "vcpu" => kind.vcpus.is_some(),
            _ => {
                return Err(within(ArgError(format!(
                    "unknown field `{key}` (start, end, tag, disturb, vcpu)"
                ))))
            }
        };
        if seen {
            return Err(within(ArgError(format!("`{key}` given twice"))));
        }
        match key {
            "start" => kind.starts = parse_list(value, parse_number).map_err(&within)?,
            "end" => kind.ends = parse_list(value, parse_number).map_err(&within)?,
            "disturb" => kind.disturbs = parse_list(value, parse_number).map_err(&within)?,
            "tag" => {
                kind.tags = parse_list(value, |t| {
                    let Some((name, addr)) = t.split_once('@') else {
                        return err(format!("tag `{t}` is not NAME@ADDR"));
                    };
                    Ok((parse_name(name, "tag")?, parse_number(addr)?))
                })
                .map_err(&within)?
            }
            _ => {
                let list = parse_list(value, |v| {
                    parse_number(v).and_then(|n| {
                        u32::try_from(n).or_else(|_| err(format!("vCPU `{v}` is too large")))
                    })
                });
                kind.vcpus = Some(list.map_err(&within)?);
            }
        }
    }
    if kind.starts.is_empty() || kind.ends.is_empty() {
        return Err(within(ArgError("needs start=... and end=...".into())));
    }
    Ok(kind)
}

impl Config {
    /// Parses QEMU's `KEY=VALUE` arguments.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Config, ArgError> {
        let mut config = Config {
            flush_secs: DEFAULT_FLUSH_SECS,
            ..Config::default()
        };
        let mut out = None;
        for arg in args {
            let arg = arg.as_ref();
            let Some((key, value)) = arg.split_once('=') else {
                return err(format!("argument `{arg}` is not KEY=VALUE"));
            };
            match key {
                "out" if out.is_some() => return err("`out=` given twice".into()),
                "out" if value.is_empty() => return err("`out=` needs a path".into()),
                "out" => out = Some(value.to_string()),
                "flush" => config.flush_secs = parse_number(value)?,
                "exact" => config.exact.push(parse_range(value)?),
                "span" => {
                    let Some((name, range)) = value.split_once(':') else {
                        return err(format!("span `{value}` is not NAME:LO-HI"));
                    };
                    let name = parse_name(name, "span")?;
                    if config.spans.iter().any(|s| s.name == name) {
                        return err(format!("span `{name}` given twice"));
                    }
                    let (lo, hi) = parse_range(range)?;
                    config.spans.push(Span { name, lo, hi });
                }
                "window" => {
                    let kind = parse_window(value)?;
                    if config.windows.iter().any(|w| w.name == kind.name) {
                        return err(format!("window `{}` given twice", kind.name));
                    }
                    config.windows.push(kind);
                }
                _ => {
                    return err(format!(
                        "unknown argument `{key}` (out, flush, exact, span, window)"
                    ))
                }
            }
        }
        config.out = out.ok_or_else(|| ArgError("`out=PATH` is required".into()))?;
        Ok(config)
    }

    /// The arguments that [`Config::parse`] reads back as this configuration.
    pub fn to_args(&self) -> Vec<String> {
        let hex = |a: &u64| format!("{a:#x}");
        let list = |items: &[u64]| items.iter().map(hex).collect::<Vec<_>>().join("|");
        let mut args = vec![
            format!("out={}", self.out),
            format!("flush={}", self.flush_secs),
        ];
        for (lo, hi) in &self.exact {
            args.push(format!("exact={lo:#x}-{hi:#x}"));
        }
        for s in &self.spans {
            args.push(format!("span={}:{:#x}-{:#x}", s.name, s.lo, s.hi));
        }
        for w in &self.windows {
            let mut arg = format!(
                "window={}:start={}:end={}",
                w.name,
                list(&w.starts),
                list(&w.ends)
            );
            if !w.tags.is_empty() {
                let tags: Vec<String> = w.tags.iter().map(|(n, a)| format!("{n}@{a:#x}")).collect();
                arg.push_str(&format!(":tag={}", tags.join("|")));
            }
            if !w.disturbs.is_empty() {
                arg.push_str(&format!(":disturb={}", list(&w.disturbs)));
            }
            if let Some(vcpus) = &w.vcpus {
                let vcpus: Vec<String> = vcpus.iter().map(u32::to_string).collect();
                arg.push_str(&format!(":vcpu={}", vcpus.join("|")));
            }
            args.push(arg);
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        Config::parse(args).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_configuration_parses_and_round_trips() {
        let config = parse(&[
            "out=target/pathlen.json",
            "flush=0",
            "exact=0x40200000-0x40400000",
            "exact=1024-2048",
            "span=lock:0x40201000-0x40201040",
            "window=hv-exit:start=0x40200400|0x40200480:end=0x40201234:tag=hvc@0x40202000|smc@0x40203000:disturb=0x40200200:vcpu=0|2",
            "window=rtos-irq:start=0x44000280:end=0x44001000",
        ])
        .unwrap();
        assert_eq!(config.out, "target/pathlen.json");
        assert_eq!(config.flush_secs, 0);
        assert_eq!(config.exact, [(0x4020_0000, 0x4040_0000), (1024, 2048)]);
        assert_eq!(config.spans[0].name, "lock");
        let hv = &config.windows[0];
        assert_eq!(hv.starts, [0x4020_0400, 0x4020_0480]);
        assert_eq!(hv.ends, [0x4020_1234]);
        assert_eq!(hv.tags[1], ("smc".to_string(), 0x4020_3000));
        assert_eq!(hv.disturbs, [0x4020_0200]);
        assert_eq!(hv.vcpus, Some(vec![0, 2]));
        assert!(hv.applies_to(2) && !hv.applies_to(1));
        let rtos = &config.windows[1];
        assert!(rtos.applies_to(7) && rtos.tags.is_empty());
        assert_eq!(Config::parse(&config.to_args()).unwrap(), config);
    }

    #[test]
    fn flush_defaults_to_a_second_and_out_is_required() {
        assert_eq!(
            parse(&["out=r.json"]).unwrap().flush_secs,
            DEFAULT_FLUSH_SECS
        );
        assert!(parse(&[]).unwrap_err().contains("`out=PATH` is required"));
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let cases: &[(&[&str], &str)] = &[
            (&["out=a", "out=b"], "`out=` given twice"),
            (&["out="], "`out=` needs a path"),
            (&["out=a", "verbose"], "`verbose` is not KEY=VALUE"),
            (&["out=a", "colour=red"], "unknown argument `colour`"),
            (&["out=a", "exact=0x10"], "`0x10` is not a range LO-HI"),
            (&["out=a", "exact=0x20-0x10"], "is empty"),
            (&["out=a", "exact=0xzz-0x10"], "`0xzz` is not a number"),
            (&["out=a", "span=0x10-0x20"], "is not NAME:LO-HI"),
            (&["out=a", "span=a b:0x10-0x20"], "span name `a b`"),
            (
                &["out=a", "span=s:1-2", "span=s:3-4"],
                "span `s` given twice",
            ),
            (
                &["out=a", "window=w:start=1"],
                "window `w`: needs start=... and end=...",
            ),
            (
                &["out=a", "window=w:start=1:end=2:start=3"],
                "window `w`: `start` given twice",
            ),
            (
                &["out=a", "window=w:start=1:end=2:when=3"],
                "window `w`: unknown field `when`",
            ),
            (
                &["out=a", "window=w:start=1:end=2:tag=x"],
                "tag `x` is not NAME@ADDR",
            ),
            (
                &["out=a", "window=w:start=1:end=2:vcpu=4294967296"],
                "vCPU `4294967296` is too large",
            ),
            (
                &["out=a", "window=w:start=1|:end=2"],
                "window `w`: `` is not a number",
            ),
            (
                &["out=a", "window=w:start=1:end=2", "window=w:start=3:end=4"],
                "window `w` given twice",
            ),
            (&["out=a", "window=:start=1:end=2"], "window name ``"),
        ];
        for (args, want) in cases {
            let e = parse(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
            assert!(e.starts_with("spumone-pathlen: "), "{e}");
        }
    }

    #[test]
    fn no_argument_holds_a_comma() {
        let config = parse(&[
            "out=o.json",
            "window=w:start=1|2:end=3:tag=t@4:disturb=5|6:vcpu=0|1",
        ])
        .unwrap();
        assert!(config.to_args().iter().all(|a| !a.contains(',')));
    }
}
