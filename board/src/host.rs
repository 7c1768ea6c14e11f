//! The host half: parse a partition config and its board, validate them, generate Rust.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::rt::{
    Dsm, DsmPolicy, Kind, MemRange, MigrationPolicy, OnPanic, Space, Vcpu, Window,
    DSM_PERIOD_MS_MAX, DSM_PERIOD_MS_MIN, DSM_SHARE_PERMILLE_DEFAULT, DSM_SHARE_PERMILLE_MAX,
    LINUX_BOOTARGS_MAX, LINUX_CONSOLE_DEFAULT, LINUX_CONSOLE_SIZE, LINUX_DTB_MAX,
    WATCHDOG_S_DEFAULT, WATCHDOG_S_MAX, WATCHDOG_S_MIN,
};

/// Granule every partition RAM range must be aligned to (the stage-2 page size).
pub const PAGE_SIZE: u64 = 0x1000;

/// Alignment of a Linux `Image` (arm64 boot protocol: 2 MiB from the start of RAM).
pub const LINUX_IMAGE_ALIGN: u64 = 0x20_0000;

/// Room for the `Image` (BSS included) when `kernel_size` is not given.
pub const LINUX_KERNEL_SIZE_DEFAULT: u64 = 0x0400_0000;

// ---------------------------------------------------------------------------------------------
// File schemas. `deny_unknown_fields` turns typos into errors instead of silent defaults.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    base: u64,
    size: u64,
}

impl RawRange {
    fn range(&self) -> MemRange {
        MemRange::new(self.base, self.size)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    name: String,
    cores: u8,
    dtb: u64,
    ram: Vec<RawRange>,
    hypervisor: RawRange,
    #[serde(default, rename = "device")]
    devices: Vec<RawDevice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: String,
    kind: String,
    base: u64,
    size: u64,
    #[serde(default)]
    irqs: Vec<u32>,
    #[serde(default)]
    hypervisor: bool,
    /// Address windows beside the registers (a PCIe host bridge's I/O and memory windows).
    #[serde(default)]
    windows: Vec<RawWindow>,
    /// The device masters memory (DMA): it may only go to a partition behind an IOMMU.
    #[serde(default)]
    dma: bool,
    /// The IOMMU its DMA goes through, and the stream IDs it carries.
    iommu: Option<RawIommu>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    space: String,
    base: u64,
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIommu {
    /// The board device name of the SMMU.
    smmu: String,
    /// First stream ID and how many (a PCIe root complex: its requester IDs).
    first_stream: u32,
    streams: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    board: String,
    /// How many of the board's cores the machine has (QEMU's `-smp`); all of them by default.
    cores: Option<u8>,
    #[serde(default, rename = "partition")]
    partitions: Vec<RawPartition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartition {
    name: String,
    #[serde(default)]
    kind: RawKind,
    image: String,
    ram: Vec<RawRange>,
    #[serde(default)]
    devices: Vec<String>,
    // Options so a Linux partition (which derives them) can be told not to set them.
    entry: Option<u64>,
    boot_arg: Option<u64>,
    // Linux only.
    kernel_offset: Option<u64>,
    kernel_size: Option<u64>,
    initrd: Option<RawRange>,
    dtb: Option<u64>,
    bootargs: Option<String>,
    console: Option<u64>,
    reset_copy: Option<RawRange>,
    dsm: Option<RawDsm>,
    /// Linux only: where its vCPUs may move (`pinned`, `spumone`, `load`).
    policy: Option<String>,
    /// RTOS only: load its waiting vCPU this long before its deadline on a shared core.
    preload_ns: Option<u32>,
    /// Linux only: `restart` or `stop` after a panic or a hang.
    on_panic: Option<String>,
    /// Linux only: the progress watchdog's timeout in seconds.
    watchdog_s: Option<u32>,
    // Defaulted so a missing list is reported as "no vCPU", not as a syntax error.
    #[serde(default)]
    vcpus: Vec<RawVcpu>,
}

/// `dsm = { period_ms = .., policy = "..", share_permille = .. }` of a Linux partition
/// (`share_permille` optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDsm {
    period_ms: u32,
    policy: String,
    share_permille: Option<u32>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawKind {
    #[default]
    Rtos,
    Linux,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVcpu {
    core: u8,
    /// A Linux vCPU that gives way to the RTOS vCPU on the same core.
    #[serde(default)]
    shared: bool,
}

// ---------------------------------------------------------------------------------------------
// Validated data.

/// A device of the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardDevice {
    pub name: String,
    /// Compatible-like string, e.g. `arm,pl011`.
    pub kind: String,
    pub base: u64,
    pub size: u64,
    /// GIC INTIDs.
    pub irqs: Vec<u32>,
    /// Owned by spumone, never given to a partition.
    pub hypervisor_owned: bool,
    /// Address windows mapped with its registers.
    pub windows: Vec<Window>,
    /// It masters memory.
    pub dma: bool,
    /// Where its DMA is translated; `None` for a device that does no DMA or bypasses any IOMMU.
    pub iommu: Option<IommuLink>,
}

/// A DMA-capable device's place behind an SMMU of the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuLink {
    /// The SMMU's board device name.
    pub smmu: String,
    pub first_stream: u32,
    pub streams: u32,
}

/// The board device `kind` of an SMMUv3, the one IOMMU spumone drives. Its `irqs` are, in
/// order: event queue, PRI queue, command-queue sync, global error (QEMU `virt`'s order).
pub const SMMU_V3_KIND: &str = "arm,smmu-v3";

/// The board device `kind` of the console UART spumone owns (see [`Board::console_intid`]).
pub const CONSOLE_UART_KIND: &str = "arm,pl011";

/// The first shared peripheral interrupt's INTID.
const FIRST_SPI: u32 = 32;

impl BoardDevice {
    pub fn range(&self) -> MemRange {
        MemRange::new(self.base, self.size)
    }

    /// Its registers and its windows: everything a partition that owns it reaches.
    pub fn ranges(&self) -> impl Iterator<Item = MemRange> + '_ {
        std::iter::once(self.range()).chain(self.windows.iter().map(Window::range))
    }
}

/// A validated board description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub name: String,
    /// Its cores: in a validated config, the machine's (the config's `cores`, or all).
    pub cores: u8,
    pub dtb_hint: u64,
    pub ram: Vec<MemRange>,
    pub hypervisor_ram: MemRange,
    pub devices: Vec<BoardDevice>,
}

impl Board {
    pub fn device(&self, name: &str) -> Option<&BoardDevice> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// The INTID of the console UART: the first SPI of the first hypervisor-owned
    /// `arm,pl011`.
    pub fn console_intid(&self) -> Option<u32> {
        self.devices
            .iter()
            .filter(|d| d.kind == CONSOLE_UART_KIND && d.hypervisor_owned)
            .find_map(|d| d.irqs.iter().copied().find(|&i| i >= FIRST_SPI))
    }
}

/// A validated partition, with its devices resolved against the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub name: String,
    /// Position in the config.
    pub index: u8,
    /// Its console's UART channel.
    pub console_channel: u8,
    pub image: String,
    pub ram: Vec<MemRange>,
    pub devices: Vec<BoardDevice>,
    pub entry: u64,
    pub boot_arg: u64,
    pub vcpus: Vec<Vcpu>,
    /// How long before its deadline its waiting vCPU is loaded (`rt::Partition::preload_ns`).
    pub preload_ns: u32,
    pub kind: Kind,
    /// How it boots, for `Kind::Linux`.
    pub linux: Option<LinuxInfo>,
}

/// The validated Linux boot layout of a partition (see `board::rt::LinuxBoot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxInfo {
    pub kernel: MemRange,
    pub initrd: MemRange,
    pub dtb: MemRange,
    /// spumone's pristine copy of the Image and initrd, for a reset of this partition alone.
    pub reset_copy: Option<MemRange>,
    pub bootargs: String,
    pub console: u64,
    /// The D-System Monitor's settings; `None` leaves the partition unchecked.
    pub dsm: Option<Dsm>,
    /// Where its vCPUs may move (`pinned` unless the config says otherwise).
    pub policy: MigrationPolicy,
    /// After a panic or a hang (default: `restart` with a `reset_copy`, else `stop`).
    pub on_panic: OnPanic,
    /// The progress watchdog's timeout in seconds.
    pub watchdog_s: u16,
}

/// A partition config that passed every check, with its board.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    config_path: PathBuf,
    board_path: PathBuf,
    board: Board,
    partitions: Vec<PartitionInfo>,
}

impl ValidatedConfig {
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The board file the config resolved to (build scripts watch it too).
    pub fn board_path(&self) -> &Path {
        &self.board_path
    }

    pub fn board(&self) -> &Board {
        &self.board
    }

    pub fn board_name(&self) -> &str {
        &self.board.name
    }

    /// The machine's cores: the config's `cores`, or all the board has (QEMU's `-smp`).
    pub fn cores(&self) -> u8 {
        self.board.cores
    }

    /// Partitions in config order (`partitions()[i].index == i`).
    pub fn partitions(&self) -> &[PartitionInfo] {
        &self.partitions
    }

    pub fn partition(&self, name: &str) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// Rust source defining `pub static CONFIG: board::rt::Config`, for `include!` in a crate
    /// that depends on `board` (no `host` feature needed there).
    pub fn to_rust(&self) -> String {
        let mut out = String::new();
        let source = self
            .config_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        // `fmt::Write` for `String` cannot fail.
        let _ = self.write_rust(&mut out, &source);
        out
    }

    fn write_rust(&self, out: &mut String, source: &str) -> fmt::Result {
        let b = &self.board;
        writeln!(
            out,
            "// Generated by the board crate from {source:?} (board {:?}). Do not edit.",
            b.name
        )?;
        writeln!(
            out,
            "/// The board and partition layout spumone boots with."
        )?;
        writeln!(
            out,
            "pub static CONFIG: board::rt::Config = board::rt::Config {{"
        )?;
        writeln!(out, "    board: {:?},", b.name)?;
        writeln!(out, "    cores: {},", b.cores)?;
        writeln!(out, "    dtb_hint: {:#x},", b.dtb_hint)?;
        writeln!(
            out,
            "    hypervisor_ram: {},",
            rust_range(&b.hypervisor_ram)
        )?;
        writeln!(out, "    board_ram: &[{}],", rust_ranges(&b.ram))?;
        writeln!(out, "    partitions: &[")?;
        for p in &self.partitions {
            writeln!(out, "        board::rt::Partition {{")?;
            writeln!(out, "            name: {:?},", p.name)?;
            writeln!(out, "            index: {},", p.index)?;
            writeln!(out, "            image: {:?},", p.image)?;
            writeln!(out, "            ram: &[{}],", rust_ranges(&p.ram))?;
            writeln!(out, "            devices: &[")?;
            for d in &p.devices {
                let irqs: Vec<String> = d.irqs.iter().map(u32::to_string).collect();
                let windows: Vec<String> = d
                    .windows
                    .iter()
                    .map(|w| {
                        format!(
                            "board::rt::Window {{ space: board::rt::Space::{:?}, base: {:#x}, size: {:#x} }}",
                            w.space, w.base, w.size
                        )
                    })
                    .collect();
                writeln!(
                    out,
                    "                board::rt::Device {{ name: {:?}, base: {:#x}, size: {:#x}, irqs: &[{}], windows: &[{}] }},",
                    d.name,
                    d.base,
                    d.size,
                    irqs.join(", "),
                    windows.join(", ")
                )?;
            }
            writeln!(out, "            ],")?;
            writeln!(out, "            entry: {:#x},", p.entry)?;
            writeln!(out, "            boot_arg: {:#x},", p.boot_arg)?;
            let vcpus: Vec<String> = p
                .vcpus
                .iter()
                .map(|v| format!("board::rt::Vcpu {{ core: {} }}", v.core))
                .collect();
            writeln!(out, "            vcpus: &[{}],", vcpus.join(", "))?;
            writeln!(
                out,
                "            console_channel: {:#x},",
                p.console_channel
            )?;
            writeln!(out, "            preload_ns: {},", p.preload_ns)?;
            writeln!(out, "        }},")?;
        }
        writeln!(out, "    ],")?;
        self.write_smmus(out)?;
        writeln!(
            out,
            "    console_intid: {},",
            b.console_intid().unwrap_or(0)
        )?;
        writeln!(out, "}};")?;
        writeln!(
            out,
            "/// How the Linux partitions boot (`board::rt::LinuxBoot::find` by partition index)."
        )?;
        // Not every image boots Linux; an unused table must not warn.
        writeln!(out, "#[allow(dead_code)]")?;
        writeln!(out, "pub static LINUX: &[board::rt::LinuxBoot] = &[")?;
        for p in &self.partitions {
            let Some(l) = &p.linux else { continue };
            writeln!(out, "    board::rt::LinuxBoot {{")?;
            writeln!(out, "        partition: {},", p.index)?;
            writeln!(out, "        kernel: {},", rust_range(&l.kernel))?;
            writeln!(out, "        initrd: {},", rust_range(&l.initrd))?;
            writeln!(out, "        dtb: {},", rust_range(&l.dtb))?;
            match &l.reset_copy {
                Some(r) => writeln!(out, "        reset_copy: Some({}),", rust_range(r))?,
                None => writeln!(out, "        reset_copy: None,")?,
            }
            writeln!(out, "        bootargs: {:?},", l.bootargs)?;
            writeln!(out, "        console: {:#x},", l.console)?;
            match &l.dsm {
                Some(d) => writeln!(
                    out,
                    "        dsm: Some(board::rt::Dsm {{ period_ms: {}, policy: board::rt::DsmPolicy::{:?}, share_permille: {} }}),",
                    d.period_ms, d.policy, d.share_permille
                )?,
                None => writeln!(out, "        dsm: None,")?,
            }
            writeln!(
                out,
                "        policy: board::rt::MigrationPolicy::{:?},",
                l.policy
            )?;
            writeln!(
                out,
                "        on_panic: board::rt::OnPanic::{:?},",
                l.on_panic
            )?;
            writeln!(out, "        watchdog_s: {},", l.watchdog_s)?;
            let kinds: Vec<String> = p.devices.iter().map(|d| format!("{:?}", d.kind)).collect();
            writeln!(out, "        device_kinds: &[{}],", kinds.join(", "))?;
            writeln!(out, "    }},")?;
        }
        writeln!(out, "];")
    }
}

impl ValidatedConfig {
    /// Every SMMU spumone owns on the board (each is enabled, so a stream granted to no
    /// partition aborts), with the streams of the devices each partition was given.
    pub fn smmus(&self) -> Vec<(&BoardDevice, Vec<(&BoardDevice, u8)>)> {
        self.board
            .devices
            .iter()
            .filter(|d| d.kind == SMMU_V3_KIND && d.hypervisor_owned)
            .map(|smmu| {
                let grants = self
                    .partitions
                    .iter()
                    .flat_map(|p| p.devices.iter().map(move |d| (d, p.index)))
                    .filter(|(d, _)| d.iommu.as_ref().is_some_and(|i| i.smmu == smmu.name))
                    .collect();
                (smmu, grants)
            })
            .collect()
    }

    fn write_smmus(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "    smmus: &[")?;
        for (smmu, grants) in self.smmus() {
            let intid = |n: usize| smmu.irqs.get(n).copied().unwrap_or(0);
            writeln!(out, "        board::rt::Smmu {{")?;
            writeln!(out, "            name: {:?},", smmu.name)?;
            writeln!(out, "            base: {:#x},", smmu.base)?;
            writeln!(out, "            size: {:#x},", smmu.size)?;
            writeln!(out, "            event_intid: {},", intid(0))?;
            writeln!(out, "            gerror_intid: {},", intid(3))?;
            writeln!(out, "            grants: &[")?;
            for (device, partition) in grants {
                // Only devices with a link are granted (see `smmus`).
                let Some(link) = &device.iommu else { continue };
                writeln!(
                    out,
                    "                board::rt::StreamGrant {{ device: {:?}, partition: {}, first: {:#x}, count: {:#x} }},",
                    device.name, partition, link.first_stream, link.streams
                )?;
            }
            writeln!(out, "            ],")?;
            writeln!(out, "        }},")?;
        }
        writeln!(out, "    ],")
    }
}

fn rust_range(r: &MemRange) -> String {
    format!(
        "board::rt::MemRange {{ base: {:#x}, size: {:#x} }}",
        r.base, r.size
    )
}

fn rust_ranges(ranges: &[MemRange]) -> String {
    let items: Vec<String> = ranges.iter().map(rust_range).collect();
    items.join(", ")
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// Why a config was rejected; `Display` gives one line per problem, each naming the file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    file: PathBuf,
    kind: ErrorKind,
}

#[derive(Debug, Clone)]
pub enum ErrorKind {
    /// The file could not be read.
    Io(String),
    /// TOML syntax or schema error (1-based line and column).
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The file parsed but breaks the rules.
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The file the problems are in (the config, or the board it names).
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The rule violations found (empty for read and syntax errors).
    pub fn problems(&self) -> &[Problem] {
        match &self.kind {
            ErrorKind::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match &self.kind {
            ErrorKind::Io(e) => write!(f, "{file}: cannot read: {e}"),
            ErrorKind::Syntax {
                line,
                column,
                message,
            } => write!(f, "{file}:{line}:{column}: {message}"),
            ErrorKind::Invalid(problems) => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{file}: {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A name (of a `what`: partition, image, board, device) is not `[a-z0-9-]+`.
    BadName {
        what: &'static str,
        name: String,
    },
    DuplicatePartition {
        name: String,
    },
    NoPartition,
    TooManyPartitions {
        count: usize,
        max: usize,
    },
    EmptyRam {
        partition: String,
        range: MemRange,
    },
    UnalignedRam {
        partition: String,
        range: MemRange,
    },
    RamOutsideBoard {
        partition: String,
        range: MemRange,
        board_ram: Vec<MemRange>,
    },
    RamOverlapsHypervisor {
        partition: String,
        range: MemRange,
        hypervisor: MemRange,
    },
    /// `other` may be `partition` itself (two of its own ranges overlap).
    RamOverlap {
        partition: String,
        range: MemRange,
        other: String,
        other_range: MemRange,
    },
    NoRam {
        partition: String,
    },
    EntryOutsideRam {
        partition: String,
        entry: u64,
    },
    NoVcpu {
        partition: String,
    },
    /// An RTOS partition without `entry`.
    NoEntry {
        partition: String,
    },
    /// A Linux-only key (`kernel_offset`, `initrd`, ...) on an RTOS partition.
    LinuxOnlyField {
        partition: String,
        field: &'static str,
    },
    /// `entry` or `boot_arg` on a Linux partition, where the boot protocol fixes them.
    LinuxFixedField {
        partition: String,
        field: &'static str,
    },
    /// `preload_ns` on a Linux partition: only the RTOS is loaded ahead of its deadline.
    RtosOnlyField {
        partition: String,
        field: &'static str,
    },
    /// `preload_ns` above `rt::MAX_PRELOAD_NS`.
    PreloadTooLong {
        partition: String,
        ns: u32,
    },
    MissingLinuxField {
        partition: String,
        field: &'static str,
    },
    UnalignedKernel {
        partition: String,
        offset: u64,
    },
    /// `what` (`kernel`, `initrd`, `dtb`) is empty, overflows or is misaligned.
    BadLinuxRegion {
        partition: String,
        what: &'static str,
        range: MemRange,
        align: u64,
    },
    LinuxRegionOutsideRam {
        partition: String,
        what: &'static str,
        range: MemRange,
    },
    LinuxRegionOverlap {
        partition: String,
        what: &'static str,
        range: MemRange,
        other: &'static str,
        other_range: MemRange,
    },
    /// The DTB straddles a 2 MiB boundary (Linux maps it with one 2 MiB block).
    DtbCrosses2MiB {
        partition: String,
        dtb: MemRange,
    },
    BootargsTooLong {
        partition: String,
        len: usize,
        max: usize,
    },
    /// A NUL or other control character, which a DT string cannot carry sensibly.
    BootargsBadChar {
        partition: String,
    },
    UnalignedConsole {
        partition: String,
        console: u64,
    },
    /// A Linux partition's emulated console needs the board's console UART interrupt (an SPI
    /// of a hypervisor-owned `arm,pl011`), and the board has none.
    NoConsoleInterrupt {
        partition: String,
    },
    /// The emulated console frame overlaps the partition's RAM or one of its devices (`what`).
    ConsoleOverlap {
        partition: String,
        console: u64,
        what: String,
    },
    /// `reset_copy` has size 0.
    EmptyResetCopy {
        partition: String,
        range: MemRange,
    },
    /// `reset_copy` runs past the end of the address space.
    ResetCopyOverflows {
        partition: String,
        range: MemRange,
    },
    UnalignedResetCopy {
        partition: String,
        range: MemRange,
    },
    ResetCopyOutsideBoard {
        partition: String,
        range: MemRange,
        board_ram: Vec<MemRange>,
    },
    ResetCopyOverlapsHypervisor {
        partition: String,
        range: MemRange,
        hypervisor: MemRange,
    },
    /// `reset_copy` overlaps the RAM of partition `other` (possibly `partition` itself).
    ResetCopyOverlapsRam {
        partition: String,
        range: MemRange,
        other: String,
        other_range: MemRange,
    },
    /// Two partitions' `reset_copy` ranges overlap.
    ResetCopyOverlap {
        partition: String,
        range: MemRange,
        other: String,
        other_range: MemRange,
    },
    /// `dsm.policy` is not `log`, `pause` or `stop`.
    UnknownDsmPolicy {
        partition: String,
        policy: String,
    },
    /// `dsm.period_ms` is outside [`DSM_PERIOD_MS_MIN`]..=[`DSM_PERIOD_MS_MAX`].
    DsmPeriodOutOfRange {
        partition: String,
        period_ms: u32,
    },
    /// `dsm.share_permille` is outside 1..=[`DSM_SHARE_PERMILLE_MAX`].
    DsmShareOutOfRange {
        partition: String,
        share_permille: u32,
    },
    /// `reset_copy` cannot hold `kernel_size` + the initrd room.
    ResetCopyTooSmall {
        partition: String,
        range: MemRange,
        kernel_size: u64,
        initrd_size: u64,
    },
    CoreOutOfRange {
        partition: String,
        core: u8,
        cores: u8,
    },
    /// The config's `cores` is 0 or more than the board has.
    MachineCoresOutOfRange {
        cores: u8,
        board_cores: u8,
    },
    /// `policy` is not `pinned`, `spumone` or `load`.
    UnknownMigrationPolicy {
        partition: String,
        policy: String,
    },
    /// `on_panic` is not `restart` or `stop`.
    UnknownOnPanic {
        partition: String,
        on_panic: String,
    },
    /// `on_panic = "restart"` without a `reset_copy` to restart from.
    RestartWithoutResetCopy {
        partition: String,
    },
    /// `watchdog_s` is outside [`WATCHDOG_S_MIN`]..=[`WATCHDOG_S_MAX`].
    WatchdogOutOfRange {
        partition: String,
        watchdog_s: u32,
    },
    /// `shared = true` on a vCPU of a partition that is not Linux.
    SharedNotLinux {
        partition: String,
        core: u8,
    },
    /// A Linux vCPU marked shared on a core where no RTOS vCPU lives.
    SharedWithoutRtos {
        partition: String,
        core: u8,
    },
    /// A shared Linux vCPU other than vCPU 0 (secondaries start by `CPU_ON`, which a shared
    /// core does not take).
    SharedNotFirst {
        partition: String,
        core: u8,
        vcpu: usize,
    },
    /// `owner` may be `partition` itself (two of its vCPUs on one core).
    CoreTaken {
        partition: String,
        core: u8,
        owner: String,
    },
    UnknownDevice {
        partition: String,
        device: String,
        board: String,
    },
    HypervisorDevice {
        partition: String,
        device: String,
    },
    /// `owner` may be `partition` itself (listed twice).
    DeviceTaken {
        partition: String,
        device: String,
        owner: String,
    },
    /// Devices of two partitions in one 4 KiB page, which stage 2 cannot split between them;
    /// `page` is the first page they share.
    DevicePageShared {
        partition: String,
        device: String,
        other: String,
        other_device: String,
        page: u64,
    },
    /// A device that masters memory given to a partition with no IOMMU in its way: its DMA
    /// would reach every partition and spumone itself.
    DmaWithoutIommu {
        partition: String,
        device: String,
    },
    /// A 4 KiB page of a partition's device (registers or windows) also holds `other_device`,
    /// which no partition or only the hypervisor owns; `page` is the first such page.
    DevicePageHoldsUnowned {
        partition: String,
        device: String,
        other_device: String,
        page: u64,
    },
    // Problems in the board file.
    BoardNameMismatch {
        expected: String,
        found: String,
    },
    BoardNoCores,
    BoardNoRam,
    BoardBadRange {
        what: String,
        range: MemRange,
    },
    HypervisorOutsideRam {
        hypervisor: MemRange,
    },
    DtbOutsideRam {
        dtb: u64,
    },
    DuplicateDevice {
        name: String,
    },
    /// A device window's `space` is not `io` or `mem32`.
    UnknownWindowSpace {
        device: String,
        space: String,
    },
    /// A device window overlaps board RAM.
    WindowOverlapsRam {
        device: String,
        window: MemRange,
    },
    /// A device's `iommu` cannot isolate it; `why` says what is wrong with `smmu`.
    BadIommu {
        device: String,
        smmu: String,
        why: &'static str,
    },
    /// Two devices behind one SMMU claim a stream ID in common.
    StreamsOverlap {
        device: String,
        other: String,
        smmu: String,
    },
}

struct Hex(u64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

struct Span(MemRange);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Raw sum so an overflowing range shows as such.
        match self.0.base.checked_add(self.0.size) {
            Some(end) => write!(f, "{:#x}..{:#x}", self.0.base, end),
            None => write!(f, "{:#x}+{:#x}", self.0.base, self.0.size),
        }
    }
}

fn spans(ranges: &[MemRange]) -> String {
    let items: Vec<String> = ranges.iter().map(|r| Span(*r).to_string()).collect();
    items.join(", ")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadName { what, name } => {
                write!(f, "{what} name {name:?} must be made of [a-z0-9-] only")
            }
            Problem::DuplicatePartition { name } => {
                write!(f, "partition name {name:?} is used more than once")
            }
            Problem::NoPartition => write!(f, "no [[partition]] defined"),
            Problem::TooManyPartitions { count, max } => write!(
                f,
                "{count} partitions, but there are console channels for only {max}"
            ),
            Problem::EmptyRam { partition, range } => write!(
                f,
                "partition {partition:?} RAM at {} has size 0",
                Hex(range.base)
            ),
            Problem::UnalignedRam { partition, range } => write!(
                f,
                "partition {partition:?} RAM {} is not 4 KiB aligned (base and size must be multiples of {:#x})",
                Span(*range),
                PAGE_SIZE
            ),
            Problem::RamOutsideBoard {
                partition,
                range,
                board_ram,
            } => write!(
                f,
                "partition {partition:?} RAM {} is outside the board's RAM ({})",
                Span(*range),
                spans(board_ram)
            ),
            Problem::RamOverlapsHypervisor {
                partition,
                range,
                hypervisor,
            } => write!(
                f,
                "partition {partition:?} RAM {} overlaps the hypervisor's region {}",
                Span(*range),
                Span(*hypervisor)
            ),
            Problem::RamOverlap {
                partition,
                range,
                other,
                other_range,
            } if partition == other => write!(
                f,
                "partition {partition:?} RAM {} overlaps its own RAM {}",
                Span(*range),
                Span(*other_range)
            ),
            Problem::RamOverlap {
                partition,
                range,
                other,
                other_range,
            } => write!(
                f,
                "partition {partition:?} RAM {} overlaps partition {other:?} RAM {}",
                Span(*range),
                Span(*other_range)
            ),
            Problem::NoRam { partition } => write!(f, "partition {partition:?} has no RAM"),
            Problem::EntryOutsideRam { partition, entry } => write!(
                f,
                "partition {partition:?} entry {} is outside its RAM",
                Hex(*entry)
            ),
            Problem::NoVcpu { partition } => write!(f, "partition {partition:?} has no vCPU"),
            Problem::NoEntry { partition } => write!(f, "partition {partition:?} has no entry"),
            Problem::LinuxOnlyField { partition, field } => write!(
                f,
                "partition {partition:?} sets {field:?}, which only a kind = \"linux\" partition takes"
            ),
            Problem::LinuxFixedField { partition, field } => write!(
                f,
                "partition {partition:?} is a Linux partition, whose {field:?} follows from the boot protocol; remove it"
            ),
            Problem::RtosOnlyField { partition, field } => write!(
                f,
                "partition {partition:?} is a Linux partition; {field:?} is for an RTOS partition only"
            ),
            Problem::PreloadTooLong { partition, ns } => write!(
                f,
                "partition {partition:?} preload_ns {ns} is more than {} (Linux would lose that much of every RTOS period)",
                crate::rt::MAX_PRELOAD_NS
            ),
            Problem::MissingLinuxField { partition, field } => write!(
                f,
                "Linux partition {partition:?} needs {field:?}"
            ),
            Problem::UnalignedKernel { partition, offset } => write!(
                f,
                "partition {partition:?} kernel_offset {} is not 2 MiB aligned",
                Hex(*offset)
            ),
            Problem::BadLinuxRegion {
                partition,
                what,
                range,
                align,
            } => write!(
                f,
                "partition {partition:?} {what} region {} is empty, overflows or is not aligned to {}",
                Span(*range),
                Hex(*align)
            ),
            Problem::LinuxRegionOutsideRam {
                partition,
                what,
                range,
            } => write!(
                f,
                "partition {partition:?} {what} region {} is not inside one of its RAM ranges",
                Span(*range)
            ),
            Problem::LinuxRegionOverlap {
                partition,
                what,
                range,
                other,
                other_range,
            } => write!(
                f,
                "partition {partition:?} {what} region {} overlaps its {other} region {}",
                Span(*range),
                Span(*other_range)
            ),
            Problem::DtbCrosses2MiB { partition, dtb } => write!(
                f,
                "partition {partition:?} DTB region {} crosses a 2 MiB boundary",
                Span(*dtb)
            ),
            Problem::BootargsTooLong {
                partition,
                len,
                max,
            } => write!(
                f,
                "partition {partition:?} bootargs are {len} bytes, more than {max}"
            ),
            Problem::BootargsBadChar { partition } => write!(
                f,
                "partition {partition:?} bootargs contain a control character"
            ),
            Problem::UnalignedConsole { partition, console } => write!(
                f,
                "partition {partition:?} console {} is not 4 KiB aligned",
                Hex(*console)
            ),
            Problem::NoConsoleInterrupt { partition } => write!(
                f,
                "partition {partition:?} is Linux, but the board has no console UART interrupt \
                 (an SPI of a hypervisor-owned {CONSOLE_UART_KIND:?} device)"
            ),
            Problem::ConsoleOverlap {
                partition,
                console,
                what,
            } => write!(
                f,
                "partition {partition:?} console {} overlaps its {what}",
                Hex(*console)
            ),
            Problem::EmptyResetCopy { partition, range } => write!(
                f,
                "partition {partition:?} reset_copy at {} has size 0",
                Hex(range.base)
            ),
            Problem::ResetCopyOverflows { partition, range } => write!(
                f,
                "partition {partition:?} reset_copy {} runs past the end of the address space",
                Span(*range)
            ),
            Problem::UnalignedResetCopy { partition, range } => write!(
                f,
                "partition {partition:?} reset_copy {} is not 4 KiB aligned (base and size must be multiples of {:#x})",
                Span(*range),
                PAGE_SIZE
            ),
            Problem::ResetCopyOutsideBoard {
                partition,
                range,
                board_ram,
            } => write!(
                f,
                "partition {partition:?} reset_copy {} is outside the board's RAM ({})",
                Span(*range),
                spans(board_ram)
            ),
            Problem::ResetCopyOverlapsHypervisor {
                partition,
                range,
                hypervisor,
            } => write!(
                f,
                "partition {partition:?} reset_copy {} overlaps the hypervisor's region {}",
                Span(*range),
                Span(*hypervisor)
            ),
            Problem::ResetCopyOverlapsRam {
                partition,
                range,
                other,
                other_range,
            } if partition == other => write!(
                f,
                "partition {partition:?} reset_copy {} overlaps its own RAM {} (the copy must be memory the guest cannot write)",
                Span(*range),
                Span(*other_range)
            ),
            Problem::ResetCopyOverlapsRam {
                partition,
                range,
                other,
                other_range,
            } => write!(
                f,
                "partition {partition:?} reset_copy {} overlaps partition {other:?} RAM {}",
                Span(*range),
                Span(*other_range)
            ),
            Problem::ResetCopyOverlap {
                partition,
                range,
                other,
                other_range,
            } => write!(
                f,
                "partition {partition:?} reset_copy {} overlaps partition {other:?} reset_copy {}",
                Span(*range),
                Span(*other_range)
            ),
            Problem::UnknownDsmPolicy { partition, policy } => write!(
                f,
                "partition {partition:?} dsm policy {policy:?} is not one of \"log\", \"pause\", \"stop\""
            ),
            Problem::DsmPeriodOutOfRange {
                partition,
                period_ms,
            } => write!(
                f,
                "partition {partition:?} dsm period_ms {period_ms} is outside {DSM_PERIOD_MS_MIN}..={DSM_PERIOD_MS_MAX}"
            ),
            Problem::DsmShareOutOfRange {
                partition,
                share_permille,
            } => write!(
                f,
                "partition {partition:?} dsm share_permille {share_permille} is outside 1..={DSM_SHARE_PERMILLE_MAX} (thousandths of the DSM's core; {DSM_SHARE_PERMILLE_MAX} turns the cap off)"
            ),
            Problem::ResetCopyTooSmall {
                partition,
                range,
                kernel_size,
                initrd_size,
            } => write!(
                f,
                "partition {partition:?} reset_copy {} is {} bytes, but must hold kernel_size {} + initrd size {} = {} bytes so a copy of the Image and initrd always fits",
                Span(*range),
                Hex(range.size),
                Hex(*kernel_size),
                Hex(*initrd_size),
                Hex(kernel_size.saturating_add(*initrd_size))
            ),
            Problem::CoreOutOfRange {
                partition,
                core,
                cores,
            } => write!(
                f,
                "partition {partition:?} vCPU on core {core}, but the machine has cores 0..{cores}"
            ),
            Problem::MachineCoresOutOfRange { cores, board_cores } => write!(
                f,
                "cores = {cores}, but the machine must have 1..={board_cores} of the board's cores"
            ),
            Problem::UnknownMigrationPolicy { partition, policy } => write!(
                f,
                "partition {partition:?} policy {policy:?} is not one of \"pinned\", \"spumone\", \"load\", \"rotate\""
            ),
            Problem::UnknownOnPanic {
                partition,
                on_panic,
            } => write!(
                f,
                "partition {partition:?} on_panic {on_panic:?} is not one of \"restart\", \"stop\""
            ),
            Problem::RestartWithoutResetCopy { partition } => write!(
                f,
                "partition {partition:?} says on_panic = \"restart\" but has no reset_copy to restart from"
            ),
            Problem::WatchdogOutOfRange {
                partition,
                watchdog_s,
            } => write!(
                f,
                "partition {partition:?} watchdog_s {watchdog_s} is outside {WATCHDOG_S_MIN}..={WATCHDOG_S_MAX}"
            ),
            Problem::SharedNotLinux { partition, core } => write!(
                f,
                "partition {partition:?} marks its vCPU on core {core} shared, but only a Linux vCPU may be shared (it gives way to the RTOS)"
            ),
            Problem::SharedWithoutRtos { partition, core } => write!(
                f,
                "partition {partition:?} marks its vCPU on core {core} shared, but no RTOS vCPU lives on core {core}"
            ),
            Problem::SharedNotFirst {
                partition,
                core,
                vcpu,
            } => write!(
                f,
                "partition {partition:?} shares core {core} with its vCPU {vcpu}; only vCPU 0 may share a core for now (secondaries start by PSCI CPU_ON, which a shared core does not take)"
            ),
            Problem::CoreTaken {
                partition,
                core,
                owner,
            } if partition == owner => write!(
                f,
                "partition {partition:?} puts two vCPUs on core {core}"
            ),
            Problem::CoreTaken {
                partition,
                core,
                owner,
            } => write!(
                f,
                "partition {partition:?} vCPU on core {core}, which partition {owner:?} already owns"
            ),
            Problem::UnknownDevice {
                partition,
                device,
                board,
            } => write!(
                f,
                "partition {partition:?} device {device:?} does not exist on board {board:?}"
            ),
            Problem::HypervisorDevice { partition, device } => write!(
                f,
                "partition {partition:?} device {device:?} is owned by the hypervisor"
            ),
            Problem::DeviceTaken {
                partition,
                device,
                owner,
            } if partition == owner => write!(
                f,
                "partition {partition:?} lists device {device:?} twice"
            ),
            Problem::DeviceTaken {
                partition,
                device,
                owner,
            } => write!(
                f,
                "partition {partition:?} device {device:?} is already given to partition {owner:?}"
            ),
            Problem::DevicePageShared {
                partition,
                device,
                other,
                other_device,
                page,
            } => write!(
                f,
                "partition {partition:?} device {device:?} shares the 4 KiB page {} with partition {other:?} device {other_device:?}; stage 2 maps whole pages, so each partition would reach the other's device",
                Hex(*page)
            ),
            Problem::BoardNameMismatch { expected, found } => write!(
                f,
                "board file is named {found:?}, but the config asks for board {expected:?}"
            ),
            Problem::BoardNoCores => write!(f, "board has 0 cores"),
            Problem::BoardNoRam => write!(f, "board has no RAM"),
            Problem::BoardBadRange { what, range } => write!(
                f,
                "{what} {} is empty, overflows or is not 4 KiB aligned",
                Span(*range)
            ),
            Problem::HypervisorOutsideRam { hypervisor } => write!(
                f,
                "hypervisor region {} is outside the board's RAM",
                Span(*hypervisor)
            ),
            Problem::DtbOutsideRam { dtb } => {
                write!(f, "DTB address {} is outside the board's RAM", Hex(*dtb))
            }
            Problem::DuplicateDevice { name } => {
                write!(f, "device name {name:?} is used more than once")
            }
            Problem::DmaWithoutIommu { partition, device } => write!(
                f,
                "partition {partition:?} device {device:?} does DMA but no IOMMU translates it: its DMA would reach every partition and the hypervisor; put it behind an SMMU (iommu = {{ smmu = .. }}) or leave it out"
            ),
            Problem::DevicePageHoldsUnowned {
                partition,
                device,
                other_device,
                page,
            } => write!(
                f,
                "partition {partition:?} device {device:?} shares the 4 KiB page {} with device {other_device:?}, which the partition does not own; stage 2 maps whole pages, so the partition would reach it too",
                Hex(*page)
            ),
            Problem::UnknownWindowSpace { device, space } => write!(
                f,
                "device {device:?} window space {space:?} is not one of \"io\", \"mem32\""
            ),
            Problem::WindowOverlapsRam { device, window } => write!(
                f,
                "device {device:?} window {} overlaps the board's RAM",
                Span(*window)
            ),
            Problem::BadIommu { device, smmu, why } => {
                write!(f, "device {device:?} iommu {smmu:?} {why}")
            }
            Problem::StreamsOverlap { device, other, smmu } => write!(
                f,
                "devices {device:?} and {other:?} claim the same stream IDs of SMMU {smmu:?}"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// Reads `path` and the board it names, and checks both.
///
/// The board `<name>` is `<dir of the config>/../boards/<name>.toml`.
pub fn load_config(path: &Path) -> Result<ValidatedConfig, ConfigError> {
    let config_text = read(path)?;
    let raw: RawConfig = parse(path, &config_text)?;
    if !valid_name(&raw.board) {
        return Err(invalid(
            path,
            vec![Problem::BadName {
                what: "board",
                name: raw.board,
            }],
        ));
    }
    let board_path = board_path_for(path, &raw.board);
    let board_text = read(&board_path)?;
    let board = parse_board(&board_path, &board_text, &raw.board)?;
    let board = machine(&raw, board).map_err(|p| invalid(path, p))?;
    let partitions = check_partitions(&raw, &board).map_err(|p| invalid(path, p))?;
    Ok(ValidatedConfig {
        config_path: path.to_path_buf(),
        board_path,
        board,
        partitions,
    })
}

/// The board as the config's machine has it: its first `cores` cores when the config says so
/// (a one-core QEMU `virt` is the board started with `-smp 1`).
fn machine(raw: &RawConfig, board: Board) -> Result<Board, Vec<Problem>> {
    match raw.cores {
        None => Ok(board),
        Some(cores) if (1..=board.cores).contains(&cores) => Ok(Board { cores, ..board }),
        Some(cores) => Err(vec![Problem::MachineCoresOutOfRange {
            cores,
            board_cores: board.cores,
        }]),
    }
}

/// Where the board file named `board` lives for the config at `config_path`.
pub fn board_path_for(config_path: &Path, board: &str) -> PathBuf {
    let file = format!("{board}.toml");
    match config_path.parent().and_then(Path::parent) {
        Some(root) => root.join("boards").join(file),
        None => Path::new("..").join("boards").join(file),
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        kind: ErrorKind::Io(e.to_string()),
    })
}

fn invalid(path: &Path, problems: Vec<Problem>) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        kind: ErrorKind::Invalid(problems),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError {
            file: path.to_path_buf(),
            kind: ErrorKind::Syntax {
                line,
                column,
                message: e.message().replace('\n', " ").trim().to_string(),
            },
        }
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn aligned(range: &MemRange) -> bool {
    range.base.is_multiple_of(PAGE_SIZE) && range.size.is_multiple_of(PAGE_SIZE)
}

fn overflows(range: &MemRange) -> bool {
    range.base.checked_add(range.size).is_none()
}

fn parse_board(path: &Path, text: &str, expected: &str) -> Result<Board, ConfigError> {
    let raw: RawBoard = parse(path, text)?;
    check_board(raw, expected).map_err(|p| invalid(path, p))
}

fn check_board(raw: RawBoard, expected: &str) -> Result<Board, Vec<Problem>> {
    let mut problems = Vec::new();
    if raw.name != expected {
        problems.push(Problem::BoardNameMismatch {
            expected: expected.to_string(),
            found: raw.name.clone(),
        });
    }
    if raw.cores == 0 {
        problems.push(Problem::BoardNoCores);
    }
    let ram: Vec<MemRange> = raw.ram.iter().map(RawRange::range).collect();
    if ram.is_empty() {
        problems.push(Problem::BoardNoRam);
    }
    let bad_range = |r: &MemRange| r.is_empty() || overflows(r) || !aligned(r);
    for r in ram.iter().filter(|r| bad_range(r)) {
        problems.push(Problem::BoardBadRange {
            what: "board RAM".into(),
            range: *r,
        });
    }
    let hypervisor = raw.hypervisor.range();
    if bad_range(&hypervisor) {
        problems.push(Problem::BoardBadRange {
            what: "hypervisor region".into(),
            range: hypervisor,
        });
    } else if !ram.iter().any(|r| r.contains_range(&hypervisor)) {
        problems.push(Problem::HypervisorOutsideRam { hypervisor });
    }
    if !ram.iter().any(|r| r.contains(raw.dtb)) {
        problems.push(Problem::DtbOutsideRam { dtb: raw.dtb });
    }
    let mut seen = HashMap::new();
    for d in &raw.devices {
        if !valid_name(&d.name) {
            problems.push(Problem::BadName {
                what: "device",
                name: d.name.clone(),
            });
        }
        if seen.insert(d.name.as_str(), ()).is_some() {
            problems.push(Problem::DuplicateDevice {
                name: d.name.clone(),
            });
        }
        let range = MemRange::new(d.base, d.size);
        if range.is_empty() || overflows(&range) {
            problems.push(Problem::BoardBadRange {
                what: format!("device {:?}", d.name),
                range,
            });
        }
        check_windows(d, &ram, &mut problems);
    }
    check_iommus(&raw.devices, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Board {
        name: raw.name,
        cores: raw.cores,
        dtb_hint: raw.dtb,
        ram,
        hypervisor_ram: hypervisor,
        devices: raw
            .devices
            .into_iter()
            .map(|d| BoardDevice {
                name: d.name,
                kind: d.kind,
                base: d.base,
                size: d.size,
                irqs: d.irqs,
                hypervisor_owned: d.hypervisor,
                // Checked above: every space parses.
                windows: d
                    .windows
                    .iter()
                    .filter_map(|w| {
                        Space::parse(&w.space).map(|space| Window {
                            space,
                            base: w.base,
                            size: w.size,
                        })
                    })
                    .collect(),
                dma: d.dma || d.iommu.is_some(),
                iommu: d.iommu.map(|i| IommuLink {
                    smmu: i.smmu,
                    first_stream: i.first_stream,
                    streams: i.streams,
                }),
            })
            .collect(),
    })
}

/// A device's windows: a known space, page-aligned, clear of RAM.
fn check_windows(d: &RawDevice, ram: &[MemRange], problems: &mut Vec<Problem>) {
    for w in &d.windows {
        if Space::parse(&w.space).is_none() {
            problems.push(Problem::UnknownWindowSpace {
                device: d.name.clone(),
                space: w.space.clone(),
            });
        }
        let window = MemRange::new(w.base, w.size);
        if window.is_empty() || overflows(&window) || !aligned(&window) {
            problems.push(Problem::BoardBadRange {
                what: format!("device {:?} window", d.name),
                range: window,
            });
        } else if ram.iter().any(|r| r.overlaps(&window)) {
            problems.push(Problem::WindowOverlapsRam {
                device: d.name.clone(),
                window,
            });
        }
    }
}

/// Every `iommu` names an SMMUv3 of the board that spumone owns, with streams of its own.
fn check_iommus(devices: &[RawDevice], problems: &mut Vec<Problem>) {
    let linked: Vec<(&RawDevice, &RawIommu)> = devices
        .iter()
        .filter_map(|d| d.iommu.as_ref().map(|i| (d, i)))
        .collect();
    for (i, &(d, link)) in linked.iter().enumerate() {
        let bad = |why| Problem::BadIommu {
            device: d.name.clone(),
            smmu: link.smmu.clone(),
            why,
        };
        match devices.iter().find(|s| s.name == link.smmu) {
            None => problems.push(bad("is not a device of the board")),
            Some(s) if s.kind != SMMU_V3_KIND => {
                problems.push(bad("is not an SMMUv3 (kind \"arm,smmu-v3\")"))
            }
            Some(s) if !s.hypervisor => problems.push(bad(
                "is not owned by the hypervisor (hypervisor = true): a guest could reprogram it",
            )),
            Some(_) => {}
        }
        let end = u64::from(link.first_stream) + u64::from(link.streams);
        if link.streams == 0 {
            problems.push(bad("gives it no stream (streams = 0)"));
        }
        for &(o, other) in &linked[..i] {
            let other_end = u64::from(other.first_stream) + u64::from(other.streams);
            if other.smmu == link.smmu
                && u64::from(link.first_stream) < other_end
                && u64::from(other.first_stream) < end
            {
                problems.push(Problem::StreamsOverlap {
                    device: d.name.clone(),
                    other: o.name.clone(),
                    smmu: link.smmu.clone(),
                });
            }
        }
    }
}

/// How many partitions have a console channel.
fn max_partitions() -> usize {
    (0..)
        .take_while(|&i| spumone_abi::chan::guest(i).is_some())
        .count()
}

fn check_partitions(raw: &RawConfig, board: &Board) -> Result<Vec<PartitionInfo>, Vec<Problem>> {
    let mut problems = Vec::new();
    let parts = &raw.partitions;

    if parts.is_empty() {
        problems.push(Problem::NoPartition);
    }
    let max = max_partitions();
    if parts.len() > max {
        problems.push(Problem::TooManyPartitions {
            count: parts.len(),
            max,
        });
    }
    for (i, p) in parts.iter().enumerate() {
        if !valid_name(&p.name) {
            problems.push(Problem::BadName {
                what: "partition",
                name: p.name.clone(),
            });
        }
        if !valid_name(&p.image) {
            problems.push(Problem::BadName {
                what: "image",
                name: p.image.clone(),
            });
        }
        if parts[..i].iter().any(|q| q.name == p.name) {
            problems.push(Problem::DuplicatePartition {
                name: p.name.clone(),
            });
        }
    }

    check_ram(parts, board, &mut problems);
    check_cores(parts, board, &mut problems);
    check_devices(parts, board, &mut problems);
    check_device_pages(parts, board, &mut problems);
    check_reset_copies(parts, board, &mut problems);

    let mut linux = Vec::new();
    for p in parts {
        let ram: Vec<MemRange> = p.ram.iter().map(RawRange::range).collect();
        let info = match p.kind {
            RawKind::Rtos => {
                check_not_linux(p, &mut problems);
                None
            }
            RawKind::Linux => check_linux(p, &ram, board, &mut problems),
        };
        let entry = match (&info, p.entry) {
            (Some(l), _) => Some(l.kernel.base),
            (None, Some(entry)) => Some(entry),
            (None, None) if p.kind == RawKind::Rtos => {
                problems.push(Problem::NoEntry {
                    partition: p.name.clone(),
                });
                None
            }
            // A broken Linux layout is reported by `check_linux`.
            (None, None) => None,
        };
        if let Some(entry) = entry {
            if !ram.is_empty() && !ram.iter().any(|r| r.contains(entry)) {
                problems.push(Problem::EntryOutsideRam {
                    partition: p.name.clone(),
                    entry,
                });
            }
        }
        check_preload(p, &mut problems);
        linux.push(info);
        if p.vcpus.is_empty() {
            problems.push(Problem::NoVcpu {
                partition: p.name.clone(),
            });
        }
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(parts
        .iter()
        .zip(linux)
        .enumerate()
        .map(|(i, (p, linux))| PartitionInfo {
            name: p.name.clone(),
            // Both hold: `i < max_partitions()`, checked above.
            index: i as u8,
            console_channel: spumone_abi::chan::guest(i).unwrap_or_default(),
            image: p.image.clone(),
            ram: p.ram.iter().map(RawRange::range).collect(),
            devices: p
                .devices
                .iter()
                .filter_map(|d| board.device(d).cloned())
                .collect(),
            entry: linux
                .as_ref()
                .map_or(p.entry.unwrap_or_default(), |l| l.kernel.base),
            boot_arg: p.boot_arg.unwrap_or_default(),
            vcpus: p.vcpus.iter().map(|v| Vcpu { core: v.core }).collect(),
            preload_ns: match p.kind {
                RawKind::Rtos => p.preload_ns.unwrap_or(crate::rt::DEFAULT_PRELOAD_NS),
                RawKind::Linux => 0,
            },
            kind: match p.kind {
                RawKind::Rtos => Kind::Rtos,
                RawKind::Linux => Kind::Linux,
            },
            linux,
        })
        .collect())
}

/// `preload_ns`: an RTOS partition's, at most `rt::MAX_PRELOAD_NS`.
fn check_preload(p: &RawPartition, problems: &mut Vec<Problem>) {
    let Some(ns) = p.preload_ns else {
        return;
    };
    if p.kind == RawKind::Linux {
        problems.push(Problem::RtosOnlyField {
            partition: p.name.clone(),
            field: "preload_ns",
        });
    } else if ns > crate::rt::MAX_PRELOAD_NS {
        problems.push(Problem::PreloadTooLong {
            partition: p.name.clone(),
            ns,
        });
    }
}

fn check_not_linux(p: &RawPartition, problems: &mut Vec<Problem>) {
    let set = [
        ("kernel_offset", p.kernel_offset.is_some()),
        ("kernel_size", p.kernel_size.is_some()),
        ("initrd", p.initrd.is_some()),
        ("dtb", p.dtb.is_some()),
        ("bootargs", p.bootargs.is_some()),
        ("console", p.console.is_some()),
        ("reset_copy", p.reset_copy.is_some()),
        ("dsm", p.dsm.is_some()),
        ("policy", p.policy.is_some()),
        ("on_panic", p.on_panic.is_some()),
        ("watchdog_s", p.watchdog_s.is_some()),
    ];
    for (field, _) in set.iter().filter(|(_, present)| *present) {
        problems.push(Problem::LinuxOnlyField {
            partition: p.name.clone(),
            field,
        });
    }
}

/// The Linux layout of `p`: Image, initrd and DTB inside its RAM, apart, and aligned as the
/// arm64 boot protocol wants; `None` (with the problems recorded) when it does not hold.
fn check_linux(
    p: &RawPartition,
    ram: &[MemRange],
    board: &Board,
    problems: &mut Vec<Problem>,
) -> Option<LinuxInfo> {
    let before = problems.len();
    let partition = || p.name.clone();
    for (field, present) in [
        ("entry", p.entry.is_some()),
        ("boot_arg", p.boot_arg.is_some()),
    ] {
        if present {
            problems.push(Problem::LinuxFixedField {
                partition: partition(),
                field,
            });
        }
    }
    let mut missing = |field| {
        problems.push(Problem::MissingLinuxField {
            partition: partition(),
            field,
        })
    };
    let offset = p.kernel_offset;
    if offset.is_none() {
        missing("kernel_offset");
    }
    if p.initrd.is_none() {
        missing("initrd");
    }
    if p.dtb.is_none() {
        missing("dtb");
    }
    // No RAM is reported by `check_ram`.
    let (Some(offset), Some(initrd), Some(dtb), Some(first)) =
        (offset, p.initrd.as_ref(), p.dtb, ram.first())
    else {
        return None;
    };
    if !offset.is_multiple_of(LINUX_IMAGE_ALIGN) {
        problems.push(Problem::UnalignedKernel {
            partition: partition(),
            offset,
        });
    }
    let kernel = MemRange::new(
        first.base.saturating_add(offset),
        p.kernel_size.unwrap_or(LINUX_KERNEL_SIZE_DEFAULT),
    );
    let regions = [
        ("kernel", kernel, PAGE_SIZE),
        ("initrd", initrd.range(), PAGE_SIZE),
        // The boot protocol asks for 8 bytes.
        ("dtb", MemRange::new(dtb, LINUX_DTB_MAX), 8),
    ];
    for (i, &(what, range, align)) in regions.iter().enumerate() {
        if range.is_empty() || overflows(&range) || !range.base.is_multiple_of(align) {
            problems.push(Problem::BadLinuxRegion {
                partition: partition(),
                what,
                range,
                align,
            });
            continue;
        }
        if !ram.iter().any(|r| r.contains_range(&range)) {
            problems.push(Problem::LinuxRegionOutsideRam {
                partition: partition(),
                what,
                range,
            });
        }
        for &(other, other_range, _) in &regions[..i] {
            if range.overlaps(&other_range) {
                problems.push(Problem::LinuxRegionOverlap {
                    partition: partition(),
                    what,
                    range,
                    other,
                    other_range,
                });
            }
        }
    }
    let dtb = regions[2].1;
    if !overflows(&dtb) && dtb.base / LINUX_IMAGE_ALIGN != (dtb.end() - 1) / LINUX_IMAGE_ALIGN {
        problems.push(Problem::DtbCrosses2MiB {
            partition: partition(),
            dtb,
        });
    }
    let bootargs = p.bootargs.clone().unwrap_or_default();
    if bootargs.len() > LINUX_BOOTARGS_MAX {
        problems.push(Problem::BootargsTooLong {
            partition: partition(),
            len: bootargs.len(),
            max: LINUX_BOOTARGS_MAX,
        });
    }
    if bootargs.chars().any(char::is_control) {
        problems.push(Problem::BootargsBadChar {
            partition: partition(),
        });
    }
    if board.console_intid().is_none() {
        problems.push(Problem::NoConsoleInterrupt {
            partition: partition(),
        });
    }
    let console = p.console.unwrap_or(LINUX_CONSOLE_DEFAULT);
    let frame = MemRange::new(console, LINUX_CONSOLE_SIZE);
    if !console.is_multiple_of(PAGE_SIZE) || overflows(&frame) {
        problems.push(Problem::UnalignedConsole {
            partition: partition(),
            console,
        });
    } else {
        if ram.iter().any(|r| r.overlaps(&frame)) {
            problems.push(Problem::ConsoleOverlap {
                partition: partition(),
                console,
                what: "RAM".into(),
            });
        }
        for d in p.devices.iter().filter_map(|d| board.device(d)) {
            if d.range().overlaps(&frame) {
                problems.push(Problem::ConsoleOverlap {
                    partition: partition(),
                    console,
                    what: format!("device {:?}", d.name),
                });
            }
        }
    }
    let dsm = p.dsm.as_ref().and_then(|d| check_dsm(&p.name, d, problems));
    let policy = match p.policy.as_deref() {
        None => Some(MigrationPolicy::Pinned),
        Some(name) => {
            let policy = MigrationPolicy::parse(name);
            if policy.is_none() {
                problems.push(Problem::UnknownMigrationPolicy {
                    partition: partition(),
                    policy: name.to_string(),
                });
            }
            policy
        }
    };
    let on_panic = check_on_panic(p, problems);
    let watchdog_s = match p.watchdog_s {
        None => Some(WATCHDOG_S_DEFAULT),
        Some(s) => {
            let ok = u16::try_from(s)
                .ok()
                .filter(|s| (WATCHDOG_S_MIN..=WATCHDOG_S_MAX).contains(s));
            if ok.is_none() {
                problems.push(Problem::WatchdogOutOfRange {
                    partition: partition(),
                    watchdog_s: s,
                });
            }
            ok
        }
    };
    (problems.len() == before).then(|| LinuxInfo {
        kernel,
        initrd: initrd.range(),
        dtb,
        reset_copy: p.reset_copy.as_ref().map(RawRange::range),
        bootargs,
        console,
        dsm,
        policy: policy.unwrap_or(MigrationPolicy::Pinned),
        on_panic: on_panic.unwrap_or(OnPanic::Stop),
        watchdog_s: watchdog_s.unwrap_or(WATCHDOG_S_DEFAULT),
    })
}

/// What a Linux partition does after a panic or a hang: the config's choice, which must have
/// a `reset_copy` to restart from; by default a restart when there is one, else a stop.
fn check_on_panic(p: &RawPartition, problems: &mut Vec<Problem>) -> Option<OnPanic> {
    let has_copy = p.reset_copy.is_some();
    let Some(text) = p.on_panic.as_deref() else {
        return Some(OnPanic::default_for(has_copy));
    };
    let Some(on_panic) = OnPanic::parse(text) else {
        problems.push(Problem::UnknownOnPanic {
            partition: p.name.clone(),
            on_panic: text.to_string(),
        });
        return None;
    };
    if on_panic == OnPanic::Restart && !has_copy {
        problems.push(Problem::RestartWithoutResetCopy {
            partition: p.name.clone(),
        });
        return None;
    }
    Some(on_panic)
}

/// The DSM settings of Linux partition `partition`: a known policy, a period and a share in
/// range.
fn check_dsm(partition: &str, d: &RawDsm, problems: &mut Vec<Problem>) -> Option<Dsm> {
    let share = d
        .share_permille
        .unwrap_or(u32::from(DSM_SHARE_PERMILLE_DEFAULT));
    let share_permille = u16::try_from(share)
        .ok()
        .filter(|s| (1..=DSM_SHARE_PERMILLE_MAX).contains(s));
    if share_permille.is_none() {
        problems.push(Problem::DsmShareOutOfRange {
            partition: partition.into(),
            share_permille: share,
        });
    }
    let policy = DsmPolicy::parse(&d.policy);
    if policy.is_none() {
        problems.push(Problem::UnknownDsmPolicy {
            partition: partition.into(),
            policy: d.policy.clone(),
        });
    }
    if !(DSM_PERIOD_MS_MIN..=DSM_PERIOD_MS_MAX).contains(&d.period_ms) {
        problems.push(Problem::DsmPeriodOutOfRange {
            partition: partition.into(),
            period_ms: d.period_ms,
        });
        return None;
    }
    Some(Dsm {
        period_ms: d.period_ms,
        policy: policy?,
        share_permille: share_permille?,
    })
}

fn check_ram(parts: &[RawPartition], board: &Board, problems: &mut Vec<Problem>) {
    // (partition, range) for every well-formed range, for the overlap check.
    let mut placed: Vec<(&str, MemRange)> = Vec::new();
    for p in parts {
        if p.ram.is_empty() {
            problems.push(Problem::NoRam {
                partition: p.name.clone(),
            });
        }
        for range in p.ram.iter().map(RawRange::range) {
            let partition = p.name.clone();
            if range.is_empty() {
                problems.push(Problem::EmptyRam { partition, range });
                continue;
            }
            if !aligned(&range) {
                problems.push(Problem::UnalignedRam {
                    partition: partition.clone(),
                    range,
                });
            }
            if !board.ram.iter().any(|b| b.contains_range(&range)) {
                problems.push(Problem::RamOutsideBoard {
                    partition: partition.clone(),
                    range,
                    board_ram: board.ram.clone(),
                });
            }
            if range.overlaps(&board.hypervisor_ram) {
                problems.push(Problem::RamOverlapsHypervisor {
                    partition: partition.clone(),
                    range,
                    hypervisor: board.hypervisor_ram,
                });
            }
            for (other, other_range) in &placed {
                if range.overlaps(other_range) {
                    problems.push(Problem::RamOverlap {
                        partition: partition.clone(),
                        range,
                        other: other.to_string(),
                        other_range: *other_range,
                    });
                }
            }
            placed.push((&p.name, range));
        }
    }
}

/// Every Linux partition's `reset_copy`: memory only spumone touches (board RAM, clear of its
/// own region and of all partition RAM), big enough for the largest Image and initrd allowed.
fn check_reset_copies(parts: &[RawPartition], board: &Board, problems: &mut Vec<Problem>) {
    // (partition, range) of each well-formed copy, for the copy-vs-copy check.
    let mut placed: Vec<(&str, MemRange)> = Vec::new();
    for p in parts.iter().filter(|p| p.kind == RawKind::Linux) {
        let Some(range) = p.reset_copy.as_ref().map(RawRange::range) else {
            continue;
        };
        let partition = p.name.clone();
        if range.is_empty() {
            problems.push(Problem::EmptyResetCopy { partition, range });
            continue;
        }
        if overflows(&range) {
            problems.push(Problem::ResetCopyOverflows { partition, range });
            continue;
        }
        if !aligned(&range) {
            problems.push(Problem::UnalignedResetCopy {
                partition: partition.clone(),
                range,
            });
        }
        if !board.ram.iter().any(|b| b.contains_range(&range)) {
            problems.push(Problem::ResetCopyOutsideBoard {
                partition: partition.clone(),
                range,
                board_ram: board.ram.clone(),
            });
        }
        if range.overlaps(&board.hypervisor_ram) {
            problems.push(Problem::ResetCopyOverlapsHypervisor {
                partition: partition.clone(),
                range,
                hypervisor: board.hypervisor_ram,
            });
        }
        for q in parts {
            for other_range in q.ram.iter().map(RawRange::range) {
                if range.overlaps(&other_range) {
                    problems.push(Problem::ResetCopyOverlapsRam {
                        partition: partition.clone(),
                        range,
                        other: q.name.clone(),
                        other_range,
                    });
                }
            }
        }
        for (other, other_range) in &placed {
            if range.overlaps(other_range) {
                problems.push(Problem::ResetCopyOverlap {
                    partition: partition.clone(),
                    range,
                    other: other.to_string(),
                    other_range: *other_range,
                });
            }
        }
        placed.push((&p.name, range));
        // A missing initrd is reported by `check_linux`.
        if let Some(initrd) = &p.initrd {
            let kernel_size = p.kernel_size.unwrap_or(LINUX_KERNEL_SIZE_DEFAULT);
            let needed = kernel_size.checked_add(initrd.size);
            if needed.is_none_or(|n| range.size < n) {
                problems.push(Problem::ResetCopyTooSmall {
                    partition,
                    range,
                    kernel_size,
                    initrd_size: initrd.size,
                });
            }
        }
    }
}

/// Who may run on which core. A partition owns its cores exclusively, except that a Linux
/// vCPU marked `shared = true` may join the one RTOS vCPU of a core (the RTOS runs first).
fn check_cores(parts: &[RawPartition], board: &Board, problems: &mut Vec<Problem>) {
    let mut owner: HashMap<u8, &str> = HashMap::new();
    let rtos_on = |core: u8| {
        parts
            .iter()
            .filter(|p| p.kind == RawKind::Rtos)
            .any(|p| p.vcpus.iter().any(|v| v.core == core))
    };
    // Non-shared vCPUs claim their cores first, so a shared one is checked against them.
    let ordered = parts
        .iter()
        .flat_map(|p| p.vcpus.iter().enumerate().map(move |(n, v)| (p, n, v)));
    let (shared, exclusive): (Vec<_>, Vec<_>) = ordered.partition(|(_, _, v)| v.shared);
    for (p, _, v) in &exclusive {
        if v.core >= board.cores {
            problems.push(Problem::CoreOutOfRange {
                partition: p.name.clone(),
                core: v.core,
                cores: board.cores,
            });
            continue;
        }
        if let Some(prev) = owner.insert(v.core, &p.name) {
            problems.push(Problem::CoreTaken {
                partition: p.name.clone(),
                core: v.core,
                owner: prev.to_string(),
            });
            owner.insert(v.core, prev);
        }
    }
    let mut joined: HashMap<u8, &str> = HashMap::new();
    for (p, n, v) in shared {
        let (partition, core) = (p.name.clone(), v.core);
        if core >= board.cores {
            problems.push(Problem::CoreOutOfRange {
                partition,
                core,
                cores: board.cores,
            });
        } else if p.kind != RawKind::Linux {
            problems.push(Problem::SharedNotLinux { partition, core });
        } else if !rtos_on(core) {
            problems.push(Problem::SharedWithoutRtos { partition, core });
        } else if let Some(prev) = joined
            .insert(core, &p.name)
            .or(owner.get(&core).copied().filter(|o| *o == p.name.as_str()))
        {
            problems.push(Problem::CoreTaken {
                partition,
                core,
                owner: prev.to_string(),
            });
        } else if n != 0 {
            problems.push(Problem::SharedNotFirst {
                partition,
                core,
                vcpu: n,
            });
        }
    }
}

fn check_devices(parts: &[RawPartition], board: &Board, problems: &mut Vec<Problem>) {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for p in parts {
        for name in &p.devices {
            let partition = p.name.clone();
            let device = name.clone();
            match board.device(name) {
                None => problems.push(Problem::UnknownDevice {
                    partition,
                    device,
                    board: board.name.clone(),
                }),
                Some(d) if d.hypervisor_owned => {
                    problems.push(Problem::HypervisorDevice { partition, device })
                }
                Some(d) => {
                    if d.dma && d.iommu.is_none() {
                        problems.push(Problem::DmaWithoutIommu {
                            partition: partition.clone(),
                            device: device.clone(),
                        });
                    }
                    if let Some(prev) = owner.get(name.as_str()) {
                        problems.push(Problem::DeviceTaken {
                            partition,
                            device,
                            owner: prev.to_string(),
                        });
                    } else {
                        owner.insert(name, &p.name);
                    }
                }
            }
        }
    }
}

/// The first and last 4 KiB page of each range a device brings (registers and windows).
fn device_page_spans(d: &BoardDevice) -> Vec<(u64, u64)> {
    d.ranges()
        .filter(|r| !r.is_empty())
        .map(|r| {
            let first = r.base & !(PAGE_SIZE - 1);
            let last = r.base.saturating_add(r.size - 1) & !(PAGE_SIZE - 1);
            (first, last)
        })
        .collect()
}

/// The first page two devices both touch, if any.
fn shared_page(a: &BoardDevice, b: &BoardDevice) -> Option<u64> {
    let b_spans = device_page_spans(b);
    device_page_spans(a)
        .into_iter()
        .flat_map(|(first, last)| {
            b_spans
                .iter()
                .filter(move |&&(o_first, o_last)| first <= o_last && o_first <= last)
                .map(move |&(o_first, _)| first.max(o_first))
        })
        .min()
}

/// Stage 2 gives a partition whole pages, so every device on a page a partition reaches must
/// be that partition's: not another partition's, not the hypervisor's, not left unassigned.
fn check_device_pages(parts: &[RawPartition], board: &Board, problems: &mut Vec<Problem>) {
    let owner_of = |name: &str| {
        parts
            .iter()
            .find(|p| p.devices.iter().any(|d| d == name))
            .map(|p| p.name.as_str())
    };
    // Unknown and hypervisor-owned names are reported by `check_devices`.
    let assignable = |name: &String| board.device(name).filter(|d| !d.hypervisor_owned);
    let mut seen: Vec<(&str, &BoardDevice)> = Vec::new();
    for p in parts {
        for d in p.devices.iter().filter_map(assignable) {
            for &(other, o) in &seen {
                // A device listed twice is `DeviceTaken`, not this.
                if other == p.name || o.name == d.name {
                    continue;
                }
                if let Some(page) = shared_page(d, o) {
                    problems.push(Problem::DevicePageShared {
                        partition: p.name.clone(),
                        device: d.name.clone(),
                        other: other.to_string(),
                        other_device: o.name.clone(),
                        page,
                    });
                }
            }
            seen.push((&p.name, d));
            for o in &board.devices {
                let theirs = owner_of(&o.name).filter(|_| !o.hypervisor_owned);
                if o.name == d.name || theirs.is_some() {
                    continue;
                }
                if let Some(page) = shared_page(d, o) {
                    problems.push(Problem::DevicePageHoldsUnowned {
                        partition: p.name.clone(),
                        device: d.name.clone(),
                        other_device: o.name.clone(),
                        page,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
