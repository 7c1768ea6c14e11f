//! The D-System Monitor inside spumone, on `demo` (policy `stop`): attacks from the suite are
//! caught by the checker meant for them and Linux is stopped while the RTOS keeps its rounds;
//! the benign workload raises nothing. The same judgement as `cargo xtask attack`.

use spumone_tests::{boot_with, expect_line, fail};
use std::time::Duration;
use xtask::attack::{self, Observed};
use xtask::run::{Ending, RunOutcome};

const CHECKERS: [&str; 6] = [
    "vectors",
    "syscall-table",
    "text-hash",
    "module-list",
    "hidden-tasks",
    "creds",
];

/// A boot, the attack, and the DSM's next period; the RTOS shares the host with all of it.
const LIMIT: Duration = Duration::from_secs(240);

#[track_caller]
fn run(name: &str) -> RunOutcome {
    let cmd = attack::command(name).unwrap_or_else(|e| panic!("{e:#}"));
    let run = boot_with(attack::SCENARIO, |o| {
        o.cmd = Some(cmd);
        o.timeout = Some(LIMIT);
    });
    let seen = Observed {
        lines: &run.lines,
        events: &run.events,
    };
    if let Err(why) = attack::judge(name, &seen) {
        fail(&run, &why);
    }
    // Every checker took its baseline, with its time in the log.
    for checker in CHECKERS {
        expect_line(&run, "[hv]", &[&format!("dsm baseline {checker}: ")]);
    }
    run
}

#[track_caller]
fn expect_stopped_by_dsm(run: &RunOutcome) {
    if run.linux_stop_code() != Some(255) {
        fail(run, "Linux was not stopped with code 255 by the DSM");
    }
    if run.ending != (Ending::LinuxStopped { rtos_alive: true }) {
        fail(
            run,
            "the run did not end with Linux stopped and the RTOS alive",
        );
    }
}

#[test]
fn a_hooked_syscall_is_caught_and_linux_stopped_while_the_rtos_runs() {
    let run = run("hook_syscall");
    expect_stopped_by_dsm(&run);
    expect_line(
        &run,
        "[hv]",
        &["dsm ALERT syscall-table", "syscall entry changed"],
    );
}

#[test]
fn a_swapped_vbar_on_any_cpu_is_caught() {
    let run = run("vbar_swap");
    expect_stopped_by_dsm(&run);
    expect_line(&run, "[hv]", &["dsm ALERT vectors", "VBAR_EL1"]);
}

#[test]
fn a_module_hidden_from_the_module_list_is_caught() {
    let run = run("hide_module");
    expect_stopped_by_dsm(&run);
    expect_line(
        &run,
        "[hv]",
        &[
            "dsm ALERT module-list",
            "module hidden from the module list",
        ],
    );
}

#[test]
fn the_benign_workload_raises_nothing() {
    let run = run("benign");
    if run.linux_stop_code() != Some(0) {
        fail(&run, "Linux did not power off by itself after the workload");
    }
    for step in ["ftrace function tracer", "kprobe", "bpf socket filter"] {
        expect_line(&run, "[linux]", &["benign: ", step, "ok"]);
    }
    // Each checker completed passes meanwhile (an attack may be caught before the first).
    for checker in CHECKERS {
        expect_line(&run, "[hv]", &[&format!("dsm pass {checker} #1: ")]);
    }
}
