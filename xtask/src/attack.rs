//! `cargo xtask attack <name>|benign|--list`: boots `demo`, runs one attack of the suite in
//! Linux (`/lib/spumone/attack.sh`, see `guests/linux/attacks/README.md`) or the benign
//! workload, and judges what the D-System Monitor did.

use anyhow::{bail, Result};

use crate::event::Event;

/// One attack of the suite and the checker expected to catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attack {
    pub name: &'static str,
    /// `None`: no checker catches it yet.
    pub checker: Option<&'static str>,
    pub what: &'static str,
}

pub const ATTACKS: &[Attack] = &[
    Attack {
        name: "hook_syscall",
        checker: Some("syscall-table"),
        what: "replaces kill in sys_call_table",
    },
    Attack {
        name: "text_patch",
        checker: Some("text-hash"),
        what: "rewrites the entry of __arm64_sys_getppid",
    },
    Attack {
        name: "vbar_swap",
        checker: Some("vectors"),
        what: "points one CPU's VBAR_EL1 at the module's vectors for 2 s",
    },
    Attack {
        name: "hide_task",
        // Asleep and unlinked from its pid too: found on its parent's children list.
        checker: Some("hidden-tasks"),
        what: "unlinks a task from the task list and its pid (DKOM)",
    },
    Attack {
        name: "hide_module",
        checker: Some("module-list"),
        what: "removes a module from the module list",
    },
    Attack {
        name: "cred_overwrite",
        checker: Some("creds"),
        what: "sets a task's uid/gid to 0 in place",
    },
    Attack {
        name: "exec_data",
        checker: Some("data-exec"),
        what: "runs code written into the kernel's bss",
    },
];

/// The scenario attacks run in: the RTOS beside Linux with the DSM on.
pub const SCENARIO: &str = "demo";

/// Seconds Linux stays up after the attack, so a periodic check sees it before Linux
/// powers off by itself.
pub const LINGER_SECS: u32 = 20;
/// How long Linux stays up after the benign workload: long enough for a full text-hash pass
/// under the DSM's share cap (in `demo`, 2% of its core: about 35 s of host time under TCG).
pub const BENIGN_LINGER_SECS: u32 = 60;

pub fn find(name: &str) -> Option<&'static Attack> {
    ATTACKS.iter().find(|a| a.name == name)
}

/// `--list`: every attack and what is expected of it.
pub fn listing() -> String {
    let mut out =
        String::from("attacks (cargo xtask attack <name>; `benign` runs the benign workload):\n");
    for a in ATTACKS {
        let expect = match a.checker {
            Some(c) => format!("detected by {c}"),
            None => "not detected yet".to_string(),
        };
        out.push_str(&format!("  {:<15} {:<26} {}\n", a.name, expect, a.what));
    }
    out
}

/// The shell command the guest runs for `name` (an attack or `benign`).
pub fn command(name: &str) -> Result<String> {
    if name == "benign" {
        // Linux stays up a little after the workload, so every checker completes a pass over
        // what it left behind.
        return Ok(format!(
            "/lib/spumone/benign.sh && sleep {BENIGN_LINGER_SECS}"
        ));
    }
    let Some(attack) = find(name) else {
        bail!("unknown attack `{name}` (see `cargo xtask attack --list`)");
    };
    if attack.checker.is_none() {
        bail!("attack {name}: not detected yet (no DSM checker covers it)");
    }
    Ok(format!(
        "/lib/spumone/attack.sh {name}; echo attack-status=$?; sleep {LINGER_SECS}"
    ))
}

/// What a run showed.
pub struct Observed<'a> {
    pub lines: &'a [String],
    pub events: &'a [Event],
}

impl Observed<'_> {
    fn position(&self, from: usize, prefix: &str, needle: &str) -> Option<usize> {
        self.lines
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, l)| l.starts_with(prefix) && l.contains(needle))
            .map(|(i, _)| i)
    }

    fn alerts(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::DsmAlert { checker, .. } => Some(checker.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Whether the run of attack `name` (or `benign`) went as it must; the error says why not.
pub fn judge(name: &str, seen: &Observed) -> Result<String, String> {
    let Some(baseline) = seen.position(0, "[hv]", "dsm baseline ") else {
        return Err("the DSM took no baseline".into());
    };
    if name == "benign" {
        if let Some(at) = seen.position(0, "[hv]", "dsm ALERT") {
            return Err(format!("false positive: {}", seen.lines[at]));
        }
        if !seen.alerts().is_empty() {
            return Err(format!(
                "false positive: dsm-alert events {:?}",
                seen.alerts()
            ));
        }
        if seen.position(0, "[linux]", "benign: done").is_none() {
            return Err("the benign workload did not finish".into());
        }
        return Ok("no alert during the benign workload".into());
    }
    let attack = find(name).ok_or_else(|| format!("unknown attack {name}"))?;
    let checker = attack
        .checker
        .ok_or_else(|| format!("attack {name}: not detected yet"))?;
    // The script's own evidence line may never come: the DSM can stop Linux first.
    let Some(started) = seen.position(0, "[linux]", "spumone: linux ready") else {
        return Err(format!("Linux never got to run {name}"));
    };
    let needle = format!("dsm ALERT {checker} ");
    let Some(alert) = seen.position(baseline.max(started), "[hv]", &needle) else {
        let others = seen.alerts();
        return Err(if others.is_empty() {
            format!("no `{needle}` line: the DSM did not catch {name}")
        } else {
            format!("{name} raised alerts from {others:?}, not from {checker}")
        });
    };
    if !seen.alerts().contains(&checker) {
        return Err(format!("no dsm-alert event for {checker}"));
    }
    let response = seen
        .position(alert, "[hv]", "partition linux stopped (dsm alert)")
        .or_else(|| seen.position(alert, "[hv]", "partition linux paused by the DSM"));
    let Some(response) = response else {
        return Err("Linux was neither stopped nor paused after the alert".into());
    };
    if seen.position(response, "[rtos]", "latency n=").is_none() {
        return Err("the RTOS printed no latency line after Linux was stopped".into());
    }
    Ok(format!(
        "{name}: caught by {checker}; {}",
        seen.lines[response].trim_start_matches("[hv] ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(|l| l.trim().to_string()).collect()
    }

    fn alert(checker: &str) -> Event {
        Event::DsmAlert {
            checker: checker.into(),
            partition: "linux".into(),
        }
    }

    const CAUGHT: &str = "[hv] 1.0 INFO  dsm baseline syscall-table: 10 us
        [linux] spumone: linux ready: 3 CPUs
        [hv] 2.0 ERROR dsm ALERT syscall-table syscall entry changed at 0x1: expected 0x2, found 0x3
        [hv] 2.0 INFO  partition linux stopped (dsm alert), exit code 255
        [rtos] latency n=1000 min=1";

    #[test]
    fn a_caught_attack_passes() {
        let l = lines(CAUGHT);
        let ev = [alert("syscall-table")];
        let seen = Observed {
            lines: &l,
            events: &ev,
        };
        assert!(judge("hook_syscall", &seen).is_ok());
        // The same run does not pass for an attack another checker should catch.
        assert!(judge("text_patch", &seen).is_err());
        assert!(judge("hide_task", &seen).is_err());
    }

    #[test]
    fn each_missing_piece_fails() {
        let ev = [alert("syscall-table")];
        for (drop, why) in [
            ("dsm ALERT", "no alert"),
            ("stopped (dsm alert)", "not stopped"),
            ("[rtos]", "RTOS silent"),
            ("dsm baseline", "no baseline"),
            ("linux ready", "the command never ran"),
        ] {
            let l: Vec<String> = lines(CAUGHT)
                .into_iter()
                .filter(|l| !l.contains(drop))
                .collect();
            let seen = Observed {
                lines: &l,
                events: &ev,
            };
            assert!(judge("hook_syscall", &seen).is_err(), "{why}");
        }
        let l = lines(CAUGHT);
        let seen = Observed {
            lines: &l,
            events: &[],
        };
        assert!(judge("hook_syscall", &seen).is_err(), "no event");
    }

    #[test]
    fn benign_fails_on_any_alert() {
        let clean = lines(
            "[hv] dsm baseline text-hash: 1 us
             [linux] benign: done",
        );
        let seen = Observed {
            lines: &clean,
            events: &[],
        };
        assert!(judge("benign", &seen).is_ok());
        let ev = [alert("text-hash")];
        let seen = Observed {
            lines: &clean,
            events: &ev,
        };
        assert!(judge("benign", &seen).is_err());
        let mut noisy = clean.clone();
        noisy.push("[hv] ERROR dsm ALERT text-hash text changed".into());
        let seen = Observed {
            lines: &noisy,
            events: &[],
        };
        assert!(judge("benign", &seen).is_err());
    }

    #[test]
    fn commands_and_listing() {
        assert!(command("hook_syscall")
            .unwrap()
            .starts_with("/lib/spumone/attack.sh hook_syscall;"));
        assert!(command("benign")
            .unwrap()
            .starts_with("/lib/spumone/benign.sh"));
        assert!(command("nope").is_err());
        let list = listing();
        for a in ATTACKS {
            assert!(list.contains(a.name));
            // Only attacks a checker covers get a command; the listing says which.
            match a.checker {
                Some(c) => {
                    assert!(command(a.name).is_ok(), "{}", a.name);
                    assert!(list.contains(&format!("detected by {c}")));
                }
                None => assert!(command(a.name).is_err(), "{}", a.name),
            }
        }
        let undetected = ATTACKS.iter().filter(|a| a.checker.is_none()).count();
        assert_eq!(list.matches("not detected yet").count(), undetected);
    }
}
