//! The guest's test modules (`guests/linux/attacks/`) on `linux-native`: the benign workload
//! completes, and every attack loads and has the effect it claims. One boot runs everything;
//! each test reads its part of the output.

use spumone_tests::{boot_with, expect_clean_poweroff, expect_line, fail};
use std::sync::OnceLock;
use std::time::Duration;
use xtask::run::RunOutcome;

/// About 45 s of guest time under TCG (the VBAR swap alone holds a CPU for 2 s).
const LIMIT: Duration = Duration::from_secs(240);

/// The attacks, as `attack.sh --list` names them, in the order they run.
const ATTACKS: [&str; 7] = [
    "hook_syscall",
    "text_patch",
    "vbar_swap",
    "hide_task",
    "hide_module",
    "cred_overwrite",
    "exec_data",
];

/// Benign workload first: ftrace must not meet the text patch. Each script reports its status.
fn suite_command() -> String {
    let mut cmd = String::from(
        "D=/lib/spumone; sh $D/benign.sh; echo \"suite: benign status $?\"; \
         echo \"suite: attacks $(sh $D/attack.sh --list)\"",
    );
    for a in ATTACKS {
        cmd.push_str(&format!(
            "; sh $D/attack.sh {a}; echo \"suite: {a} status $?\""
        ));
        if a == "hook_syscall" {
            // Unhooked again, then the same hook written through a vmap alias.
            cmd.push_str(
                "; rmmod hook_syscall; HOOK_WRITE=vmap sh $D/attack.sh hook_syscall; \
                 echo \"suite: hook_vmap status $?\"",
            );
        }
    }
    cmd
}

fn suite() -> &'static RunOutcome {
    static RUN: OnceLock<RunOutcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = boot_with("linux-native", |o| {
            o.cmd = Some(suite_command());
            o.timeout = Some(LIMIT);
        });
        expect_clean_poweroff(&run, LIMIT);
        run
    })
}

/// Fails unless `suite: <what> status 0` was printed.
#[track_caller]
fn expect_status_zero(run: &RunOutcome, what: &str) {
    let prefix = format!("suite: {what} status ");
    let Some(line) = run
        .command_output()
        .into_iter()
        .find(|l| l.starts_with(&prefix))
    else {
        fail(
            run,
            &format!("no `{prefix}` line: the suite did not get that far"),
        );
    };
    if line != format!("{prefix}0") {
        fail(run, &format!("{what} failed: {line}"));
    }
}

#[test]
fn benign_workload_completes() {
    let run = suite();
    for step in [
        "benign: module load and unload",
        "benign: ftrace function tracer on and off ok",
        "kprobe on do_sys_openat2",
        "bpf_filter: program loaded",
        "benign: bpf socket filter ok",
        "benign: done",
    ] {
        expect_line(run, "[linux]", &[step]);
    }
    expect_status_zero(run, "benign");
}

#[test]
fn attack_list_matches_the_tests() {
    let run = suite();
    expect_line(
        run,
        "[linux]",
        &[&format!("suite: attacks {}", ATTACKS.join(" "))],
    );
}

/// Fails unless the attack's script ran to its success line (which it prints only after
/// checking the effect from user space) and exited 0.
#[track_caller]
fn expect_attack(name: &str, evidence: &[&str]) {
    let run = suite();
    expect_status_zero(run, name);
    let mut needles = vec![format!("attack: {name}: ")];
    needles.extend(evidence.iter().map(|e| e.to_string()));
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    expect_line(run, "[linux]", &needles);
}

#[test]
fn syscall_hook_swallows_the_magic_signal() {
    expect_attack(
        "hook_syscall",
        &[
            "swallowed by the hooked table",
            "intercepted=1",
            "fixmap write",
        ],
    );
    // After rmmod restored the entry, a fresh hook through the vmap alias works too.
    let run = suite();
    expect_status_zero(run, "hook_vmap");
    expect_line(run, "[linux]", &["attack: hook_syscall: ", "vmap write"]);
}

#[test]
fn text_patch_changes_getppid() {
    expect_attack("text_patch", &["getppid() patched", "-> 4242"]);
}

#[test]
fn vbar_swap_installs_a_foreign_table() {
    expect_attack("vbar_swap", &["VBAR_EL1", "then restored"]);
}

#[test]
fn hidden_task_leaves_ps_and_proc() {
    expect_attack("hide_task", &["hidden: not in ps, no /proc/"]);
}

#[test]
fn hidden_module_leaves_proc_modules_but_not_sysfs() {
    expect_attack(
        "hide_module",
        &["gone from /proc/modules", "/sys/module/hide_module"],
    );
}

#[test]
fn code_written_into_kernel_bss_runs() {
    expect_attack("exec_data", &["ran code from kernel bss (returned 0x5a)"]);
}

#[test]
fn cred_overwrite_makes_a_user_root() {
    expect_attack("cred_overwrite", &["from uid 1000 to uid 0"]);
    let run = suite();
    expect_line(run, "[linux]", &["before: 1000 1000"]);
    expect_line(run, "[linux]", &["after: 0 0"]);
}
