//! The adversarial Linux loads of the RTOS latency rows: `storm.ko`
//! (`guests/linux/probes/storm.c`), run by `/lib/spumone/storm.sh` on one Linux CPU for a
//! number of seconds. Each mode makes that CPU exit to spumone as often as it can (or, for
//! `irqoff`, holds it with interrupts masked); the script prints `storm: MODE: N iterations`
//! and exits 0, or `storm: MODE: FAILED (why)` and exits 1 (0 iterations is a failure).

use crate::modules::GUEST_DIR;

/// The modes, in the order `storm.sh --list` prints them.
pub const MODES: [&str; 6] = ["wfi", "wfe", "sgi", "mmio", "sysreg", "irqoff"];

/// The guest's prefix of Linux's console lines.
const LINUX_CONSOLE: &str = "[linux] ";

/// Whether `mode` is one of [`MODES`].
pub fn is_mode(mode: &str) -> bool {
    MODES.contains(&mode)
}

/// The shell command that storms `mode` for `seconds` on Linux CPU `cpu` (`None`: the CPU
/// the script happens to load the module on). Panics on a mode not in [`MODES`].
pub fn storm_command(mode: &str, seconds: u32, cpu: Option<u32>) -> String {
    assert!(is_mode(mode), "no storm mode {mode} (modes: {MODES:?})");
    let script = format!("/{GUEST_DIR}/storm.sh {mode} {seconds}");
    match cpu {
        Some(cpu) => format!("{script} {cpu}"),
        None => script,
    }
}

/// What the storm of `mode` reported among a run's prefixed `lines`: its iteration count,
/// or why it failed (its `FAILED` line, a count of 0, or no line at all).
pub fn storm_result(lines: &[String], mode: &str) -> Result<u64, String> {
    let head = format!("storm: {mode}: ");
    let report = lines
        .iter()
        .filter_map(|l| l.strip_prefix(LINUX_CONSOLE)?.strip_prefix(&head))
        .find(|rest| rest.ends_with(" iterations") || rest.starts_with("FAILED"));
    let Some(rest) = report else {
        return Err(format!("no `{head}...` line"));
    };
    if rest.starts_with("FAILED") {
        return Err(format!("{head}{rest}"));
    }
    match rest.trim_end_matches(" iterations").parse::<u64>() {
        Ok(0) => Err(format!("{head}{rest}: the storm never ran")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("unreadable line `{head}{rest}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::workspace_root;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn the_command_names_the_script_mode_seconds_and_cpu() {
        assert_eq!(
            storm_command("sgi", 10, Some(1)),
            "/lib/spumone/storm.sh sgi 10 1"
        );
        assert_eq!(
            storm_command("irqoff", 2, None),
            "/lib/spumone/storm.sh irqoff 2"
        );
        for mode in MODES {
            assert!(storm_command(mode, 1, Some(2)).contains(&format!(" {mode} 1 2")));
        }
    }

    #[test]
    #[should_panic(expected = "no storm mode spin")]
    fn an_unknown_mode_is_refused() {
        storm_command("spin", 1, None);
    }

    #[test]
    fn the_module_and_the_script_know_the_same_modes() {
        let dir = workspace_root().join("guests/linux/probes");
        let module = std::fs::read_to_string(dir.join("storm.c")).unwrap();
        let names = module
            .lines()
            .find(|l| l.contains("mode_names[] = {"))
            .expect("storm.c's mode_names");
        let quoted: Vec<String> = MODES.iter().map(|m| format!("\"{m}\"")).collect();
        assert_eq!(
            names.split('{').nth(1).map(str::trim),
            Some(format!("{} }};", quoted.join(", ")).as_str())
        );
        let script = std::fs::read_to_string(dir.join("storm.sh")).unwrap();
        assert!(
            script
                .lines()
                .any(|l| l == format!("MODES=\"{}\"", MODES.join(" "))),
            "storm.sh's MODES"
        );
    }

    #[test]
    fn reads_the_iteration_count_of_its_own_mode() {
        let run = lines(&[
            "[linux] storm: sgi on cpu 1 for 2 s: start",
            "[rtos] latency n=1000 min=1 mean=1 p50=1 p99=1 max=1 misses=0",
            "[linux] storm: sgi on cpu 1: end: 637992 iterations in 2000 ms",
            "[linux] storm: sgi: 637992 iterations",
            "[linux] storm: mmio: 834778 iterations",
        ]);
        assert_eq!(storm_result(&run, "sgi"), Ok(637_992));
        assert_eq!(storm_result(&run, "mmio"), Ok(834_778));
        let missing = storm_result(&run, "wfi").unwrap_err();
        assert!(missing.contains("no `storm: wfi: ...` line"), "{missing}");
    }

    #[test]
    fn a_failed_or_idle_storm_is_an_error() {
        let run = lines(&[
            "[linux] storm: wfe: FAILED (0 iterations)",
            "[linux] storm: wfi: 0 iterations",
            "[linux] storm: sgi: many iterations",
            "[hv] storm: mmio: 5 iterations",
        ]);
        assert_eq!(
            storm_result(&run, "wfe"),
            Err("storm: wfe: FAILED (0 iterations)".into())
        );
        assert!(storm_result(&run, "wfi").unwrap_err().contains("never ran"));
        assert!(storm_result(&run, "sgi")
            .unwrap_err()
            .contains("unreadable"));
        // Only Linux's console counts.
        assert!(storm_result(&run, "mmio").is_err());
    }
}
