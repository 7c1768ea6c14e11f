//! The path-length plugin (`tools/pathlen`, `spumone-pathlen`) as runs use it: built for the
//! host, its markers resolved from the ELF symbols of the images a scenario boots, its report
//! read back after the run (see `docs/qemu-timing.md`).
//!
//! Window kinds (instructions of the marked vCPU itself):
//! - [`RTOS_IRQ`]: the RTOS's IRQ vector entry to its latency task's timestamp (the counter
//!   read the latency sample is taken from);
//! - [`HV_IRQ_RTOS`] (under spumone): spumone's EL2 vector entry for a guest's IRQ to the same
//!   timestamp, the whole forwarded path;
//! - [`HV_EXIT`] (under spumone): any EL2 vector entry from a guest to spumone's `eret`, tagged
//!   by the code it ran (`crate::profile` turns the tags into an exit reason);
//! - [`HV_IDLE_RTOS`] (under spumone): a shared core's wake from its EL2 `wfi` to the RTOS's
//!   timestamp, the path of an RTOS loaded ahead of its deadline.
//!
//! Spans (under spumone): where a core waits on another (`crate::profile::WAIT_SPANS`) and
//! all of spumone's code.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::firmware::Firmware;
use crate::paths::{self, target_dir, workspace_root};
use crate::scenario::Kind;
pub use spumone_pathlen::{args::WindowKind, Config, Report};

/// The plugin's package, and the library cargo makes of it.
pub const PACKAGE: &str = "spumone-pathlen";
pub const LIBRARY: &str = "libspumone_pathlen.so";

/// The report's file name in a run's log directory.
pub const REPORT: &str = "pathlen.json";

pub const RTOS_IRQ: &str = "rtos-irq";
pub const HV_IRQ_RTOS: &str = "hv-irq-rtos";
pub const HV_EXIT: &str = "hv-exit";
pub const HV_IDLE_RTOS: &str = "hv-idle-rtos";

/// The RTOS's EL1 vector table (16 entries of 0x80 bytes).
pub const RTOS_VECTORS: &str = "rtos_vectors";
/// The ELF section listing the address of every copy of the latency task's counter read
/// (`guests/rtos/src/arch/timer.rs`).
pub const RTOS_TIMESTAMP: &str = ".rtos_latency_timestamp";
/// spumone's EL2 vector table.
pub const HV_VECTORS: &str = "spumone_vectors";
/// The exit path every return to a guest goes through; its `eret` ends [`HV_EXIT`].
pub const HV_TRAP_RETURN: &str = "spumone_trap_return";
/// The instruction after a shared core's EL2 `wfi`: [`HV_IDLE_RTOS`] starts there.
pub const HV_IDLE_WAKE: &str = "spumone_idle_wake";

/// Bytes per vector table entry.
const VECTOR_ENTRY: u64 = 0x80;
/// Entry indexes: `group * 4 + type`, type 0 sync, 1 IRQ, 2 FIQ, 3 SError; groups 0-1 from
/// the current EL, 2 from a lower EL in AArch64.
const IRQ_TYPE: u64 = 1;
const SYNC_TYPE: u64 = 0;
const LOWER_A64: u64 = 2;
/// The A64 `eret` encoding.
const ERET: u32 = 0xd69f_03e0;

/// Builds the plugin for the host (release) and returns the library.
pub fn build_plugin() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "-p", PACKAGE, "--lib", "--target-dir"])
        .arg(target_dir())
        .status()
        .context("cannot start cargo to build the path-length plugin")?;
    if !status.success() {
        bail!("building {PACKAGE} failed (see the compiler output above)");
    }
    let library = target_dir().join("release").join(LIBRARY);
    if !library.is_file() {
        bail!(
            "{PACKAGE} built but {} is missing",
            paths::display(&library)
        );
    }
    Ok(library)
}

/// An ELF's symbols (raw and demangled names) and its executable range.
pub struct Elf {
    path: PathBuf,
    bytes: Vec<u8>,
    symbols: HashMap<String, u64>,
    /// Function symbols: demangled name without its hash, address, size.
    functions: Vec<(String, u64, u64)>,
    pub text: (u64, u64),
}

/// Code ranges `[lo, hi)` by function name.
pub type FunctionRanges = HashMap<String, Vec<(u64, u64)>>;

/// A function's name as [`Elf::function_ranges`] matches it: demangled, without the hash.
pub fn plain_name(mangled: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(mangled))
}

impl Elf {
    pub fn read(path: &Path) -> Result<Elf> {
        use object::{Object, ObjectSegment, ObjectSymbol, SegmentFlags};
        let bytes = fs::read(path).with_context(|| format!("reading {}", paths::display(path)))?;
        let file = object::File::parse(&*bytes)
            .with_context(|| format!("parsing {}", paths::display(path)))?;
        let mut symbols = HashMap::new();
        let mut functions = Vec::new();
        for s in file.symbols() {
            let Ok(name) = s.name() else { continue };
            symbols.insert(name.to_string(), s.address());
            if s.kind() == object::SymbolKind::Text && s.size() > 0 {
                functions.push((plain_name(name), s.address(), s.address() + s.size()));
            }
            let demangled = format!("{:#}", rustc_demangle::demangle(name));
            symbols.entry(demangled).or_insert(s.address());
        }
        const PF_X: u32 = 1;
        let (mut lo, mut hi) = (u64::MAX, 0);
        for segment in file.segments() {
            if matches!(segment.flags(), SegmentFlags::Elf { p_flags, .. } if p_flags & PF_X != 0) {
                lo = lo.min(segment.address());
                hi = hi.max(segment.address() + segment.size());
            }
        }
        if lo >= hi {
            bail!("{}: no executable segment", paths::display(path));
        }
        Ok(Elf {
            path: path.to_path_buf(),
            bytes,
            symbols,
            functions,
            text: (lo, hi),
        })
    }

    /// The code of each function in `names` (demangled, without hash; generic functions
    /// without their parameters, as `spin::mutex::Mutex<T,R>::lock`): its out-of-line copies
    /// from the symbol table and every inlined copy the DWARF lists. A name found nowhere
    /// has no entry. Costs nothing at run time: fat LTO inlines most handlers, and the
    /// DWARF still says which instructions came from which function.
    pub fn function_ranges(&self, names: &[&str]) -> Result<FunctionRanges> {
        let mut found = FunctionRanges::new();
        for (name, lo, hi) in &self.functions {
            if names.contains(&name.as_str()) {
                found.entry(name.clone()).or_default().push((*lo, *hi));
            }
        }
        for (name, range) in self
            .inlined_ranges(names)
            .with_context(|| format!("reading the DWARF of {}", paths::display(&self.path)))?
        {
            found.entry(name).or_default().push(range);
        }
        for ranges in found.values_mut() {
            ranges.sort_unstable();
            ranges.dedup();
        }
        Ok(found)
    }

    /// `(name, range)` of every DWARF subprogram or inlined subroutine named in `names`.
    fn inlined_ranges(&self, names: &[&str]) -> Result<Vec<(String, (u64, u64))>> {
        use gimli::{constants, AttributeValue, DebugInfoOffset, EndianSlice, LittleEndian};
        use object::{Object, ObjectSection};
        use std::borrow::Cow;
        let file = object::File::parse(&*self.bytes)?;
        let sections = gimli::DwarfSections::load(|id| -> Result<Cow<[u8]>> {
            Ok(match file.section_by_name(id.name()) {
                Some(section) => section.uncompressed_data()?,
                None => Cow::Borrowed(&[]),
            })
        })?;
        let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
        let mut units = Vec::new();
        let mut headers = dwarf.units();
        while let Some(header) = headers.next()? {
            units.push(dwarf.unit(header)?);
        }
        // A DIE's reference to the DIE that names it (an inlined copy to its abstract
        // instance, that to a method's declaration, which holds the linkage name).
        let origin = |unit: &gimli::Unit<_>, entry: &gimli::DebuggingInformationEntry<_>| {
            let mut found = None;
            for attr in [
                constants::DW_AT_abstract_origin,
                constants::DW_AT_specification,
            ] {
                found = match entry.attr_value(attr) {
                    Ok(Some(AttributeValue::UnitRef(o))) => o.to_debug_info_offset(&unit.header),
                    Ok(Some(AttributeValue::DebugInfoRef(o))) => Some(o),
                    _ => None,
                };
                if found.is_some() {
                    break;
                }
            }
            found
        };
        // Pass 1: every DIE's name or the DIE it refers to for one.
        let mut named: HashMap<DebugInfoOffset, String> = HashMap::new();
        let mut refers: HashMap<DebugInfoOffset, DebugInfoOffset> = HashMap::new();
        for unit in &units {
            let mut entries = unit.entries();
            while let Some((_, entry)) = entries.next_dfs()? {
                let Some(at) = entry.offset().to_debug_info_offset(&unit.header) else {
                    continue;
                };
                if let Some(value) = entry.attr_value(constants::DW_AT_linkage_name)? {
                    let name = dwarf
                        .attr_string(unit, value)?
                        .to_string_lossy()
                        .into_owned();
                    named.insert(at, plain_name(&name));
                } else if let Some(to) = origin(unit, entry) {
                    refers.insert(at, to);
                }
            }
        }
        let resolve = |mut at: DebugInfoOffset| -> Option<&String> {
            // Chains are two or three long; the bound only stops a malformed loop.
            for _ in 0..8 {
                if let Some(name) = named.get(&at) {
                    return Some(name);
                }
                at = *refers.get(&at)?;
            }
            None
        };
        // Pass 2: the code of each instance, named directly or through its origins.
        let mut out = Vec::new();
        for unit in &units {
            let mut entries = unit.entries();
            while let Some((_, entry)) = entries.next_dfs()? {
                if !matches!(
                    entry.tag(),
                    constants::DW_TAG_subprogram | constants::DW_TAG_inlined_subroutine
                ) {
                    continue;
                }
                let Some(at) = entry.offset().to_debug_info_offset(&unit.header) else {
                    continue;
                };
                let Some(name) = resolve(at).filter(|n| names.contains(&n.as_str())) else {
                    continue;
                };
                let mut ranges = dwarf.die_ranges(unit, entry)?;
                while let Some(r) = ranges.next()? {
                    if r.begin < r.end {
                        out.push((name.clone(), (r.begin, r.end)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The address of `name`, or an error naming it and the ELF.
    pub fn symbol(&self, name: &str) -> Result<u64> {
        self.symbols.get(name).copied().with_context(|| {
            format!(
                "path-length markers: symbol `{name}` is missing from {}",
                paths::display(&self.path)
            )
        })
    }

    /// The addresses a section of 64-bit little-endian words holds, or an error naming it.
    pub fn address_table(&self, name: &str) -> Result<Vec<u64>> {
        use object::{Object, ObjectSection};
        let file = object::File::parse(&*self.bytes)?;
        let data = match file.section_by_name(name) {
            Some(section) => section.data()?.to_vec(),
            None => Vec::new(),
        };
        let table: Vec<u64> = data
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .collect();
        if table.is_empty() {
            bail!(
                "path-length markers: section `{name}` is missing from {} (or empty)",
                paths::display(&self.path)
            );
        }
        Ok(table)
    }

    /// The first `eret` at or after `addr`, within the executable range.
    pub fn eret_from(&self, addr: u64) -> Result<u64> {
        use object::{Object, ObjectSection};
        let file = object::File::parse(&*self.bytes)?;
        for section in file.sections() {
            let (start, size) = (section.address(), section.size());
            if !(start..start + size).contains(&addr) {
                continue;
            }
            let data = section.data()?;
            let offset = (addr - start) as usize;
            for (i, word) in data[offset..].chunks_exact(4).enumerate() {
                if u32::from_le_bytes(word.try_into().expect("4 bytes")) == ERET {
                    return Ok(addr + 4 * i as u64);
                }
            }
        }
        bail!(
            "path-length markers: no `eret` after {addr:#x} in {}",
            paths::display(&self.path)
        )
    }
}

/// Vector entries `group * 4 + type` of a table at `base`, for the types and groups given.
fn entries(base: u64, groups: &[u64], types: &[u64]) -> Vec<u64> {
    let mut out = Vec::new();
    for g in groups {
        for t in types {
            out.push(base + (g * 4 + t) * VECTOR_ENTRY);
        }
    }
    out
}

/// The RTOS's window: any IRQ entry to the timestamp; any other entry inside distorts it.
pub fn rtos_window(rtos: &Elf) -> Result<WindowKind> {
    let vectors = rtos.symbol(RTOS_VECTORS)?;
    let all_groups = [0, 1, 2, 3];
    Ok(WindowKind {
        name: RTOS_IRQ.into(),
        starts: entries(vectors, &all_groups, &[IRQ_TYPE]),
        ends: rtos.address_table(RTOS_TIMESTAMP)?,
        tags: Vec::new(),
        disturbs: entries(vectors, &all_groups, &[SYNC_TYPE, 2, 3]),
        vcpus: None,
    })
}

/// spumone's windows: its guest-IRQ entry to the RTOS's timestamp (tagged `lock` when it
/// acquired a spin lock), every exit from a guest to the `eret`, tagged by the code it ran
/// (`crate::profile::EXIT_TAGS`, from `ranges`), and its idle wake to the RTOS's timestamp. An
/// entry from EL2 itself inside any distorts it, and any entry of spumone's inside the idle
/// wake's.
pub fn hv_windows(hv: &Elf, rtos: &Elf, ranges: &FunctionRanges) -> Result<Vec<WindowKind>> {
    let vectors = hv.symbol(HV_VECTORS)?;
    let eret = hv.eret_from(hv.symbol(HV_TRAP_RETURN)?)?;
    let from_el2 = entries(vectors, &[0, 1], &[0, 1, 2, 3]);
    let mut irq_disturbs = from_el2.clone();
    irq_disturbs.extend(entries(vectors, &[LOWER_A64], &[SYNC_TYPE, 2, 3]));
    let tags = crate::profile::exit_tags(ranges);
    Ok(vec![
        WindowKind {
            name: HV_IRQ_RTOS.into(),
            starts: entries(vectors, &[LOWER_A64], &[IRQ_TYPE]),
            ends: rtos.address_table(RTOS_TIMESTAMP)?,
            tags: crate::profile::lock_tags(ranges),
            disturbs: irq_disturbs,
            vcpus: None,
        },
        WindowKind {
            name: HV_EXIT.into(),
            starts: entries(vectors, &[LOWER_A64], &[0, 1, 2, 3]),
            ends: vec![eret],
            tags,
            disturbs: from_el2,
            vcpus: None,
        },
        WindowKind {
            name: HV_IDLE_RTOS.into(),
            starts: vec![hv.symbol(HV_IDLE_WAKE)?],
            ends: rtos.address_table(RTOS_TIMESTAMP)?,
            tags: Vec::new(),
            disturbs: entries(vectors, &[0, 1, LOWER_A64], &[0, 1, 2, 3]),
            vcpus: None,
        },
    ])
}

/// The RTOS image a scenario boots, if any.
fn rtos_elf(firmware: &Firmware) -> Option<PathBuf> {
    let is_rtos = |p: &PathBuf| p.file_name().is_some_and(|n| n == "rtos.elf");
    match firmware.scenario.kind {
        Kind::Native { image: "rtos", .. } => Some(firmware.kernel.clone()),
        Kind::Native { .. } => None,
        Kind::Hypervisor { .. } => firmware.loads.iter().find(|p| is_rtos(p)).cloned(),
    }
}

/// The plugin's configuration for `firmware`: the RTOS's and spumone's text counted exactly,
/// and their windows; the report goes to `out`.
pub fn config_for(firmware: &Firmware, out: &Path) -> Result<Config> {
    let Some(rtos_path) = rtos_elf(firmware) else {
        bail!(
            "the path-length plugin marks the RTOS's paths; scenario {} boots no RTOS",
            firmware.scenario.name
        );
    };
    let rtos = Elf::read(&rtos_path)?;
    let mut config = Config {
        out: out.to_string_lossy().into_owned(),
        flush_secs: spumone_pathlen::args::DEFAULT_FLUSH_SECS,
        exact: vec![rtos.text],
        spans: Vec::new(),
        windows: vec![rtos_window(&rtos)?],
    };
    if let Some(hv_path) = &firmware.hv_elf {
        let hv = Elf::read(hv_path)?;
        let ranges = hv.function_ranges(&crate::profile::wanted_functions())?;
        config.exact.push(hv.text);
        config.windows.extend(hv_windows(&hv, &rtos, &ranges)?);
        config.spans = crate::profile::wait_spans(&ranges, hv.text);
    }
    Ok(config)
}

/// What QEMU needs to load the plugin: the library and its `KEY=VALUE` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuPlugin {
    pub library: PathBuf,
    pub args: Vec<String>,
}

impl QemuPlugin {
    /// `-plugin`'s value: `file=LIB,ARG,...`, commas in the path doubled as QEMU's option
    /// syntax wants (the arguments hold none).
    pub fn option(&self) -> String {
        let library = self.library.to_string_lossy().replace(',', ",,");
        let mut option = format!("file={library}");
        for arg in &self.args {
            option.push(',');
            option.push_str(&arg.replace(',', ",,"));
        }
        option
    }
}

/// Builds the plugin and configures it for `firmware`, its report at `out`.
pub fn prepare(firmware: &Firmware, out: &Path) -> Result<QemuPlugin> {
    let config = config_for(firmware, out)?;
    Ok(QemuPlugin {
        library: build_plugin()?,
        args: config.to_args(),
    })
}

/// The report a run left at `path`.
pub fn read_report(path: &Path) -> Result<Report> {
    let text =
        fs::read_to_string(path).with_context(|| format!("reading {}", paths::display(path)))?;
    Report::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", paths::display(path)))
}

/// What a latency bench row carries from the plugin: the [`RTOS_IRQ`] windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSummary {
    pub windows: u64,
    pub distorted_windows: u64,
    pub p50: u64,
    pub max: u64,
}

impl PathSummary {
    pub fn of(report: &Report) -> PathSummary {
        let total = report.kind_total(RTOS_IRQ);
        PathSummary {
            windows: total.windows,
            distorted_windows: total.distorted,
            p50: total.p50,
            max: total.max,
        }
    }

    /// The row's fields: `distorted_windows`, `path_windows`, `path_p50`, `path_max`.
    pub fn add_to(&self, row: &mut Value) {
        row["distorted_windows"] = json!(self.distorted_windows);
        row["path_windows"] = json!(self.windows);
        row["path_p50"] = json!(self.p50);
        row["path_max"] = json!(self.max);
    }

    /// Those fields of a row, if it has them.
    pub fn from_row(row: &Value) -> Option<PathSummary> {
        let get = |name: &str| row.get(name).and_then(Value::as_u64);
        Some(PathSummary {
            windows: get("path_windows")?,
            distorted_windows: get("distorted_windows")?,
            p50: get("path_p50")?,
            max: get("path_max")?,
        })
    }
}

/// The report's section on path lengths, for rows that have them: `(row name, summary)`.
pub fn markdown(rows: &[(String, PathSummary)]) -> String {
    let mut md = String::new();
    if rows.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "\n## Path lengths ({PACKAGE}, `--plugin`)\n\n\
         The RTOS's own instructions from its IRQ vector entry to its latency task's \
         timestamp, counted by the TCG plugin over the whole run (boot included). A window \
         is distorted when another vCPU ran while it was open (QEMU's round robin) or an \
         extra exception was taken inside it: latency rows with distorted windows measure \
         QEMU's scheduling, not the path.\n"
    );
    let _ = writeln!(md, "| row | windows | distorted | path p50 | path max |");
    let _ = writeln!(md, "|---|--:|--:|--:|--:|");
    for (name, s) in rows {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} |",
            s.windows, s.distorted_windows, s.p50, s.max
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_entries_are_0x80_apart_by_group_and_type() {
        assert_eq!(
            entries(0x1000, &[0, 1, 2, 3], &[1]),
            [0x1080, 0x1280, 0x1480, 0x1680]
        );
        assert_eq!(entries(0x1000, &[2], &[0, 3]), [0x1400, 0x1580]);
    }

    #[test]
    fn the_option_names_the_library_then_the_arguments() {
        let plugin = QemuPlugin {
            library: PathBuf::from("/a,b/libspumone_pathlen.so"),
            args: vec!["out=r.json".into(), "window=w:start=0x1:end=0x2".into()],
        };
        assert_eq!(
            plugin.option(),
            "file=/a,,b/libspumone_pathlen.so,out=r.json,window=w:start=0x1:end=0x2"
        );
    }

    #[test]
    fn a_summary_round_trips_through_a_row() {
        let s = PathSummary {
            windows: 10,
            distorted_windows: 2,
            p50: 1263,
            max: 1300,
        };
        let mut row = json!({"scenario": "rtos"});
        assert_eq!(PathSummary::from_row(&row), None);
        s.add_to(&mut row);
        assert_eq!(row["distorted_windows"], 2);
        assert_eq!(PathSummary::from_row(&row), Some(s));
        let md = markdown(&[("rtos (icount)".into(), s)]);
        assert!(
            md.contains("| rtos (icount) | 10 | 2 | 1263 | 1300 |"),
            "{md}"
        );
        assert!(markdown(&[]).is_empty());
    }

    #[test]
    fn a_missing_symbol_is_named() {
        let elf = Elf {
            path: PathBuf::from("target/images/rtos/rtos.elf"),
            bytes: Vec::new(),
            symbols: HashMap::new(),
            functions: Vec::new(),
            text: (0, 4),
        };
        let e = elf.symbol(RTOS_VECTORS).unwrap_err().to_string();
        assert!(e.contains("symbol `rtos_vectors` is missing from"), "{e}");
    }
}
