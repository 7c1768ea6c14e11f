//! The default scenario: the RTOS on core 0 probing its latency round after round while Debian
//! arm64 Linux runs on cores 1-3. Linux's commands, its memory probes and its power-off must
//! leave the RTOS running.

use spumone_tests::{
    boot_with, expect_clean_poweroff, expect_clean_stream, expect_command_result, expect_line,
    expect_rtos_outlives_linux, expect_rtos_services, fail, find_line_after,
};
use std::time::Duration;
use xtask::run::RunOutcome;

/// A boot takes about 5 s of guest time; the RTOS's rounds share the host with it.
const BOOT_LIMIT: Duration = Duration::from_secs(150);

/// One round of the RTOS's probe, as `demo.toml`'s boot argument asks.
const ROUND: &str = "latency n=1000 ";

/// Boots `demo` with `cmd`; checks both partitions started, Linux ran the command and
/// powered off, and the RTOS printed a latency line after that.
#[track_caller]
fn run_cmd(cmd: &str) -> RunOutcome {
    let run = boot_with("demo", |o| {
        o.cmd = Some(cmd.to_string());
        o.timeout = Some(BOOT_LIMIT);
    });
    expect_clean_poweroff(&run, BOOT_LIMIT);
    expect_clean_stream(&run);
    expect_line(&run, "[hv]", &["partition rtos vcpu 0: entering", "core 0"]);
    expect_line(
        &run,
        "[hv]",
        &["partition linux vcpu 0: entering", "core 1"],
    );
    expect_line(&run, "[linux]", &["spumone: command exit status"]);
    expect_rtos_outlives_linux(&run, ROUND);
    run
}

#[test]
fn linux_runs_a_command_while_the_rtos_keeps_its_rounds() {
    let cmd = "nproc; echo hello; exit 7";
    let run = run_cmd(cmd);
    expect_command_result(&run, cmd, &["3", "hello"], 7);
    expect_rtos_services(&run);
    // The RTOS measures while Linux boots: a round lands between Linux's entry and its
    // ready line.
    let entered = expect_line(&run, "[hv]", &["partition linux vcpu 0: entering"]);
    let ready = expect_line(&run, "[linux]", &["spumone: linux ready: 3 CPUs"]);
    match find_line_after(&run, entered, "[rtos]", ROUND) {
        Some(round) if round < ready => {}
        _ => fail(&run, "no RTOS latency round while Linux was booting"),
    }
}

#[test]
fn linux_cannot_read_rtos_or_hypervisor_memory() {
    // `dd` reads through the kernel (read(2) on /dev/mem); `devmem` maps the page into the
    // process. 0x44000000 is the RTOS's RAM, 0x40000000 spumone's.
    let cmd = "dd if=/dev/mem of=/dev/null bs=4096 count=1 skip=$((0x44000)); echo dd=$?; \
               devmem 0x44000000; echo rtos=$?; devmem 0x40000000; echo hv=$?; echo alive";
    let run = run_cmd(cmd);
    // 135 = killed by SIGBUS: the external abort spumone injected reached the process.
    expect_command_result(
        &run,
        cmd,
        &[
            "dd: /dev/mem: Bad address",
            "dd=1",
            "Bus error",
            "rtos=135",
            "Bus error",
            "hv=135",
            "alive",
        ],
        0,
    );
    for address in ["0x44000000", "0x40000000"] {
        expect_line(
            &run,
            "[hv]",
            &[
                "partition linux vcpu",
                &format!("unassigned MMIO read of 4 bytes at {address}"),
                "external abort injected",
            ],
        );
    }
}

#[test]
fn linux_reboot_restarts_linux_alone() {
    // The first boot reboots; spumone restarts Linux with `spumone.resets=1` on its command
    // line, so the second boot runs the other branch and powers off.
    let cmd = "case \" $(cat /proc/cmdline) \" in \
               *' spumone.resets=1 '*) echo second boot; exit 3;; \
               *) echo rebooting; reboot -f;; esac";
    let run = run_cmd(cmd);
    let rebooting = expect_line(&run, "[linux]", &["rebooting"]);
    let reset = expect_line(
        &run,
        "[hv]",
        &["partition linux: SYSTEM_RESET: restarting it"],
    );
    let second = expect_line(&run, "[linux]", &["second boot"]);
    if !(rebooting < reset && reset < second) {
        fail(
            &run,
            "expected `rebooting`, then the restart, then `second boot`",
        );
    }
    if run.command_status() != Some(3) {
        fail(&run, "the second boot's command did not report status 3");
    }
    // The RTOS kept its rounds through Linux's restart, and was never stopped.
    let ready_again = match find_line_after(&run, reset, "[linux]", "spumone: linux ready") {
        Some(at) => at,
        None => fail(&run, "Linux did not come back after the restart"),
    };
    match find_line_after(&run, reset, "[rtos]", ROUND) {
        Some(round) if round < ready_again => {}
        _ => fail(&run, "no RTOS latency round while Linux restarted"),
    }
    expect_line(&run, "[hv]", &["event: partition-restarted name=linux"]);
}
