//! `cargo xtask probe <name>|--list|all`: the isolation probes of `guests/linux/probes/` (see
//! its README). Each boots a scenario with the probe disks attached, runs
//! `/lib/spumone/probe.sh` in Linux, and judges the combined output: the probe was contained
//! (Linux's own verdict, and for DMA spumone's fault lines and its integrity digest), spumone
//! stayed up, and the RTOS kept printing its latency rounds throughout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::qemu::PciDisk;

/// One probe of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub name: &'static str,
    /// The scenarios it runs in.
    pub scenarios: &'static [&'static str],
    /// It gets boots of its own: what it does may leave Linux unable to run the others
    /// (spumone's faults included), and they must still be judged.
    pub alone: bool,
    pub what: &'static str,
}

pub const PROBES: &[Probe] = &[
    Probe {
        name: "cpumap",
        scenarios: &["demo"],
        alone: false,
        what: "CPU loads/stores via /dev/mem, a policy-free mmap, ioremap and memremap at the \
               RTOS's RAM, spumone's RAM and boot info, the reset copy, unassigned devices \
               (virtio-mmio, SMMU, ITS, RTC, fw-cfg, GPIO) and redistributor frames past \
               Linux's: all abort; the distributor and vCPU 0's redistributor answer with \
               emulated values",
    },
    Probe {
        name: "gic",
        scenarios: &["demo", "shared"],
        alone: true,
        what: "from every Linux vCPU: wild 8/16/32/64-bit writes over the distributor and \
               every redistributor frame, PPI enable toggles in every vCPU's frame, SGI \
               storms through ICC_SGI1R/ASGI1R/SGI0R at every target and IRM",
    },
    Probe {
        name: "fuzz",
        scenarios: &["demo"],
        alone: false,
        what: "2x10^5 HVC and SMC calls with random function IDs and arguments (seed \
               printed), counting the results",
    },
    Probe {
        name: "dma-bio",
        scenarios: &["demo"],
        alone: false,
        what: "Linux's virtio-blk driver given a forged bio page: device reads and writes \
               of the RTOS's, spumone's and the reset copy's pages; needs spumone's DMA \
               fault lines and an unchanged integrity digest",
    },
    Probe {
        name: "dma-vq",
        scenarios: &["demo"],
        alone: false,
        what: "a scratch virtio-blk-pci disk unbound from Linux and driven by hand (BAR, \
               common config, one virtqueue) with descriptors at the same targets, and a \
               pattern written into the reset copy; same DMA judgement",
    },
    Probe {
        name: "psci",
        scenarios: &["demo"],
        alone: false,
        what: "CPU_ON for physical and out-of-range MPIDRs with wild entry points (also to \
               a vCPU Linux took offline), AFFINITY_INFO/MIGRATE/SUSPEND oddities, a \
               CPU_OFF storm, then SYSTEM_RESET and SYSTEM_OFF: Linux only restarts and \
               stops",
    },
];

/// `probe.sh` runs the probes of a boot in this order (psci ends Linux, so it is last).
pub const ORDER: [&str; 6] = ["cpumap", "fuzz", "dma-bio", "dma-vq", "gic", "psci"];

/// Default `--timeout` of one probe boot.
pub const TIMEOUT_SECS: u64 = 600;

/// The probe disks: one for Linux's own virtio-blk driver (`dma-bio`) and one the
/// `dma-vq` module drives by hand. `probe.sh` finds them by these PCI slots.
pub const BIO_SLOT: u8 = 4;
pub const VQ_SLOT: u8 = 5;
/// Size of each scratch image.
pub const SCRATCH_BYTES: u64 = 1 << 20;

/// The longest the RTOS may stay silent while a probe runs, against its usual gap between
/// rounds (host time; QEMU's round robin spreads a round over more host time when Linux's
/// vCPUs are busy). `gic` holds every PPI disabled for 14 s, so a leak to the RTOS's core
/// silences it for longer than this allows.
pub const GAP_FACTOR: u32 = 3;
pub const GAP_FLOOR: Duration = Duration::from_secs(8);

pub fn find(name: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.name == name)
}

/// `--list`: every probe, where it runs and what it checks.
pub fn listing() -> String {
    let mut out = String::from(
        "isolation probes (cargo xtask probe <name>|all): each passes only if it was\n\
         contained, spumone stayed up and the RTOS kept its rounds throughout\n",
    );
    for p in PROBES {
        out.push_str(&format!("  {:<8} [{}]\n", p.name, p.scenarios.join(", ")));
        let mut line = String::new();
        for word in p.what.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > 80 {
                out.push_str(&format!("           {line}\n"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push_str(&format!("           {line}\n"));
    }
    out
}

/// One boot: a scenario and the probes it runs, in [`ORDER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    pub scenario: &'static str,
    pub probes: Vec<&'static str>,
}

/// The boots that run `names` (all of them for `all`), as few as possible: one per scenario
/// for the probes that share, and one per scenario for each probe that runs alone.
pub fn plan(names: &[&str]) -> Result<Vec<Boot>> {
    let mut boots: Vec<(Boot, bool)> = Vec::new();
    for name in names {
        let Some(probe) = find(name) else {
            bail!("unknown probe `{name}` (see `cargo xtask probe --list`)");
        };
        for scenario in probe.scenarios {
            let shared = boots
                .iter_mut()
                .find(|(b, alone)| b.scenario == *scenario && !alone && !probe.alone);
            match shared {
                Some((boot, _)) if !boot.probes.contains(&probe.name) => {
                    boot.probes.push(probe.name)
                }
                Some(_) => {}
                None => boots.push((
                    Boot {
                        scenario,
                        probes: vec![probe.name],
                    },
                    probe.alone,
                )),
            }
        }
    }
    let mut boots: Vec<Boot> = boots.into_iter().map(|(b, _)| b).collect();
    for boot in &mut boots {
        boot.probes
            .sort_by_key(|p| ORDER.iter().position(|o| o == p).unwrap_or(ORDER.len()));
    }
    Ok(boots)
}

/// The names `probe <arg>` means.
pub fn names(arg: &str) -> Result<Vec<&'static str>> {
    if arg == "all" {
        return Ok(PROBES.iter().map(|p| p.name).collect());
    }
    match find(arg) {
        Some(p) => Ok(vec![p.name]),
        None => bail!("unknown probe `{arg}` (see `cargo xtask probe --list`)"),
    }
}

/// The shell command of one boot.
pub fn command(boot: &Boot, seed: u64) -> String {
    format!(
        "/lib/spumone/probe.sh -s {seed} {}; echo probe-status=$?",
        boot.probes.join(" ")
    )
}

/// The scratch images (created once, zero-filled) and where they go on the PCI bus.
pub fn scratch_disks(dir: &Path) -> Result<Vec<PciDisk>> {
    std::fs::create_dir_all(dir)?;
    let mut disks = Vec::new();
    for slot in [BIO_SLOT, VQ_SLOT] {
        let path: PathBuf = dir.join(format!("probe-scratch-{slot}.img"));
        let current = std::fs::metadata(&path).map(|m| m.len()).ok();
        if current != Some(SCRATCH_BYTES) {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", crate::paths::display(&path)))?;
            file.set_len(SCRATCH_BYTES)?;
        }
        disks.push(PciDisk { path, slot });
    }
    Ok(disks)
}

/// A seed from the clock (printed, and passed to the guest).
pub fn fresh_seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_nanos() as u64 % 1_000_000_000).max(1)
}

/// What one boot showed: its lines and when each arrived (host time).
pub struct Observed<'a> {
    pub lines: &'a [String],
    pub times: &'a [Duration],
}

/// The judgement of one probe in one boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub probe: &'static str,
    pub scenario: &'static str,
    /// `Ok(summary)` or `Err(why it failed)`.
    pub result: Result<String, String>,
    /// Reported, not judged: the RTOS's rounds in the window and their largest gap.
    pub rtos: String,
}

const RTOS_ROUND: &str = "[rtos] latency n=";

impl Observed<'_> {
    fn find(&self, from: usize, prefix: &str, needle: &str) -> Option<usize> {
        (from..self.lines.len())
            .find(|&i| self.lines[i].starts_with(prefix) && self.lines[i].contains(needle))
    }

    fn time(&self, i: usize) -> Duration {
        self.times.get(i).copied().unwrap_or_default()
    }

    fn rounds(&self, from: usize, to: usize) -> Vec<usize> {
        (from..to.min(self.lines.len()))
            .filter(|&i| self.lines[i].starts_with(RTOS_ROUND))
            .collect()
    }

    /// The usual host-time gap between the RTOS's rounds over the whole run (the median).
    fn usual_gap(&self) -> Duration {
        let rounds = self.rounds(0, self.lines.len());
        let mut gaps: Vec<Duration> = rounds
            .windows(2)
            .map(|w| self.time(w[1]).saturating_sub(self.time(w[0])))
            .collect();
        gaps.sort();
        gaps.get(gaps.len() / 2).copied().unwrap_or_default()
    }

    /// The RTOS's silence allowed in a window.
    fn allowed_gap(&self) -> Duration {
        (self.usual_gap() * GAP_FACTOR).max(GAP_FLOOR)
    }

    /// Fails unless the RTOS printed rounds from `from` to `to` without a longer silence than
    /// allowed, and a round after `to`; says how many and the largest gap.
    fn rtos_throughout(&self, from: usize, to: usize) -> Result<String, String> {
        let Some(after) = self.find(to, "[rtos]", "latency n=") else {
            return Err("the RTOS printed no round after the probe".into());
        };
        let mut marks = vec![self.time(from)];
        marks.extend(self.rounds(from, to).iter().map(|&i| self.time(i)));
        marks.push(self.time(after));
        let largest = marks
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .max()
            .unwrap_or_default();
        let allowed = self.allowed_gap();
        let summary = format!(
            "{} RTOS rounds during it, largest silence {:.1} s (allowed {:.1} s)",
            marks.len() - 2,
            largest.as_secs_f64(),
            allowed.as_secs_f64()
        );
        if largest > allowed {
            return Err(format!("the RTOS fell silent: {summary}"));
        }
        Ok(summary)
    }

    /// A spumone line that says it crashed, if any.
    fn hv_crash(&self) -> Option<&str> {
        hv_crash(self.lines)
    }
}

/// A spumone line among a run's prefixed `lines` that says it crashed (a panic, or an
/// exception EL2 did not expect), if any.
pub fn hv_crash(lines: &[String]) -> Option<&str> {
    lines
        .iter()
        .filter(|l| l.starts_with("[hv]"))
        .find(|l| {
            l.contains(": panic: ") || l.contains(": unexpected ") && l.contains(" exception from ")
        })
        .map(String::as_str)
}

/// Judges every probe of `boot` in its run's output.
pub fn judge(boot: &Boot, seen: &Observed) -> Vec<Verdict> {
    boot.probes
        .iter()
        .map(|&probe| {
            let (result, rtos) = match judge_one(probe, seen) {
                Ok((summary, rtos)) => (Ok(summary), rtos),
                Err((why, rtos)) => (Err(why), rtos),
            };
            Verdict {
                probe,
                scenario: boot.scenario,
                result,
                rtos,
            }
        })
        .collect()
}

type Judged = std::result::Result<(String, String), (String, String)>;

fn judge_one(probe: &str, seen: &Observed) -> Judged {
    let fail = |why: String| Err((why, String::new()));
    let begin_text = format!("probe: {probe}: begin");
    let Some(begin) = seen.find(0, "[linux]", &begin_text) else {
        return fail(format!("Linux never began {probe}"));
    };
    if let Some(line) = seen.hv_crash() {
        return fail(format!("spumone crashed: {line}"));
    }
    if probe == "psci" {
        return judge_psci(seen, begin);
    }
    let end_text = format!("probe: {probe}: end: ");
    let Some(end) = seen.find(begin, "[linux]", &end_text) else {
        return fail(format!("{probe} never ended in Linux"));
    };
    let rtos = seen
        .rtos_throughout(begin, end)
        .map_err(|why| (why.clone(), why.clone()))?;
    let linux_says = seen.lines[end]
        .split_once(&end_text)
        .map_or("", |(_, v)| v)
        .to_string();
    // Linux restarted in the middle (spumone's watchdog saw it hang itself): judged as
    // contained only for `gic`, whose storm masks Linux's own timer, and only with the
    // restart's reason in spumone's log.
    let restarted = linux_says.starts_with("restarted by spumone");
    if restarted && (probe != "gic" || seen.find(begin, "[hv]", HUNG_RESTART).is_none()) {
        return Err((format!("{probe}: Linux was restarted: {linux_says}"), rtos));
    }
    if !restarted && !linux_says.starts_with("contained") {
        return Err((format!("{probe}: {linux_says}"), rtos));
    }
    // spumone still answers after the probe: it logs, or reports Linux's stop.
    if seen.find(end, "[hv]", "").is_none() {
        return Err((format!("spumone said nothing after {probe}"), rtos));
    }
    let summary = match probe {
        "fuzz" => judge_fuzz(seen, begin, end),
        "gic" => judge_gic(seen, begin, end, restarted),
        "dma-bio" | "dma-vq" => judge_dma(seen, begin, end),
        _ => Ok(linux_says),
    };
    match summary {
        Ok(s) => Ok((s, rtos)),
        Err(why) => Err((why, rtos)),
    }
}

/// The fuzzer's own count (at least 10^5 calls), with its seed and result classes.
fn judge_fuzz(seen: &Observed, begin: usize, end: usize) -> Result<String, String> {
    let Some(done) = seen
        .find(begin, "[linux]", "hvcfuzz: done: ")
        .filter(|&i| i < end)
    else {
        return Err("the fuzzer did not report".into());
    };
    let line = &seen.lines[done];
    let made: u64 = line
        .split(", ")
        .find_map(|part| part.strip_suffix(" calls made"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if made < 100_000 {
        return Err(format!("only {made} calls: {line}"));
    }
    Ok(line
        .trim_start_matches("[linux] hvcfuzz: done: ")
        .to_string())
}

/// What spumone logs when its watchdog restarts a Linux that stopped making progress.
const HUNG_RESTART: &str = "hung (no progress for ";

/// Both storms ran: the SGI storm to its end, the GIC storm's sweep over every register, and
/// the GIC storm to its end unless `restarted` (Linux hung itself, and spumone restarted it).
fn judge_gic(seen: &Observed, begin: usize, end: usize, restarted: bool) -> Result<String, String> {
    let within = |needle: &str| seen.find(begin, "[linux]", needle).filter(|&i| i < end);
    let Some(sgis) = within("sgistorm: done: ") else {
        return Err("sgistorm did not finish".into());
    };
    let sgis = &seen.lines[sgis];
    let sgis = &sgis[sgis.find("sgistorm: ").unwrap_or(0)..];
    if restarted {
        // Linux hung itself somewhere in the GIC storm, its sweep maybe: the storm's own
        // reports stop there, and what is judged is the RTOS's rounds across it all.
        return Ok(format!(
            "{sgis}; the GIC storm masked Linux's own timer until spumone's watchdog \
             restarted Linux ({})",
            within("gicstorm: sweep: ").map_or("before its sweep's report", |_| "after its sweep")
        ));
    }
    if within("gicstorm: done").is_none() {
        return Err("gicstorm did not finish".into());
    }
    // Every register of every frame was written: "sweep: N of N registers written".
    let Some(sweep) = within("gicstorm: sweep: ") else {
        return Err("gicstorm did not report its sweep".into());
    };
    let counts: Vec<&str> = seen.lines[sweep]
        .split_whitespace()
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    if counts.len() != 2 || counts[0] != counts[1] {
        return Err(format!(
            "the sweep did not cover the frames: {}",
            seen.lines[sweep]
        ));
    }
    Ok(format!(
        "{} registers swept from every vCPU; {sgis}",
        counts[0]
    ))
}

/// spumone reported DMA faults during the probe, and its integrity digest after it is
/// unchanged.
fn judge_dma(seen: &Observed, begin: usize, end: usize) -> Result<String, String> {
    let faults = (begin..end)
        .filter(|&i| seen.lines[i].starts_with("[hv]") && seen.lines[i].contains("dma fault: "))
        .count();
    if faults == 0 {
        return Err("spumone logged no `dma fault` line during the probe".into());
    }
    let Some(digest) = seen.find(end, "[hv]", "integrity: ") else {
        return Err("spumone printed no integrity digest after the probe".into());
    };
    let line = &seen.lines[digest];
    if line.contains("CHANGED") || line.matches("unchanged").count() < 2 {
        return Err(format!("integrity: {line}"));
    }
    Ok(format!(
        "{faults} dma fault lines; {}",
        line.trim_start_matches("[hv] ")
    ))
}

/// The calls were contained, SYSTEM_RESET restarted Linux alone, the restarted Linux's
/// SYSTEM_OFF stopped it alone, and the RTOS went on through both.
fn judge_psci(seen: &Observed, begin: usize) -> Judged {
    let fail = |why: &str, rtos: &str| Err((why.to_string(), rtos.to_string()));
    if seen
        .find(begin, "[linux]", "psci_abuse: VIOLATION")
        .is_some()
    {
        return fail("a PSCI call went through (VIOLATION lines)", "");
    }
    let Some(calls) = seen.find(begin, "[linux]", "probe: psci: calls contained") else {
        let why = seen
            .find(begin, "[linux]", "probe: psci: end: ")
            .map_or("the PSCI calls did not finish".to_string(), |i| {
                seen.lines[i].clone()
            });
        return fail(&why, "");
    };
    let Some(reset) = seen.find(calls, "[hv]", "SYSTEM_RESET: restarting it") else {
        return fail("spumone did not restart Linux after SYSTEM_RESET", "");
    };
    let Some(again) = seen.find(reset, "[linux]", "probe: psci: Linux restarted") else {
        return fail("Linux did not come back after SYSTEM_RESET", "");
    };
    let Some(off) = seen.find(again, "[hv]", "partition linux stopped (PSCI SYSTEM_OFF)") else {
        return fail("the restarted Linux's SYSTEM_OFF did not stop it", "");
    };
    let rtos = match seen.rtos_throughout(begin, off) {
        Ok(s) => s,
        Err(why) => return fail(&why, &why),
    };
    Ok((
        "CPU_ON/AFFINITY_INFO/MIGRATE/SUSPEND refused, CPU_OFF storm, SYSTEM_RESET restarted \
         Linux alone, SYSTEM_OFF stopped it alone"
            .to_string(),
        rtos,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(scenario: &'static str, probes: &[&'static str]) -> Boot {
        Boot {
            scenario,
            probes: probes.to_vec(),
        }
    }

    #[test]
    fn all_needs_two_boots_and_psci_is_last() {
        let all = names("all").unwrap();
        let boots = plan(&all).unwrap();
        assert_eq!(
            boots,
            [
                boot("demo", &["cpumap", "fuzz", "dma-bio", "dma-vq", "psci"]),
                boot("demo", &["gic"]),
                boot("shared", &["gic"]),
            ]
        );
        assert_eq!(
            plan(&["psci", "cpumap"]).unwrap(),
            [boot("demo", &["cpumap", "psci"])]
        );
        assert!(plan(&["nope"]).is_err());
        assert!(names("nope").is_err());
        for p in PROBES {
            assert!(ORDER.contains(&p.name), "{} has a place in ORDER", p.name);
            assert!(listing().contains(&format!("  {:<8} [", p.name)));
        }
        assert!(listing().lines().all(|l| l.len() <= 100), "{}", listing());
        assert_eq!(
            command(&boot("shared", &["gic"]), 7),
            "/lib/spumone/probe.sh -s 7 gic; echo probe-status=$?"
        );
    }

    /// A run: `(seconds, line)` pairs.
    fn run(lines: &[(u64, &str)]) -> (Vec<String>, Vec<Duration>) {
        (
            lines.iter().map(|(_, l)| l.to_string()).collect(),
            lines.iter().map(|(t, _)| Duration::from_secs(*t)).collect(),
        )
    }

    fn judged(probe: &'static str, lines: &[(u64, &str)]) -> Result<String, String> {
        let (l, t) = run(lines);
        let seen = Observed {
            lines: &l,
            times: &t,
        };
        judge(&boot("demo", &[probe]), &seen).remove(0).result
    }

    const ROUND: &str = "[rtos] latency n=1000 min=1 mean=2 p50=2 p99=3 max=4 misses=0";

    fn fuzz_run(rtos_gap: u64) -> Vec<(u64, &'static str)> {
        let mut lines = vec![
            (0, ROUND),
            (2, ROUND),
            (4, ROUND),
            (5, "[linux] probe: fuzz: begin"),
        ];
        lines.push((5 + rtos_gap / 2, ROUND));
        lines.push((5 + rtos_gap, ROUND));
        lines.extend([
            (
                6 + rtos_gap,
                "[linux] hvcfuzz: done: seed 42, 200000 calls made, 80 excluded IDs skipped, 400 ms",
            ),
            (6 + rtos_gap, "[linux] probe: fuzz: end: contained (judged outside Linux)"),
            (7 + rtos_gap, "[hv] 9.0 INFO  partition linux stopped (PSCI SYSTEM_OFF), exit code 0"),
            (8 + rtos_gap, ROUND),
        ]);
        lines
    }

    #[test]
    fn the_fuzzer_passes_with_the_rtos_going_on() {
        let verdict = judged("fuzz", &fuzz_run(2));
        assert!(verdict.as_ref().unwrap().contains("seed 42"), "{verdict:?}");
    }

    #[test]
    fn a_silent_rtos_fails_the_probe() {
        // Rounds every 2 s before; a 40 s silence during the probe.
        let verdict = judged("fuzz", &fuzz_run(80));
        assert!(verdict.unwrap_err().contains("fell silent"));
        // No round after the probe at all.
        let mut lines = fuzz_run(2);
        lines.pop();
        assert!(judged("fuzz", &lines)
            .unwrap_err()
            .contains("no round after"));
    }

    /// `run` with every line containing `needle` replaced by `with`.
    fn replaced(
        run: Vec<(u64, &'static str)>,
        needle: &str,
        with: &'static str,
    ) -> Vec<(u64, &'static str)> {
        run.into_iter()
            .map(|(t, l)| (t, if l.contains(needle) { with } else { l }))
            .collect()
    }

    #[test]
    fn a_crash_or_too_few_calls_fails() {
        let mut lines = fuzz_run(2);
        lines.insert(5, (6, "[hv] 6.0 ERROR core 1: panic: index out of bounds"));
        assert!(judged("fuzz", &lines).unwrap_err().contains("crashed"));
        let lines = replaced(
            fuzz_run(2),
            "hvcfuzz: done",
            "[linux] hvcfuzz: done: seed 42, 99999 calls made, 1 excluded IDs skipped, 1 ms",
        );
        assert!(judged("fuzz", &lines).unwrap_err().contains("only 99999"));
    }

    #[test]
    fn a_leak_seen_by_linux_fails() {
        let lines = replaced(
            fuzz_run(2),
            "probe: fuzz: end",
            "[linux] probe: fuzz: end: LEAK (see the lines above)",
        );
        assert!(judged("fuzz", &lines).unwrap_err().contains("LEAK"));
    }

    fn gic_run(sweep: &'static str) -> Vec<(u64, &'static str)> {
        vec![
            (0, ROUND),
            (2, ROUND),
            (3, "[linux] probe: gic: begin"),
            (4, ROUND),
            (5, sweep),
            (5, "[linux] gicstorm: done, GIC state restored"),
            (6, ROUND),
            (
                7,
                "[linux] sgistorm: done: 10 SGI1R, 0 ASGI1R, 0 SGI0R writes",
            ),
            (
                7,
                "[linux] probe: gic: end: contained (judged outside Linux)",
            ),
            (
                8,
                "[hv] 8.0 INFO  partition linux stopped (PSCI SYSTEM_OFF), exit code 0",
            ),
            (9, ROUND),
        ]
    }

    #[test]
    fn gic_needs_the_whole_sweep_and_both_storms() {
        let ok = judged(
            "gic",
            &gic_run("[linux] gicstorm: sweep: 5276 of 5276 registers written"),
        );
        assert!(ok.unwrap().starts_with("5276 registers swept"));
        let short = judged(
            "gic",
            &gic_run("[linux] gicstorm: sweep: 900 of 5276 registers written"),
        );
        assert!(short.unwrap_err().contains("did not cover"));
        let lines: Vec<(u64, &str)> = gic_run("[linux] gicstorm: sweep: 1 of 1 registers written")
            .into_iter()
            .filter(|(_, l)| !l.contains("sgistorm"))
            .collect();
        assert!(judged("gic", &lines).unwrap_err().contains("sgistorm"));
    }

    #[test]
    fn a_gic_storm_cut_short_by_the_watchdog_needs_its_reason_logged() {
        const SWEEP: &str = "[linux] gicstorm: sweep: 5276 of 5276 registers written";
        const RESTARTED: &str = "[linux] probe: gic: end: restarted by spumone (spumone.resets=1)";
        let restarted_run = |hung: bool| {
            let mut lines: Vec<(u64, &str)> = gic_run(SWEEP)
                .into_iter()
                .filter(|(_, l)| !l.contains("gicstorm: done") && !l.contains("probe: gic: end"))
                .collect();
            let at = lines.len() - 2;
            if hung {
                lines.insert(
                    at,
                    (7, "[hv] 7.5 ERROR linux hung (no progress for 20007 ms): restarting (on_panic=restart)"),
                );
            }
            lines.insert(lines.len() - 2, (8, RESTARTED));
            lines
        };
        let ok = judged("gic", &restarted_run(true)).unwrap();
        assert!(
            ok.contains("watchdog restarted Linux (after its sweep)"),
            "{ok}"
        );
        // Hung inside the sweep: its report never came, the rounds across it are judged.
        let in_sweep: Vec<_> = restarted_run(true)
            .into_iter()
            .filter(|(_, l)| !l.contains("gicstorm: sweep"))
            .collect();
        let ok = judged("gic", &in_sweep).unwrap();
        assert!(ok.contains("before its sweep's report"), "{ok}");
        let why = judged("gic", &restarted_run(false)).unwrap_err();
        assert!(why.contains("Linux was restarted"), "{why}");
        // Another probe restarted in the middle is not contained.
        let fuzz = replaced(
            fuzz_run(2),
            "probe: fuzz: end",
            "[linux] probe: fuzz: end: restarted by spumone (spumone.resets=1)",
        );
        assert!(judged("fuzz", &fuzz)
            .unwrap_err()
            .contains("Linux was restarted"));
    }

    fn dma_run(fault: bool, digest: &'static str) -> Vec<(u64, &'static str)> {
        let mut lines = vec![
            (0, ROUND),
            (2, ROUND),
            (3, "[linux] probe: dma-vq: begin"),
            (
                3,
                "[linux] dma_vq: 0x44000000 read: contained (no completion)",
            ),
        ];
        if fault {
            lines.push((
                3,
                "[hv] 3.0 WARN  dma fault: stream 0x28, address 0x44000000, read",
            ));
        }
        lines.extend([
            (4, ROUND),
            (4, "[linux] dma_vq: done: 9 contained, 0 leaks"),
            (4, "[linux] probe: dma-vq: end: contained"),
            (
                5,
                "[hv] 5.0 INFO  partition linux stopped (PSCI SYSTEM_OFF), exit code 0",
            ),
            (5, digest),
            (6, ROUND),
        ]);
        lines
    }

    const UNCHANGED: &str = "[hv] 5.0 INFO  integrity: rtos image sha256 0a0b0c0d unchanged; \
                             spumone image sha256 01020304 unchanged";

    #[test]
    fn dma_needs_fault_lines_and_an_unchanged_digest() {
        assert!(judged("dma-vq", &dma_run(true, UNCHANGED)).is_ok());
        assert!(judged("dma-vq", &dma_run(false, UNCHANGED))
            .unwrap_err()
            .contains("no `dma fault`"));
        let changed = "[hv] 5.0 ERROR integrity: rtos image sha256 0a0b0c0d CHANGED (was 01); \
                       spumone image sha256 01020304 unchanged";
        assert!(judged("dma-vq", &dma_run(true, changed))
            .unwrap_err()
            .contains("CHANGED"));
        let none = "[hv] 5.0 INFO  shutdown";
        assert!(judged("dma-vq", &dma_run(true, none))
            .unwrap_err()
            .contains("no integrity digest"));
    }

    fn psci_run() -> Vec<(u64, &'static str)> {
        vec![
            (0, ROUND),
            (2, ROUND),
            (3, "[linux] probe: psci: begin"),
            (3, "[linux] psci_abuse: calls: 900 calls, 0 violations"),
            (
                3,
                "[linux] probe: psci: calls contained; CPU_OFF storm, then SYSTEM_RESET",
            ),
            (4, ROUND),
            (
                5,
                "[hv] 5.0 INFO  partition linux: SYSTEM_RESET: restarting it",
            ),
            (6, ROUND),
            (
                8,
                "[linux] probe: psci: Linux restarted after SYSTEM_RESET; now SYSTEM_OFF",
            ),
            (
                9,
                "[hv] 9.0 INFO  partition linux stopped (PSCI SYSTEM_OFF), exit code 0",
            ),
            (10, ROUND),
        ]
    }

    #[test]
    fn psci_needs_the_restart_then_the_stop() {
        assert!(judged("psci", &psci_run()).is_ok());
        for (drop, why) in [
            ("calls contained", "calls"),
            ("restarting it", "restart"),
            ("Linux restarted", "second boot"),
            ("SYSTEM_OFF), exit", "stop"),
        ] {
            let lines: Vec<(u64, &str)> = psci_run()
                .into_iter()
                .filter(|(_, l)| !l.contains(drop))
                .collect();
            assert!(judged("psci", &lines).is_err(), "{why}");
        }
        let mut lines = psci_run();
        lines.insert(
            4,
            (
                3,
                "[linux] psci_abuse: VIOLATION: smc CPU_ON(0x3, 0x0) returned 0",
            ),
        );
        assert!(judged("psci", &lines).unwrap_err().contains("VIOLATION"));
    }

    #[test]
    fn scratch_disks_are_made_once_at_their_size() {
        let dir = std::env::temp_dir().join(format!("xtask-probe-{}", std::process::id()));
        let disks = scratch_disks(&dir).unwrap();
        assert_eq!(
            disks.iter().map(|d| d.slot).collect::<Vec<_>>(),
            [BIO_SLOT, VQ_SLOT]
        );
        for d in &disks {
            assert_eq!(std::fs::metadata(&d.path).unwrap().len(), SCRATCH_BYTES);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
