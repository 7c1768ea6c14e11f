//! `cargo xtask ctl` against one `demo` boot: the operator's status, pause and resume of Linux
//! through the run's socket and spumone's management channel, the errors for a second pause
//! and for bad commands, the events of both, a checker run on demand, and Linux computing
//! again after the resume.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use spumone_tests::{boot_with, fail};
use xtask::ctl::{self, CtlCommand, End, Reply};

/// A boot, the DSM's baselines and a handful of commands, on a shared host.
const LIMIT: Duration = Duration::from_secs(300);
/// Linux's work meanwhile: a counter and its square, twice a second, until it is stopped.
const WORK: &str =
    "i=0; while true; do i=$((i+1)); echo \"tick $i square $((i*i))\"; sleep 0.5; done";

/// Stops Linux when the test ends, passed or not, so the run ends with it.
struct StopLinux<'a>(&'a Path);

impl Drop for StopLinux<'_> {
    fn drop(&mut self) {
        let _ = ctl::ask(self.0, "stop linux");
    }
}

fn ask(path: &Path, line: &str) -> Reply {
    ctl::ask(path, line).unwrap_or_else(|e| panic!("ctl {line}: {e:#}"))
}

#[track_caller]
fn expect_ok(path: &Path, line: &str) -> Reply {
    let reply = ask(path, line);
    if !reply.is_ok() {
        panic!("ctl {line}: {:?}", reply.end);
    }
    reply
}

#[track_caller]
fn expect_err(path: &Path, line: &str, code: &str) -> String {
    match ask(path, line).end {
        End::Err { code: got, message } if got == code => message,
        other => panic!("ctl {line}: expected error {code}, got {other:?}"),
    }
}

/// The value of `key` in the first `kind` record with `name_key=name`.
fn field<'a>(reply: &'a Reply, kind: &str, name_key: &str, name: &str, key: &str) -> &'a str {
    reply
        .records
        .iter()
        .find(|r| r.kind == kind && r.get(name_key) == Some(name))
        .and_then(|r| r.get(key))
        .unwrap_or_else(|| panic!("no {key} of {kind} {name} in {reply:?}"))
}

/// Waits for `status` to answer with the DSM checking Linux (its baselines taken).
fn wait_until_checked(path: &Path) {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if let Ok(reply) = ctl::ask(path, "status") {
            let phase = reply
                .records
                .iter()
                .find(|r| r.kind == "dsm")
                .and_then(|r| r.get("phase"));
            if phase == Some("running") {
                return;
            }
        }
        thread::sleep(Duration::from_secs(1));
    }
    panic!("the DSM never checked Linux within {} s", LIMIT.as_secs());
}

/// Waits until the run's log has a line with `needle` after one with `after`.
fn wait_for_log(log: &Path, after: &str, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.rfind(after) {
            if text[at..].contains(needle) {
                return true;
            }
        }
        thread::sleep(Duration::from_millis(500));
    }
    false
}

#[test]
fn the_operator_pauses_and_resumes_linux_through_ctl() {
    let path = ctl::socket_path("demo");
    let run = thread::spawn(|| {
        boot_with("demo", |o| {
            o.cmd = Some(WORK.to_string());
            o.timeout = Some(LIMIT);
        })
    });
    wait_until_checked(&path);
    let stop_linux = StopLinux(&path);
    let (events_tx, events_rx) = mpsc::channel();
    let events = ctl::events(&path).unwrap_or_else(|e| panic!("ctl events: {e:#}"));
    thread::spawn(move || {
        for event in events {
            let _ = events_tx.send(event);
        }
    });

    let status = expect_ok(&path, "status");
    assert_eq!(
        field(&status, "partition", "name", "linux", "state"),
        "running"
    );
    assert_eq!(
        field(&status, "partition", "name", "rtos", "state"),
        "running"
    );
    assert_eq!(field(&status, "vcpu", "partition", "rtos", "core"), "0");
    assert_eq!(
        field(&status, "migration", "partition", "linux", "policy"),
        "pinned"
    );
    assert_eq!(field(&status, "dsm", "partition", "linux", "core"), "1");
    assert!(status.records.iter().any(|r| r.kind == "checker"));

    assert_eq!(
        expect_ok(&path, "pause linux").end,
        End::Ok("linux paused".into())
    );
    let again = expect_err(&path, "pause linux", "invalid-state");
    assert_eq!(again, "linux is paused already");
    let paused = expect_ok(&path, "status");
    assert_eq!(
        field(&paused, "partition", "name", "linux", "state"),
        "paused"
    );
    expect_ok(&path, "resume linux");
    expect_err(&path, "resume linux", "invalid-state");

    // One checker run now, with its verdict.
    match expect_ok(&path, "check vectors").end {
        End::Ok(verdict) if verdict.starts_with("vectors: no finding") => {}
        other => panic!("check vectors: {other:?}"),
    }
    expect_err(&path, "check nosuch", "unknown-checker");

    // Bad commands: refused by spumone with a reason, and `ctl` exits non-zero.
    let why = expect_err(&path, "pause rtos", "not-allowed");
    assert!(why.contains("real-time partition"), "{why}");
    expect_err(&path, "stop nosuch", "unknown-partition");
    expect_err(&path, "frobnicate", "unknown-command");
    let rtos = CtlCommand::new(vec!["pause".into(), "rtos".into()]).unwrap();
    assert_eq!(ctl::client("demo", &rtos, false).ok(), Some(1));

    // Both events reached the `events` client (the stream may lag the answers a little).
    let mut seen = Vec::new();
    let wanted = [
        "partition-paused name=linux",
        "partition-resumed name=linux",
    ];
    while !wanted.iter().all(|w| seen.iter().any(|e| e == w)) {
        match events_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(event) => seen.push(event),
            Err(_) => panic!("events seen: {seen:?}; expected {wanted:?}"),
        }
    }
    // Linux computes after the resume.
    let log = xtask::paths::logs_dir("demo").join("all.log");
    let computing = wait_for_log(&log, "partition-resumed name=linux", "[linux] tick ");
    drop(stop_linux);
    let run = run
        .join()
        .unwrap_or_else(|_| panic!("the demo run panicked"));
    if !computing {
        fail(&run, "Linux printed no tick after the resume");
    }
    let resumed = run
        .lines
        .iter()
        .position(|l| l.contains("partition-resumed name=linux"))
        .unwrap_or_else(|| fail(&run, "no partition-resumed event"));
    let tick = run.lines[resumed..]
        .iter()
        .find_map(|l| l.strip_prefix("[linux] tick "))
        .unwrap_or_else(|| fail(&run, "no tick after the resume"));
    match tick.split_whitespace().collect::<Vec<_>>()[..] {
        [i, "square", sq] if i.parse::<u64>().map(|i| i * i).ok() == sq.parse().ok() => {}
        _ => fail(
            &run,
            &format!("Linux computed wrong after the resume: {tick}"),
        ),
    }
    if run.linux_stop_code() != Some(0) {
        fail(&run, "Linux was not stopped by the operator's `stop linux`");
    }
    if !run.has_line("partition linux stopped (operator command)") {
        fail(&run, "no operator stop in spumone's log");
    }
}
