//! The adversarial Linux loads (`storm.ko`, `xtask::storm`) in `demo` under `--icount`: one
//! boot runs every mode in turn on Linux CPU 1 for a few seconds. Each must have run (a
//! non-zero iteration count), Linux must compute right afterwards and power off cleanly,
//! spumone must stay up, and the RTOS must keep printing its rounds throughout. The rounds'
//! misses are not judged: beside a busy vCPU, QEMU's round robin makes the RTOS a whole period
//! late whatever the load does (`docs/qemu-timing.md`).

use spumone_tests::{
    boot_with, expect_clean_poweroff, expect_clean_stream, expect_line, expect_rtos_outlives_linux,
    fail,
};
use std::time::Duration;
use xtask::bench::rtos_rounds;
use xtask::probe::hv_crash;
use xtask::storm::{storm_command, storm_result, MODES};

/// Guest time runs by instruction count, so this is host time for the boot and the storms on
/// a loaded host.
const LIMIT: Duration = Duration::from_secs(1200);
/// Guest seconds per mode.
const SECONDS: u32 = 2;
/// The Linux CPU the storms run on (vCPU 1, on core 2 in `demo`): not the one the shell and
/// the DSM's checks use.
const CPU: u32 = 1;
/// What Linux computes afterwards, and what it must print: a shell sum and the MD5 of 1 MiB
/// of zeros.
const COMPUTE: &str = "echo sum=$((123456 * 789)); \
                       dd if=/dev/zero bs=64k count=16 2>/dev/null | md5sum";
const SUM: &str = "sum=97406784";
const ZEROS_MD5: &str = "b6d81b360a5672d80c27430f39153e2c";

/// Every storm in turn (a failed one does not stop the others), then the computation; the
/// status is 1 if any storm failed.
fn workload() -> String {
    let storms: Vec<String> = MODES
        .iter()
        .map(|mode| format!("{} || s=1", storm_command(mode, SECONDS, Some(CPU))))
        .collect();
    format!("s=0; {}; {COMPUTE}; exit $s", storms.join("; "))
}

#[test]
fn every_storm_runs_and_linux_spumone_and_the_rtos_live_through_them() {
    let run = boot_with("demo", |o| {
        o.cmd = Some(workload());
        o.timeout = Some(LIMIT);
        o.icount = true;
    });
    expect_clean_stream(&run);
    for mode in MODES {
        if let Err(why) = storm_result(&run.lines, mode) {
            fail(&run, &format!("storm {mode}: {why}"));
        }
    }
    if let Some(line) = hv_crash(&run.lines) {
        fail(&run, &format!("spumone crashed: {line}"));
    }
    expect_line(&run, "[linux]", &[SUM]);
    expect_line(&run, "[linux]", &[ZEROS_MD5]);
    // With every storm reported, this is the computation's status, and the power-off.
    expect_clean_poweroff(&run, LIMIT);
    // The RTOS prints a round a second of guest time: count those between the first storm's
    // start and the last one's report.
    let first = expect_line(&run, "[linux]", &[&format!("storm: {} on cpu", MODES[0])]);
    let last = expect_line(
        &run,
        "[linux]",
        &[&format!("storm: {}: ", MODES[MODES.len() - 1])],
    );
    let during = match rtos_rounds(&run.lines[first..last]) {
        Ok(rounds) => rounds.len(),
        Err(e) => fail(&run, &format!("an RTOS round did not parse: {e}")),
    };
    let expected = (SECONDS as usize * MODES.len()).saturating_sub(2);
    if during < expected {
        fail(
            &run,
            &format!("the RTOS printed {during} rounds during the storms, expected {expected}"),
        );
    }
    expect_rtos_outlives_linux(&run, "latency n=1000 ");
}
