//! `cargo xtask bench profile`: where spumone's EL2 time goes, by exit reason, from the
//! path-length plugin (`tools/pathlen`) under `-icount`.
//!
//! Attribution costs nothing at run time. Fat LTO inlines the per-class handlers into
//! `trap_entry` and `handle_irq`, but the DWARF of spumone's ELF still says which
//! instructions came from which function ([`crate::pathlen::Elf::function_ranges`]). Each
//! *exit tag* is the code of a few such functions; the `hv-exit` window (vector entry to
//! `eret`) records the set of tags it executed, and [`attribute`] turns that set into one
//! reason, the most specific first (a GICD access is also a data abort).
//!
//! Guest time under `-icount` with several vCPUs: QEMU runs them round robin on one virtual
//! clock, which advances by every vCPU's instructions (and jumps when all wait). So the guest
//! time of an interval is the guest's own clock (the kernel build's uptime markers, the
//! RTOS's periods), and the sum of all vCPUs' counts is the instructions executed in it
//! (busy time, no jumps); a single vCPU's count is neither.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::bench;
use crate::firmware::{self, BuildOptions, LatencySettings};
use crate::kbuild;
use crate::pathlen::{FunctionRanges, Report, HV_EXIT, HV_IRQ_RTOS, RTOS_IRQ};
use crate::qemu::Disk;
use crate::run::{self, RunOptions};
use crate::scenario;
use spumone_pathlen::args::{Span, Tag};
use spumone_pathlen::tracker::TAG_SEPARATOR;

/// An exit tag: the code of these functions (demangled, without hash).
pub struct ExitTag {
    pub tag: &'static str,
    pub functions: &'static [&'static str],
}

/// Every tag an exit can carry. Functions missing from an ELF (a feature compiled out) are
/// skipped; a tag none of whose functions is found is left out.
pub const EXIT_TAGS: &[ExitTag] = &[
    ExitTag {
        tag: "irq",
        functions: &["spumone::arch::aarch64::guest::handle_irq"],
    },
    ExitTag {
        tag: "sync",
        functions: &["spumone::arch::aarch64::exception::trap_entry"],
    },
    // Only the fast path's success drops the priority before the `eret`.
    ExitTag {
        tag: "vtimer-fast",
        functions: &["spumone::arch::aarch64::gic::priority_drop_before_eret"],
    },
    ExitTag {
        tag: "forward",
        functions: &["spumone::arch::aarch64::vgic::inject"],
    },
    ExitTag {
        tag: "console-in",
        functions: &["spumone::arch::aarch64::linux::console_input"],
    },
    ExitTag {
        tag: "posted",
        functions: &["spumone::arch::aarch64::vgic::deliver_posted"],
    },
    ExitTag {
        tag: "hyp-tick",
        functions: &["spumone::arch::aarch64::timer::rearm"],
    },
    ExitTag {
        tag: "sched",
        functions: &[
            "spumone::arch::aarch64::switch::interrupt",
            "spumone::arch::aarch64::switch::reschedule",
            "spumone::arch::aarch64::switch::irq_switch",
        ],
    },
    ExitTag {
        tag: "wfx",
        functions: &[
            "spumone::arch::aarch64::vgic::trapped_wait_sleeps",
            "spumone::arch::aarch64::switch::wfi",
        ],
    },
    ExitTag {
        tag: "hvc",
        functions: &["spumone::arch::aarch64::guest::handle_hvc"],
    },
    ExitTag {
        tag: "psci",
        functions: &["spumone::arch::aarch64::guest::handle_smc"],
    },
    ExitTag {
        tag: "sgi",
        functions: &["spumone::arch::aarch64::vgic::send_virtual_sgi"],
    },
    ExitTag {
        tag: "data-abort",
        functions: &["spumone::arch::aarch64::guest::handle_data_abort"],
    },
    ExitTag {
        tag: "gicd",
        functions: &["spumone::arch::aarch64::vgic::gicd_access"],
    },
    ExitTag {
        tag: "gicr",
        functions: &["spumone::arch::aarch64::vgic::gicr_access"],
    },
    ExitTag {
        tag: "vuart",
        functions: &["spumone::arch::aarch64::linux::uart_access"],
    },
    ExitTag {
        tag: "stage2-abort",
        functions: &["spumone::arch::aarch64::guest::inject_abort"],
    },
    ExitTag {
        tag: "undef",
        functions: &["spumone::hvcore::inject::inject_undef"],
    },
    ExitTag {
        tag: "dsm",
        functions: &[
            "spumone::arch::aarch64::dsm::on_write_fault",
            "spumone::arch::aarch64::dsm::on_exec_fault",
            "spumone::arch::aarch64::dsm::hold",
            "spumone::arch::aarch64::dsm::serve_resume",
            "spumone::arch::aarch64::dsm::own_regs",
            "spumone::arch::aarch64::dsm::judge",
        ],
    },
    ExitTag {
        tag: "dsm-tick",
        functions: &["spumone::arch::aarch64::dsm::on_tick"],
    },
    ExitTag {
        tag: "migration",
        functions: &[
            "spumone::arch::aarch64::migrate::evaluate",
            "spumone::arch::aarch64::migrate::request",
            "spumone::arch::aarch64::migrate::depart",
            "spumone::arch::aarch64::migrate::post",
            "spumone::arch::aarch64::migrate::arrive",
        ],
    },
    // Not a reason: marks exits that acquired a spin lock (see [`LOCK_FUNCTIONS`]).
    ExitTag {
        tag: LOCK_TAG,
        functions: LOCK_FUNCTIONS,
    },
];

/// The tag of exits that acquired a lock.
pub const LOCK_TAG: &str = "lock";
/// Acquiring one of spumone's spin locks (`cpu::Lock`, the `spin` crate's mutex), including
/// its spinning.
pub const LOCK_FUNCTIONS: &[&str] = &[
    "spin::mutex::Mutex<T,R>::lock",
    "spin::mutex::spin::SpinMutex<T,R>::lock",
    "spumone::arch::aarch64::dsm::lock_state",
];

/// Exit reasons, the most specific first: the first whose tags meet the exit's set is it.
pub const REASONS: &[(&str, &[&str], &str)] = &[
    (
        "migration",
        &["migration"],
        "vCPU migration (policy, hand-off, arrival)",
    ),
    (
        "dsm",
        &["dsm"],
        "DSM work (watch faults, capture, hold, resume)",
    ),
    ("gicd-mmio", &["gicd"], "emulated GICD access"),
    ("gicr-mmio", &["gicr"], "emulated GICR access"),
    ("vuart-mmio", &["vuart"], "emulated UART access"),
    (
        "stage2-fault",
        &["stage2-abort"],
        "stage-2 fault that is not emulated MMIO",
    ),
    ("mmio-other", &["data-abort"], "other data abort"),
    ("sgi", &["sgi"], "trapped ICC_SGI1R_EL1 write"),
    ("psci", &["psci"], "SMC (PSCI)"),
    ("hvc", &["hvc"], "HVC (console, exit, version)"),
    ("wfx", &["wfx"], "WFI/WFE"),
    (
        "other-trap",
        &["undef"],
        "other trap (sysreg or class not emulated: undef injected)",
    ),
    (
        "sched",
        &["sched"],
        "shared core's interrupt and vCPU switch",
    ),
    ("kick", &["posted"], "kick SGI: posted vIRQs delivered"),
    (
        "device-irq",
        &["forward", "console-in"],
        "device IRQ forwarded (or a vtimer off the fast path)",
    ),
    ("dsm-tick", &["dsm-tick"], "the DSM core's tick"),
    ("hyp-tick", &["hyp-tick"], "spumone's own tick"),
    (
        "timer-irq",
        &["vtimer-fast"],
        "guest timer IRQ, lock-free fast path",
    ),
    (
        "irq-other",
        &["irq"],
        "other IRQ exit (spurious, nothing to do)",
    ),
    ("sync-other", &["sync"], "other synchronous exit"),
];

/// The reason of an exit that executed no tagged code.
pub const UNATTRIBUTED: &str = "unattributed";

/// The tag names of a window's label (`a+b`).
pub fn tag_set(label: Option<&str>) -> Vec<&str> {
    label.map_or_else(Vec::new, |l| l.split(TAG_SEPARATOR).collect())
}

/// The reason of an exit whose window executed the tags of `label`.
pub fn attribute(label: Option<&str>) -> &'static str {
    let tags = tag_set(label);
    REASONS
        .iter()
        .find(|(_, any, _)| any.iter().any(|t| tags.contains(t)))
        .map_or(UNATTRIBUTED, |(name, _, _)| name)
}

/// Where a core waits for another: the spans the plugin counts (total, longest stretch).
pub const WAIT_SPANS: &[(&str, &[&str])] = &[
    ("lock", LOCK_FUNCTIONS),
    ("dsm-hold", &["spumone::arch::aarch64::dsm::hold"]),
    (
        "dsm-pause",
        &["<spumone::arch::aarch64::dsm::ArchBackend as spumone::dsm::guest::Backend>::pause"],
    ),
    (
        "capture",
        &["spumone::arch::aarch64::dsm::ArchBackend::capture_all"],
    ),
    (
        "restart",
        &["spumone::arch::aarch64::guest::wait_until_left"],
    ),
];

/// The span of all of spumone's code: every EL2 instruction, exit or not.
pub const EL2_SPAN: &str = "el2";

/// Every function [`EXIT_TAGS`] and [`WAIT_SPANS`] name.
pub fn wanted_functions() -> Vec<&'static str> {
    let mut names: Vec<&str> = EXIT_TAGS
        .iter()
        .flat_map(|t| t.functions)
        .copied()
        .collect();
    names.extend(WAIT_SPANS.iter().flat_map(|(_, f)| *f));
    names.sort_unstable();
    names.dedup();
    names
}

/// The plugin's tags for `hv-exit`, from the functions' code.
pub fn exit_tags(ranges: &FunctionRanges) -> Vec<Tag> {
    let mut tags = Vec::new();
    for t in EXIT_TAGS {
        for f in t.functions {
            for &(lo, hi) in ranges.get(*f).into_iter().flatten() {
                tags.push(Tag {
                    name: t.tag.to_string(),
                    lo,
                    hi,
                });
            }
        }
    }
    tags
}

/// The lock tag alone (for the RTOS's forwarded path).
pub fn lock_tags(ranges: &FunctionRanges) -> Vec<Tag> {
    exit_tags(ranges)
        .into_iter()
        .filter(|t| t.name == LOCK_TAG)
        .collect()
}

/// The wait spans, and [`EL2_SPAN`] over `text`.
pub fn wait_spans(ranges: &FunctionRanges, text: (u64, u64)) -> Vec<Span> {
    let mut spans: Vec<Span> = WAIT_SPANS
        .iter()
        .filter_map(|(name, functions)| {
            let code: Vec<(u64, u64)> = functions
                .iter()
                .flat_map(|f| ranges.get(*f).into_iter().flatten().copied())
                .collect();
            (!code.is_empty()).then(|| Span {
                name: name.to_string(),
                ranges: code,
            })
        })
        .collect();
    spans.push(Span {
        name: EL2_SPAN.into(),
        ranges: vec![text],
    });
    spans
}

/// `end` minus `begin`: counts of windows and instructions in between. Extremes and
/// percentiles, and spans' longest stretches, stay the whole run's (`end`'s).
pub fn interval(end: &Report, begin: Option<&Report>) -> Report {
    let Some(begin) = begin else {
        return end.clone();
    };
    let mut out = end.clone();
    for v in &mut out.vcpus {
        v.instructions -= begin.instructions(v.vcpu).unwrap_or(0).min(v.instructions);
    }
    for w in &mut out.windows {
        if let Some(b) = begin
            .windows
            .iter()
            .find(|b| b.kind == w.kind && b.tag == w.tag && b.vcpu == w.vcpu)
        {
            w.windows = w.windows.saturating_sub(b.windows);
            w.distorted = w.distorted.saturating_sub(b.distorted);
            w.descheduled = w.descheduled.saturating_sub(b.descheduled);
            w.extra_entries = w.extra_entries.saturating_sub(b.extra_entries);
            w.abandoned = w.abandoned.saturating_sub(b.abandoned);
            w.sum = w.sum.saturating_sub(b.sum);
            w.mean = w.sum.checked_div(w.windows).unwrap_or(0);
        }
    }
    for s in &mut out.spans {
        if let Some(b) = begin
            .spans
            .iter()
            .find(|b| b.span == s.span && b.vcpu == s.vcpu)
        {
            s.instructions = s.instructions.saturating_sub(b.instructions);
        }
    }
    out
}

/// Exits of one reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasonRow {
    pub reason: String,
    pub exits: u64,
    pub instructions: u64,
    /// Exits that acquired a spin lock.
    pub locked: u64,
    pub distorted: u64,
}

impl ReasonRow {
    pub fn mean(&self) -> u64 {
        self.instructions.checked_div(self.exits).unwrap_or(0)
    }
}

/// The profile of one measured interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Guest time of the interval in ns (the guest's own clock).
    pub guest_ns: u64,
    /// Instructions every vCPU executed in it (the sum of their counts).
    pub executed: u64,
    /// EL2 instructions (all of spumone's code, exits or not).
    pub el2: u64,
    /// By reason, all vCPUs; every reason of [`REASONS`] that had an exit.
    pub reasons: Vec<ReasonRow>,
    /// By vCPU, then reason.
    pub by_vcpu: BTreeMap<u32, Vec<ReasonRow>>,
    /// Per vCPU: (instructions, EL2 instructions).
    pub vcpus: BTreeMap<u32, (u64, u64)>,
    /// Per (span, vCPU): (instructions, longest stretch).
    pub waits: BTreeMap<(String, u32), (u64, u64)>,
    /// The RTOS's vCPU (where its own IRQ windows closed), if it ran.
    pub rtos_vcpu: Option<u32>,
    /// The RTOS's forwarded dispatch path (`hv-irq-rtos`): windows, max, distorted, and
    /// windows that acquired a lock.
    pub rtos_path: Option<(u64, u64, u64, u64)>,
}

fn add_row(rows: &mut Vec<ReasonRow>, reason: &str, w: &spumone_pathlen::report::WindowReport) {
    let at = match rows.iter().position(|r| r.reason == reason) {
        Some(at) => at,
        None => {
            rows.push(ReasonRow {
                reason: reason.to_string(),
                ..ReasonRow::default()
            });
            rows.len() - 1
        }
    };
    let row = &mut rows[at];
    row.exits += w.windows;
    row.instructions += w.sum;
    row.distorted += w.distorted;
    if tag_set(w.tag.as_deref()).contains(&LOCK_TAG) {
        row.locked += w.windows;
    }
}

/// Orders rows as [`REASONS`] does.
fn sort_rows(rows: &mut [ReasonRow]) {
    let rank = |r: &ReasonRow| {
        REASONS
            .iter()
            .position(|(n, _, _)| *n == r.reason)
            .unwrap_or(REASONS.len())
    };
    rows.sort_by_key(rank);
}

impl Profile {
    /// The profile of `report` (an interval's, see [`interval`]) over `guest_ns` of guest time.
    pub fn of(report: &Report, guest_ns: u64) -> Profile {
        let mut p = Profile {
            guest_ns,
            ..Profile::default()
        };
        for v in &report.vcpus {
            p.executed += v.instructions;
            p.vcpus.insert(v.vcpu, (v.instructions, 0));
        }
        for s in &report.spans {
            if s.span == EL2_SPAN {
                p.el2 += s.instructions;
                p.vcpus.entry(s.vcpu).or_default().1 = s.instructions;
            } else {
                p.waits.insert(
                    (s.span.clone(), s.vcpu),
                    (s.instructions, s.longest_stretch),
                );
            }
        }
        for w in report.windows.iter().filter(|w| w.kind == HV_EXIT) {
            let reason = attribute(w.tag.as_deref());
            add_row(&mut p.reasons, reason, w);
            add_row(p.by_vcpu.entry(w.vcpu).or_default(), reason, w);
        }
        sort_rows(&mut p.reasons);
        p.by_vcpu.values_mut().for_each(|rows| sort_rows(rows));
        p.rtos_vcpu = report
            .windows
            .iter()
            .filter(|w| w.kind == RTOS_IRQ)
            .max_by_key(|w| w.windows)
            .map(|w| w.vcpu);
        if let Some(rtos) = p.rtos_vcpu {
            let rows: Vec<_> = report
                .windows
                .iter()
                .filter(|w| w.kind == HV_IRQ_RTOS && w.vcpu == rtos && w.windows > 0)
                .collect();
            if !rows.is_empty() {
                let locked = rows
                    .iter()
                    .filter(|w| tag_set(w.tag.as_deref()).contains(&LOCK_TAG))
                    .map(|w| w.windows)
                    .sum();
                p.rtos_path = Some((
                    rows.iter().map(|w| w.windows).sum(),
                    rows.iter().map(|w| w.max).max().unwrap_or(0),
                    rows.iter().map(|w| w.distorted).sum(),
                    locked,
                ));
            }
        }
        p
    }

    /// Exits and their instructions, all reasons.
    pub fn exit_totals(&self) -> (u64, u64) {
        self.reasons
            .iter()
            .fold((0, 0), |(n, i), r| (n + r.exits, i + r.instructions))
    }

    /// The longest stretch any wait span had on `vcpu`, and that span.
    pub fn longest_wait(&self, vcpu: u32) -> Option<(&str, u64)> {
        self.waits
            .iter()
            .filter(|((_, v), _)| *v == vcpu)
            .map(|((s, _), &(_, longest))| (s.as_str(), longest))
            .max_by_key(|&(_, longest)| longest)
    }

    /// EL2 instructions against the guests' own: the overhead EL2 adds in instructions.
    pub fn el2_overhead(&self) -> Option<f64> {
        let guests = self.executed.checked_sub(self.el2)?;
        (guests > 0).then(|| self.el2 as f64 / guests as f64)
    }

    pub fn to_json(&self) -> Value {
        let row = |r: &ReasonRow| {
            json!({
                "reason": r.reason,
                "exits": r.exits,
                "instructions": r.instructions,
                "mean": r.mean(),
                "locked": r.locked,
                "distorted": r.distorted,
                "per_guest_second": per_second(r.instructions, self.guest_ns),
                "share_of_guest_time": share(r.instructions, self.guest_ns),
            })
        };
        let (exits, exit_instructions) = self.exit_totals();
        json!({
            "guest_ns": self.guest_ns,
            "executed": self.executed,
            "el2": self.el2,
            "el2_overhead": self.el2_overhead(),
            "exits": exits,
            "exit_instructions": exit_instructions,
            "reasons": self.reasons.iter().map(row).collect::<Vec<_>>(),
            "by_vcpu": self.by_vcpu.iter().map(|(v, rows)| json!({
                "vcpu": v,
                "instructions": self.vcpus.get(v).map_or(0, |x| x.0),
                "el2": self.vcpus.get(v).map_or(0, |x| x.1),
                "reasons": rows.iter().map(row).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "waits": self.waits.iter().map(|((s, v), (total, longest))| json!({
                "span": s, "vcpu": v, "instructions": total, "longest_stretch": longest,
            })).collect::<Vec<_>>(),
            "rtos_vcpu": self.rtos_vcpu,
            "rtos_path": self.rtos_path.map(|(windows, max, distorted, locked)| json!({
                "windows": windows, "max": max, "distorted": distorted, "locked": locked,
            })),
        })
    }
}

/// Instructions per second of guest time (`None` without a guest time).
pub fn per_second(instructions: u64, guest_ns: u64) -> Option<f64> {
    (guest_ns > 0).then(|| instructions as f64 * 1e9 / guest_ns as f64)
}

/// Instructions as a share of guest time (one instruction is 1 ns under `-icount shift=0`).
pub fn share(instructions: u64, guest_ns: u64) -> Option<f64> {
    (guest_ns > 0).then(|| instructions as f64 / guest_ns as f64)
}

fn percent(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:.3}%", 100.0 * x))
}

/// What a profile run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// The RTOS's latency probe, the whole run (no Linux).
    RtosProbe,
    /// The first [`KBUILD_TARGETS`] objects of the quick kernel build, between its markers.
    KernelBuild,
}

/// One profile run: a scenario, its options and its workload. Add a row to profile another
/// scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileScenario {
    /// The row's name, and what `--only` picks.
    pub label: &'static str,
    pub scenario: &'static str,
    pub dsm: bool,
    pub policy: Option<&'static str>,
    pub workload: Workload,
}

pub const SCENARIOS: &[ProfileScenario] = &[
    ProfileScenario {
        label: "rtos",
        scenario: "rtos",
        dsm: false,
        policy: None,
        workload: Workload::RtosProbe,
    },
    ProfileScenario {
        label: "demo-no-dsm",
        scenario: "demo",
        dsm: false,
        policy: None,
        workload: Workload::KernelBuild,
    },
    ProfileScenario {
        label: "demo",
        scenario: "demo",
        dsm: true,
        policy: None,
        workload: Workload::KernelBuild,
    },
    // The RTOS and a one-vCPU Linux on one core: every exit of both guests lands on the
    // RTOS's core, and QEMU times it exactly.
    ProfileScenario {
        label: "shared-1",
        scenario: "shared-1",
        dsm: false,
        policy: None,
        workload: Workload::KernelBuild,
    },
];

/// How much of the quick kernel build a profile compiles: the plugin's per-block callback
/// slows QEMU down, and the reasons' shares settle long before the 30 objects are done.
pub const KBUILD_TARGETS: usize = 8;

/// The RTOS probe of the `rtos` row: 2000 periods of 1 ms.
pub fn rtos_probe() -> LatencySettings {
    LatencySettings::new(2000, 1000).expect("valid probe settings")
}

/// The plugin's report file names for the build's marker snapshots.
const BEGIN: usize = 0;
const END: usize = 1;

/// Runs one row and returns its profile.
fn measure(row: &ProfileScenario, timeout: Option<Duration>) -> Result<Profile> {
    let scenario = scenario::lookup(row.scenario)?;
    let latency = match row.workload {
        Workload::RtosProbe => rtos_probe(),
        Workload::KernelBuild => LatencySettings::DEFAULT,
    };
    let build = BuildOptions {
        latency,
        ..BuildOptions::default()
    };
    let dir = bench::bench_images_dir(&format!("profile-{}", row.label));
    let firmware = firmware::build_into(scenario, &build, &dir)?;
    let mut options = RunOptions {
        timeout,
        icount: true,
        echo: false,
        pathlen: true,
        latency,
        // Only a run with Linux has a DSM to leave off.
        no_dsm: !row.dsm && row.workload == Workload::KernelBuild,
        policy: row.policy.map(str::to_string),
        ..RunOptions::new(scenario)
    };
    if row.workload == Workload::KernelBuild {
        kbuild::ensure(true)?;
        let targets = kbuild::Variant::Quick.targets()?;
        options.cmd = Some(kbuild::workload_cmd_for(
            &targets[..KBUILD_TARGETS.min(targets.len())],
        )?);
        options.disk = Some(Disk {
            path: kbuild::prepared_image(),
            writable: false,
        });
        options.pathlen_snapshots = vec![kbuild::BEGIN_MARKER.into(), kbuild::END_MARKER.into()];
    }
    println!("bench profile: {} ...", row.label);
    let outcome = run::launch(&firmware, &options)?;
    let log = crate::paths::display(&outcome.log_dir.join("all.log"));
    if let Some(why) = outcome.failure() {
        bail!("profile {}: {why} (log in {log})", row.label);
    }
    let report = outcome
        .pathlen
        .as_ref()
        .with_context(|| format!("profile {}: no plugin report", row.label))?;
    let profile = match row.workload {
        Workload::RtosProbe => {
            let stats = bench::find_latency(&outcome.lines, bench::RTOS_CONSOLE)
                .map_err(|e| anyhow::anyhow!("profile {}: {e} (log in {log})", row.label))?;
            let guest_ns = stats.n * u64::from(latency.period_us) * 1000;
            Profile::of(report, guest_ns)
        }
        Workload::KernelBuild => {
            let window = kbuild::find_window(&outcome.lines)
                .map_err(|e| anyhow::anyhow!("profile {}: {e} (log in {log})", row.label))?;
            if window.status != 0 {
                bail!("profile {}: make failed (log in {log})", row.label);
            }
            let snapshot = |i: usize| outcome.pathlen_snapshots.get(i).and_then(Option::as_ref);
            let (Some(begin), Some(end)) = (snapshot(BEGIN), snapshot(END)) else {
                bail!("profile {}: no report snapshot at a marker", row.label);
            };
            Profile::of(
                &interval(end, Some(begin)),
                (window.guest_seconds * 1e9) as u64,
            )
        }
    };
    Ok(profile)
}

/// `cargo xtask bench profile [--only LABEL] [--timeout SECS]`.
pub fn bench(only: Option<&str>, timeout: Option<Duration>) -> Result<()> {
    let rows: Vec<&ProfileScenario> = SCENARIOS
        .iter()
        .filter(|r| only.is_none_or(|o| o == r.label))
        .collect();
    if rows.is_empty() {
        bail!("bench profile --only takes one of {}", LABELS.join(", "));
    }
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for row in rows {
        match measure(row, timeout) {
            Ok(p) => results.push((*row, p)),
            Err(e) => {
                println!("bench profile: {e:#}");
                failed.push(row.label);
            }
        }
    }
    let json: Vec<Value> = results
        .iter()
        .map(|(row, p)| {
            let mut v = p.to_json();
            v["label"] = json!(row.label);
            v["scenario"] = json!(row.scenario);
            v["dsm"] = json!(row.dsm);
            v["policy"] = json!(row.policy);
            v["workload"] = json!(format!("{:?}", row.workload));
            v
        })
        .collect();
    let md = render_markdown(&results);
    bench::write_report("profile", json, &md)?;
    if !failed.is_empty() {
        bail!("bench profile: {} failed", failed.join(", "));
    }
    Ok(())
}

/// The `--only` labels, [`SCENARIOS`]' in order.
pub const LABELS: &[&str] = &["rtos", "demo-no-dsm", "demo", "shared-1"];

/// Per run: a bounded kernel build with the plugin on takes well under an hour of host time.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// `profile.md`.
pub fn render_markdown(results: &[(ProfileScenario, Profile)]) -> String {
    let mut md = String::from(
        "# EL2 cost profile (`cargo xtask bench profile`, `-icount`, spumone-pathlen)\n\n\
         Exits are spumone's vector entries from a guest to its `eret`, each attributed to one \
         reason by the code it executed (DWARF ranges of the inlined handlers). Instructions \
         are 1 ns each under `-icount shift=0`; `per guest s` and `share` are over the \
         interval's guest time (the guests' own clocks), not the vCPUs' summed counts.\n",
    );
    for (row, p) in results {
        let (exits, exit_insns) = p.exit_totals();
        let _ = writeln!(
            md,
            "\n## {} ({}{}{})\n",
            row.label,
            row.scenario,
            if row.dsm { ", DSM on" } else { ", DSM off" },
            row.policy
                .map_or(String::new(), |p| format!(", policy {p}"))
        );
        let _ = writeln!(
            md,
            "Guest time {:.3} s; instructions executed by all vCPUs {}; EL2 {} ({} of the \
             guests' own instructions); {} exits, {} instructions in them ({} of guest time).\n",
            p.guest_ns as f64 / 1e9,
            p.executed,
            p.el2,
            percent(p.el2_overhead()),
            exits,
            exit_insns,
            percent(share(exit_insns, p.guest_ns)),
        );
        let _ = writeln!(
            md,
            "| reason | exits | instructions | mean | per guest s | share | with a lock |"
        );
        let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|");
        for r in &p.reasons {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} | {} | {} |",
                r.reason,
                r.exits,
                r.instructions,
                r.mean(),
                per_second(r.instructions, p.guest_ns).unwrap_or(0.0),
                percent(share(r.instructions, p.guest_ns)),
                r.locked
            );
        }
        let _ = writeln!(md, "\n| vCPU | instructions | EL2 | exits by reason |");
        let _ = writeln!(md, "|--:|--:|--:|---|");
        for (v, (insns, el2)) in &p.vcpus {
            let reasons: Vec<String> = p
                .by_vcpu
                .get(v)
                .into_iter()
                .flatten()
                .map(|r| format!("{} {}×{}", r.reason, r.exits, r.mean()))
                .collect();
            let _ = writeln!(md, "| {v} | {insns} | {el2} | {} |", reasons.join(", "));
        }
        md.push_str(&render_waits(p));
    }
    md
}

/// The cross-core waits and the RTOS's dispatch bound.
fn render_waits(p: &Profile) -> String {
    let mut md = String::from(
        "\n| wait span | vCPU | instructions | longest stretch |\n|---|--:|--:|--:|\n",
    );
    for ((span, v), (total, longest)) in &p.waits {
        if *total > 0 {
            let _ = writeln!(md, "| {span} | {v} | {total} | {longest} |");
        }
    }
    if let (Some(rtos), Some((windows, max, distorted, locked))) = (p.rtos_vcpu, p.rtos_path) {
        let (span, wait) = p.longest_wait(rtos).unwrap_or(("none", 0));
        let _ = writeln!(
            md,
            "\nRTOS on vCPU {rtos}: dispatch ≤ own path + longest cross-core wait on its core = \
             {max} + {wait} ({span}) = {} instructions. Its forwarded path: {windows} windows \
             ({distorted} distorted), {locked} of them acquired a lock.",
            max + wait
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use spumone_pathlen::report::{SpanReport, VcpuReport, WindowReport};

    #[test]
    fn the_most_specific_tag_names_the_reason() {
        let cases = [
            (None, UNATTRIBUTED),
            (Some("sync"), "sync-other"),
            (Some("irq"), "irq-other"),
            (Some("irq+vtimer-fast"), "timer-irq"),
            (Some("irq+forward+lock"), "device-irq"),
            (Some("sync+data-abort+gicd+lock"), "gicd-mmio"),
            (Some("sync+data-abort+gicr"), "gicr-mmio"),
            (Some("sync+data-abort+vuart"), "vuart-mmio"),
            (Some("sync+data-abort+stage2-abort"), "stage2-fault"),
            (Some("sync+data-abort"), "mmio-other"),
            (Some("sync+data-abort+dsm"), "dsm"),
            (Some("sync+psci+lock"), "psci"),
            (Some("sync+hvc"), "hvc"),
            (Some("sync+wfx"), "wfx"),
            (Some("sync+sgi+lock"), "sgi"),
            (Some("sync+undef"), "other-trap"),
            (Some("irq+sched+migration"), "migration"),
            (Some("irq+posted+dsm"), "dsm"),
            (Some("irq+posted"), "kick"),
            (Some("irq+sched+hyp-tick"), "sched"),
            (Some("irq+dsm-tick+hyp-tick"), "dsm-tick"),
            (Some("irq+hyp-tick"), "hyp-tick"),
        ];
        for (label, want) in cases {
            assert_eq!(attribute(label), want, "{label:?}");
        }
        assert_eq!(tag_set(Some("a+b")), ["a", "b"]);
    }

    #[test]
    fn every_reason_and_span_names_known_tags_and_functions() {
        let tags: Vec<&str> = EXIT_TAGS.iter().map(|t| t.tag).collect();
        for (name, any, _) in REASONS {
            assert!(any.iter().all(|t| tags.contains(t)), "{name}");
        }
        let mut names: Vec<&str> = REASONS.iter().map(|r| r.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REASONS.len(), "reason names are unique");
        assert!(wanted_functions().iter().all(|f| f.contains("::")));
        assert!(tags.len() <= spumone_pathlen::args::MAX_TAG_NAMES);
        let labels: Vec<&str> = SCENARIOS.iter().map(|r| r.label).collect();
        assert_eq!(labels, LABELS);
    }

    #[test]
    fn tags_and_spans_come_from_the_functions_code() {
        let mut ranges = FunctionRanges::new();
        ranges.insert(
            "spumone::arch::aarch64::guest::handle_smc".into(),
            vec![(0x100, 0x140), (0x200, 0x210)],
        );
        ranges.insert("spin::mutex::Mutex<T,R>::lock".into(), vec![(0x300, 0x320)]);
        let tags = exit_tags(&ranges);
        let psci: Vec<(u64, u64)> = tags
            .iter()
            .filter(|t| t.name == "psci")
            .map(|t| (t.lo, t.hi))
            .collect();
        assert_eq!(psci, [(0x100, 0x140), (0x200, 0x210)]);
        assert_eq!(lock_tags(&ranges).len(), 1);
        let spans = wait_spans(&ranges, (0x100, 0x1000));
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["lock", EL2_SPAN], "spans without code are left out");
    }

    fn window(kind: &str, tag: Option<&str>, vcpu: u32, n: u64, sum: u64) -> WindowReport {
        WindowReport {
            kind: kind.into(),
            tag: tag.map(str::to_string),
            vcpu,
            windows: n,
            sum,
            max: sum / n.max(1) + 5,
            ..WindowReport::default()
        }
    }

    fn report() -> Report {
        Report {
            vcpus: vec![
                VcpuReport {
                    vcpu: 0,
                    instructions: 1_000_000,
                },
                VcpuReport {
                    vcpu: 1,
                    instructions: 3_000_000,
                },
            ],
            windows: vec![
                window(HV_EXIT, Some("irq+vtimer-fast"), 0, 100, 8_200),
                window(HV_EXIT, Some("sync+psci+lock"), 1, 4, 4_000),
                window(HV_EXIT, Some("sync+hvc"), 1, 10, 3_000),
                window(HV_EXIT, Some("irq+forward+lock"), 1, 20, 10_000),
                window(HV_EXIT, Some("irq+forward"), 1, 2, 800),
                window(HV_IRQ_RTOS, None, 0, 100, 134_600),
                window(RTOS_IRQ, None, 0, 100, 126_300),
            ],
            kinds: Vec::new(),
            spans: vec![
                SpanReport {
                    span: EL2_SPAN.into(),
                    vcpu: 0,
                    instructions: 9_000,
                    longest_stretch: 90,
                },
                SpanReport {
                    span: EL2_SPAN.into(),
                    vcpu: 1,
                    instructions: 20_000,
                    longest_stretch: 900,
                },
                SpanReport {
                    span: "lock".into(),
                    vcpu: 0,
                    instructions: 0,
                    longest_stretch: 0,
                },
                SpanReport {
                    span: "lock".into(),
                    vcpu: 1,
                    instructions: 700,
                    longest_stretch: 40,
                },
            ],
        }
    }

    #[test]
    fn the_reasons_add_up_to_the_exits_per_vcpu_and_in_all() {
        let p = Profile::of(&report(), 4_000_000);
        let rows: Vec<(&str, u64, u64, u64)> = p
            .reasons
            .iter()
            .map(|r| (r.reason.as_str(), r.exits, r.instructions, r.locked))
            .collect();
        assert_eq!(
            rows,
            [
                ("psci", 4, 4_000, 4),
                ("hvc", 10, 3_000, 0),
                ("device-irq", 22, 10_800, 20),
                ("timer-irq", 100, 8_200, 0),
            ]
        );
        assert_eq!(p.exit_totals(), (136, 26_000));
        assert_eq!(p.by_vcpu[&0].len(), 1);
        assert_eq!(p.by_vcpu[&0][0].mean(), 82);
        assert_eq!(p.by_vcpu[&1].iter().map(|r| r.exits).sum::<u64>(), 36);
        assert_eq!((p.executed, p.el2), (4_000_000, 29_000));
        let overhead = p.el2_overhead().unwrap();
        assert!((overhead - 29_000.0 / 3_971_000.0).abs() < 1e-12);
        assert_eq!(p.rtos_vcpu, Some(0));
        assert_eq!(p.rtos_path, Some((100, 1351, 0, 0)));
        assert_eq!(p.longest_wait(1), Some(("lock", 40)));
        assert_eq!(p.longest_wait(0), Some(("lock", 0)));
        assert_eq!(per_second(8_200, 4_000_000), Some(2_050_000.0));
        assert_eq!(share(8_200, 0), None);
        let md = render_markdown(&[(SCENARIOS[0], p.clone())]);
        assert!(
            md.contains("| timer-irq | 100 | 8200 | 82 | 2050000 | 0.205% | 0 |"),
            "{md}"
        );
        assert!(md.contains("= 1351 + 0 (lock) = 1351 instructions"), "{md}");
        let json = p.to_json();
        assert_eq!(json["exits"], 136);
        assert_eq!(json["by_vcpu"][1]["reasons"][0]["reason"], "psci");
    }

    #[test]
    fn an_interval_is_the_difference_of_two_snapshots() {
        let end = report();
        let mut begin = report();
        begin.vcpus[1].instructions = 1_000_000;
        begin.windows.truncate(2);
        begin.windows[0].windows = 40;
        begin.windows[0].sum = 3_280;
        begin.spans[1].instructions = 5_000;
        let i = interval(&end, Some(&begin));
        assert_eq!(i.instructions(0), Some(0));
        assert_eq!(i.instructions(1), Some(2_000_000));
        assert_eq!(
            (i.windows[0].windows, i.windows[0].sum, i.windows[0].mean),
            (60, 4_920, 82)
        );
        assert_eq!(i.windows[1].windows, 0, "the same count at both ends");
        assert_eq!(i.windows[2].windows, 10, "absent at the begin: all of it");
        assert_eq!(i.spans[1].instructions, 15_000);
        assert_eq!(interval(&end, None), end);
    }
}
