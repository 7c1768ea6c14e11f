//! The kernel-build workload and `cargo xtask bench kbuild`.
//!
//! A Debian arm64 root filesystem with a native toolchain is made on the host without running
//! arm64 code (`debootstrap --foreign`, then the remaining packages unpacked with `dpkg-deb`
//! and the maintainer scripts' work redone from `guests/linux/kbuild/fixups.txt`), with the
//! Linux 6.1 source from Debian's `linux-source-6.1`, as an ext4 image. One writable boot of
//! `linux-native` configures and prepares the tree (`prepare.sh`); every benchmark run then
//! boots a snapshot of that image and compiles with the guest's own gcc (`workload.sh`).

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::bench::{self, clock, LatencyStats, Window, DEMO, POLICIES, SHARED};
use crate::firmware::{self, BuildOptions, Firmware, LatencySettings};
use crate::linux;
use crate::paths::{self, cache_dir, workspace_root};
use crate::qemu::Disk;
use crate::run::{self, RunOptions};
use crate::scenario;
use crate::setup::{self, State, Step};
use crate::signals;

/// Debian's kernel source package (the tree the guest compiles).
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
/// Where the unpacked source lives in the guest (see `prepare.sh`, `workload.sh`).
pub const SOURCE_DIR: &str = "usr/src/linux-source-6.1";
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// The ext4 image's size; sparse, about 2 GB of it is used before building.
const IMAGE_SIZE: &str = "6G";
/// `make -j`: the Linux guest has 3 CPUs in every scenario the bench runs.
pub const JOBS: u32 = 3;
/// Bumped when the way the root filesystem is made changes.
const RECIPE_VERSION: u32 = 1;
/// The native baseline every ratio is taken against.
pub const NATIVE: &str = "linux-native";
/// Which scenarios `bench kbuild --only` may pick (the native baseline always runs): `demo`
/// (Linux on cores of its own, the DSM on or off) and `shared` (under each policy).
pub const GROUPS: [&str; 2] = [DEMO, SHARED];
/// Markers `workload.sh` prints, each followed by the guest's uptime in seconds.
pub const BEGIN_MARKER: &str = "kbuild: begin uptime=";
pub const END_MARKER: &str = "kbuild: end uptime=";
/// What `prepare.sh` prints when the tree is ready.
pub const PREPARED_LINE: &str = "kbuild: prepared";

/// `guests/linux/kbuild/`: package list, fix-ups, in-guest scripts, quick targets.
pub fn recipe_dir() -> PathBuf {
    workspace_root().join("guests").join("linux").join("kbuild")
}

fn recipe_file(name: &str) -> Result<String> {
    let path = recipe_dir().join(name);
    fs::read_to_string(&path).with_context(|| format!("reading {}", paths::display(&path)))
}

/// Everything the workload keeps between runs.
pub fn kbuild_dir() -> PathBuf {
    cache_dir().join("kbuild")
}

/// The root filesystem image as built on the host, before the tree is prepared.
pub fn rootfs_image() -> PathBuf {
    kbuild_dir().join("rootfs.ext4")
}

/// The image the benchmark boots: the root filesystem with the kernel tree prepared.
pub fn prepared_image() -> PathBuf {
    kbuild_dir().join("prepared.ext4")
}

/// The meaningful lines of a list file: trimmed, without blank lines and `#` comments.
pub fn list_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// One thing a skipped maintainer script would have done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fixup {
    /// Make `path` a symlink to `target`.
    Link { path: String, target: String },
    /// Copy the file `from` to `to`.
    Copy { from: String, to: String },
    /// Make `path` an empty directory with `mode`, replacing a symlink or file.
    Dir { path: String, mode: u32 },
}

/// A path inside the root filesystem: relative, without `..`.
fn inside(path: &str) -> Result<&str, String> {
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(path)
    } else {
        Err(format!(
            "`{path}` must be relative to the root filesystem, without `..`"
        ))
    }
}

/// Parses `fixups.txt`.
pub fn parse_fixups(text: &str) -> Result<Vec<Fixup>, String> {
    list_lines(text)
        .into_iter()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["link", path, target] => Ok(Fixup::Link {
                    path: inside(path)?.into(),
                    target: (*target).into(),
                }),
                ["copy", from, to] => Ok(Fixup::Copy {
                    from: inside(from)?.into(),
                    to: inside(to)?.into(),
                }),
                ["dir", path, mode] => Ok(Fixup::Dir {
                    path: inside(path)?.into(),
                    mode: u32::from_str_radix(mode, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| format!("`{line}`: `{mode}` is not an octal mode"))?,
                }),
                _ => Err(format!(
                    "`{line}`: expected `link PATH TARGET`, `copy FROM TO` or `dir PATH MODE`"
                )),
            }
        })
        .collect()
}

/// Removes whatever is at `path` (a symlink is removed, not followed).
fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("looking at {}", path.display())),
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
        }
        Ok(_) => fs::remove_file(path).with_context(|| format!("removing {}", path.display())),
    }
}

/// Carries out `fixups` in the tree at `root`.
pub fn apply_fixups(root: &Path, fixups: &[Fixup]) -> Result<()> {
    for fixup in fixups {
        match fixup {
            Fixup::Link { path, target } => {
                let at = root.join(path);
                remove_any(&at)?;
                std::os::unix::fs::symlink(target, &at)
                    .with_context(|| format!("linking {path} to {target}"))?;
            }
            Fixup::Copy { from, to } => {
                fs::copy(root.join(from), root.join(to))
                    .with_context(|| format!("copying {from} to {to}"))?;
            }
            Fixup::Dir { path, mode } => {
                let at = root.join(path);
                remove_any(&at)?;
                fs::create_dir_all(&at).with_context(|| format!("making {path}"))?;
                // set_permissions, not create's mode: the umask must not strip bits.
                fs::set_permissions(&at, fs::Permissions::from_mode(*mode))
                    .with_context(|| format!("setting the mode of {path}"))?;
            }
        }
    }
    Ok(())
}

/// `template` without its comment lines (the command line is short), each `@NAME@`
/// replaced; an unknown or unreplaced `@NAME@` is an error.
pub fn fill_template(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out: String = template
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    for (name, value) in values {
        let key = format!("@{name}@");
        if !out.contains(&key) {
            return Err(format!("the template has no {key}"));
        }
        out = out.replace(&key, value);
    }
    let placeholder = out
        .split('@')
        .skip(1)
        .step_by(2)
        .find(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    match placeholder {
        Some(name) => Err(format!("@{name}@ is left unreplaced")),
        None => Ok(out),
    }
}

/// How much of the kernel the workload compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The objects in `quick-targets.txt` (a few minutes of guest time).
    Quick,
    /// The whole tinyconfig `Image` (hours under TCG).
    Full,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Quick => "quick",
            Variant::Full => "full",
        }
    }

    /// Per run; `-icount` runs every vCPU on one host thread, so it is generous.
    pub fn default_timeout(self) -> Duration {
        match self {
            Variant::Quick => Duration::from_secs(3 * 3600),
            Variant::Full => Duration::from_secs(48 * 3600),
        }
    }

    /// The `make` targets.
    pub fn targets(self) -> Result<Vec<String>> {
        Ok(match self {
            Variant::Quick => list_lines(&recipe_file("quick-targets.txt")?)
                .into_iter()
                .map(String::from)
                .collect(),
            Variant::Full => vec!["Image".into()],
        })
    }
}

/// The `--cmd` command of one workload run.
pub fn workload_cmd(variant: Variant) -> Result<String> {
    let targets = variant.targets()?.join(" ");
    let jobs = JOBS.to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let cmd = fill_template(
        &recipe_file("workload.sh")?,
        &[("JOBS", &jobs), ("TARGETS", &targets), ("NOW", &now)],
    )
    .map_err(|e| anyhow::anyhow!("guests/linux/kbuild/workload.sh: {e}"))?;
    linux::cmd_param(&cmd)?;
    Ok(cmd)
}

/// The `--cmd` command of the one run that prepares the tree.
pub fn prepare_cmd() -> Result<String> {
    let jobs = JOBS.to_string();
    let cmd = fill_template(&recipe_file("prepare.sh")?, &[("JOBS", &jobs)])
        .map_err(|e| anyhow::anyhow!("guests/linux/kbuild/prepare.sh: {e}"))?;
    linux::cmd_param(&cmd)?;
    Ok(cmd)
}

/// The build window of one run, from the console lines (prefixed) of the Linux guest.
pub fn find_window(lines: &[String]) -> Result<Window, String> {
    bench::find_window(lines, BEGIN_MARKER, END_MARKER)
}

/// The RTOS `latency` lines printed inside the window.
pub fn latency_rounds(lines: &[String], window: &Window) -> Result<Vec<LatencyStats>, String> {
    bench::rtos_rounds(&lines[window.begin..=window.end])
}

/// Rounds summed into one: samples and misses add up, min is the least, mean is weighted by
/// samples, and p50, p99 and max are each the worst round's (a bound, not a recomputed
/// percentile: the rounds' samples are not kept).
pub fn aggregate(rounds: &[LatencyStats]) -> Option<LatencyStats> {
    let n: u64 = rounds.iter().map(|r| r.n).sum();
    if n == 0 {
        return None;
    }
    let weighted: u128 = rounds
        .iter()
        .map(|r| u128::from(r.mean_ns) * u128::from(r.n))
        .sum();
    let worst = |f: fn(&LatencyStats) -> u64| rounds.iter().map(f).max().unwrap_or(0);
    Some(LatencyStats {
        n,
        min_ns: rounds.iter().map(|r| r.min_ns).min().unwrap_or(0),
        mean_ns: u64::try_from((weighted + u128::from(n) / 2) / u128::from(n)).unwrap_or(u64::MAX),
        p50_ns: worst(|r| r.p50_ns),
        p99_ns: worst(|r| r.p99_ns),
        max_ns: worst(|r| r.max_ns),
        misses: rounds.iter().map(|r| r.misses).sum(),
    })
}

/// One result of the kernel-build bench.
#[derive(Debug, Clone, PartialEq)]
pub struct KbuildRow {
    pub scenario: String,
    pub variant: String,
    pub icount: bool,
    /// The D-System Monitor checked Linux during the build (false for native runs).
    pub dsm: bool,
    /// The migration policy of Linux's vCPUs (`shared` only; `None` elsewhere).
    pub policy: Option<String>,
    /// Guest uptime across the build.
    pub guest_seconds: f64,
    /// Host time between the begin and end marker lines.
    pub wall_seconds: f64,
}

/// A row's identity: a newer row with the same key replaces it.
pub type KbuildKey = (String, String, bool, bool, Option<String>);

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl KbuildRow {
    pub fn key(&self) -> KbuildKey {
        (
            self.scenario.clone(),
            self.variant.clone(),
            self.icount,
            self.dsm,
            self.policy.clone(),
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "variant": self.variant,
            "icount": self.icount,
            "dsm": self.dsm,
            "policy": self.policy,
            "guest_seconds": round3(self.guest_seconds),
            "wall_seconds": round3(self.wall_seconds),
        })
    }

    pub fn from_json(value: &Value) -> Result<KbuildRow, String> {
        let object = value
            .as_object()
            .ok_or_else(|| format!("a row is not an object: {value}"))?;
        let (scenario, variant, icount, dsm, policy) = kbuild_key(object)?;
        let seconds = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("row {scenario}: `{name}` missing or not a number"))
        };
        Ok(KbuildRow {
            guest_seconds: seconds("guest_seconds")?,
            wall_seconds: seconds("wall_seconds")?,
            scenario,
            variant,
            icount,
            dsm,
            policy,
        })
    }
}

fn kbuild_key(object: &Map<String, Value>) -> Result<KbuildKey, String> {
    let text = |name: &str| bench::string_field(object, name);
    let icount = bench::bool_field(object, "icount")?;
    // Rows written before the field existed ran without the DSM.
    let dsm = match object.get("dsm") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| "a row's `dsm` is not a boolean".to_string())?,
    };
    // Rows written before the field existed did not migrate.
    let policy = match object.get("policy") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .map(String::from)
                .ok_or_else(|| "a row's `policy` is not a string".to_string())?,
        ),
    };
    Ok((text("scenario")?, text("variant")?, icount, dsm, policy))
}

/// `old` with each row of `new` replacing the one with its key, or appended.
pub fn merge(old: Vec<Value>, new: &[KbuildRow]) -> Vec<Value> {
    let new: Vec<(KbuildKey, Value)> = new.iter().map(|r| (r.key(), r.to_json())).collect();
    bench::merge_by(old, new, |o| kbuild_key(o).ok())
}

/// A row against `linux-native`, same variant and clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Overhead {
    pub scenario: String,
    pub variant: String,
    pub icount: bool,
    pub dsm: bool,
    pub policy: Option<String>,
    pub guest_ratio: f64,
    pub wall_ratio: f64,
}

/// The overhead target under `-icount`: at most 1% more guest time than native.
pub const OVERHEAD_TARGET: f64 = 1.01;

/// Every non-native row against the native row of the same variant and clock.
pub fn overheads(rows: &[KbuildRow]) -> Vec<Overhead> {
    rows.iter()
        .filter(|r| r.scenario != NATIVE)
        .filter_map(|r| {
            let base = rows
                .iter()
                .find(|b| b.scenario == NATIVE && b.variant == r.variant && b.icount == r.icount)?;
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            Some(Overhead {
                scenario: r.scenario.clone(),
                variant: r.variant.clone(),
                icount: r.icount,
                dsm: r.dsm,
                policy: r.policy.clone(),
                guest_ratio: ratio(r.guest_seconds, base.guest_seconds),
                wall_ratio: ratio(r.wall_seconds, base.wall_seconds),
            })
        })
        .collect()
}

/// The cost of the DSM's periodic checking: `demo` with the DSM on against `demo` with it off
/// (`--no-dsm`), same variant and clock. This is the DSM target's figure; the rows against
/// native above add spumone's own cost.
#[derive(Debug, Clone, PartialEq)]
pub struct DsmCost {
    pub variant: String,
    pub icount: bool,
    pub on_seconds: f64,
    pub off_seconds: f64,
    pub guest_ratio: f64,
}

/// The DSM's checking target under `-icount`: at most 1% more guest time than with it off.
pub const DSM_COST_TARGET: f64 = 1.01;

/// Every `demo` row with the DSM on against the `demo` row with it off, same variant and clock.
pub fn dsm_costs(rows: &[KbuildRow]) -> Vec<DsmCost> {
    rows.iter()
        .filter(|r| r.scenario == DEMO && r.dsm)
        .filter_map(|on| {
            let off = rows.iter().find(|b| {
                b.scenario == DEMO && !b.dsm && b.variant == on.variant && b.icount == on.icount
            })?;
            Some(DsmCost {
                variant: on.variant.clone(),
                icount: on.icount,
                on_seconds: on.guest_seconds,
                off_seconds: off.guest_seconds,
                guest_ratio: if off.guest_seconds > 0.0 {
                    on.guest_seconds / off.guest_seconds
                } else {
                    f64::NAN
                },
            })
        })
        .collect()
}

/// Whether a DSM cost meets its target: only `-icount` figures are judged.
pub fn dsm_cost_verdict(cost: &DsmCost) -> &'static str {
    match cost.guest_ratio {
        _ if !cost.icount => "none (wall)",
        r if r < 2.0 - DSM_COST_TARGET => "suspect (faster with the DSM on)",
        r if r <= DSM_COST_TARGET => "met",
        _ => "not met",
    }
}

/// The Markdown table of the DSM costs (empty when there is none).
pub fn render_dsm_costs(costs: &[DsmCost]) -> String {
    let mut md = String::new();
    if costs.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "| variant | clock | DSM off s | DSM on s | ratio | cost | target (≤ {DSM_COST_TARGET:.2}×) |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|---|");
    for c in costs {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.4}× | {:+.2}% | {} |",
            c.variant,
            clock(c.icount),
            c.off_seconds,
            c.on_seconds,
            c.guest_ratio,
            (c.guest_ratio - 1.0) * 100.0,
            dsm_cost_verdict(c)
        );
    }
    md
}

fn on_off(dsm: bool) -> &'static str {
    if dsm {
        "on"
    } else {
        "off"
    }
}

fn or_dash(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("–")
}

/// The Markdown report.
pub fn render_markdown(rows: &[KbuildRow]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Kernel build inside Linux\n");
    let _ = writeln!(
        md,
        "The guest's gcc compiles part of Debian's Linux 6.1 tree (tinyconfig, prepared once) \
         with `make -j{JOBS}` on 3 CPUs: `quick` is the objects in \
         `guests/linux/kbuild/quick-targets.txt`, `full` the whole `Image`. `guest s` is the \
         guest's uptime across the build, `wall s` host time between the marker lines. Under \
         `icount` (`-icount shift=0,align=off,sleep=off`) guest time counts instructions. \
         Written by `cargo xtask bench kbuild`.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | DSM | policy | variant | clock | guest s | wall s |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|--:|--:|");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} |",
            r.scenario,
            on_off(r.dsm),
            or_dash(&r.policy),
            r.variant,
            clock(r.icount),
            r.guest_seconds,
            r.wall_seconds
        );
    }
    let overheads = overheads(rows);
    if overheads.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "\n## Overhead against {NATIVE} (same variant and clock)\n"
    );
    let _ = writeln!(
        md,
        "Target under `icount`: guest time ≤ {OVERHEAD_TARGET:.2}× native (`{DEMO}`). The \
         `{SHARED}` rows (Linux's 4 vCPUs, one on the RTOS's core) are the slowdown from \
         sharing, reported without a target. Wall-clock ratios follow the host's load and are \
         for reference.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | DSM | policy | variant | clock | guest ratio | overhead | wall ratio | target |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|--:|--:|--:|---|");
    for o in &overheads {
        // spumone cannot make Linux faster: a ratio well below 1 means the runs differ.
        let target = match o.guest_ratio {
            _ if !o.icount => "none (wall)",
            r if r < 2.0 - OVERHEAD_TARGET => "suspect (faster than native)",
            _ if o.policy.is_some() => "none (reported)",
            r if r <= OVERHEAD_TARGET => "met",
            _ => "not met",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.4}× | {:+.2}% | {:.3}× | {target} |",
            o.scenario,
            on_off(o.dsm),
            or_dash(&o.policy),
            o.variant,
            clock(o.icount),
            o.guest_ratio,
            (o.guest_ratio - 1.0) * 100.0,
            o.wall_ratio,
        );
    }
    let costs = dsm_costs(rows);
    if !costs.is_empty() {
        let _ = writeln!(
            md,
            "\n## The DSM's periodic checking (`{DEMO}`, DSM on against `--no-dsm`)\n"
        );
        let _ = writeln!(
            md,
            "What the checkers cost the build, spumone's own cost taken out. Each row here is \
             the newest of its key; `bench dsm --kbuild` measures both in one run.\n"
        );
        md.push_str(&render_dsm_costs(&costs));
    }
    md
}

/// The kbuild setup steps, in order: host tools, the root filesystem image, the prepared tree.
pub fn steps() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(HostTools),
        Box::new(RootFs),
        Box::new(PreparedTree),
    ]
}

/// Makes sure the prepared image exists (building whatever is missing).
pub fn ensure(verbose: bool) -> Result<()> {
    setup::ensure_steps(&steps(), verbose)
}

/// `debootstrap` and `mkfs.ext4`, from the Debian packages named after them.
struct HostTools;

/// The host tools the root filesystem needs, and their Debian packages.
const HOST_TOOLS: [(&str, &str); 3] = [
    ("debootstrap", "debootstrap"),
    ("mkfs.ext4", "e2fsprogs"),
    ("dpkg-deb", "dpkg"),
];

/// Where `program` is, also looking in the sbin directories a user's PATH may lack.
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn program(name: &str) -> Result<PathBuf> {
    find_program(name).with_context(|| format!("{name} not found"))
}

impl HostTools {
    fn missing() -> Vec<(&'static str, &'static str)> {
        HOST_TOOLS
            .into_iter()
            .filter(|(p, _)| find_program(p).is_none())
            .collect()
    }
}

impl Step for HostTools {
    fn name(&self) -> String {
        "kbuild host tools".into()
    }

    fn check(&self) -> Result<State> {
        let missing = HostTools::missing();
        Ok(if missing.is_empty() {
            State::Ready("kbuild host tools debootstrap, mkfs.ext4".into())
        } else {
            let names: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
            State::Missing(format!("{} not found", names.join(", ")))
        })
    }

    fn run(&self) -> Result<()> {
        let packages: Vec<&str> = HostTools::missing().iter().map(|(_, p)| *p).collect();
        if !setup::can_install() {
            bail!(
                "install the packages {} (Debian/Ubuntu: `apt-get install {}`) or run as root",
                packages.join(", "),
                packages.join(" ")
            );
        }
        setup::apt_install(&packages)
    }
}

/// The root filesystem image, made on the host.
struct RootFs;

fn rootfs_stamp_path() -> PathBuf {
    kbuild_dir().join("rootfs.stamp")
}

fn prepared_stamp_path() -> PathBuf {
    kbuild_dir().join("prepared.stamp")
}

/// What the root filesystem is made from, as one line: a change rebuilds it.
fn rootfs_inputs() -> Result<String> {
    let mut text = format!("{RECIPE_VERSION} {SUITE} {SOURCE_PACKAGE}\n");
    for name in ["packages.txt", "fixups.txt"] {
        text.push_str(&recipe_file(name)?);
    }
    Ok(format!("rootfs {:016x}", linux::fnv1a(text.as_bytes())))
}

/// What the prepared image is made from: the root filesystem and `prepare.sh`.
fn prepared_inputs() -> Result<String> {
    let text = format!("{}\n{}", rootfs_inputs()?, prepare_cmd()?);
    Ok(format!("prepared {:016x}", linux::fnv1a(text.as_bytes())))
}

fn stamp_matches(stamp: &Path, image: &Path, expected: &str) -> bool {
    image.is_file() && fs::read_to_string(stamp).is_ok_and(|s| s.trim() == expected)
}

/// The verified `linux-source-6.1` `.deb` in [`kbuild_dir`], downloaded if missing.
fn source_deb() -> Result<PathBuf> {
    let show = linux::capture(Command::new("apt-cache").args([
        "show",
        "--no-all-versions",
        SOURCE_PACKAGE,
    ]))
    .with_context(|| {
        format!("apt knows no {SOURCE_PACKAGE}; is the bookworm archive configured?")
    })?;
    let entry = linux::parse_index_entry(&show)
        .with_context(|| format!("no Version/SHA256 in `apt-cache show {SOURCE_PACKAGE}`"))?;
    let dir = kbuild_dir();
    let wanted = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{SOURCE_PACKAGE}_")) && n.ends_with(".deb"))
    };
    let find = || -> Result<Option<PathBuf>> {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if wanted(&path) {
                return Ok(Some(path));
            }
        }
        Ok(None)
    };
    match find()? {
        Some(deb) if linux::sha256_of(&deb)? == entry.sha256 => return Ok(deb),
        Some(stale) => {
            println!(
                "setup: {} does not match the index; fetching again",
                paths::display(&stale)
            );
            fs::remove_file(&stale)?;
        }
        None => {}
    }
    println!("setup: fetching {SOURCE_PACKAGE} {}", entry.version);
    linux::run_shown(
        crate::setup::apt_get()
            .args(["download", SOURCE_PACKAGE])
            .current_dir(&dir),
    )?;
    let deb = find()?.with_context(|| format!("apt-get download left no {SOURCE_PACKAGE} .deb"))?;
    let got = linux::sha256_of(&deb)?;
    if got != entry.sha256 {
        bail!(
            "{}: SHA-256 {got} does not match the index's {}",
            paths::display(&deb),
            entry.sha256
        );
    }
    Ok(deb)
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x... -C ROOT [MEMBERS]`.
fn unpack_deb(deb: &Path, root: &Path, members: &[&str]) -> Result<()> {
    let mut dpkg = Command::new(program("dpkg-deb")?)
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting dpkg-deb")?;
    let pipe = dpkg.stdout.take().context("dpkg-deb's stdout")?;
    // Keep merged-/usr symlinks (bin -> usr/bin) instead of replacing them by directories.
    let tar = Command::new("tar")
        .args(["--keep-directory-symlink", "-xf", "-", "-C"])
        .arg(root)
        .args(members)
        .stdin(pipe)
        .status()
        .context("starting tar")?;
    let dpkg = dpkg.wait()?;
    if !dpkg.success() || !tar.success() {
        bail!(
            "unpacking {} failed (dpkg-deb {dpkg}, tar {tar})",
            deb.display()
        );
    }
    Ok(())
}

impl Step for RootFs {
    fn name(&self) -> String {
        "kbuild root filesystem".into()
    }

    fn check(&self) -> Result<State> {
        Ok(
            if stamp_matches(&rootfs_stamp_path(), &rootfs_image(), &rootfs_inputs()?) {
                State::Ready(format!(
                    "kbuild root filesystem {}",
                    paths::display(&rootfs_image())
                ))
            } else {
                State::Missing(format!("{} not built", paths::display(&rootfs_image())))
            },
        )
    }

    fn run(&self) -> Result<()> {
        let dir = kbuild_dir();
        let root = dir.join("root");
        let debs = dir.join("debs");
        fs::create_dir_all(&debs)?;
        let _ = fs::remove_file(rootfs_stamp_path());
        remove_any(&root)?;
        let source = source_deb()?;

        let include = list_lines(&recipe_file("packages.txt")?).join(",");
        println!(
            "setup: debootstrap --foreign {SUITE} arm64 (packages kept in {})",
            paths::display(&debs)
        );
        linux::run_shown(
            Command::new(program("debootstrap")?)
                .args(["--foreign", "--arch=arm64", "--variant=minbase"])
                .arg(format!("--cache-dir={}", debs.display()))
                .arg(format!("--include={include}"))
                .arg(SUITE)
                .arg(&root)
                .arg(MIRROR),
        )?;
        // The first stage unpacked only the required set; unpack every package.
        let debpaths = fs::read_to_string(root.join("debootstrap").join("debpaths"))
            .context("debootstrap left no debootstrap/debpaths")?;
        let mut count = 0;
        for line in debpaths.lines() {
            let Some((_, path)) = line.split_once(' ') else {
                continue;
            };
            unpack_deb(&root.join(path.trim_start_matches('/')), &root, &[])?;
            count += 1;
        }
        println!("setup: unpacked {count} packages");
        let fixups = parse_fixups(&recipe_file("fixups.txt")?)
            .map_err(|e| anyhow::anyhow!("guests/linux/kbuild/fixups.txt: {e}"))?;
        apply_fixups(&root, &fixups)?;
        // The .debs are in `debs`; the image does not need them or debootstrap's state.
        remove_any(&root.join("debootstrap"))?;
        for entry in fs::read_dir(root.join("var/cache/apt/archives"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "deb") {
                fs::remove_file(path)?;
            }
        }

        println!(
            "setup: unpacking the kernel source from {}",
            paths::display(&source)
        );
        let tarball = format!("{SOURCE_DIR}.tar.xz");
        let scratch = dir.join("source");
        remove_any(&scratch)?;
        fs::create_dir_all(&scratch)?;
        unpack_deb(&source, &scratch, &[&format!("./{tarball}")])?;
        linux::run_shown(
            Command::new("tar")
                .arg("-xf")
                .arg(scratch.join(&tarball))
                .arg("-C")
                .arg(root.join("usr/src")),
        )?;
        remove_any(&scratch)?;
        if !root.join(SOURCE_DIR).join("Makefile").is_file() {
            bail!("the source tarball did not give {SOURCE_DIR}/Makefile");
        }

        println!("setup: mkfs.ext4 -d ({IMAGE_SIZE}, sparse)");
        let tmp = dir.join("rootfs.ext4.tmp");
        remove_any(&tmp)?;
        linux::run_shown(
            Command::new(program("mkfs.ext4")?)
                .args(["-q", "-F", "-L", "kbuild", "-d"])
                .arg(&root)
                .arg(&tmp)
                .arg(IMAGE_SIZE),
        )?;
        fs::rename(&tmp, rootfs_image())?;
        remove_any(&root)?;
        fs::write(rootfs_stamp_path(), rootfs_inputs()? + "\n")?;
        Ok(())
    }
}

/// The prepared tree: one writable `linux-native` boot runs `prepare.sh`.
struct PreparedTree;

impl Step for PreparedTree {
    fn name(&self) -> String {
        "kbuild prepared tree".into()
    }

    fn check(&self) -> Result<State> {
        Ok(
            if stamp_matches(
                &prepared_stamp_path(),
                &prepared_image(),
                &prepared_inputs()?,
            ) {
                State::Ready(format!(
                    "kbuild prepared tree {}",
                    paths::display(&prepared_image())
                ))
            } else {
                State::Missing(format!(
                    "{} not prepared",
                    paths::display(&prepared_image())
                ))
            },
        )
    }

    fn run(&self) -> Result<()> {
        let _ = fs::remove_file(prepared_stamp_path());
        let tmp = kbuild_dir().join("prepared.ext4.tmp");
        remove_any(&tmp)?;
        linux::run_shown(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(rootfs_image())
                .arg(&tmp),
        )?;
        let native = scenario::lookup(NATIVE)?;
        let firmware = firmware::build_into(
            native,
            &BuildOptions::default(),
            &bench::bench_images_dir(NATIVE),
        )?;
        println!(
            "setup: booting {NATIVE} once to run make tinyconfig and make prepare in the guest \
             (about 10 minutes under TCG)"
        );
        let options = RunOptions {
            timeout: Some(Duration::from_secs(4 * 3600)),
            cmd: Some(prepare_cmd()?),
            disk: Some(Disk {
                path: tmp.clone(),
                writable: true,
            }),
            ..RunOptions::new(native)
        };
        let outcome = run::launch(&firmware, &options)?;
        let log = paths::display(&outcome.log_dir.join("all.log"));
        if let Some(why) = outcome.failure() {
            bail!("preparing the kernel tree: {why}");
        }
        if outcome.command_status() != Some(0) || !outcome.has_line(PREPARED_LINE) {
            bail!("preparing the kernel tree failed in the guest (log in {log})");
        }
        fs::rename(&tmp, prepared_image())?;
        fs::write(prepared_stamp_path(), prepared_inputs()? + "\n")?;
        Ok(())
    }
}

/// One bench run's results.
struct Measured {
    row: KbuildRow,
    rounds: Vec<LatencyStats>,
}

/// One run of the bench under a given clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub scenario: &'static str,
    /// The DSM on (`demo` only: the native baseline has none, `shared`'s config none).
    pub dsm: bool,
    /// `--policy` for the run (`shared` only).
    pub policy: Option<&'static str>,
}

impl Case {
    /// How the run's RTOS latency row names the build (`kbuild-quick`, `kbuild-full-no-dsm`).
    pub fn load(&self, variant: Variant) -> String {
        let no_dsm = self.scenario == DEMO && !self.dsm;
        format!(
            "kbuild-{}{}",
            variant.name(),
            if no_dsm { "-no-dsm" } else { "" }
        )
    }

    fn describe(&self, variant: Variant, icount: bool) -> String {
        let mut what = format!(
            "bench kbuild: {} ({}, {}",
            self.scenario,
            variant.name(),
            clock(icount)
        );
        if self.scenario == DEMO {
            what.push_str(if self.dsm { ", DSM on" } else { ", DSM off" });
        }
        if let Some(policy) = self.policy {
            let _ = write!(what, ", policy {policy}");
        }
        what.push(')');
        what
    }
}

fn measure(
    firmware: &Firmware,
    case: Case,
    variant: Variant,
    icount: bool,
    timeout: Option<Duration>,
) -> Result<Measured> {
    let what = case.describe(variant, icount);
    println!("{what} ...");
    let options = RunOptions {
        timeout,
        icount,
        echo: false,
        cmd: Some(workload_cmd(variant)?),
        disk: Some(Disk {
            path: prepared_image(),
            writable: false,
        }),
        no_dsm: case.scenario == DEMO && !case.dsm,
        policy: case.policy.map(str::to_string),
        ..RunOptions::new(firmware.scenario)
    };
    let outcome = run::launch(firmware, &options)?;
    let log = paths::display(&outcome.log_dir.join("all.log"));
    if let Some(why) = outcome.failure() {
        bail!("{what}: {why}");
    }
    let window =
        find_window(&outcome.lines).map_err(|e| anyhow::anyhow!("{what}: {e} (see {log})"))?;
    if window.status != 0 || outcome.command_status() != Some(0) {
        bail!(
            "{what}: make failed with status {} (see {log})",
            window.status
        );
    }
    let rounds =
        latency_rounds(&outcome.lines, &window).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    let row = KbuildRow {
        scenario: case.scenario.to_string(),
        variant: variant.name().to_string(),
        icount,
        dsm: case.dsm,
        policy: case.policy.map(str::to_string),
        guest_seconds: window.guest_seconds,
        wall_seconds: bench::wall_between(&outcome, &window),
    };
    println!(
        "{what}: guest {:.2} s, wall {:.2} s, {} RTOS latency rounds in the window",
        row.guest_seconds,
        row.wall_seconds,
        rounds.len()
    );
    Ok(Measured { row, rounds })
}

/// Which runs `cargo xtask bench kbuild` makes besides the native baseline, which always runs
/// (under each chosen clock) so every ratio has its baseline from the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub variant: Variant,
    /// The clocks: `true` is `-icount`.
    pub clocks: &'static [bool],
    /// `demo` with the DSM on, off, or both (off measures spumone alone); empty: no `demo`.
    pub dsm: &'static [bool],
    /// `shared` under these migration policies; empty: no `shared`.
    pub policies: &'static [&'static str],
}

impl Plan {
    /// The plan the command line asks for: `clock` (`Some(true)`: `-icount` only), `only` a
    /// group of [`GROUPS`], `dsm` for `demo` and `policy` (one of [`POLICIES`]) for `shared`;
    /// `None` runs all.
    pub fn chosen(
        variant: Variant,
        clock: Option<bool>,
        only: Option<&str>,
        dsm: Option<bool>,
        policy: Option<&str>,
    ) -> Result<Plan, String> {
        let policies: &'static [&'static str] = match (only, policy) {
            (Some(DEMO), _) => &[],
            (_, None) => &POLICIES,
            (_, Some(name)) => {
                let at = POLICIES
                    .iter()
                    .position(|&p| p == name)
                    .ok_or_else(|| format!("--policy {name}: no such policy"))?;
                std::slice::from_ref(&POLICIES[at])
            }
        };
        Ok(Plan {
            variant,
            clocks: match clock {
                None => &[true, false],
                Some(true) => &[true],
                Some(false) => &[false],
            },
            dsm: match (only, dsm) {
                (Some(SHARED), _) => &[],
                (_, None) => &[false, true],
                (_, Some(true)) => &[true],
                (_, Some(false)) => &[false],
            },
            policies,
        })
    }

    /// The runs under each clock, the native baseline first.
    pub fn cases(&self) -> Vec<Case> {
        let native = Case {
            scenario: NATIVE,
            dsm: false,
            policy: None,
        };
        let demo = self.dsm.iter().map(|&dsm| Case {
            scenario: DEMO,
            dsm,
            policy: None,
        });
        let shared = self.policies.iter().map(|&policy| Case {
            scenario: SHARED,
            dsm: false,
            policy: Some(policy),
        });
        std::iter::once(native).chain(demo).chain(shared).collect()
    }
}

/// `cargo xtask bench kbuild [--quick] [--clock C] [--dsm D] [--only G] [--policy P]`.
/// Runs the plan, merges its rows into `kbuild.json` and returns this run's rows.
pub fn bench(plan: Plan, timeout: Option<Duration>) -> Result<Vec<KbuildRow>> {
    setup::ensure_base(false)?;
    ensure(true)?;
    let build = BuildOptions::default();
    let cases = plan.cases();
    let mut built: Vec<Firmware> = Vec::new();
    for case in &cases {
        if built.iter().all(|f| f.scenario.name != case.scenario) {
            let s = scenario::lookup(case.scenario)?;
            built.push(firmware::build_into(
                s,
                &build,
                &bench::bench_images_dir(case.scenario),
            )?);
        }
    }
    // After building: cargo must stay interruptible; Ctrl-C now reaches QEMU.
    signals::ignore_interrupts();

    let variant = plan.variant;
    let mut rows = Vec::new();
    let mut latency = Vec::new();
    for &icount in plan.clocks {
        for case in &cases {
            let firmware = built
                .iter()
                .find(|f| f.scenario.name == case.scenario)
                .expect("every case's firmware is built above");
            let m = measure(firmware, *case, variant, icount, timeout)?;
            if case.scenario != NATIVE {
                match aggregate(&m.rounds) {
                    Some(stats) => latency.push(bench::Row {
                        scenario: case.scenario.into(),
                        icount,
                        policy: case.policy.map(str::to_string),
                        load: Some(case.load(variant)),
                        period_us: u64::from(LatencySettings::DEFAULT.period_us),
                        stats,
                        wall_seconds: m.row.wall_seconds,
                        // Not kept for the build's rounds yet, so not plotted.
                        hist: None,
                        pathlen: None,
                    }),
                    None => println!(
                        "{}: no RTOS latency line during the build; no latency row",
                        case.describe(variant, icount)
                    ),
                }
            }
            rows.push(m.row);
        }
    }

    let json_path = bench::bench_dir().join("kbuild.json");
    let merged = merge(bench::read_results(&json_path)?, &rows);
    let all: Vec<KbuildRow> = merged
        .iter()
        .map(KbuildRow::from_json)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", paths::display(&json_path)))?;
    bench::write_report("kbuild", merged, &render_markdown(&all))?;
    if !latency.is_empty() {
        bench::write_latency_rows(&latency)?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_recipe_files_parse() {
        let fixups = parse_fixups(&recipe_file("fixups.txt").unwrap()).unwrap();
        assert!(fixups.contains(&Fixup::Link {
            path: "usr/bin/cc".into(),
            target: "gcc".into()
        }));
        let packages = recipe_file("packages.txt").unwrap();
        assert!(list_lines(&packages).contains(&"gcc"));
        let quick = Variant::Quick.targets().unwrap();
        assert!(quick.len() >= 24, "{quick:?}");
        assert!(quick.iter().all(|t| t.ends_with(".o")), "{quick:?}");
        for cmd in [
            workload_cmd(Variant::Quick).unwrap(),
            prepare_cmd().unwrap(),
        ] {
            for placeholder in ["@JOBS@", "@TARGETS@", "@NOW@"] {
                assert!(!cmd.contains(placeholder), "{cmd}");
            }
            assert!(cmd.contains(SOURCE_DIR), "{cmd}");
        }
        let quick = workload_cmd(Variant::Quick).unwrap();
        assert!(quick.contains("lib/sort.o"), "{quick}");
        let set = quick.split("date -s @").nth(1).unwrap_or("");
        let secs: u64 = set.split_whitespace().next().unwrap_or("").parse().unwrap();
        assert!(secs > 1_700_000_000, "the host's clock: {quick}");
        assert!(workload_cmd(Variant::Full).unwrap().contains("t=\"Image\""));
        // The whole command must fit the kernel command line it travels on.
        linux::cmd_param(&quick).unwrap();
    }

    #[test]
    fn fixups_parse_and_reject_mistakes() {
        let text = "# comment\n\nlink usr/bin/awk mawk\ncopy a/b c\ndir tmp 1777\n";
        assert_eq!(
            parse_fixups(text).unwrap(),
            vec![
                Fixup::Link {
                    path: "usr/bin/awk".into(),
                    target: "mawk".into()
                },
                Fixup::Copy {
                    from: "a/b".into(),
                    to: "c".into()
                },
                Fixup::Dir {
                    path: "tmp".into(),
                    mode: 0o1777
                },
            ]
        );
        for bad in [
            "link /usr/bin/awk mawk",
            "copy ../x y",
            "dir tmp 999",
            "dir tmp 17777",
            "link a",
            "move a b",
        ] {
            assert!(parse_fixups(bad).is_err(), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn fixups_apply_to_a_tree() {
        let root = std::env::temp_dir().join(format!("kbuild-fixups-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd.master"), "root:x:0:0\n").unwrap();
        std::os::unix::fs::symlink("/proc", root.join("proc")).unwrap();
        fs::write(root.join("usr/bin/cc"), "old").unwrap();
        let fixups = parse_fixups(
            "link usr/bin/cc gcc\ncopy etc/passwd.master etc/passwd\ndir proc 0555\ndir tmp 1777\n",
        )
        .unwrap();
        apply_fixups(&root, &fixups).unwrap();
        assert_eq!(
            fs::read_link(root.join("usr/bin/cc")).unwrap(),
            Path::new("gcc")
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/passwd")).unwrap(),
            "root:x:0:0\n"
        );
        let proc = fs::symlink_metadata(root.join("proc")).unwrap();
        assert!(proc.is_dir(), "the symlink is replaced by a directory");
        assert_eq!(proc.permissions().mode() & 0o7777, 0o555);
        let tmp = fs::metadata(root.join("tmp")).unwrap();
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn templates_are_filled_completely() {
        assert_eq!(
            fill_template(
                "# make @WHAT@\nmake -j@JOBS@ @TARGETS@",
                &[("JOBS", "3"), ("TARGETS", "a.o b.o")]
            ),
            Ok("make -j3 a.o b.o\n".into())
        );
        assert!(fill_template("make -j@JOBS@ @TARGETS@", &[("JOBS", "3")]).is_err());
        assert!(fill_template("make", &[("JOBS", "3")]).is_err());
        // Not placeholders: an e-mail address, a lone @.
        assert!(fill_template("a@b.c @ -j@JOBS@", &[("JOBS", "3")]).is_ok());
    }

    #[test]
    fn finds_the_build_window() {
        let out = lines(&[
            "[linux] spumone: linux ready: 3 CPUs",
            "[linux] kbuild: begin uptime=12.50",
            "[rtos] latency n=100 min=1 mean=2 p50=2 p99=3 max=4 misses=0",
            "[linux] kbuild: end uptime=140.75 status=0",
            "[linux] spumone: command exit status 0",
        ]);
        let w = find_window(&out).unwrap();
        assert_eq!((w.begin, w.end, w.status), (1, 3, 0));
        assert!((w.guest_seconds - 128.25).abs() < 1e-9, "{w:?}");
        let failed = lines(&[
            "[linux] kbuild: begin uptime=1",
            "[linux] kbuild: end uptime=2 status=2",
        ]);
        assert_eq!(find_window(&failed).unwrap().status, 2);
    }

    #[test]
    fn a_broken_window_is_an_error() {
        for bad in [
            vec!["[linux] kbuild: begin uptime=1"],
            vec!["[linux] kbuild: end uptime=2 status=0"],
            vec![
                "[linux] kbuild: begin uptime=1",
                "[linux] kbuild: begin uptime=1",
                "[linux] kbuild: end uptime=2 status=0",
            ],
            vec![
                "[linux] kbuild: begin uptime=5",
                "[linux] kbuild: end uptime=2 status=0",
            ],
            vec![
                "[linux] kbuild: begin uptime=x",
                "[linux] kbuild: end uptime=2 status=0",
            ],
            vec![
                "[linux] kbuild: begin uptime=1",
                "[linux] kbuild: end uptime=2",
            ],
            // Another console's marker does not count.
            vec![
                "[rtos] kbuild: begin uptime=1",
                "[linux] kbuild: end uptime=2 status=0",
            ],
        ] {
            assert!(find_window(&lines(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn latency_rounds_are_the_ones_inside_the_window() {
        let out = lines(&[
            "[rtos] latency n=10 min=1 mean=1 p50=1 p99=1 max=1 misses=0",
            "[linux] kbuild: begin uptime=1",
            "[rtos] latency n=100 min=5 mean=10 p50=9 p99=20 max=30 misses=1",
            "[linux] CC lib/sort.o",
            "[rtos] latency n=300 min=4 mean=14 p50=12 p99=18 max=50 misses=2",
            "[linux] kbuild: end uptime=2 status=0",
            "[rtos] latency n=10 min=1 mean=1 p50=1 p99=1 max=1 misses=0",
        ]);
        let w = find_window(&out).unwrap();
        let rounds = latency_rounds(&out, &w).unwrap();
        assert_eq!(rounds.len(), 2);
        assert_eq!(
            aggregate(&rounds).unwrap(),
            LatencyStats {
                n: 400,
                min_ns: 4,
                mean_ns: 13,
                p50_ns: 12,
                p99_ns: 20,
                max_ns: 50,
                misses: 3,
            }
        );
        assert_eq!(aggregate(&[]), None);
        let bad = lines(&[
            "[linux] kbuild: begin uptime=1",
            "[rtos] latency n=oops",
            "[linux] kbuild: end uptime=2 status=0",
        ]);
        assert!(latency_rounds(&bad, &find_window(&bad).unwrap()).is_err());
    }

    fn row(scenario: &str, variant: &str, icount: bool, guest: f64, wall: f64) -> KbuildRow {
        KbuildRow {
            scenario: scenario.into(),
            variant: variant.into(),
            icount,
            dsm: false,
            policy: None,
            guest_seconds: guest,
            wall_seconds: wall,
        }
    }

    fn shared(policy: &str, icount: bool, guest: f64) -> KbuildRow {
        KbuildRow {
            policy: Some(policy.into()),
            ..row(SHARED, "quick", icount, guest, 1.0)
        }
    }

    #[test]
    fn rows_round_trip_and_merge_by_key() {
        let a = row(NATIVE, "quick", true, 100.0, 300.0);
        assert_eq!(KbuildRow::from_json(&a.to_json()).unwrap(), a);
        let json = a.to_json();
        for field in [
            "scenario",
            "variant",
            "icount",
            "dsm",
            "policy",
            "guest_seconds",
            "wall_seconds",
        ] {
            assert!(json.get(field).is_some(), "{field} in {json}");
        }
        let old = vec![
            a.to_json(),
            row("demo", "quick", true, 101.0, 310.0).to_json(),
            row(NATIVE, "full", true, 9000.0, 20000.0).to_json(),
        ];
        let merged = merge(
            old,
            &[
                row("demo", "quick", true, 100.5, 305.0),
                row("demo", "quick", false, 50.0, 52.0),
            ],
        );
        let rows: Vec<KbuildRow> = merged
            .iter()
            .map(|v| KbuildRow::from_json(v).unwrap())
            .collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1].guest_seconds, 100.5, "replaced in place");
        assert_eq!(rows[2].variant, "full", "other rows kept");
        assert!(!rows[3].icount, "new key appended");
        assert!(KbuildRow::from_json(&json!({"scenario": "x", "icount": true})).is_err());

        // The DSM is part of the key; rows from before the field ran without it.
        let with_dsm = KbuildRow {
            dsm: true,
            ..row("demo", "quick", true, 120.0, 330.0)
        };
        let merged = merge(merged, std::slice::from_ref(&with_dsm));
        assert_eq!(merged.len(), 5, "a DSM row does not replace a no-DSM row");
        assert_eq!(KbuildRow::from_json(&merged[4]).unwrap(), with_dsm);
        let mut legacy = a.to_json();
        legacy.as_object_mut().unwrap().remove("dsm");
        assert!(!KbuildRow::from_json(&legacy).unwrap().dsm);
        legacy["dsm"] = json!("yes");
        assert!(KbuildRow::from_json(&legacy).is_err());
    }

    #[test]
    fn the_policy_is_part_of_the_key() {
        let pinned = shared("pinned", true, 41.0);
        assert_eq!(KbuildRow::from_json(&pinned.to_json()).unwrap(), pinned);
        let merged = merge(
            vec![row(SHARED, "quick", true, 40.0, 1.0).to_json()],
            &[pinned.clone(), shared("load", true, 42.0)],
        );
        assert_eq!(merged.len(), 3, "each policy is its own row: {merged:?}");
        let merged = merge(merged, &[shared("pinned", true, 43.0)]);
        assert_eq!(merged.len(), 3, "the same policy replaces its row");
        assert_eq!(merged[1]["guest_seconds"], json!(43.0));
        // A row from before the field did not migrate; a policy must be a string.
        let mut legacy = pinned.to_json();
        legacy.as_object_mut().unwrap().remove("policy");
        assert_eq!(KbuildRow::from_json(&legacy).unwrap().policy, None);
        legacy["policy"] = json!(3);
        assert!(KbuildRow::from_json(&legacy).is_err());
    }

    #[test]
    fn the_plan_runs_native_first_then_demo_then_each_policy() {
        let plan = Plan {
            variant: Variant::Quick,
            clocks: &[true],
            dsm: &[false, true],
            policies: &POLICIES,
        };
        let cases = plan.cases();
        let names: Vec<String> = cases
            .iter()
            .map(|c| format!("{} {} {:?}", c.scenario, c.dsm, c.policy))
            .collect();
        assert_eq!(
            names,
            [
                "linux-native false None",
                "demo false None",
                "demo true None",
                "shared false Some(\"pinned\")",
                "shared false Some(\"spumone\")",
                "shared false Some(\"load\")",
            ],
        );
        let loads: Vec<String> = cases.iter().map(|c| c.load(Variant::Quick)).collect();
        assert_eq!(loads[1], "kbuild-quick-no-dsm");
        assert_eq!(loads[2], "kbuild-quick");
        assert_eq!(loads[3], "kbuild-quick", "shared has no DSM to name");
        assert!(cases[5]
            .describe(Variant::Full, false)
            .contains("policy load"));
        let one = |p| Plan::chosen(Variant::Quick, None, None, None, Some(p));
        assert_eq!(one("load").map(|p| p.policies), Ok(&["load"][..]));
        assert!(one("fast").is_err());
        let shared = Plan::chosen(Variant::Full, Some(false), Some(SHARED), None, None).unwrap();
        assert_eq!(
            (shared.clocks, shared.dsm, shared.policies),
            (&[false][..], &[][..], &POLICIES[..])
        );
        let demo = Plan::chosen(Variant::Quick, None, Some(DEMO), Some(true), None).unwrap();
        assert_eq!(
            (demo.clocks, demo.dsm, demo.policies.len()),
            (&[true, false][..], &[true][..], 0)
        );
        let native_only = Plan {
            dsm: &[],
            policies: &[],
            ..plan
        };
        assert_eq!(native_only.cases().len(), 1);
    }

    #[test]
    fn sharing_rows_are_reported_without_the_dsm_target() {
        let rows = vec![
            row(NATIVE, "quick", true, 100.0, 1.0),
            shared("pinned", true, 101.5),
            shared("spumone", true, 40.0),
        ];
        let md = render_markdown(&rows);
        assert!(
            md.contains("| shared | off | pinned | quick | icount | 1.0150× | +1.50% | 1.000× | none (reported) |"),
            "{md}"
        );
        assert!(
            md.contains("| shared | off | spumone | quick | icount | 0.4000× | -60.00% | 1.000× | suspect (faster than native) |"),
            "{md}"
        );
        assert!(
            md.contains("| shared | off | pinned | quick | icount | 101.50 | 1.00 |"),
            "{md}"
        );
    }

    #[test]
    fn overhead_is_demo_over_native_of_the_same_variant_and_clock() {
        let rows = vec![
            row(NATIVE, "quick", true, 200.0, 400.0),
            row("demo", "quick", true, 201.0, 500.0),
            row(NATIVE, "quick", false, 100.0, 100.0),
            row("demo", "quick", false, 110.0, 120.0),
            row("demo", "full", true, 1.0, 1.0),
        ];
        let o = overheads(&rows);
        assert_eq!(o.len(), 2, "the full row has no baseline: {o:?}");
        assert!((o[0].guest_ratio - 1.005).abs() < 1e-9 && o[0].icount);
        assert!((o[0].wall_ratio - 1.25).abs() < 1e-9);
        assert!((o[1].guest_ratio - 1.1).abs() < 1e-9 && !o[1].icount);
        let md = render_markdown(&rows);
        assert!(
            md.contains("| demo | off | – | quick | icount | 1.0050× | +0.50% | 1.250× | met |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| demo | off | – | quick | wall | 1.1000× | +10.00% | 1.200× | none (wall) |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| demo | off | – | full | icount | 1.00 | 1.00 |"),
            "{md}"
        );
        let fast = vec![
            row(NATIVE, "quick", true, 100.0, 1.0),
            row("demo", "quick", true, 55.0, 1.0),
        ];
        assert!(render_markdown(&fast).contains("| suspect (faster than native) |"));
        let slow = vec![
            row(NATIVE, "quick", true, 100.0, 1.0),
            row("demo", "quick", true, 102.0, 1.0),
        ];
        assert!(render_markdown(&slow).contains("| not met |"));
    }

    #[test]
    fn dsm_cost_is_demo_on_over_demo_off_of_the_same_variant_and_clock() {
        let on = |variant: &str, icount: bool, guest: f64| KbuildRow {
            dsm: true,
            ..row(DEMO, variant, icount, guest, 1.0)
        };
        let rows = vec![
            row(NATIVE, "quick", true, 40.0, 1.0),
            row(DEMO, "quick", true, 40.5, 1.0),
            on("quick", true, 40.86),
            row(DEMO, "quick", false, 10.0, 1.0),
            on("quick", false, 12.0),
            // No `--no-dsm` row for this variant: no cost, rather than one against native.
            on("full", true, 99.0),
        ];
        let costs = dsm_costs(&rows);
        assert_eq!(costs.len(), 2, "{costs:?}");
        assert!((costs[0].guest_ratio - 40.86 / 40.5).abs() < 1e-12 && costs[0].icount);
        assert!((costs[1].guest_ratio - 1.2).abs() < 1e-12 && !costs[1].icount);
        assert_eq!(dsm_cost_verdict(&costs[0]), "met");
        assert_eq!(dsm_cost_verdict(&costs[1]), "none (wall)");
        let md = render_markdown(&rows);
        assert!(
            md.contains("| quick | icount | 40.50 | 40.86 | 1.0089× | +0.89% | met |"),
            "{md}"
        );
        assert!(md.contains("| quick | wall | 10.00 | 12.00 | 1.2000× | +20.00% | none (wall) |"));
        let over = vec![row(DEMO, "quick", true, 40.0, 1.0), on("quick", true, 40.5)];
        assert_eq!(dsm_cost_verdict(&dsm_costs(&over)[0]), "not met");
        let faster = vec![row(DEMO, "quick", true, 40.0, 1.0), on("quick", true, 30.0)];
        assert_eq!(
            dsm_cost_verdict(&dsm_costs(&faster)[0]),
            "suspect (faster with the DSM on)"
        );
        // Without a DSM-on row there is no section at all.
        assert!(!render_markdown(&rows[..2]).contains("periodic checking"));
    }
}
