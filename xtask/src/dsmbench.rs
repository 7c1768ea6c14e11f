//! `cargo xtask bench dsm`: what the D-System Monitor costs, from the log of one `demo` run
//! per clock (`-icount`, then wall) that runs the benign workload (Linux's own text patches
//! go through the event path; every checker completes passes) and then the `text_patch`
//! attack (caught on the event path, which stops Linux).
//!
//! Each figure stands beside a baseline from the same run:
//! - a checker's full pass: its share of the DSM's core, pass time / period (the time it is
//!   spread over when longer), and the text hash beside SPE Observer's 24.1 ms;
//! - the event path (fault to alert, fault to a legitimate patch performed): beside the
//!   RTOS's dispatch latency p50 from the same run, which is one forwarded timer interrupt
//!   through EL2 and back, the cheapest trapped round trip spumone has;
//! - with `--kbuild`: the kernel build with the DSM on, beside the same build with it off
//!   from the same `bench kbuild --quick --clock icount` run (the checking's own cost, the
//!   DSM target's figure), and both beside native.

use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;

use crate::bench::{self, bench_images_dir, clock, rtos_rounds, write_report};
use crate::firmware::{self, BuildOptions};
use crate::kbuild;
use crate::run::{self, RunOptions};
use crate::{attack, paths, scenario, setup, signals};

/// SPE Observer's figure for hashing kernel text and rodata (the target), in ns.
pub const TEXT_HASH_TARGET_NS: u64 = 24_100_000;
/// The event path's target (detection latency), in ns.
pub const EVENT_TARGET_NS: u64 = 10_000;

/// `dsm pass <checker> #<n>: <ns> ns in <calls> calls[ over <ms> ms]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub checker: String,
    pub number: u32,
    pub ns: u64,
    pub calls: u32,
    /// From the pass's first call to its last (older logs do not say).
    pub elapsed_ms: Option<u64>,
}

/// Parses one `[hv]` line; `None` if it is not a pass line.
pub fn parse_pass(line: &str) -> Option<Pass> {
    let rest = &line[line.find("dsm pass ")? + "dsm pass ".len()..];
    let (checker, rest) = rest.split_once(" #")?;
    let (number, rest) = rest.split_once(": ")?;
    let (ns, rest) = rest.split_once(" ns in ")?;
    let (calls, rest) = rest.split_once(" calls")?;
    let elapsed_ms = match rest.trim().strip_prefix("over ") {
        Some(ms) => Some(ms.strip_suffix(" ms")?.parse().ok()?),
        None if rest.trim().is_empty() => None,
        None => return None,
    };
    Some(Pass {
        checker: checker.to_string(),
        number: number.parse().ok()?,
        ns: ns.parse().ok()?,
        calls: calls.parse().ok()?,
        elapsed_ms,
    })
}

/// The `event_ns=N` of a line.
pub fn parse_event_ns(line: &str) -> Option<u64> {
    let rest = &line[line.find("event_ns=")? + "event_ns=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `dsm: checking partition .. every <P> ms, .. share <S>/1000 of the core`: (P, S).
pub fn parse_settings(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find("dsm: checking partition ")?..];
    let period = rest
        .split_once(" every ")?
        .1
        .split_once(" ms")?
        .0
        .parse()
        .ok()?;
    let share = rest
        .split_once(" share ")?
        .1
        .split_once("/1000")?
        .0
        .parse()
        .ok()?;
    Some((period, share))
}

/// `dsm: checker <name> every <P> ms (its own period)`: (name, P).
pub fn parse_own_period(line: &str) -> Option<(String, u64)> {
    let rest = &line[line.find("dsm: checker ")? + "dsm: checker ".len()..];
    let (name, rest) = rest.split_once(" every ")?;
    let (ms, rest) = rest.split_once(" ms")?;
    if !rest.starts_with(" (its own period)") {
        return None;
    }
    Some((name.to_string(), ms.parse().ok()?))
}

/// What one run's log says.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub period_ms: u64,
    pub share_permille: u64,
    /// Checkers with a shorter period of their own.
    pub own_periods: Vec<(String, u64)>,
    /// The first completed pass of each checker, in log order.
    pub passes: Vec<Pass>,
    /// `event_ns` of the first alert on the event path (the attack).
    pub attack_ns: Option<u64>,
    /// `event_ns` of the first legitimate write judged and performed.
    pub legit_ns: Option<u64>,
    /// The RTOS's dispatch p50 (median of its rounds' p50).
    pub rtos_p50_ns: Option<u64>,
}

/// Reads a run's output lines.
pub fn measure(lines: &[String]) -> Result<Measured, String> {
    let hv: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("[hv] "))
        .collect();
    let (period_ms, share_permille) = hv
        .iter()
        .find_map(|l| parse_settings(l))
        .ok_or("no `dsm: checking partition` line: was the DSM on?")?;
    let own_periods = hv.iter().filter_map(|l| parse_own_period(l)).collect();
    let mut passes: Vec<Pass> = Vec::new();
    for pass in hv.iter().filter_map(|l| parse_pass(l)) {
        if !passes.iter().any(|p| p.checker == pass.checker) {
            passes.push(pass);
        }
    }
    let attack_ns = hv
        .iter()
        .filter(|l| l.contains("dsm ALERT "))
        .find_map(|l| parse_event_ns(l));
    let legit_ns = hv
        .iter()
        .filter(|l| l.contains("dsm: watched write #") && l.contains("judged and performed"))
        .find_map(|l| parse_event_ns(l));
    let mut p50s: Vec<u64> = rtos_rounds(lines)?.iter().map(|r| r.p50_ns).collect();
    p50s.sort_unstable();
    Ok(Measured {
        period_ms,
        share_permille,
        own_periods,
        passes,
        attack_ns,
        legit_ns,
        rtos_p50_ns: p50s.get(p50s.len() / 2).copied(),
    })
}

impl Measured {
    /// A pass's share of the DSM's core: its time over the period, or over the time it was
    /// spread across when longer (the share cap stretches passes).
    pub fn core_share(&self, pass: &Pass) -> f64 {
        let window_ms = pass
            .elapsed_ms
            .unwrap_or(0)
            .max(self.period_of(&pass.checker))
            .max(1);
        pass.ns as f64 / (window_ms as f64 * 1e6)
    }

    /// The period `checker` runs at.
    pub fn period_of(&self, checker: &str) -> u64 {
        self.own_periods
            .iter()
            .find(|(name, _)| name == checker)
            .map_or(self.period_ms, |&(_, ms)| ms)
    }

    /// The checkers' shares added up: the DSM's share of its core.
    pub fn total_share(&self) -> f64 {
        self.passes.iter().map(|p| self.core_share(p)).sum()
    }

    pub fn to_json(&self, icount: bool) -> Value {
        let ratio = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) if b > 0 => json!(a as f64 / b as f64),
            _ => Value::Null,
        };
        let passes: Vec<Value> = self
            .passes
            .iter()
            .map(|p| {
                json!({
                    "checker": p.checker,
                    "pass_ns": p.ns,
                    "calls": p.calls,
                    "elapsed_ms": p.elapsed_ms,
                    "period_ms": self.period_of(&p.checker),
                    "core_share": self.core_share(p),
                    "vs_target": if p.checker == "text-hash" {
                        json!(p.ns as f64 / TEXT_HASH_TARGET_NS as f64)
                    } else {
                        Value::Null
                    },
                })
            })
            .collect();
        json!({
            "bench": "dsm",
            "clock": if icount { "icount" } else { "wall" },
            "period_ms": self.period_ms,
            "share_permille": self.share_permille,
            "passes": passes,
            "total_core_share": self.total_share(),
            "event_attack_ns": self.attack_ns,
            "event_legit_ns": self.legit_ns,
            "rtos_dispatch_p50_ns": self.rtos_p50_ns,
            "event_attack_vs_dispatch": ratio(self.attack_ns, self.rtos_p50_ns),
            "event_legit_vs_dispatch": ratio(self.legit_ns, self.rtos_p50_ns),
        })
    }
}

fn ns(value: Option<u64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| v.to_string())
}

fn times(a: Option<u64>, b: Option<u64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0 => format!("{:.2}×", a as f64 / b as f64),
        _ => "–".into(),
    }
}

/// The Markdown report of the runs (clock, measured) and the kernel-build overheads.
pub fn render_markdown(
    runs: &[(bool, Measured)],
    kbuild: &[kbuild::Overhead],
    costs: &[kbuild::DsmCost],
) -> String {
    let mut md = String::from("# bench dsm\n\n");
    for (icount, m) in runs {
        let _ = writeln!(
            md,
            "## {} (period {} ms, share cap {}/1000)\n",
            clock(*icount),
            m.period_ms,
            m.share_permille
        );
        md.push_str(
            "| checker | full pass ns | calls | spread over ms | period ms | share of its core |\n",
        );
        md.push_str("|---|--:|--:|--:|--:|--:|\n");
        for p in &m.passes {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.4}% |",
                p.checker,
                p.ns,
                p.calls,
                p.elapsed_ms.map_or("–".into(), |v| v.to_string()),
                m.period_of(&p.checker),
                100.0 * m.core_share(p)
            );
        }
        let _ = writeln!(
            md,
            "\nAll checkers at their periods: {:.4}% of the DSM's core (the cap holds what they \
             really take to {:.1}%).",
            100.0 * m.total_share(),
            m.share_permille as f64 / 10.0
        );
        if let Some(text) = m.passes.iter().find(|p| p.checker == "text-hash") {
            let _ = writeln!(
                md,
                "\ntext-hash full pass: {} ns, {} SPE Observer's 24.1 ms.",
                text.ns,
                times(Some(text.ns), Some(TEXT_HASH_TARGET_NS))
            );
        }
        let _ = writeln!(
            md,
            "\n| event path | ns | RTOS dispatch p50 ns (same run) | ratio |\n|---|--:|--:|--:|"
        );
        for (what, value) in [
            ("text_patch caught (fault to alert)", m.attack_ns),
            ("legitimate patch judged and performed", m.legit_ns),
        ] {
            let _ = writeln!(
                md,
                "| {what} | {} | {} | {} |",
                ns(value),
                ns(m.rtos_p50_ns),
                times(value, m.rtos_p50_ns)
            );
        }
        md.push('\n');
    }
    md.push_str("## kernel build\n\n");
    if kbuild.is_empty() {
        md.push_str("not measured in this run (`cargo xtask bench dsm --kbuild`).\n");
    } else {
        md.push_str(
            "| scenario | DSM | clock | guest-time ratio | wall ratio |\n|---|---|---|--:|--:|\n",
        );
        for o in kbuild {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.4}× | {:.4}× |",
                o.scenario,
                if o.dsm { "on" } else { "off" },
                clock(o.icount),
                o.guest_ratio,
                o.wall_ratio
            );
        }
        md.push_str(
            "\nThe periodic checking's own cost: the build with the DSM on against the same \
             build with it off, both from this run.\n\n",
        );
        md.push_str(&kbuild::render_dsm_costs(costs));
    }
    md
}

/// `cargo xtask bench dsm [--kbuild] [--timeout SECS]`.
pub fn bench(timeout: Option<Duration>, with_kbuild: bool) -> Result<()> {
    setup::ensure_base(true)?;
    let s = scenario::lookup(bench::DEMO)?;
    let firmware = firmware::build_into(s, &BuildOptions::default(), &bench_images_dir("dsm"))?;
    signals::ignore_interrupts();
    // The benign workload, then the attack (which ends the run: policy stop).
    let cmd = format!(
        "{}; {}",
        attack::command("benign")?,
        attack::command("text_patch")?
    );
    let mut runs = Vec::new();
    let mut rows = Vec::new();
    for icount in [true, false] {
        println!("bench: dsm ({}) ...", clock(icount));
        let options = RunOptions {
            timeout,
            icount,
            echo: false,
            cmd: Some(cmd.clone()),
            ..RunOptions::new(s)
        };
        let outcome = run::launch(&firmware, &options)?;
        let log = paths::display(&outcome.log_dir.join("all.log"));
        if outcome.linux_stop_code() != Some(255) {
            bail!(
                "bench dsm ({}): Linux was not stopped by the DSM's alert (see {log})",
                clock(icount)
            );
        }
        let m = measure(&outcome.lines)
            .map_err(|e| anyhow::anyhow!("bench dsm ({}): {e} (see {log})", clock(icount)))?;
        rows.push(m.to_json(icount));
        runs.push((icount, m));
    }
    let mut overheads = Vec::new();
    let mut costs = Vec::new();
    if with_kbuild {
        let plan = kbuild::Plan {
            variant: kbuild::Variant::Quick,
            clocks: &[true],
            dsm: &[false, true],
            policies: &[],
        };
        // This run's rows only: the cost needs both builds from one run.
        let kb = kbuild::bench(plan, Some(kbuild::Variant::Quick.default_timeout()))?;
        overheads = kbuild::overheads(&kb)
            .into_iter()
            .filter(|o| o.scenario == bench::DEMO && o.variant == "quick" && o.icount)
            .collect();
        for o in &overheads {
            rows.push(json!({
                "bench": "dsm",
                "kbuild": o.scenario,
                "dsm": o.dsm,
                "clock": clock(o.icount),
                "guest_ratio_to_native": o.guest_ratio,
                "wall_ratio_to_native": o.wall_ratio,
            }));
        }
        costs = kbuild::dsm_costs(&kb);
        for c in &costs {
            rows.push(json!({
                "bench": "dsm",
                "kbuild": "dsm-cost",
                "variant": c.variant,
                "clock": clock(c.icount),
                "guest_seconds_dsm_off": c.off_seconds,
                "guest_seconds_dsm_on": c.on_seconds,
                "guest_ratio_on_to_off": c.guest_ratio,
                "target": kbuild::DSM_COST_TARGET,
                "verdict": kbuild::dsm_cost_verdict(c),
            }));
        }
    }
    write_report("dsm", rows, &render_markdown(&runs, &overheads, &costs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass_lines_old_and_new() {
        let new =
            "[hv] 17.995086 INFO  dsm pass text-hash #1: 348143520 ns in 355 calls over 16580 ms";
        assert_eq!(
            parse_pass(new),
            Some(Pass {
                checker: "text-hash".into(),
                number: 1,
                ns: 348_143_520,
                calls: 355,
                elapsed_ms: Some(16_580),
            })
        );
        let old = "1.4 INFO  dsm pass syscall-table #101: 28992 ns in 1 calls";
        assert_eq!(
            parse_pass(old).map(|p| (p.number, p.elapsed_ms)),
            Some((101, None))
        );
        for bad in [
            "dsm pass text-hash #x: 1 ns in 1 calls",
            "dsm pass text-hash #1: 1 ns in 1 calls over soon",
            "dsm baseline text-hash: 339007 us",
        ] {
            assert_eq!(parse_pass(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_event_ns_and_settings() {
        assert_eq!(
            parse_event_ns("ERROR dsm ALERT text-hash illegitimate write (event_ns=1104)"),
            Some(1104)
        );
        assert_eq!(parse_event_ns("event_ns=)"), None);
        assert_eq!(
            parse_settings(
                "0.004 INFO  dsm: checking partition linux from core 1 every 10000 ms, policy stop, 6 checkers, share 20/1000 of the core"
            ),
            Some((10_000, 20))
        );
        assert_eq!(
            parse_settings("dsm: checking partition linux every ms"),
            None
        );
        assert_eq!(
            parse_own_period("INFO  dsm: checker vectors every 200 ms (its own period)"),
            Some(("vectors".into(), 200))
        );
        assert_eq!(parse_own_period("dsm: checker vectors every 200 ms"), None);
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn measures_a_run_against_its_own_baselines() {
        let log = lines(
            "[hv] 0.1 INFO  dsm: checking partition linux from core 1 every 10000 ms, policy stop, 6 checkers, share 20/1000 of the core
[rtos] latency n=1000 min=1344 mean=1344 p50=1344 p99=1344 max=1344 misses=0
[hv] 0.1 INFO  dsm: checker vectors every 200 ms (its own period)
[hv] 1.4 INFO  dsm pass vectors #1: 896 ns in 1 calls over 0 ms
[hv] 2.0 INFO  dsm: watched write #1 at 0x48a1b000 judged and performed (event_ns=1000)
[rtos] latency n=1000 min=1344 mean=2000 p50=2688 p99=9000 max=9000 misses=0
[rtos] latency n=1000 min=1344 mean=1344 p50=1344 p99=1344 max=1344 misses=0
[hv] 18.0 INFO  dsm pass text-hash #1: 348143520 ns in 355 calls over 16580 ms
[hv] 28.0 INFO  dsm pass vectors #101: 1 ns in 1 calls over 0 ms
[hv] 30.0 ERROR dsm ALERT text-hash illegitimate write to kernel text at 0x1: expected 0x1, found 0x2 (event_ns=1104)",
        );
        let m = measure(&log).unwrap();
        assert_eq!((m.period_ms, m.share_permille), (10_000, 20));
        assert_eq!(m.passes.len(), 2, "the first pass of each checker");
        assert_eq!(m.passes[0].ns, 896);
        assert_eq!(
            (m.attack_ns, m.legit_ns, m.rtos_p50_ns),
            (Some(1104), Some(1000), Some(1344))
        );
        // 0.348 s spread over 16.58 s is below the 10 s period? No: over the longer window.
        let share = m.core_share(&m.passes[1]);
        assert!((share - 0.348_143_52 / 16.58).abs() < 1e-9, "{share}");
        assert!((m.core_share(&m.passes[0]) - 896e-9 / 0.2).abs() < 1e-15);
        assert_eq!(
            (m.period_of("vectors"), m.period_of("text-hash")),
            (200, 10_000)
        );
        let json = m.to_json(true);
        assert_eq!(json["event_attack_vs_dispatch"], json!(1104.0 / 1344.0));
        let md = render_markdown(&[(true, m)], &[], &[]);
        assert!(
            md.contains("| text-hash | 348143520 | 355 | 16580 | 10000 | 2.0998% |"),
            "{md}"
        );
        assert!(
            md.contains("| text_patch caught (fault to alert) | 1104 | 1344 | 0.82× |"),
            "{md}"
        );
        assert!(
            md.contains("| vectors | 896 | 1 | 0 | 200 | 0.0004% |"),
            "{md}"
        );
        assert!(
            md.contains("All checkers at their periods: 2.1002% of the DSM's core (the cap holds what they really take to 2.0%)."),
            "{md}"
        );
        assert!(md.contains("not measured in this run"));
        // A log without the DSM is an error, not an empty report.
        assert!(measure(&lines(
            "[rtos] latency n=1 min=1 mean=1 p50=1 p99=1 max=1 misses=0"
        ))
        .is_err());
    }

    #[test]
    fn kernel_build_section_shows_the_checking_cost_beside_native() {
        let overhead = kbuild::Overhead {
            scenario: bench::DEMO.into(),
            variant: "quick".into(),
            icount: true,
            dsm: true,
            policy: None,
            guest_ratio: 1.02,
            wall_ratio: 0.9,
        };
        let cost = kbuild::DsmCost {
            variant: "quick".into(),
            icount: true,
            on_seconds: 40.86,
            off_seconds: 40.0,
            guest_ratio: 40.86 / 40.0,
        };
        let md = render_markdown(&[], &[overhead], &[cost]);
        assert!(
            md.contains("| demo | on | icount | 1.0200× | 0.9000× |"),
            "{md}"
        );
        assert!(
            md.contains("| quick | icount | 40.00 | 40.86 | 1.0215× | +2.15% | not met |"),
            "{md}"
        );
    }
}
