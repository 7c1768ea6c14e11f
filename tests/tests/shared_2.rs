//! Scenario `shared-2`: a two-core machine (`-smp 2`). The RTOS and Linux's vCPU 0 share core
//! 0 (the RTOS first), Linux's vCPU 1 owns core 1: pinned as configured, and under policy
//! `spumone`, which moves vCPU 0 off the RTOS's core to core 1. Under `-icount` QEMU runs the
//! two vCPUs round robin, so the RTOS's latency here is not judged: its rounds must go on.

use spumone_tests::{
    boot_icount_cmd, expect_command_result, expect_line, expect_no_line,
    expect_rtos_outlives_linux, fail, ZEROS_2MIB_MD5,
};
use std::time::Duration;
use xtask::bench::{linux_command_window, rtos_rounds};
use xtask::run::RunOutcome;

/// Host time for the boot and the command (about 45 s on a loaded host).
const LIMIT: Duration = Duration::from_secs(110);

/// One round of the RTOS's probe, as `shared-2.toml`'s boot argument asks.
const ROUND: &str = "latency n=1000 ";

/// Boots `shared-2` under `-icount` (and `policy`, if given) while Linux hashes on both its
/// vCPUs and sleeps, and checks what every policy shares: two cores online, vCPU 1 on core 1,
/// Linux with 2 CPUs computing right, the RTOS's rounds going on while Linux runs and after.
fn run_hashes(policy: Option<&str>) -> RunOutcome {
    let cmd = "nproc; \
               for k in 1 2; do (dd if=/dev/zero bs=64k count=32 2>/dev/null | md5sum) & done; \
               wait; sleep 2";
    let run = boot_icount_cmd("shared-2", cmd, policy, LIMIT);
    expect_line(&run, "[hv]", &["2/2 cores online"]);
    expect_line(
        &run,
        "[hv]",
        &["partition rtos vcpu 0: entering", "on core 0 (shared)"],
    );
    expect_line(
        &run,
        "[hv]",
        &["partition linux vcpu 1: entering", "on core 1"],
    );
    let digest = format!("{ZEROS_2MIB_MD5}  -");
    expect_command_result(&run, cmd, &["2", &digest, &digest], 0);
    let window = linux_command_window(&run.lines).unwrap_or_else(|e| fail(&run, &e));
    match rtos_rounds(&run.lines[window]) {
        Ok(rounds) if !rounds.is_empty() => {}
        Ok(_) => fail(&run, "no RTOS round while Linux ran its command"),
        Err(e) => fail(&run, &format!("RTOS round: {e}")),
    }
    expect_rtos_outlives_linux(&run, ROUND);
    run
}

#[test]
fn pinned_linux_keeps_vcpu0_beside_the_rtos() {
    let run = run_hashes(None);
    expect_line(&run, "[hv]", &["partition linux: migration policy pinned"]);
    expect_line(
        &run,
        "[hv]",
        &["partition linux vcpu 0: entering", "on core 0 (shared)"],
    );
    expect_no_line(&run, "[hv]", "migrate linux vcpu");
}

#[test]
fn spumone_policy_moves_vcpu0_to_linux_s_own_core() {
    let run = run_hashes(Some("spumone"));
    expect_line(&run, "[hv]", &["partition linux: migration policy spumone"]);
    // The RTOS is runnable from the start, so vCPU 0 leaves before Linux is up, for the one
    // other core.
    let moved = expect_line(&run, "[hv]", &["migrate linux vcpu 0: core 0 -> core 1"]);
    let ready = expect_line(&run, "[linux]", &["spumone: linux ready: 2 CPUs"]);
    if moved > ready {
        fail(&run, "vCPU 0 left the RTOS's core only after Linux was up");
    }
    // Nothing comes back to the RTOS's core while the RTOS probes every period.
    expect_no_line(&run, "[hv]", "-> core 0 ");
    expect_line(
        &run,
        "[hv]",
        &["core 0: partition rtos vcpu 0 runs alone, WFI/WFE untrapped"],
    );
}
