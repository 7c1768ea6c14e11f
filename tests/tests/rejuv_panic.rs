//! A Linux panic that never reboots (`panic=0`) in `demo`: the DSM sees the kernel's
//! `panic_cpu`, and `on_panic` (restart: demo has a `reset_copy`) brings Linux back while the
//! RTOS keeps its rounds.

use std::time::Duration;

use spumone_tests::{boot_with, expect_line, fail, find_line_after};

const ROUND: &str = "latency n=1000 ";

#[test]
fn a_panic_that_never_reboots_restarts_linux() {
    // `panic=0` is Debian's default: the kernel spins after the panic.
    let cmd = "case \" $(cat /proc/cmdline) \" in \
               *' spumone.resets=1 '*) echo \"after the panic computes $((6*7))\"; exit 3;; \
               *) echo panicking; echo c > /proc/sysrq-trigger;; esac";
    let run = boot_with("demo", |o| {
        o.cmd = Some(cmd.to_string());
        o.timeout = Some(Duration::from_secs(300));
    });
    let panicking = expect_line(&run, "[linux]", &["Kernel panic - not syncing"]);
    let noticed = expect_line(
        &run,
        "[hv]",
        &[
            "linux panicked (panic_cpu=",
            "): restarting (on_panic=restart)",
        ],
    );
    let event = expect_line(
        &run,
        "[hv]",
        &["event: partition-panicked name=linux cause=panic action=restart"],
    );
    let computed = expect_line(&run, "[linux]", &["after the panic computes 42"]);
    if !(panicking < noticed && noticed < event && event < computed) {
        fail(
            &run,
            "expected the panic, spumone noticing it, then the new boot",
        );
    }
    if run.command_status() != Some(3) {
        fail(&run, "the boot after the panic did not run its command");
    }
    match find_line_after(&run, panicking, "[rtos]", ROUND) {
        Some(round) if round < computed => {}
        _ => fail(&run, "no RTOS round while Linux panicked and restarted"),
    }
}
