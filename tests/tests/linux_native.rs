//! The Debian arm64 kernel and busybox initramfs alone on QEMU (3 cores, no hypervisor):
//! the Linux baseline, driven non-interactively with `--cmd`.

use spumone_tests::{boot_with, expect_clean_poweroff, expect_command_result, expect_line, fail};
use std::time::Duration;
use xtask::run::RunOutcome;

/// A boot takes about 5 s of guest time under TCG.
const BOOT_LIMIT: Duration = Duration::from_secs(90);

/// Boots `linux-native` with `cmd` and checks the run ended cleanly after `/init`'s ready line.
#[track_caller]
fn run_cmd(cmd: &str) -> RunOutcome {
    let run = boot_with("linux-native", |o| {
        o.cmd = Some(cmd.to_string());
        o.timeout = Some(BOOT_LIMIT);
    });
    expect_clean_poweroff(&run, BOOT_LIMIT);
    let ready = expect_line(&run, "[linux]", &["spumone: linux ready"]);
    if let Some(failed) = run
        .lines
        .iter()
        .find(|l| l.contains("insmod") && l.contains("failed"))
    {
        fail(&run, &format!("a module did not load: {failed}"));
    }
    if let Some(other) = run
        .lines
        .iter()
        .find(|l| !l.starts_with("[linux] ") && !l.starts_with("[qemu] "))
    {
        fail(
            &run,
            &format!("a native run has only the Linux console, but got: {other}"),
        );
    }
    let marker = expect_line(&run, "[linux]", &["spumone: command exit status"]);
    if marker < ready {
        fail(&run, "the status marker came before the ready line");
    }
    run
}

#[test]
fn linux_boots_on_three_cores() {
    let run = run_cmd("nproc");
    expect_command_result(&run, "nproc", &["3"], 0);
}

#[test]
fn command_output_and_status_come_back() {
    let cmd = "echo hello; exit 7";
    let run = run_cmd(cmd);
    expect_command_result(&run, cmd, &["hello"], 7);
}

#[test]
fn storage_network_and_ext4_modules_are_loaded() {
    let run = run_cmd("cut -d' ' -f1 /proc/modules");
    let loaded = run.command_output();
    for module in [
        "virtio_pci",
        "virtio_blk",
        "virtio_net",
        "ext4",
        "jbd2",
        "mbcache",
        "crc16",
    ] {
        if !loaded.contains(&module) {
            fail(
                &run,
                &format!("{module} is not in /proc/modules: {loaded:?}"),
            );
        }
    }
}
