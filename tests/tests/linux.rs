//! The Debian arm64 kernel and busybox initramfs as a partition of spumone on cores 1-3:
//! generated device tree, emulated console, virtual GIC and PSCI, driven with `--cmd`.

use spumone_tests::{
    boot_with, expect_clean_poweroff, expect_clean_stream, expect_command_result, expect_line, fail,
};
use std::time::Duration;
use xtask::run::RunOutcome;

/// A boot takes about 5 s of guest time under TCG.
const BOOT_LIMIT: Duration = Duration::from_secs(120);

/// Boots `linux` with `cmd`; checks spumone entered the kernel with its DTB and the run ended
/// cleanly after `/init`'s ready line.
#[track_caller]
fn run_cmd(cmd: &str) -> RunOutcome {
    let run = boot_with("linux", |o| {
        o.cmd = Some(cmd.to_string());
        o.timeout = Some(BOOT_LIMIT);
    });
    expect_clean_poweroff(&run, BOOT_LIMIT);
    expect_clean_stream(&run);
    expect_line(&run, "[hv]", &["partition linux: DTB at 0x4fe00000"]);
    expect_line(
        &run,
        "[hv]",
        &["partition linux vcpu 0: entering at 0x48200000 on core 1"],
    );
    let ready = expect_line(&run, "[linux]", &["spumone: linux ready: 3 CPUs"]);
    let marker = expect_line(&run, "[linux]", &["spumone: command exit status"]);
    if marker < ready {
        fail(&run, "the status marker came before the ready line");
    }
    expect_line(
        &run,
        "[hv]",
        &["partition linux stopped (PSCI SYSTEM_OFF), exit code 0"],
    );
    run
}

#[test]
fn linux_boots_on_three_vcpus() {
    let run = run_cmd("nproc");
    expect_command_result(&run, "nproc", &["3"], 0);
}

#[test]
fn command_output_and_status_come_back() {
    let cmd = "echo hello; exit 7";
    let run = run_cmd(cmd);
    expect_command_result(&run, cmd, &["hello"], 7);
}
