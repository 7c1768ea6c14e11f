//! `cargo xtask ctl`: the operator's commands for a running board.
//!
//! `cargo xtask run` serves a Unix socket, `target/run/<scenario>/ctl.sock`, while the run
//! lasts ([`Server`]). A client sends one line, the command's words (`pause linux`); the run
//! passes it to spumone on the console as a management request
//! ([`spumone_abi::mgmt`]), one at a time, and relays spumone's answer frames back as lines:
//! `rec RECORD` for each record, then `ok MESSAGE` or `err CODE MESSAGE`. `events` is the
//! run's own: it streams `event RECORD` lines, spumone's events as they come, until the client
//! leaves or the run ends.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use spumone_abi::mgmt::{
    Answer, AnswerKind, ErrorCode, Request, RequestError, MANAGE, MAX_REQUEST,
};
use spumone_abi::operator::ESCAPE;

use crate::demux::Line;
use crate::paths;

/// The command `events`, which the run serves itself.
pub const EVENTS: &str = "events";
/// How long the run waits for spumone's answer to one request.
pub const ANSWER_WAIT: Duration = Duration::from_secs(20);
/// How long the client waits for the run's answer (the run answers within [`ANSWER_WAIT`]).
const CLIENT_WAIT: Duration = Duration::from_secs(60);
/// The longest request line a client may send the run.
const MAX_CLIENT_LINE: usize = 1024;

/// The socket of a run of `scenario`.
pub fn socket_path(scenario: &str) -> PathBuf {
    paths::target_dir()
        .join("run")
        .join(scenario)
        .join("ctl.sock")
}

/// What the command line asks for: `ctl [--scenario NAME] [--json] COMMAND [ARG...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlCommand {
    /// The words sent, checked against the request grammar (or `events`).
    pub words: Vec<String>,
}

impl CtlCommand {
    /// Checks `words` are a command `ctl` knows, with its arguments.
    pub fn new(words: Vec<String>) -> Result<CtlCommand> {
        let line = words.join(" ");
        if words.is_empty() {
            bail!(
                "ctl needs a command: {} or {EVENTS}",
                spumone_abi::mgmt::COMMANDS.join(", ")
            );
        }
        if line == EVENTS {
            return Ok(CtlCommand { words });
        }
        match Request::parse(&format!("0 {line}")) {
            Ok(_) => {}
            Err(RequestError::UnknownCommand) => bail!(
                "ctl {line}: unknown command (known: {}, {EVENTS})",
                spumone_abi::mgmt::COMMANDS.join(", ")
            ),
            Err(e) => bail!("ctl {line}: {e}"),
        }
        if line.len() + 4 > MAX_REQUEST {
            bail!("ctl {line}: longer than a request may be ({MAX_REQUEST} bytes)");
        }
        Ok(CtlCommand { words })
    }

    pub fn line(&self) -> String {
        self.words.join(" ")
    }
}

/// A record: its kind and `key=value` fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub fields: Vec<(String, String)>,
}

impl Record {
    /// `KIND key=value...`; a word without `=` becomes a field with an empty key.
    pub fn parse(text: &str) -> Record {
        let mut words = text.split_whitespace();
        let kind = words.next().unwrap_or_default().to_string();
        let fields = words
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (String::new(), w.to_string()),
            })
            .collect();
        Record { kind, fields }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// The fields as a JSON object, numbers as numbers.
    fn json(&self) -> Value {
        let mut object = Map::new();
        for (key, value) in &self.fields {
            let v = match value.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => json!(value),
            };
            object.insert(key.clone(), v);
        }
        Value::Object(object)
    }
}

/// How an answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Ok(String),
    Err { code: String, message: String },
}

/// A whole answer, as the run relays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub records: Vec<Record>,
    pub end: End,
}

impl Reply {
    /// Reads the run's answer lines; `None` until a final line has come.
    pub fn parse(lines: &[String]) -> Option<Reply> {
        let mut records = Vec::new();
        for line in lines {
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "rec" => records.push(Record::parse(rest)),
                "ok" => {
                    return Some(Reply {
                        records,
                        end: End::Ok(rest.to_string()),
                    })
                }
                "err" => {
                    let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                    return Some(Reply {
                        records,
                        end: End::Err {
                            code: code.to_string(),
                            message: message.to_string(),
                        },
                    });
                }
                _ => {}
            }
        }
        None
    }

    pub fn is_ok(&self) -> bool {
        matches!(self.end, End::Ok(_))
    }
}

/// The answer as text for a person.
pub fn render_text(reply: &Reply) -> String {
    let mut out = String::new();
    if reply.records.iter().any(|r| r.kind == "partition") {
        out.push_str(&status_text(&reply.records));
    } else {
        for record in &reply.records {
            out.push_str(&format!("{} {}\n", record.kind, fields_text(record)));
        }
    }
    match &reply.end {
        End::Ok(message) if reply.records.is_empty() => out.push_str(&format!("{message}\n")),
        End::Ok(_) => {}
        End::Err { code, message } => out.push_str(&format!("error: {message} ({code})\n")),
    }
    out
}

fn fields_text(record: &Record) -> String {
    record
        .fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `status` as a few aligned sections.
fn status_text(records: &[Record]) -> String {
    let mut out = String::from("partitions:\n");
    let of = |kind: &'static str| records.iter().filter(move |r| r.kind == kind);
    for p in of("partition") {
        let state = match (p.get("state"), p.get("code")) {
            (Some("stopped"), Some(code)) => format!("stopped (exit code {code})"),
            (state, _) => state.unwrap_or("?").to_string(),
        };
        out.push_str(&format!(
            "  {:<8} {:<6} {:<24} restarts {}\n",
            p.get("name").unwrap_or("?"),
            p.get("kind").unwrap_or("?"),
            state,
            p.get("restarts").unwrap_or("0")
        ));
    }
    let mut cores: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for v in of("vcpu") {
        let off = if v.get("on") == Some("no") {
            " (off)"
        } else {
            ""
        };
        let who = format!(
            "{} vcpu {}{off}",
            v.get("partition").unwrap_or("?"),
            v.get("vcpu").unwrap_or("?")
        );
        cores
            .entry(v.number("core").unwrap_or(u64::MAX))
            .or_default()
            .push(who);
    }
    out.push_str("vCPUs:\n");
    for (core, vcpus) in cores {
        out.push_str(&format!("  core {core}: {}\n", vcpus.join(", ")));
    }
    for m in of("migration") {
        out.push_str(&format!(
            "migration: {} under policy {}, migrations {}\n",
            m.get("partition").unwrap_or("?"),
            m.get("policy").unwrap_or("?"),
            m.get("count").unwrap_or("0")
        ));
    }
    for l in of("latency") {
        let rest: Vec<String> = l
            .fields
            .iter()
            .filter(|(k, _)| k != "partition")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "{} latency (last round): {}\n",
            l.get("partition").unwrap_or("rtos"),
            rest.join(" ")
        ));
    }
    let mut dsm = of("dsm").peekable();
    if dsm.peek().is_none() {
        out.push_str("dsm: off\n");
    }
    for d in dsm {
        let share = match (d.number("spent_us"), d.number("uptime_us")) {
            (Some(spent), Some(up)) if up > 0 => {
                format!(", {:.2}% of its core", spent as f64 * 100.0 / up as f64)
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "dsm: checks {} from core {}, {}, policy {}, alerts {}{share}\n",
            d.get("partition").unwrap_or("?"),
            d.get("core").unwrap_or("?"),
            d.get("phase").unwrap_or("?"),
            d.get("policy").unwrap_or("?"),
            d.get("alerts").unwrap_or("0"),
        ));
    }
    for c in of("checker") {
        let passes = c.number("passes").unwrap_or(0);
        let last = if passes == 0 {
            "no pass yet".to_string()
        } else {
            format!(
                "last {} ns at {:.3} s",
                c.get("last_pass_ns").unwrap_or("?"),
                c.number("last_pass_at_ms").unwrap_or(0) as f64 / 1000.0
            )
        };
        out.push_str(&format!(
            "  {:<14} passes {passes}, {last}, findings {}\n",
            c.get("name").unwrap_or("?"),
            c.get("findings").unwrap_or("0")
        ));
    }
    out
}

/// The JSON key a record kind goes under, and whether it holds one object (else an array).
fn json_key(kind: &str) -> (String, bool) {
    match kind {
        "partition" | "vcpu" | "checker" => (format!("{kind}s"), false),
        "migration" | "dsm" => (kind.to_string(), true),
        "latency" => ("rtos_latency".to_string(), true),
        other => (other.to_string(), false),
    }
}

/// The answer as one JSON object: `ok`, `message` or `error`, and the records by kind.
pub fn render_json(command: &str, reply: &Reply) -> Value {
    let mut object = Map::new();
    object.insert("command".into(), json!(command));
    object.insert("ok".into(), json!(reply.is_ok()));
    match &reply.end {
        End::Ok(message) => object.insert("message".into(), json!(message)),
        End::Err { code, message } => {
            object.insert("error".into(), json!({ "code": code, "message": message }))
        }
    };
    for record in &reply.records {
        let (key, single) = json_key(&record.kind);
        if single {
            object.entry(key).or_insert_with(|| record.json());
        } else if let Value::Array(items) = object.entry(key).or_insert_with(|| json!([])) {
            items.push(record.json());
        }
    }
    Value::Object(object)
}

/// An event line as JSON: `{"event": KIND, key: value...}`.
pub fn event_json(record: &str) -> Value {
    let record = Record::parse(record);
    let mut value = record.json();
    if let Value::Object(object) = &mut value {
        object.insert("event".into(), json!(record.kind));
    }
    value
}

/// Sends one request line to the run serving `path` and waits for its whole answer.
pub fn ask(path: &Path, line: &str) -> Result<Reply> {
    let mut stream = UnixStream::connect(path)?;
    writeln!(stream, "{line}")?;
    stream.set_read_timeout(Some(CLIENT_WAIT))?;
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    let mut text = String::new();
    loop {
        text.clear();
        if reader.read_line(&mut text)? == 0 {
            bail!("the run closed the connection without answering");
        }
        lines.push(text.trim_end().to_string());
        if let Some(reply) = Reply::parse(&lines) {
            return Ok(reply);
        }
    }
}

/// spumone's events from the run serving `path`, as records, as they come; ends with the run.
pub fn events(path: &Path) -> Result<impl Iterator<Item = String>> {
    let mut stream = UnixStream::connect(path)?;
    writeln!(stream, "{EVENTS}")?;
    Ok(BufReader::new(stream).lines().map_while(|line| {
        let line = line.ok()?;
        Some(line.strip_prefix("event ").unwrap_or(&line).to_string())
    }))
}

/// `cargo xtask ctl`: sends `command` to the run of `scenario`, prints the answer, and returns
/// the exit status (0 done, 1 refused, failed or no run).
pub fn client(scenario: &str, command: &CtlCommand, as_json: bool) -> Result<u8> {
    let path = socket_path(scenario);
    if let Err(e) = UnixStream::connect(&path) {
        eprintln!("error: {}", no_run_message(scenario, &path, &e));
        return Ok(1);
    }
    let line = command.line();
    if line == EVENTS {
        for record in events(&path)? {
            if as_json {
                println!("{}", event_json(&record));
            } else {
                println!("{record}");
            }
            io::stdout().flush()?;
        }
        eprintln!("ctl: the run of {scenario} ended");
        return Ok(0);
    }
    let reply = ask(&path, &line)?;
    if as_json {
        println!("{:#}", render_json(&line, &reply));
    } else if reply.is_ok() {
        print!("{}", render_text(&reply));
    } else {
        eprint!("{}", render_text(&reply));
    }
    Ok(if reply.is_ok() { 0 } else { 1 })
}

/// Why `ctl` found no run, and what to do.
fn no_run_message(scenario: &str, path: &Path, error: &io::Error) -> String {
    let mut message = format!(
        "no run of {scenario} is listening on {} ({error}); start one with `cargo xtask run {scenario}`",
        paths::display(path)
    );
    let others = live_scenarios();
    if !others.is_empty() {
        message.push_str(&format!(
            ", or pick a running one with --scenario ({})",
            others.join(", ")
        ));
    }
    message
}

/// Scenarios whose run serves a socket now.
fn live_scenarios() -> Vec<String> {
    let Ok(dirs) = fs::read_dir(paths::target_dir().join("run")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dirs
        .flatten()
        .filter(|d| UnixStream::connect(d.path().join("ctl.sock")).is_ok())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether spumone takes management requests in this run, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    Open,
    Closed(String),
}

/// The request waiting for spumone's answer, with where its frames go.
struct Pending {
    seq: u8,
    frames: mpsc::Sender<String>,
}

#[derive(Default)]
struct State {
    pending: Option<Pending>,
    /// `events` clients.
    subscribers: Vec<mpsc::Sender<String>>,
    /// The RTOS console's last `latency` line, as `latency partition=NAME ...`.
    latency: Option<String>,
    last_seq: u8,
    ended: bool,
}

struct Shared {
    console: Arc<Mutex<Option<ChildStdin>>>,
    channel: Channel,
    state: Mutex<State>,
    /// One request to spumone at a time.
    turn: Mutex<()>,
}

/// The run's end of the socket.
pub struct Server {
    shared: Arc<Shared>,
    path: PathBuf,
    rtos: Option<(usize, String)>,
}

impl Server {
    /// Serves `path` for the run; `None` (with a line saying why) when it cannot.
    /// `console` is the guest console's input; `rtos` the RTOS console's index and name.
    pub fn start(
        path: &Path,
        console: Arc<Mutex<Option<ChildStdin>>>,
        channel: Channel,
        rtos: Option<(usize, String)>,
    ) -> (Option<Server>, String) {
        let shown = paths::display(path);
        if UnixStream::connect(path).is_ok() {
            return (
                None,
                format!("ctl: another run serves {shown}; `cargo xtask ctl` talks to that one"),
            );
        }
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        // A stale socket of a run that ended without cleaning up.
        let _ = fs::remove_file(path);
        let listener = match UnixListener::bind(path) {
            Ok(listener) => listener,
            Err(e) => return (None, format!("ctl: cannot serve {shown}: {e}")),
        };
        let shared = Arc::new(Shared {
            console,
            channel,
            state: Mutex::new(State::default()),
            turn: Mutex::new(()),
        });
        let serving = Arc::clone(&shared);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                // The run's end wakes this loop with a connection of its own.
                if lock(&serving.state).ended {
                    break;
                }
                let shared = Arc::clone(&serving);
                thread::spawn(move || {
                    let _ = serve_client(&shared, client);
                });
            }
        });
        let scenario = path
            .parent()
            .and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hint = format!(
            "ctl: `cargo xtask ctl --scenario {scenario} status` (socket {shown}) while this run lasts"
        );
        let server = Server {
            shared,
            path: path.to_path_buf(),
            rtos,
        };
        (Some(server), hint)
    }

    /// Takes one line of the run: an answer frame, an event, an RTOS latency line.
    pub fn line(&self, line: &Line) {
        let mut state = lock(&self.shared.state);
        if let Some(frame) = &line.answer {
            let to_pending = Answer::parse(frame)
                .zip(state.pending.as_ref())
                .filter(|(a, p)| a.seq == p.seq || (a.seq == 0 && a.is_final()));
            if let Some((_, pending)) = to_pending {
                let _ = pending.frames.send(frame.clone());
            }
        }
        if let Some(event) = &line.event {
            let text = format!("event {event}");
            state.subscribers.retain(|s| s.send(text.clone()).is_ok());
        }
        if let Some((index, name)) = &self.rtos {
            if line.source == crate::demux::Source::Partition(*index) {
                if let Some(fields) = line.text.strip_prefix("latency ") {
                    state.latency = Some(format!("latency partition={name} {fields}"));
                }
            }
        }
    }
}

impl Drop for Server {
    /// The run ended: waiting clients are told, `events` streams end, the socket goes.
    fn drop(&mut self) {
        {
            let mut state = lock(&self.shared.state);
            state.ended = true;
            state.pending = None;
            state.subscribers.clear();
        }
        // Ends the accept loop, then the socket goes.
        let _ = UnixStream::connect(&self.path);
        let _ = fs::remove_file(&self.path);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn serve_client(shared: &Shared, stream: UnixStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let mut line = Vec::new();
    BufReader::new(stream.take_bounded()).read_until(b'\n', &mut line)?;
    let line = String::from_utf8_lossy(&line).trim().to_string();
    if line == EVENTS {
        let (tx, rx) = mpsc::channel();
        {
            let mut state = lock(&shared.state);
            if state.ended {
                return Ok(());
            }
            state.subscribers.push(tx);
        }
        for text in rx {
            writeln!(writer, "{text}")?;
        }
        return Ok(());
    }
    for reply in request(shared, &line) {
        writeln!(writer, "{reply}")?;
    }
    Ok(())
}

/// A bounded reader: a client cannot make the run buffer more than one request's worth.
trait TakeBounded {
    fn take_bounded(self) -> io::Take<UnixStream>;
}

impl TakeBounded for UnixStream {
    fn take_bounded(self) -> io::Take<UnixStream> {
        io::Read::take(self, MAX_CLIENT_LINE as u64)
    }
}

fn refusal(code: ErrorCode, message: &str) -> Vec<String> {
    vec![format!("err {} {message}", code.name())]
}

/// Passes one request line to spumone and returns the lines for the client.
fn request(shared: &Shared, line: &str) -> Vec<String> {
    if let Channel::Closed(why) = &shared.channel {
        return refusal(ErrorCode::NotSupported, why);
    }
    // Only printable ASCII reaches the console: a control byte there is the QEMU console's
    // (Ctrl-A x ends the machine) or the guest's, never part of a request.
    if line.is_empty() || !line.bytes().all(spumone_abi::mgmt::is_request_byte) {
        return refusal(
            ErrorCode::Malformed,
            "a request is one line of printable ASCII",
        );
    }
    let _turn = lock(&shared.turn);
    let (tx, rx) = mpsc::channel();
    let seq = {
        let mut state = lock(&shared.state);
        if state.ended {
            return refusal(ErrorCode::Failed, "the run has ended");
        }
        // 1..=255: spumone answers 0 to a request it cannot read.
        state.last_seq = state.last_seq % 255 + 1;
        state.pending = Some(Pending {
            seq: state.last_seq,
            frames: tx,
        });
        state.last_seq
    };
    let mut bytes = vec![ESCAPE, MANAGE];
    bytes.extend(format!("{seq} {line}\r").bytes());
    if !crate::run::write_console(&shared.console, &bytes) {
        lock(&shared.state).pending = None;
        return refusal(ErrorCode::Failed, "the console input is closed");
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + ANSWER_WAIT;
    let finished = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(frame) => {
                let Some(answer) = Answer::parse(&frame) else {
                    continue;
                };
                match answer.kind {
                    AnswerKind::Record(record) => out.push(format!("rec {record}")),
                    AnswerKind::Ok(message) => {
                        if line == "status" {
                            out.extend(
                                lock(&shared.state)
                                    .latency
                                    .clone()
                                    .map(|l| format!("rec {l}")),
                            );
                        }
                        out.push(format!("ok {message}"));
                        break true;
                    }
                    AnswerKind::Err(code, message) => {
                        out.push(format!("err {} {message}", code.name()));
                        break true;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => break false,
            Err(RecvTimeoutError::Disconnected) => {
                out = refusal(ErrorCode::Failed, "the run ended before spumone answered");
                break true;
            }
        }
    };
    lock(&shared.state).pending = None;
    if !finished {
        return refusal(
            ErrorCode::Failed,
            &format!("spumone did not answer within {} s", ANSWER_WAIT.as_secs()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn known_commands_are_accepted_and_bad_ones_refused_before_sending() {
        for ok in [
            "status",
            "pause linux",
            "resume linux",
            "stop linux",
            "restart linux",
            "events",
            "migrate linux 1 0",
            "policy load",
            "check vectors",
            // The partition is spumone's to judge.
            "pause rtos",
        ] {
            assert_eq!(CtlCommand::new(words(ok)).unwrap().line(), ok);
        }
        for (bad, says) in [
            ("", "ctl needs a command"),
            ("frobnicate", "unknown command"),
            ("pause", "missing partition"),
            ("status now", "too many arguments"),
            ("events now", "unknown command"),
            ("migrate linux one 0", "vcpu must be a number"),
        ] {
            let e = CtlCommand::new(words(bad)).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        let long = format!("pause {}", "x".repeat(MAX_REQUEST));
        assert!(CtlCommand::new(words(&long)).is_err());
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    const STATUS: [&str; 12] = [
        "rec partition name=rtos kind=rtos state=running restarts=0",
        "rec vcpu partition=rtos vcpu=0 core=0 on=yes",
        "rec partition name=linux kind=linux state=paused restarts=1",
        "rec vcpu partition=linux vcpu=0 core=1 on=yes",
        "rec vcpu partition=linux vcpu=1 core=2 on=no",
        "rec migration partition=linux policy=pinned count=0",
        "rec dsm partition=linux core=1 phase=paused policy=stop alerts=0 spent_us=500 uptime_us=100000",
        "rec checker name=vectors passes=12 last_pass_ns=1500 last_pass_at_ms=4200 findings=0",
        "rec checker name=creds passes=0 last_pass_ns=0 last_pass_at_ms=0 findings=0",
        "rec latency partition=rtos n=1000 min=1344 p99=1376 misses=0",
        "ok status",
        "ignored after the end",
    ];

    #[test]
    fn a_status_answer_renders_as_text() {
        let reply = Reply::parse(&lines(&STATUS)).unwrap();
        assert!(reply.is_ok());
        let text = render_text(&reply);
        for want in [
            "  rtos     rtos   running                  restarts 0\n",
            "  linux    linux  paused                   restarts 1\n",
            "  core 0: rtos vcpu 0\n",
            "  core 2: linux vcpu 1 (off)\n",
            "migration: linux under policy pinned, migrations 0\n",
            "rtos latency (last round): n=1000 min=1344 p99=1376 misses=0\n",
            "dsm: checks linux from core 1, paused, policy stop, alerts 0, 0.50% of its core\n",
            "  vectors        passes 12, last 1500 ns at 4.200 s, findings 0\n",
            "  creds          passes 0, no pass yet, findings 0\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        // Without a DSM record, status says it is off.
        let reply = Reply::parse(&lines(&[STATUS[0], "ok status"])).unwrap();
        assert!(render_text(&reply).contains("dsm: off\n"));
    }

    #[test]
    fn a_status_answer_renders_as_json_with_numbers() {
        let reply = Reply::parse(&lines(&STATUS)).unwrap();
        let v = render_json("status", &reply);
        assert_eq!(v["ok"], json!(true));
        assert_eq!(v["partitions"][1]["state"], json!("paused"));
        assert_eq!(v["partitions"][1]["restarts"], json!(1));
        assert_eq!(v["vcpus"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["migration"]["policy"], json!("pinned"));
        assert_eq!(v["dsm"]["spent_us"], json!(500));
        assert_eq!(v["checkers"][0]["name"], json!("vectors"));
        assert_eq!(v["rtos_latency"]["p99"], json!(1376));
    }

    #[test]
    fn an_error_answer_renders_with_its_code() {
        let reply = Reply::parse(&lines(&["err invalid-state linux is paused already"])).unwrap();
        assert!(!reply.is_ok());
        assert_eq!(
            render_text(&reply),
            "error: linux is paused already (invalid-state)\n"
        );
        let v = render_json("pause linux", &reply);
        assert_eq!(
            v,
            json!({
                "command": "pause linux",
                "ok": false,
                "error": { "code": "invalid-state", "message": "linux is paused already" }
            })
        );
        let done = Reply::parse(&lines(&["ok linux paused"])).unwrap();
        assert_eq!(render_text(&done), "linux paused\n");
        assert_eq!(
            render_json("pause linux", &done)["message"],
            json!("linux paused")
        );
        // No final line yet: no answer.
        assert_eq!(Reply::parse(&lines(&["rec x a=1"])), None);
    }

    #[test]
    fn events_render_as_json_objects() {
        assert_eq!(
            event_json("dsm-alert checker=vectors partition=linux"),
            json!({ "event": "dsm-alert", "checker": "vectors", "partition": "linux" })
        );
        assert_eq!(
            event_json("partition-stopped name=linux code=0"),
            json!({ "event": "partition-stopped", "name": "linux", "code": 0 })
        );
    }

    #[test]
    fn the_socket_lives_under_target_run() {
        let path = socket_path("demo");
        assert!(path.ends_with("run/demo/ctl.sock"), "{}", path.display());
    }

    /// A run's end of the socket against a fake console, and a client on the socket.
    #[test]
    fn the_server_relays_a_request_and_its_answer() {
        use std::os::unix::fs::FileTypeExt;
        let dir = std::env::temp_dir().join(format!("spumone-ctl-test-{}", std::process::id()));
        let path = dir.join("demo").join("ctl.sock");
        // A stale socket file is replaced.
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(UnixListener::bind(&path).unwrap());
        let console = Arc::new(Mutex::new(None));
        let (server, hint) = Server::start(&path, console, Channel::Open, None);
        let server = server.unwrap_or_else(|| panic!("{hint}"));
        assert!(hint.contains("ctl.sock"), "{hint}");
        assert!(fs::metadata(&path).unwrap().file_type().is_socket());
        // A second run of the same scenario does not take it over.
        let (second, why) = Server::start(&path, Arc::new(Mutex::new(None)), Channel::Open, None);
        assert!(second.is_none() && why.contains("another run"), "{why}");
        // With no console to write to, the request fails cleanly.
        let mut client = UnixStream::connect(&path).unwrap();
        writeln!(client, "status").unwrap();
        let mut answer = String::new();
        BufReader::new(client).read_line(&mut answer).unwrap();
        assert_eq!(answer.trim_end(), "err failed the console input is closed");
        // A control byte never goes on.
        let mut client = UnixStream::connect(&path).unwrap();
        client.write_all(b"pause \x01x\n").unwrap();
        let mut answer = String::new();
        BufReader::new(client).read_line(&mut answer).unwrap();
        assert!(answer.starts_with("err malformed "), "{answer}");
        drop(server);
        assert!(!path.exists(), "the socket goes with the run");
        let _ = fs::remove_dir_all(&dir);
    }

    /// A line of the run carrying one answer frame.
    fn answer_line(frame: &str) -> Line {
        Line {
            source: crate::demux::Source::Hv,
            text: format!("mgmt: {frame}"),
            event: None,
            answer: Some(frame.to_string()),
        }
    }

    /// The request goes to the console as an escaped line; spumone's frames for it (and only
    /// those) come back to the client, the RTOS's last latency line added to `status`.
    #[test]
    fn the_server_relays_a_request_to_the_console_and_its_answer_back() {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let dir = std::env::temp_dir().join(format!("spumone-ctl-relay-{}", std::process::id()));
        let path = dir.join("demo").join("ctl.sock");
        // `cat` stands for QEMU: what is written to its input comes out of its output.
        let mut console = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cat");
        let mut typed = console.stdout.take().unwrap();
        let input = Arc::new(Mutex::new(console.stdin.take()));
        let rtos = Some((0, "rtos".to_string()));
        let (server, hint) = Server::start(&path, input, Channel::Open, rtos);
        let server = server.unwrap_or_else(|| panic!("{hint}"));
        server.line(&Line {
            source: crate::demux::Source::Partition(0),
            text: "latency n=1000 min=1344 misses=0".into(),
            event: None,
            answer: None,
        });
        let client = thread::spawn({
            let path = path.clone();
            move || {
                let mut stream = UnixStream::connect(&path).unwrap();
                writeln!(stream, "status").unwrap();
                let mut text = String::new();
                BufReader::new(stream).read_to_string(&mut text).unwrap();
                text
            }
        });
        let mut request = Vec::new();
        let mut byte = [0u8];
        while request.last() != Some(&b'\r') {
            typed.read_exact(&mut byte).unwrap();
            request.push(byte[0]);
        }
        assert_eq!(request, b"\x1dm1 status\r");
        // Another request's frame is not this client's; a seq-0 error would be.
        server.line(&answer_line("7 ok other"));
        server.line(&answer_line(
            "1 rec partition name=linux kind=linux state=running restarts=0",
        ));
        server.line(&answer_line("1 ok status"));
        let text = client.join().unwrap();
        assert_eq!(
            text,
            "rec partition name=linux kind=linux state=running restarts=0\n\
             rec latency partition=rtos n=1000 min=1344 misses=0\n\
             ok status\n"
        );
        drop(server);
        let _ = console.kill();
        let _ = console.wait();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_closed_channel_says_why() {
        let shared = Shared {
            console: Arc::new(Mutex::new(None)),
            channel: Channel::Closed("scenario rtos-native runs without spumone".into()),
            state: Mutex::new(State::default()),
            turn: Mutex::new(()),
        };
        assert_eq!(
            request(&shared, "status"),
            ["err not-supported scenario rtos-native runs without spumone"]
        );
    }
}
