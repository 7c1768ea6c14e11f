//! Linux rejuvenation in `demo`: twenty restarts from the pristine copy in one boot, asked by
//! Linux itself (`reboot`) and by the operator (`ctl restart linux`) in turn; each time Linux
//! computes again, spumone's own state for it is what the cold boot had, and the RTOS keeps
//! its rounds. (A panic's restart is in `rejuv_panic.rs`.)

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use spumone_tests::{boot_with, fail, find_line_after};
use xtask::ctl;
use xtask::run::RunOutcome;

const RESTARTS: u32 = 20;
/// 21 boots of Linux with the DSM's baselines each, on a shared host.
const LIMIT: Duration = Duration::from_secs(1200);
const ROUND: &str = "latency n=1000 ";

/// Linux's work on every boot: read the boot's number from `spumone.resets=N`, compute and
/// print a value the test checks, then reboot itself (even boots), wait for the operator's
/// restart (odd boots), or power off after the last.
fn work(last: u32) -> String {
    format!(
        "n=0; for a in $(cat /proc/cmdline); do case $a in spumone.resets=*) n=${{a#spumone.resets=}};; esac; done; \
         echo \"boot $n computes $((n*n+7))\"; \
         if [ $n -ge {last} ]; then exit 0; fi; \
         if [ $((n%2)) -eq 0 ]; then echo \"boot $n reboots\"; reboot -f; \
         else echo \"boot $n waits for the operator\"; sleep 900; fi"
    )
}

/// Waits until the run's log holds `needle`; `false` after `limit`.
fn wait_for(log: &Path, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        thread::sleep(Duration::from_millis(500));
    }
    false
}

/// The `resources:` part of every `boot N resources` line, in boot order.
fn resources(run: &RunOutcome) -> Vec<(u32, String)> {
    run.lines
        .iter()
        .filter(|l| l.starts_with("[hv]"))
        .filter_map(|l| {
            let at = l.find("partition linux boot ")?;
            let rest = &l[at + "partition linux boot ".len()..];
            let (n, counts) = rest.split_once(" resources: ")?;
            Some((n.parse().ok()?, counts.to_string()))
        })
        .collect()
}

#[test]
fn twenty_restarts_leave_nothing_behind() {
    let log = xtask::paths::logs_dir("demo").join("all.log");
    let path = ctl::socket_path("demo");
    // A log of an earlier run must not answer for this one.
    let _ = std::fs::remove_file(&log);
    let run = thread::spawn(|| {
        boot_with("demo", |o| {
            o.cmd = Some(work(RESTARTS));
            o.timeout = Some(LIMIT);
        })
    });
    // The odd boots wait for the operator.
    for n in (1..RESTARTS).step_by(2) {
        let waiting = format!("boot {n} waits for the operator");
        if !wait_for(&log, &waiting, Duration::from_secs(300)) {
            break; // the run's own checks below say what went wrong
        }
        let reply = ctl::ask(&path, "restart linux");
        assert!(
            reply.as_ref().is_ok_and(|r| r.is_ok()),
            "ctl restart linux at boot {n}: {reply:?}"
        );
    }
    let run = run
        .join()
        .unwrap_or_else(|_| panic!("the demo run panicked"));

    // Linux computed right after every restart.
    let mut last = 0;
    for n in 0..=RESTARTS {
        let want = format!("boot {n} computes {}", n * n + 7);
        match find_line_after(&run, last, "[linux]", &want) {
            Some(at) => last = at,
            None => fail(&run, &format!("no `{want}` after the earlier boots")),
        }
    }
    if run.command_status() != Some(0) {
        fail(&run, "the last boot's command did not end with status 0");
    }
    // Both ways of asking, each ten times.
    let count = |needle: &str| run.lines.iter().filter(|l| l.contains(needle)).count();
    let by_reboot = count("partition linux: SYSTEM_RESET: restarting it");
    let by_operator = count("partition linux: operator command: restarting it");
    if (by_reboot, by_operator) != (10, 10) {
        fail(
            &run,
            &format!("{by_reboot} reboots and {by_operator} operator restarts, not 10 and 10"),
        );
    }
    // spumone's state for Linux is the cold boot's at every restart.
    let counts = resources(&run);
    let boots: Vec<u32> = counts.iter().map(|(n, _)| *n).collect();
    if boots != (0..=RESTARTS).collect::<Vec<_>>() {
        fail(&run, &format!("resource lines for boots {boots:?}"));
    }
    for (n, c) in &counts[1..] {
        if *c != counts[0].1 {
            fail(
                &run,
                &format!(
                    "boot {n} resources `{c}`, the cold boot's `{}`",
                    counts[0].1
                ),
            );
        }
    }
    // Every boot placed its kernel anew (fresh KASLR seeds): the DSM logs each boot's slide.
    let slides: Vec<&str> = run
        .lines
        .iter()
        .filter(|l| l.contains("dsm: partition linux booted"))
        .filter_map(|l| l.split("(slide ").nth(1)?.split(')').next())
        .collect();
    let mut distinct = slides.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if slides.len() != RESTARTS as usize + 1 || distinct.len() != slides.len() {
        fail(&run, &format!("KASLR slides per boot: {slides:?}"));
    }
    // The RTOS kept its rounds throughout: one between every two restarts.
    let restarts: Vec<usize> = (0..run.lines.len())
        .filter(|&i| run.lines[i].contains("event: partition-restarted name=linux"))
        .collect();
    for pair in restarts.windows(2) {
        match find_line_after(&run, pair[0], "[rtos]", ROUND) {
            Some(round) if round < pair[1] => {}
            _ => fail(&run, "no RTOS round between two restarts of Linux"),
        }
    }
    if run.has_line("partition rtos stopped") {
        fail(&run, "the RTOS was stopped");
    }
}
