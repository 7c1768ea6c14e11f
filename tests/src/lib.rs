//! Helpers for the QEMU integration tests in `tests/`: boot a scenario through the xtask
//! runner and check its prefixed console lines, failing with the tail of the output.
//!
//! `cargo xtask test` builds every tested scenario first and sets `SPUMONE_TESTS_PREBUILT`, so
//! the tests boot those images; run alone (`cargo test -p spumone-tests`) they build them.

use std::sync::Mutex;
use std::time::Duration;

use xtask::bench::{find_latency, LatencyStats, RTOS_CONSOLE};
use xtask::ci::PREBUILT_ENV;
use xtask::firmware::LatencySettings;
use xtask::run::{run_scenario, RunOptions, RunOutcome, Verdict};
use xtask::scenario;

/// Lines of output shown when a check fails.
const TAIL: usize = 40;

/// Runs of one scenario share its log directory, so runs within a test binary take turns.
static QEMU: Mutex<()> = Mutex::new(());

/// Runs kept for every test of a binary that only reads the output (see [`boot_shared`]).
static SHARED: Mutex<Vec<&'static RunOutcome>> = Mutex::new(Vec::new());

/// The latency settings the images are built with: `cargo xtask test` and these tests read
/// the same environment.
#[track_caller]
pub fn latency_settings() -> LatencySettings {
    LatencySettings::from_env().unwrap_or_else(|e| panic!("{e:#}"))
}

/// Boots `name` with the default timeout and returns what it printed.
#[track_caller]
pub fn boot(name: &str) -> RunOutcome {
    boot_with(name, |_| {})
}

/// Boots `name` after `adjust` has changed the run options.
#[track_caller]
pub fn boot_with(name: &str, adjust: impl FnOnce(&mut RunOptions)) -> RunOutcome {
    let Some(scenario) = scenario::find(name) else {
        panic!("no scenario named {name}");
    };
    let mut options = RunOptions::new(scenario);
    options.echo = false;
    options.prebuilt = std::env::var_os(PREBUILT_ENV).is_some();
    options.latency = latency_settings();
    adjust(&mut options);
    let _turn = QEMU.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match run_scenario(&options) {
        Ok(outcome) => outcome,
        Err(e) => panic!("scenario {name} could not be run: {e:#}"),
    }
}

/// Boots `name` under `-icount` with `cmd` run in Linux (under migration `policy`, if given)
/// and fails unless it powered off cleanly within `limit` with every frame decoded.
#[track_caller]
pub fn boot_icount_cmd(name: &str, cmd: &str, policy: Option<&str>, limit: Duration) -> RunOutcome {
    let run = boot_with(name, |o| {
        o.cmd = Some(cmd.to_string());
        o.timeout = Some(limit);
        o.icount = true;
        o.policy = policy.map(String::from);
    });
    expect_clean_poweroff(&run, limit);
    expect_clean_stream(&run);
    run
}

/// One default boot of `name` per test binary, shared by the tests that only read its output.
#[track_caller]
pub fn boot_shared(name: &str) -> &'static RunOutcome {
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(run) = shared.iter().find(|r| r.scenario.name == name) {
        return run;
    }
    let run: &'static RunOutcome = Box::leak(Box::new(boot(name)));
    shared.push(run);
    run
}

/// Fails the test with `message` and the last lines of the run.
#[track_caller]
pub fn fail(outcome: &RunOutcome, message: &str) -> ! {
    panic!(
        "scenario {}: {message}\n--- last {TAIL} lines of output ---\n{}\n--- end (full log in {}) ---",
        outcome.scenario.name,
        outcome.tail(TAIL),
        outcome.log_dir.join("all.log").display()
    )
}

/// Fails unless the `--cmd` command printed exactly `output` and exited with `status`.
#[track_caller]
pub fn expect_command_result(outcome: &RunOutcome, command: &str, output: &[&str], status: i32) {
    if outcome.command_output() != output {
        fail(
            outcome,
            &format!(
                "`{command}` printed {:?}, expected {output:?}",
                outcome.command_output()
            ),
        );
    }
    if outcome.command_status() != Some(status) {
        fail(
            outcome,
            &format!(
                "`{command}` status {:?}, expected {status}",
                outcome.command_status()
            ),
        );
    }
}

/// The index of the first line with prefix `source` (e.g. `"[hv]"`) containing every one of
/// `needles`, if any.
pub fn find_line(outcome: &RunOutcome, source: &str, needles: &[&str]) -> Option<usize> {
    let prefix = format!("{source} ");
    outcome
        .lines
        .iter()
        .position(|l| l.starts_with(&prefix) && needles.iter().all(|n| l.contains(n)))
}

/// The index of the first line after index `after` with prefix `source` containing `needle`.
pub fn find_line_after(
    outcome: &RunOutcome,
    after: usize,
    source: &str,
    needle: &str,
) -> Option<usize> {
    let prefix = format!("{source} ");
    outcome
        .lines
        .iter()
        .enumerate()
        .skip(after + 1)
        .find(|(_, l)| l.starts_with(&prefix) && l.contains(needle))
        .map(|(i, _)| i)
}

/// Like [`find_line`], but fails the test when there is no such line.
#[track_caller]
pub fn expect_line(outcome: &RunOutcome, source: &str, needles: &[&str]) -> usize {
    match find_line(outcome, source, needles) {
        Some(index) => index,
        None => fail(
            outcome,
            &format!("expected a `{source}` line containing {needles:?}"),
        ),
    }
}

/// Fails the test when some line with prefix `source` contains `needle`.
#[track_caller]
pub fn expect_no_line(outcome: &RunOutcome, source: &str, needle: &str) {
    if let Some(i) = find_line(outcome, source, &[needle]) {
        fail(outcome, &format!("unexpected line: {}", outcome.lines[i]));
    }
}

/// Fails unless the machine powered off cleanly, with exit status 0, within `limit`.
#[track_caller]
pub fn expect_clean_poweroff(outcome: &RunOutcome, limit: Duration) {
    if outcome.verdict() != Verdict::PoweredOff || outcome.exit_code() != 0 {
        let why = outcome.failure().unwrap_or_default();
        fail(
            outcome,
            &format!(
                "expected a clean poweroff (exit 0), got {:?}, exit {}: {why}",
                outcome.verdict(),
                outcome.exit_code()
            ),
        );
    }
    if outcome.elapsed > limit {
        fail(
            outcome,
            &format!(
                "powered off only after {:.1} s (limit {} s)",
                outcome.elapsed.as_secs_f64(),
                limit.as_secs()
            ),
        );
    }
}

/// Fails when the stream had bytes that were not valid frames, or defmt records that did not
/// decode: both mean spumone and xtask disagree about the channel format.
#[track_caller]
pub fn expect_clean_stream(outcome: &RunOutcome) {
    if let Some(line) = outcome.lines.iter().find(|l| l.starts_with("[raw] ")) {
        fail(outcome, &format!("bytes outside any frame: {line}"));
    }
    for bad in ["undecodable defmt record", "no table to decode it"] {
        expect_no_line(outcome, "[hv]", bad);
    }
}

/// What `md5sum` prints for 2 MiB of zeros (`dd if=/dev/zero bs=64k count=32`), so a test can
/// check Linux computed right.
pub const ZEROS_2MIB_MD5: &str = "b2d1236c286a3c0704224fe4105eca49";

/// The RTOS self-test lines that show its services work, in the order they run.
pub const SERVICE_LINES: [&str; 3] = [
    "test preempt: order H,L ok",
    "test semaphore: blocked and woken ok",
    "test bad id: activate_task(99) = E_ID ok",
];

/// Fails unless the RTOS printed every [`SERVICE_LINES`] line in order and no failed test.
/// Returns the index of the last one.
#[track_caller]
pub fn expect_rtos_services(outcome: &RunOutcome) -> usize {
    let mut last = None;
    for want in SERVICE_LINES {
        let at = expect_line(outcome, RTOS_CONSOLE, &[want]);
        if last.is_some_and(|before| at < before) {
            fail(
                outcome,
                &format!("`{want}` came before the previous test line"),
            );
        }
        last = Some(at);
    }
    let failed = outcome.lines.iter().find(|l| {
        l.strip_prefix(RTOS_CONSOLE)
            .is_some_and(|t| t.trim_start().starts_with("test ") && t.contains("FAILED"))
    });
    if let Some(line) = failed {
        fail(outcome, &format!("an RTOS self-test failed: {line}"));
    }
    last.unwrap_or(0)
}

/// Fails unless the RTOS announced the probe with the configured N and P and printed exactly
/// one well-formed `latency` line with n = N and min <= p50 <= p99 <= max.
#[track_caller]
pub fn expect_latency(outcome: &RunOutcome) -> (usize, LatencyStats) {
    let settings = latency_settings();
    let announced = format!(
        "rtos: latency probe: {} samples, period {} us",
        settings.samples, settings.period_us
    );
    expect_line(outcome, RTOS_CONSOLE, &[&announced]);
    let stats = match find_latency(&outcome.lines, RTOS_CONSOLE) {
        Ok(stats) => stats,
        Err(e) => fail(outcome, &format!("latency line: {e}")),
    };
    if let Err(e) = stats.check(u64::from(settings.samples)) {
        fail(outcome, &format!("implausible latency line: {e}"));
    }
    let at = expect_line(outcome, RTOS_CONSOLE, &["latency n="]);
    (at, stats)
}

/// Fails unless Linux powered off cleanly, the RTOS printed a latency round (`round`) after
/// that and was never stopped. Returns the index of the stop line.
#[track_caller]
pub fn expect_rtos_outlives_linux(outcome: &RunOutcome, round: &str) -> usize {
    let stopped = expect_line(
        outcome,
        "[hv]",
        &["partition linux stopped (PSCI SYSTEM_OFF), exit code 0"],
    );
    if find_line_after(outcome, stopped, "[rtos]", round).is_none() {
        fail(outcome, "no RTOS latency round after Linux powered off");
    }
    expect_no_line(outcome, "[hv]", "partition rtos stopped");
    stopped
}
