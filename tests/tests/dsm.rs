//! The D-System Monitor inside spumone, on `demo` (policy `stop`): attacks from the suite are
//! caught by the checker meant for them and Linux is stopped while the RTOS keeps its rounds;
//! the benign workload raises nothing. The same judgement as `cargo xtask attack`.

use spumone_tests::{boot_with, expect_line, fail};
use std::time::Duration;
use xtask::attack::{self, Observed};
use xtask::run::{Ending, RunOutcome};

const CHECKERS: [&str; 7] = [
    "vectors",
    "syscall-table",
    "text-hash",
    "module-list",
    "hidden-tasks",
    "creds",
    "data-exec",
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
    // The digest service chose the SHA-256 instructions (QEMU's Cortex-A72 has them) after
    // they hashed the self-test pattern to what the host computes.
    expect_line(
        &run,
        "[hv]",
        &[
            "dsm sha256: ARMv8 SHA-256 instructions, self-test passed",
            &format!("64 KiB digest {:#x};", selftest_digest_prefix()),
        ],
    );
    run
}

/// The first 8 bytes (big-endian) of SHA-256 of spumone's 64 KiB self-test pattern.
fn selftest_digest_prefix() -> u64 {
    use sha2::{Digest, Sha256};
    let pattern: Vec<u8> = (0..64 * 1024u32)
        .map(|n| n.wrapping_mul(2_654_435_761).rotate_right(13) as u8)
        .collect();
    let digest = Sha256::digest(&pattern);
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
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
    // The write traps at stage 2 and is refused before the entry changes.
    expect_line(
        &run,
        "[hv]",
        &[
            "dsm ALERT syscall-table",
            "write to sys_call_table",
            "event_ns=",
        ],
    );
}

#[test]
fn a_text_patch_is_caught_by_the_event_path_before_it_lands() {
    let run = run("text_patch");
    expect_stopped_by_dsm(&run);
    expect_line(
        &run,
        "[hv]",
        &[
            "dsm ALERT text-hash",
            "illegitimate write to kernel text",
            "event_ns=",
        ],
    );
    // Linux never ran the patched getppid: the script's evidence line never came.
    if run
        .lines
        .iter()
        .any(|l| l.contains("attack: text_patch: getppid() patched"))
    {
        fail(&run, "the patched getppid ran");
    }
}

#[test]
fn a_task_hidden_by_dkom_is_caught() {
    let run = run("hide_task");
    expect_stopped_by_dsm(&run);
    // Usually on its parent's children list; if a pass catches it still running (`sleep`
    // just started), on its CPU's run queue.
    expect_line(
        &run,
        "[hv]",
        &["dsm ALERT hidden-tasks", "task hidden from the task list"],
    );
}

#[test]
fn a_cred_overwritten_in_place_is_caught() {
    let run = run("cred_overwrite");
    expect_stopped_by_dsm(&run);
    // The rule that needs no earlier pass: `uid 0 without exec` also needs one to have seen
    // the victim unprivileged, which a loaded host may not give it.
    expect_line(
        &run,
        "[hv]",
        &["dsm ALERT creds", "uid not its user_struct's"],
    );
}

#[test]
fn code_run_from_kernel_data_is_caught_before_it_runs() {
    let run = run("exec_data");
    expect_stopped_by_dsm(&run);
    expect_line(
        &run,
        "[hv]",
        &["dsm ALERT data-exec", "kernel data executed"],
    );
    // Stopped at the first fetch: the module never saw its code return.
    if run.lines.iter().any(|l| l.contains("exec_data: ran code")) {
        fail(&run, "the code in kernel data ran before Linux was stopped");
    }
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
    for step in [
        "ftrace function tracer",
        "kprobe",
        "bpf socket filter",
        "setuid drop to uid 1000",
    ] {
        expect_line(&run, "[linux]", &["benign: ", step, "ok"]);
    }
    // Each checker completed passes meanwhile (an attack may be caught before the first).
    for checker in CHECKERS {
        expect_line(&run, "[hv]", &[&format!("dsm pass {checker} #1: ")]);
    }
    // Text and rodata were write-protected, and Linux's own patches (ftrace, kprobe) went
    // through the event path.
    expect_line(
        &run,
        "[hv]",
        &["dsm: writes to ", "trap (stage 2 read-only)"],
    );
    expect_line(
        &run,
        "[hv]",
        &["dsm: watched write #1 ", "judged and performed"],
    );
}

#[test]
fn a_paused_linux_resumes_on_the_operators_command_while_the_rtos_runs() {
    // The VBAR swap lasts 2 s and is undone by the module itself, so once resumed, Linux
    // finishes the script and powers off without a second alert.
    let cmd = attack::command("vbar_swap").unwrap_or_else(|e| panic!("{e:#}"));
    let run = boot_with(attack::SCENARIO, |o| {
        o.cmd = Some(cmd);
        o.timeout = Some(LIMIT);
        o.dsm_pause = true;
        o.resume_after_pause = Some(Duration::from_secs(3));
    });
    let at = |needle: &str, from: usize| {
        run.lines
            .iter()
            .skip(from)
            .position(|l| l.contains(needle))
            .map(|i| i + from)
    };
    let Some(alert) = at("dsm ALERT vectors", 0) else {
        fail(&run, "no vectors alert for the VBAR swap");
    };
    let Some(paused) = at("partition linux paused by the DSM", alert) else {
        fail(&run, "the DSM did not pause Linux after the alert");
    };
    let Some(resumed) = at(
        "partition linux resumed by the DSM (operator command)",
        paused,
    ) else {
        fail(&run, "the operator's resume command did not resume Linux");
    };
    let events =
        |want: fn(&xtask::event::Event) -> bool| run.events.iter().filter(|e| want(e)).count();
    if events(|e| matches!(e, xtask::event::Event::PartitionPaused { name } if name == "linux"))
        != 1
        || events(
            |e| matches!(e, xtask::event::Event::PartitionResumed { name } if name == "linux"),
        ) != 1
    {
        fail(
            &run,
            "expected one partition-paused and one partition-resumed event",
        );
    }
    // Linux was silent while paused, printed again after the resume, and powered off.
    if run.lines[paused..resumed]
        .iter()
        .any(|l| l.starts_with("[linux]"))
    {
        fail(&run, "Linux printed while paused");
    }
    if !run.lines[resumed..]
        .iter()
        .any(|l| l.starts_with("[linux]"))
    {
        fail(&run, "Linux printed nothing after the resume");
    }
    if run.linux_stop_code() != Some(0) {
        fail(&run, "Linux did not power off by itself after the resume");
    }
    // The RTOS kept its rounds during the pause and after it.
    for (from, to, when) in [
        (paused, resumed, "during"),
        (resumed, run.lines.len(), "after"),
    ] {
        if !run.lines[from..to]
            .iter()
            .any(|l| l.starts_with("[rtos] latency "))
        {
            fail(&run, &format!("no RTOS latency line {when} the pause"));
        }
    }
}

/// Operator pauses and resumes in one boot: the stress test for the DSM's hold-and-resume
/// handshake (every Linux core held in EL2, then all of them let go).
const PAUSE_CYCLES: u32 = 100;
/// A boot and 100 cycles of about 0.6 s each, on a shared host.
const CYCLES_LIMIT: Duration = Duration::from_secs(420);

#[track_caller]
fn pause_and_resume_cycles(icount: bool) {
    let run = boot_with(attack::SCENARIO, |o| {
        // Linux waits on its console for the line typed after the last cycle.
        o.cmd = Some("read line; echo \"linux read: $line\"".to_string());
        o.timeout = Some(CYCLES_LIMIT);
        o.icount = icount;
        o.pause_cycles = PAUSE_CYCLES;
        o.resume_after_pause = Some(Duration::from_millis(200));
    });
    let count = |needle: &str| run.lines.iter().filter(|l| l.contains(needle)).count();
    let paused = count("partition linux paused (operator command)");
    let resumed = count("partition linux resumed by the DSM (operator command)");
    if (paused, resumed) != (PAUSE_CYCLES as usize, PAUSE_CYCLES as usize) {
        fail(
            &run,
            &format!(
                "{paused} pauses and {resumed} resumes of Linux, expected {PAUSE_CYCLES} of each"
            ),
        );
    }
    // Linux runs after the last resume: it reads the console and powers off by itself.
    expect_line(
        &run,
        "[linux]",
        &["linux read: ", xtask::run::PAUSE_CYCLES_DONE],
    );
    if run.linux_stop_code() != Some(0) {
        fail(
            &run,
            "Linux did not power off by itself after the last resume",
        );
    }
    // Only the operator paused it: nothing the DSM found.
    if count("dsm ALERT") > 0 {
        fail(&run, "a DSM alert during the pause-and-resume cycles");
    }
    let rounds = count("[rtos] latency ");
    if rounds < 10 {
        fail(
            &run,
            &format!("only {rounds} RTOS rounds during the cycles"),
        );
    }
}

#[test]
fn linux_pauses_and_resumes_100_times_in_one_boot() {
    pause_and_resume_cycles(false);
}

#[test]
fn linux_pauses_and_resumes_100_times_in_one_boot_under_icount() {
    pause_and_resume_cycles(true);
}
