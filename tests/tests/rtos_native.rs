//! The RTOS image alone on QEMU, without the hypervisor: the baseline scenario.

use spumone_tests::{
    boot_shared, expect_clean_poweroff, expect_latency, expect_line, expect_rtos_services, fail,
};
use std::time::Duration;

/// A healthy run takes about a second plus the latency probe's N × P (10 s by default).
const BOOT_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn rtos_boots_bare_and_powers_off() {
    let run = boot_shared("rtos-native");
    let banner = expect_line(run, "[rtos]", &["spumone rtos 0.1 (bare metal)"]);
    let done = expect_line(run, "[rtos]", &["rtos: done, powering off"]);
    if done < banner {
        fail(run, "`rtos: done` came before the banner");
    }
    // One core: PSCI has no other core to start, so nothing spins beside the baseline.
    if let Some(line) = run.lines.iter().find(|l| l.contains("(a neighbour load)")) {
        fail(run, &format!("rtos-native has one core, but: {line}"));
    }
    if let Some(line) = run
        .lines
        .iter()
        .find(|l| !l.starts_with("[rtos] ") && !l.starts_with("[qemu] "))
    {
        fail(
            run,
            &format!("a native run has only the RTOS console, but got: {line}"),
        );
    }
    expect_clean_poweroff(run, BOOT_LIMIT);
}

#[test]
fn rtos_services_and_latency_probe_work_bare() {
    let run = boot_shared("rtos-native");
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
