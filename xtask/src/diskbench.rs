//! `cargo xtask bench disk`: Linux reading and writing its virtio-blk disk (`virtio-blk-pci`
//! on the PCIe root complex, behind spumone's SMMU) with `dd`, in `linux-native` (the
//! baseline: no hypervisor, no SMMU), `linux` and `demo`, each under `-icount` and on the wall
//! clock.
//!
//! The disk is a sparse raw file made here ([`disk_image`]), attached as a snapshot, so the
//! write pass goes to QEMU's temporary overlay and the file stays empty. Inside the guest
//! `guests/linux/bench/disk.sh` prints a begin and an end marker with the guest's monotonic
//! time around each pass, and the CPUs' idle time across it; the host time between the two
//! marker lines is the pass's wall time.
//!
//! Two guest times per pass: *elapsed* (end minus begin) and *busy* (elapsed × CPUs minus
//! their idle time: what Linux and spumone on its behalf executed). Under `-icount sleep=off`
//! QEMU jumps the virtual clock to the next timer deadline whenever every vCPU waits, so the
//! elapsed time of an I/O-bound pass counts the guest's timer deadlines, not the device; the
//! target is judged on busy time.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::bench::{self, bench_dir, clock, ratio, within, Window, DEMO};
use crate::firmware::{self, BuildOptions, Firmware};
use crate::kbuild::fill_template;
use crate::linux;
use crate::paths::{self, workspace_root};
use crate::qemu::Disk;
use crate::run::{self, RunOptions, RunOutcome};
use crate::{scenario, setup, signals};

/// The bench's name, its results file's stem.
pub const NAME: &str = "disk";
/// The baseline: Linux alone on QEMU, no hypervisor and no SMMU.
pub const NATIVE: &str = "linux-native";
/// Linux alone under spumone, its disk behind the SMMU.
pub const LINUX: &str = "linux";
/// Which scenarios `bench disk --only` may pick besides the baseline, which always runs.
pub const GROUPS: [&str; 2] = [LINUX, DEMO];
/// How much one `dd` moves, and the disk image's size.
pub const MIB: u64 = 256;
/// The passes, in the order the workload runs them, and how many `dd`s each runs (the page
/// cache dropped before each). The read is repeated so its busy time, known to within 10 ms,
/// is known to within about 0.5%.
pub const PASSES: [(&str, u64); 2] = [("read", 4), ("write", 1)];
/// The target under `-icount`: the `linux` row's busy guest time within 1.05× native's.
pub const TARGET: (u64, u64) = (21, 20);
/// The pass whose busy time the target judges: only `dd` runs in it. In the write pass the
/// kernel's writeback threads run beside `dd` on other vCPUs, and under `-icount` QEMU's
/// round robin counts each busy vCPU's interval with the others' turns in it.
pub const JUDGED_PASS: &str = "read";
/// The unit of `/proc/stat` (USER_HZ = 100): a busy time is known to within one.
pub const IDLE_TICK_NS: u64 = 10_000_000;
/// Per run when `--timeout` is not given: a Linux boot and both passes under TCG on a shared
/// host.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1200);

/// `disk: <pass> begin uptime=` and `disk: <pass> end uptime=`.
pub fn markers(pass: &str) -> (String, String) {
    (
        format!("disk: {pass} begin uptime="),
        format!("disk: {pass} end uptime="),
    )
}

/// The sparse disk image the bench attaches, under `target/bench/`.
pub fn disk_image() -> PathBuf {
    bench_dir().join("disk.img")
}

/// Makes [`disk_image`] a sparse file of [`MIB`] MiB unless it is one already.
pub fn ensure_disk_image() -> Result<PathBuf> {
    let path = disk_image();
    let size = MIB << 20;
    if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == size) {
        return Ok(path);
    }
    fs::create_dir_all(bench_dir())?;
    let file =
        fs::File::create(&path).with_context(|| format!("creating {}", paths::display(&path)))?;
    file.set_len(size)
        .with_context(|| format!("sizing {}", paths::display(&path)))?;
    println!("bench: made {} ({MIB} MiB, sparse)", paths::display(&path));
    Ok(path)
}

/// The `--cmd` command of one run.
pub fn workload_cmd() -> Result<String> {
    let path = workspace_root().join("guests/linux/bench/disk.sh");
    let template =
        fs::read_to_string(&path).with_context(|| format!("reading {}", paths::display(&path)))?;
    let [(_, reads), (_, writes)] = PASSES;
    let cmd = fill_template(
        &template,
        &[
            ("MIB", &MIB.to_string()),
            ("READS", &reads.to_string()),
            ("WRITES", &writes.to_string()),
        ],
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", paths::display(&path)))?;
    linux::cmd_param(&cmd)?;
    Ok(cmd)
}

/// How the guest's virtio devices interrupt, from its `/proc/interrupts` lines: `msi-x` if a
/// virtio line is an MSI, `intx` if there are virtio lines and none is; `None` without any.
pub fn interrupt_kind(lines: &[String]) -> Option<&'static str> {
    let prefix = format!("[{}] ", linux::CONSOLE);
    let virtio: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|l| {
            l.contains("virtio") && l.trim_start().starts_with(|c: char| c.is_ascii_digit())
        })
        .collect();
    match virtio.as_slice() {
        [] => None,
        v if v.iter().any(|l| l.contains("MSI")) => Some("msi-x"),
        _ => Some("intx"),
    }
}

/// Whether the run's DMA went through an SMMU: spumone enabled one and the disk was a virtio
/// device that uses it (`iommu_platform=on`; otherwise QEMU lets it bypass the SMMU).
pub fn smmu_on(outcome_lines: &[String], command_line: &str) -> bool {
    let enabled = outcome_lines
        .iter()
        .any(|l| l.starts_with("[hv] ") && l.contains("SMMU ") && l.contains(" enabled"));
    let translated = command_line
        .split_whitespace()
        .any(|a| a.starts_with("virtio-blk-pci,") && a.contains("iommu_platform=on"));
    enabled && translated
}

/// One pass of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskRow {
    pub scenario: String,
    /// `read` or `write`.
    pub pass: String,
    pub icount: bool,
    /// The disk's DMA went through spumone's SMMU (see [`smmu_on`]).
    pub smmu: bool,
    /// `msi-x` or `intx` (see [`interrupt_kind`]).
    pub irq: Option<String>,
    /// MiB the pass moved (all its `dd`s).
    pub mib: u64,
    /// Guest time across the pass.
    pub guest_ns: u64,
    /// The CPUs' busy guest time across the pass (see [`busy_ns`]).
    pub busy_ns: u64,
    /// Host time between the pass's marker lines.
    pub wall_seconds: f64,
}

/// A row's identity: a newer row with the same key replaces it.
pub type DiskKey = (String, String, bool);

impl DiskRow {
    pub fn key(&self) -> DiskKey {
        (self.scenario.clone(), self.pass.clone(), self.icount)
    }

    /// MiB per second of guest time.
    pub fn guest_mib_per_s(&self) -> f64 {
        self.mib as f64 * 1e9 / self.guest_ns.max(1) as f64
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "pass": self.pass,
            "icount": self.icount,
            "smmu": self.smmu,
            "irq": self.irq,
            "mib": self.mib,
            "guest_ns": self.guest_ns,
            "busy_ns": self.busy_ns,
            "wall_seconds": (self.wall_seconds * 1000.0).round() / 1000.0,
        })
    }

    pub fn from_json(value: &Value) -> Result<DiskRow, String> {
        let object = value
            .as_object()
            .ok_or_else(|| format!("a row is not an object: {value}"))?;
        let (scenario, pass, icount) = disk_key(object)?;
        let what = format!("row {scenario} {pass}");
        let smmu = object
            .get("smmu")
            .and_then(Value::as_bool)
            .ok_or_else(|| format!("{what}: `smmu` missing or not a boolean"))?;
        let irq = match object.get("irq") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(format!("{what}: `irq` is not a string: {other}")),
        };
        let ns = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("{what}: `{name}` missing or not a whole number"))
        };
        let (guest_ns, busy_ns, mib) = (ns("guest_ns")?, ns("busy_ns")?, ns("mib")?);
        let wall_seconds = object
            .get("wall_seconds")
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{what}: `wall_seconds` missing or not a number"))?;
        Ok(DiskRow {
            scenario,
            pass,
            icount,
            smmu,
            irq,
            mib,
            guest_ns,
            busy_ns,
            wall_seconds,
        })
    }
}

fn disk_key(object: &Map<String, Value>) -> Result<DiskKey, String> {
    Ok((
        bench::string_field(object, "scenario")?,
        bench::string_field(object, "pass")?,
        bench::bool_field(object, "icount")?,
    ))
}

/// `old` with each row of `new` replacing the one with its key, or appended.
pub fn merge(old: Vec<Value>, new: &[DiskRow]) -> Vec<Value> {
    let new: Vec<(DiskKey, Value)> = new.iter().map(|r| (r.key(), r.to_json())).collect();
    bench::merge_by(old, new, |o| disk_key(o).ok())
}

/// One pass as the guest printed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub name: &'static str,
    /// MiB moved: [`MIB`] per `dd`.
    pub mib: u64,
    pub window: Window,
    pub guest_ns: u64,
    pub busy_ns: u64,
}

/// The passes of one run's lines, in [`PASSES`] order; a pass whose `dd` failed is an error.
pub fn passes(lines: &[String]) -> Result<Vec<Pass>, String> {
    PASSES
        .iter()
        .map(|&(name, repeats)| {
            let (begin, end) = markers(name);
            let window =
                bench::find_window(lines, &begin, &end).map_err(|e| format!("{name}: {e}"))?;
            if window.status != 0 {
                return Err(format!("{name}: dd failed with status {}", window.status));
            }
            let (idle, cpus) = parse_idle(lines, name)?;
            let guest_ns = nanoseconds(window.guest_seconds);
            Ok(Pass {
                name,
                mib: MIB * repeats,
                window,
                guest_ns,
                busy_ns: busy_ns(guest_ns, idle, cpus),
            })
        })
        .collect()
}

/// The `disk: <pass> idle=<1/100 s> cpus=<n>` line of `pass`: the CPUs' idle time across the
/// pass and their number.
pub fn parse_idle(lines: &[String], pass: &str) -> Result<(u64, u64), String> {
    let prefix = format!("[{}] disk: {pass} idle=", linux::CONSOLE);
    let mut found = lines.iter().filter_map(|l| l.strip_prefix(&prefix));
    let (Some(rest), None) = (found.next(), found.next()) else {
        return Err(format!("{pass}: expected one `{prefix}<n> cpus=<n>` line"));
    };
    let parsed = rest
        .trim_end()
        .split_once(" cpus=")
        .and_then(|(idle, cpus)| {
            Some((idle.parse::<u64>().ok()?, cpus.parse::<u64>().ok()?)).filter(|(_, c)| *c > 0)
        });
    parsed.ok_or_else(|| format!("{pass}: `{}` is not `<n> cpus=<n>`", rest.trim_end()))
}

/// Busy time: `cpus` × the elapsed time, less the idle time (`idle` in 1/100 s); 0 rather
/// than negative (rounding).
pub fn busy_ns(elapsed_ns: u64, idle: u64, cpus: u64) -> u64 {
    (elapsed_ns * cpus).saturating_sub(idle * IDLE_TICK_NS)
}

/// Guest seconds as whole nanoseconds.
fn nanoseconds(seconds: f64) -> u64 {
    (seconds * 1e9).round() as u64
}

/// The verdict on a row's busy time against its baseline's, each known to within
/// [`IDLE_TICK_NS`]: `met` only if the worst case is within the target, `not met` only if the
/// best case is not; otherwise the resolution cannot tell. Only `linux`'s [`JUDGED_PASS`]
/// under `-icount` with the SMMU on is judged.
pub fn verdict(row: &DiskRow, base: &DiskRow) -> String {
    let r = IDLE_TICK_NS;
    let worst_met = within(row.busy_ns + r, base.busy_ns.saturating_sub(r), TARGET);
    let best_met = within(row.busy_ns.saturating_sub(r), base.busy_ns + r, TARGET);
    match () {
        _ if !row.icount => "none (wall)".into(),
        _ if !row.smmu => "none (SMMU off: not the target)".into(),
        _ if row.scenario != LINUX => "none (reported: RTOS core busy)".into(),
        _ if row.pass != JUDGED_PASS => "none (reported: several busy vCPUs)".into(),
        _ if worst_met => "met".into(),
        _ if !best_met => "not met".into(),
        _ => "undecided (±10 ms)".into(),
    }
}

fn show_ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |r| format!("{r:.3}×"))
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "on"
    } else {
        "off"
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The Markdown report of every row.
pub fn render_markdown(rows: &[DiskRow]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Linux's virtio-blk disk\n");
    let _ = writeln!(
        md,
        "`dd` of {MIB} MiB inside Linux, the page cache dropped before each: `read` is `dd \
         if=/dev/vda of=/dev/null bs=1M count={MIB}` {} times in a row, `write` is `dd \
         if=/dev/zero of=/dev/vda bs=1M count={MIB} conv=fsync` {} time(s) (the disk is a \
         sparse raw file attached as a snapshot: the writes go to QEMU's temporary overlay). The disk is `virtio-blk-pci` \
         on the PCIe root complex; `SMMU` says whether its DMA went through spumone's SMMU, \
         `irq` how it interrupts. `elapsed ms` is the guest's monotonic clock across the pass, \
         `busy ms` the CPUs' time across it less their idle time (`/proc/stat`, to within \
         10 ms), `wall s` host time between the pass's marker lines. Written by `cargo xtask \
         bench disk`.\n",
        PASSES[0].1,
        PASSES[1].1
    );
    let _ = writeln!(
        md,
        "| scenario | pass | clock | SMMU | irq | elapsed ms | busy ms | MiB/s (elapsed) | wall s |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|--:|--:|--:|--:|");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.3} | {:.0} | {:.1} | {:.2} |",
            r.scenario,
            r.pass,
            clock(r.icount),
            yes_no(r.smmu),
            r.irq.as_deref().unwrap_or("–"),
            ms(r.guest_ns),
            ms(r.busy_ns),
            r.guest_mib_per_s(),
            r.wall_seconds
        );
    }
    let compared: Vec<(&DiskRow, &DiskRow)> = rows
        .iter()
        .filter(|r| r.scenario != NATIVE)
        .filter_map(|r| {
            let base = rows
                .iter()
                .find(|b| b.scenario == NATIVE && b.pass == r.pass && b.icount == r.icount)?;
            Some((r, base))
        })
        .collect();
    if compared.is_empty() {
        return md;
    }
    let (num, den) = TARGET;
    let _ = writeln!(
        md,
        "\n## Against {NATIVE} (same pass and clock)\n\n\
         Target: under `icount`, `{LINUX}`'s busy time ≤ {:.2}× native's, with the SMMU on; \
         `met` or `not met` only where the 10 ms resolution of both figures cannot change \
         it. What QEMU itself distorts:\n\n\
         - **Elapsed time under `icount`.** Under `-icount sleep=off`, once every vCPU waits \
         QEMU moves the virtual clock straight to the next timer deadline, while the disk \
         completes in host time. The elapsed time of a pass that waits for the device counts \
         the guest's armed timers, not the device: a tickless idle Linux jumps seconds per \
         wait, a guest with a near timer (spumone's, the RTOS's) milliseconds. Elapsed \
         ratios are shown and never judged; busy time, which no jump touches, is.\n\
         - **Multi-vCPU rows under `icount`.** Linux has 3 vCPUs in every scenario, run round \
         robin on one host thread, and a vCPU's busy interval includes the turns of every \
         other busy vCPU. In the `{JUDGED_PASS}` pass `dd` keeps one vCPU busy and the others \
         idle; in the other passes the kernel's writeback threads run beside it on other \
         vCPUs, so they are reported, not judged. In `{DEMO}` the RTOS's core takes its 1 ms \
         timer beside Linux and the DSM checks Linux: its rows are reported, not judged.\n\
         - **Interrupts.** Native Linux gets MSI-X through QEMU's GICv3 ITS (a vector per \
         queue, one queue per CPU); under spumone there is no ITS for Linux and the disk \
         uses INTx, one level-triggered SPI through the vGIC (the `irq` column). Busy time \
         under spumone includes that path as well as the SMMU's translation.\n\
         - **Wall rows** follow the host's load (TCG on cores shared with other work) and are \
         shown for reference.\n",
        num as f64 / den as f64
    );
    let _ = writeln!(
        md,
        "| scenario | pass | clock | SMMU | native busy ms | busy ms | busy ratio | elapsed ratio | wall ratio | target |"
    );
    let _ = writeln!(md, "|---|---|---|---|--:|--:|--:|--:|--:|---|");
    for (r, base) in compared {
        let wall_ms = |s: f64| (s * 1000.0).round() as u64;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
            r.scenario,
            r.pass,
            clock(r.icount),
            yes_no(r.smmu),
            ms(base.busy_ns),
            ms(r.busy_ns),
            show_ratio(ratio(r.busy_ns, base.busy_ns)),
            show_ratio(ratio(r.guest_ns, base.guest_ns)),
            show_ratio(ratio(wall_ms(r.wall_seconds), wall_ms(base.wall_seconds))),
            verdict(r, base)
        );
    }
    md
}

/// One run: `firmware`'s scenario with the disk, under one clock; its rows, one per pass.
fn measure(
    firmware: &Firmware,
    disk: &Disk,
    icount: bool,
    timeout: Option<Duration>,
) -> Result<Vec<DiskRow>> {
    let name = firmware.scenario.name;
    let what = format!("bench disk: {name} ({})", clock(icount));
    println!("{what} ...");
    let options = RunOptions {
        timeout,
        icount,
        echo: false,
        cmd: Some(workload_cmd()?),
        disk: Some(disk.clone()),
        ..RunOptions::new(firmware.scenario)
    };
    let outcome: RunOutcome = run::launch(firmware, &options)?;
    let log = paths::display(&outcome.log_dir.join("all.log"));
    if let Some(why) = outcome.failure() {
        bail!("{what}: {why}");
    }
    let passes = passes(&outcome.lines).map_err(|e| anyhow::anyhow!("{what}: {e} (see {log})"))?;
    if outcome.command_status() != Some(0) {
        bail!(
            "{what}: the workload ended with status {:?} (see {log})",
            outcome.command_status()
        );
    }
    let smmu = smmu_on(&outcome.lines, &outcome.command_line);
    let irq = interrupt_kind(&outcome.lines).map(str::to_string);
    let rows: Vec<DiskRow> = passes
        .into_iter()
        .map(|p| DiskRow {
            scenario: name.to_string(),
            pass: p.name.to_string(),
            icount,
            smmu,
            irq: irq.clone(),
            mib: p.mib,
            guest_ns: p.guest_ns,
            busy_ns: p.busy_ns,
            wall_seconds: bench::wall_between(&outcome, &p.window),
        })
        .collect();
    for r in &rows {
        println!(
            "{what}: {} {:.3} ms elapsed, {:.0} ms busy (guest), {:.2} s wall, SMMU {}, irq {}",
            r.pass,
            ms(r.guest_ns),
            ms(r.busy_ns),
            r.wall_seconds,
            yes_no(r.smmu),
            r.irq.as_deref().unwrap_or("?")
        );
    }
    Ok(rows)
}

/// `cargo xtask bench disk [--clock C] [--only linux|demo]`: the native baseline and the
/// chosen scenarios under each chosen clock; merges the rows into `disk.json`.
pub fn bench(
    clocks: &[bool],
    only: Option<&str>,
    timeout: Option<Duration>,
) -> Result<Vec<DiskRow>> {
    setup::ensure_base(false)?;
    let disk = Disk {
        path: ensure_disk_image()?,
        writable: false,
    };
    let names: Vec<&str> = std::iter::once(NATIVE)
        .chain(GROUPS.into_iter().filter(|g| only.is_none_or(|o| o == *g)))
        .collect();
    let mut built = Vec::new();
    for name in &names {
        let s = scenario::lookup(name)?;
        built.push(firmware::build_into(
            s,
            &BuildOptions::default(),
            &bench::bench_images_dir(name),
        )?);
    }
    // After building: cargo must stay interruptible; Ctrl-C now reaches QEMU.
    signals::ignore_interrupts();
    let mut rows = Vec::new();
    for &icount in clocks {
        for firmware in &built {
            rows.extend(measure(firmware, &disk, icount, timeout)?);
        }
    }
    let json_path = bench_dir().join(format!("{NAME}.json"));
    let merged = merge(bench::read_results(&json_path)?, &rows);
    let all: Vec<DiskRow> = merged
        .iter()
        .map(DiskRow::from_json)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", paths::display(&json_path)))?;
    bench::write_report(NAME, merged, &render_markdown(&all))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    fn row(scenario: &str, pass: &str, icount: bool, busy_ms: u64, wall: f64) -> DiskRow {
        DiskRow {
            scenario: scenario.into(),
            pass: pass.into(),
            icount,
            smmu: scenario != NATIVE,
            irq: Some(if scenario == NATIVE { "msi-x" } else { "intx" }.into()),
            mib: 256,
            guest_ns: 4 * busy_ms * 1_000_000,
            busy_ns: busy_ms * 1_000_000,
            wall_seconds: wall,
        }
    }

    /// A run's console as the workload prints it.
    fn run_lines(read_status: u32) -> Vec<String> {
        lines(&[
            "[linux] spumone: linux ready: 3 CPUs, modules: virtio_pci",
            "[linux] disk: read begin uptime=12.500000000",
            "[rtos] latency n=100 min=1 mean=2 p50=2 p99=3 max=4 misses=0",
            &format!("[linux] disk: read end uptime=12.750123456 status={read_status}"),
            "[linux] disk: read idle=60 cpus=3",
            "[linux] 256+0 records in",
            "[linux] disk: write begin uptime=13.000000000",
            "[linux] disk: write end uptime=14.000000001 status=0",
            "[linux] disk: write idle=290 cpus=3",
            "[linux]  40:        512          0          0  GICv3  37 Level     virtio0",
            "[linux] spumone: command exit status 0",
        ])
    }

    #[test]
    fn the_workload_fills_its_template_and_prints_both_passes_markers() {
        let cmd = workload_cmd().unwrap();
        assert!(!cmd.contains("@MIB@"), "{cmd}");
        assert!(cmd.contains("count=256 "), "{cmd}");
        for (pass, repeats) in PASSES {
            assert!(
                cmd.contains(&format!("p {pass} {repeats} if=")),
                "{pass}: {cmd}"
            );
        }
        assert!(cmd.contains("drop_caches; o=$(dd"), "{cmd}");
        for marker in ["begin uptime=", "end uptime=", "idle="] {
            assert!(
                cmd.contains(&format!("disk: $n {marker}")),
                "{marker}: {cmd}"
            );
        }
        assert!(
            cmd.contains("p read 4 if=/dev/vda of=/dev/null &&"),
            "{cmd}"
        );
        assert!(cmd.contains("conv=fsync"), "{cmd}");
    }

    #[test]
    fn finds_each_passes_window_and_busy_time_in_guest_nanoseconds() {
        let out = run_lines(0);
        let p = passes(&out).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name, p[0].window.begin, p[0].window.end),
            ("read", 1, 3)
        );
        assert_eq!(p[0].guest_ns, 250_123_456);
        // 3 CPUs × 250.123456 ms, less 600 ms idle.
        assert_eq!(p[0].busy_ns, 150_370_368);
        assert_eq!((p[1].name, p[1].guest_ns), ("write", 1_000_000_001));
        assert_eq!(p[1].busy_ns, 100_000_003);
        assert_eq!(busy_ns(10, 1, 3), 0, "rounding never goes negative");
    }

    #[test]
    fn a_failed_or_missing_pass_is_an_error() {
        let err = passes(&run_lines(1)).unwrap_err();
        assert!(err.contains("read: dd failed with status 1"), "{err}");
        let mut no_write = run_lines(0);
        no_write.retain(|l| !l.contains("disk: write end"));
        let err = passes(&no_write).unwrap_err();
        assert!(
            err.starts_with("write: no `[linux] disk: write end uptime"),
            "{err}"
        );
        let mut twice = run_lines(0);
        twice.insert(2, "[linux] disk: read begin uptime=12.6".into());
        assert!(passes(&twice).unwrap_err().contains("more than one"));
        // Another console's marker does not count.
        let mut other = run_lines(0);
        other[1] = other[1].replace("[linux]", "[rtos]");
        assert!(passes(&other).is_err());
        for bad in [
            "idle=x cpus=3",
            "idle=5 cpus=0",
            "idle=5",
            "idle=5 cpus=3 more",
        ] {
            let mut out = run_lines(0);
            out[4] = format!("[linux] disk: read {bad}");
            let err = passes(&out).unwrap_err();
            assert!(err.starts_with("read: "), "{bad}: {err}");
        }
        let mut no_idle = run_lines(0);
        no_idle.remove(8);
        assert!(passes(&no_idle)
            .unwrap_err()
            .contains("write: expected one"));
    }

    #[test]
    fn interrupts_and_the_smmu_are_read_from_the_run() {
        assert_eq!(interrupt_kind(&run_lines(0)), Some("intx"));
        let msi = lines(&[
            "[linux]  45:  7  0  0  ITS-MSI 16384 Edge      virtio0-config",
            "[linux]  46: 90  0  0  ITS-MSI 16385 Edge      virtio0-req.0",
        ]);
        assert_eq!(interrupt_kind(&msi), Some("msi-x"));
        // The module list mentions virtio but is not an interrupt line.
        assert_eq!(
            interrupt_kind(&lines(&[
                "[linux] spumone: linux ready: modules: virtio_pci"
            ])),
            None
        );
        let hv = lines(&["[hv] INFO SMMU smmu at 0x9050000 enabled: stream table of 256"]);
        let translated = "qemu -device virtio-blk-pci,drive=d0,iommu_platform=on -kernel x";
        assert!(smmu_on(&hv, translated));
        assert!(!smmu_on(
            &hv,
            "qemu -device virtio-blk-pci,drive=d0 -kernel x"
        ));
        assert!(!smmu_on(&run_lines(0), translated), "no SMMU enabled");
    }

    #[test]
    fn rows_round_trip_and_merge_by_scenario_pass_and_clock() {
        let a = row(LINUX, "read", true, 250, 3.5);
        assert_eq!(DiskRow::from_json(&a.to_json()).unwrap(), a);
        let v = a.to_json();
        for field in [
            "scenario", "pass", "icount", "smmu", "irq", "mib", "guest_ns", "busy_ns",
        ] {
            assert!(v.get(field).is_some(), "{field} in {v}");
        }
        let merged = merge(
            vec![a.to_json(), row(NATIVE, "read", true, 1, 1.0).to_json()],
            &[
                row(LINUX, "read", true, 260, 3.0),
                row(LINUX, "write", true, 5, 1.0),
                row(LINUX, "read", false, 7, 1.0),
            ],
        );
        let rows: Vec<DiskRow> = merged
            .iter()
            .map(|r| DiskRow::from_json(r).unwrap())
            .collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].busy_ns, 260_000_000, "replaced in place");
        assert_eq!((rows[2].pass.as_str(), rows[3].icount), ("write", false));
        let mut bad = a.to_json();
        bad["busy_ns"] = json!(1.5);
        assert!(DiskRow::from_json(&bad).unwrap_err().contains("busy_ns"));
        bad["smmu"] = json!("yes");
        assert!(DiskRow::from_json(&bad).unwrap_err().contains("smmu"));
        assert!(DiskRow::from_json(&json!({"scenario": "linux", "icount": true})).is_err());
    }

    #[test]
    fn only_the_linux_icount_row_behind_the_smmu_is_judged_past_the_resolution() {
        let write = |busy_ms| row(LINUX, "write", true, busy_ms, 1.0);
        let write_base = row(NATIVE, "write", true, 400, 2.0);
        assert!(verdict(&write(399), &write_base).contains("several busy vCPUs"));
        let base = row(NATIVE, "read", true, 400, 2.0);
        let judged = |busy_ms| verdict(&row(LINUX, "read", true, busy_ms, 1.0), &base);
        // 1.05 × (400 − 10) = 409.5: met for 399 + 10 ms, not for 400 + 10 ms.
        assert_eq!(judged(399), "met");
        assert_eq!(judged(400), "undecided (±10 ms)");
        // 1.05 × (400 + 10) = 430.5: not met once 431 − 10 ms is past it.
        assert_eq!(judged(440), "undecided (±10 ms)");
        assert_eq!(judged(441), "not met");
        let wall = row(LINUX, "read", false, 999, 1.0);
        assert_eq!(verdict(&wall, &base), "none (wall)");
        let bypassed = DiskRow {
            smmu: false,
            ..row(LINUX, "read", true, 200, 1.0)
        };
        assert!(verdict(&bypassed, &base).contains("SMMU off"));
        let demo = row(DEMO, "read", true, 200, 1.0);
        assert!(verdict(&demo, &base).starts_with("none (reported"));
    }

    #[test]
    fn markdown_puts_each_row_beside_its_native_baseline() {
        let rows = vec![
            row(NATIVE, "read", true, 200, 2.0),
            row(LINUX, "read", true, 240, 3.0),
            row(NATIVE, "write", false, 400, 4.0),
            row(LINUX, "write", false, 300, 5.0),
            // No baseline of its pass and clock: listed, not compared.
            row(DEMO, "write", true, 1, 1.0),
        ];
        let md = render_markdown(&rows);
        assert!(
            md.contains(
                "| linux-native | read | icount | off | msi-x | 800.000 | 200 | 320.0 | 2.00 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| linux | read | icount | on | 200 | 240 | 1.200× | 1.200× | 1.500× | not met |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| linux | write | wall | on | 400 | 300 | 0.750× | 0.750× | 1.250× | none (wall) |"),
            "{md}"
        );
        assert_eq!(md.matches("| demo | write |").count(), 1, "{md}");
        assert!(md.contains("INTx") && md.contains("MSI-X"), "{md}");
        assert!(!render_markdown(&rows[..1]).contains("## Against"));
    }
}
