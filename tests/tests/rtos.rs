//! spumone boots on four cores and runs the RTOS partition to a clean poweroff.

use spumone_tests::{
    boot, boot_shared, boot_with, expect_clean_poweroff, expect_clean_stream, expect_latency,
    expect_line, expect_no_line, expect_rtos_services, fail,
};
use std::fs;
use std::time::Duration;
use xtask::event::Event;
use xtask::run::{Verdict, TIMEOUT_EXIT};

/// Half the default timeout: a healthy boot takes about a second, plus the latency probe's
/// N × P (10 s by default).
const BOOT_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn rtos_boots_under_spumone_and_powers_off() {
    let run = boot_shared("rtos");

    // spumone's own log, decoded from defmt.
    expect_line(run, "[hv]", &["INFO", "GICv3 at 0x8000000"]);
    let cores = expect_line(run, "[hv]", &["INFO", "4/4 cores online"]);
    expect_no_line(run, "[hv]", "only ");

    // The RTOS console, demultiplexed from its channel.
    let banner = expect_line(run, "[rtos]", &["spumone rtos 0.1 (under spumone, vcpu 0)"]);
    expect_line(run, "[rtos]", &["rtos: EL1, boot argument 0x0"]);
    expect_line(run, "[rtos]", &["rtos: kernel up:", "INTID 27"]);
    let done = expect_line(run, "[rtos]", &["rtos: done, powering off"]);
    if !(cores < banner && banner < done) {
        fail(
            run,
            "expected `4/4 cores online`, then the RTOS banner, then `rtos: done`",
        );
    }

    let stopped = Event::PartitionStopped {
        name: "rtos".into(),
        code: 0,
    };
    if !run.events.contains(&stopped) {
        fail(
            run,
            "expected the event `partition-stopped name=rtos code=0`",
        );
    }
    if run.shutdown_code() != Some(0) {
        fail(run, "expected the event `shutdown code=0`");
    }
    expect_clean_stream(run);
    expect_clean_poweroff(run, BOOT_LIMIT);
}

#[test]
fn rtos_services_and_latency_probe_work_under_spumone() {
    let run = boot_shared("rtos");
    let tests = expect_rtos_services(run);
    let (latency, _stats) = expect_latency(run);
    let done = expect_line(run, "[rtos]", &["rtos: done, powering off"]);
    if !(tests < latency && latency < done) {
        fail(
            run,
            "expected the self-tests, then the latency line, then `rtos: done`",
        );
    }
    expect_clean_poweroff(run, BOOT_LIMIT);
}

#[test]
fn every_stream_is_kept_under_target_logs() {
    let run = boot("rtos");
    expect_clean_poweroff(&run, BOOT_LIMIT);
    let read = |name: &str| {
        fs::read(run.log_dir.join(name))
            .unwrap_or_else(|e| fail(&run, &format!("cannot read log {name}: {e}")))
    };
    let serial = read("serial.bin");
    if !serial.contains(&0) {
        fail(
            &run,
            "serial.bin should hold the raw framed stream (0x00 terminators)",
        );
    }
    let all = String::from_utf8_lossy(&read("all.log")).into_owned();
    if all.lines().collect::<Vec<_>>() != run.lines {
        fail(
            &run,
            "all.log should hold exactly the prefixed lines of the run",
        );
    }
    let rtos = String::from_utf8_lossy(&read("rtos.log")).into_owned();
    if !rtos.lines().any(|l| l.starts_with("spumone rtos 0.1")) {
        fail(
            &run,
            "rtos.log should hold the RTOS console without prefixes",
        );
    }
    let hv = String::from_utf8_lossy(&read("hv.log")).into_owned();
    if !hv.contains("4/4 cores online") || hv.contains("spumone rtos 0.1") {
        fail(&run, "hv.log should hold spumone's lines and only those");
    }
}

#[test]
fn a_run_that_does_not_power_off_is_killed_at_the_timeout() {
    let run = boot_with("rtos", |o| o.timeout = Some(Duration::from_millis(1)));
    if run.verdict() != Verdict::TimedOut || run.exit_code() != TIMEOUT_EXIT {
        fail(
            &run,
            &format!(
                "expected a timeout (exit {TIMEOUT_EXIT}), got {:?}",
                run.verdict()
            ),
        );
    }
    let message = run.failure().unwrap_or_default();
    if !message.contains("did not power off within") || !message.contains("all.log") {
        fail(&run, &format!("unexpected timeout message: {message}"));
    }
    if run.elapsed > Duration::from_secs(20) {
        fail(&run, "QEMU was not stopped promptly after the timeout");
    }
}
