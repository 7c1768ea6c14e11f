//! The runtime tables spumone boots from, generated at build time from a validated config.

/// A physical address range `[base, base + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemRange {
    pub base: u64,
    pub size: u64,
}

impl MemRange {
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last byte; saturates so a bogus range can never wrap around.
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    pub const fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    /// Whether `other` lies entirely inside `self` (an empty `other` never does).
    pub const fn contains_range(&self, other: &MemRange) -> bool {
        !other.is_empty() && other.base >= self.base && other.end() <= self.end()
    }

    pub const fn overlaps(&self, other: &MemRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.base < other.end() && other.base < self.end()
    }
}

/// A board device passed through to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub name: &'static str,
    pub base: u64,
    pub size: u64,
    /// GIC INTIDs (SPIs are 32 and up) routed to the partition.
    pub irqs: &'static [u32],
    /// Further address ranges that come with it (a PCIe host bridge's I/O and memory
    /// windows), mapped like its registers.
    pub windows: &'static [Window],
}

/// An address window of a device beside its registers: what a PCIe host bridge forwards to
/// its bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub space: Space,
    pub base: u64,
    pub size: u64,
}

impl Window {
    pub const fn range(&self) -> MemRange {
        MemRange::new(self.base, self.size)
    }
}

/// The bus address space a [`Window`] forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// PCI I/O space (bus addresses from 0).
    Io,
    /// 32-bit PCI memory space (bus address = CPU address).
    Mem32,
}

impl Space {
    /// The config spelling: `io` or `mem32`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "io" => Some(Self::Io),
            "mem32" => Some(Self::Mem32),
            _ => None,
        }
    }
}

impl Device {
    pub const fn range(&self) -> MemRange {
        MemRange::new(self.base, self.size)
    }
}

/// A virtual CPU and the physical core it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vcpu {
    pub core: u8,
}

/// A guest: its memory, devices and vCPUs, and how it is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub name: &'static str,
    /// Position in the config; also selects the console channel.
    pub index: u8,
    /// Which guest image the host tools load for it.
    pub image: &'static str,
    pub ram: &'static [MemRange],
    pub devices: &'static [Device],
    /// Where every vCPU starts, at EL1h.
    pub entry: u64,
    /// Passed in `x1` at entry.
    pub boot_arg: u64,
    pub vcpus: &'static [Vcpu],
    /// UART channel of its console (`spumone_abi::chan::guest(index)`).
    pub console_channel: u8,
    /// RTOS only: how long before its timer deadline a vCPU waiting on a shared core is
    /// loaded, so that the switch is over when the deadline comes (`preload_ns`; 0: at the
    /// deadline). Always 0 for Linux.
    pub preload_ns: u32,
}

/// An RTOS partition's `preload_ns` unless its config says otherwise: the switch it hides
/// measured about 8.1 µs under `-icount` (`docs/benchmarks.md`), with room for one Linux
/// exit that the EL2 timer's interrupt must wait out.
pub const DEFAULT_PRELOAD_NS: u32 = 20_000;

/// The longest `preload_ns` a config may set: Linux loses up to that much of the core in every
/// period of the RTOS (a tenth of a 1 ms period).
pub const MAX_PRELOAD_NS: u32 = 100_000;

impl Partition {
    /// Whether `addr` is in this partition's RAM.
    pub fn owns_ram(&self, addr: u64) -> bool {
        self.ram.iter().any(|r| r.contains(addr))
    }

    /// The device of this partition whose registers contain `addr`.
    pub fn device_at(&self, addr: u64) -> Option<&'static Device> {
        self.devices.iter().find(|d| d.range().contains(addr))
    }

    /// The number (within this partition) of the vCPU placed on `core`.
    pub fn vcpu_on_core(&self, core: u8) -> Option<usize> {
        self.vcpus.iter().position(|v| v.core == core)
    }
}

/// An SMMUv3 that spumone owns: the streams it lets through, each into one partition's RAM.
/// Every stream not granted here aborts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Smmu {
    pub name: &'static str,
    /// Its register frame (never mapped to a guest).
    pub base: u64,
    pub size: u64,
    /// GIC INTID of its event queue interrupt (0: none).
    pub event_intid: u32,
    /// GIC INTID of its global error interrupt (0: none).
    pub gerror_intid: u32,
    pub grants: &'static [StreamGrant],
}

/// Streams `first..first + count` of an SMMU belong to a device of partition `partition`:
/// their DMA is translated through tables that map that partition's RAM and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamGrant {
    /// The board device whose DMA these streams carry.
    pub device: &'static str,
    /// [`Partition::index`] of its owner.
    pub partition: u8,
    pub first: u32,
    pub count: u32,
}

impl StreamGrant {
    /// Whether stream `sid` is one of these.
    pub const fn contains(&self, sid: u32) -> bool {
        sid >= self.first && sid - self.first < self.count
    }
}

/// What runs in a partition; selects how spumone enters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// Entered at `entry` with `boot_arg` in `x1`.
    #[default]
    Rtos,
    /// An arm64 Linux `Image`, entered per the arm64 boot protocol with a generated DTB.
    Linux,
}

/// Largest DTB spumone writes for a Linux partition (the generated tree is a few KiB).
pub const LINUX_DTB_MAX: u64 = 0x1_0000;

/// Longest `bootargs` accepted (Linux's arm64 command line holds 2048 bytes with the NUL).
pub const LINUX_BOOTARGS_MAX: usize = 2047;

/// Where the emulated console UART appears when the config does not say (QEMU `virt`'s PL011).
pub const LINUX_CONSOLE_DEFAULT: u64 = 0x0900_0000;

/// Size of the emulated console UART's register frame.
pub const LINUX_CONSOLE_SIZE: u64 = 0x1000;

/// How a Linux partition is booted. Kept beside [`Partition`] (in a table of its own) so the
/// existing tables stay source compatible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxBoot {
    /// [`Partition::index`] of the partition this describes.
    pub partition: u8,
    /// Where the `Image` goes (2 MiB aligned; also the partition's `entry`) and the most it
    /// may occupy, BSS included (the `image_size` of its header).
    pub kernel: MemRange,
    /// Where the host tools put the initrd and the most it may take; the actual end is passed
    /// to the DTB builder.
    pub initrd: MemRange,
    /// Where spumone writes the generated DTB (its address goes in `x0`), and its room.
    pub dtb: MemRange,
    /// Board RAM outside every partition that spumone owns and keeps a pristine copy of the
    /// `Image` and initrd in, so a guest `SYSTEM_RESET` can restart this partition alone. At
    /// least `kernel.size + initrd.size` long; `None` when the config gives none.
    pub reset_copy: Option<MemRange>,
    pub bootargs: &'static str,
    /// Base address of the emulated SBSA UART the guest sees as its console.
    pub console: u64,
    /// The board `kind` (compatible) of each of [`Partition::devices`], in order, for the
    /// device tree.
    pub device_kinds: &'static [&'static str],
    /// The D-System Monitor's settings; `None`: the partition is not checked.
    pub dsm: Option<Dsm>,
    /// Where its vCPUs may move between cores.
    pub policy: MigrationPolicy,
    /// What spumone does when this Linux panics or stops making progress.
    pub on_panic: OnPanic,
    /// Seconds without progress (its tick overdue and its jiffies frozen) after which the
    /// progress watchdog calls it hung.
    pub watchdog_s: u16,
}

/// What spumone does with a Linux partition that panicked or hung (`on_panic = ".."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPanic {
    /// Boot it again from its pristine copy (needs a `reset_copy`).
    Restart,
    /// Stop it; the other partitions run on.
    Stop,
}

impl OnPanic {
    /// The config spelling: `restart` or `stop`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "restart" => Some(Self::Restart),
            "stop" => Some(Self::Stop),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Stop => "stop",
        }
    }

    /// Without `on_panic`: restart when there is a pristine copy to restart from, else stop.
    pub const fn default_for(has_reset_copy: bool) -> Self {
        if has_reset_copy {
            Self::Restart
        } else {
            Self::Stop
        }
    }
}

/// The progress watchdog's timeout when the config gives none: long enough that no busy but
/// healthy Linux (a kernel build, a DSM pass) comes near it, and as long as Linux's own
/// soft-lockup detector waits (20 s by default), so spumone never restarts a Linux that
/// would still recover by itself.
pub const WATCHDOG_S_DEFAULT: u16 = 20;
/// Shortest watchdog timeout accepted: the DSM samples from a 10 ms tick, and Linux may keep
/// interrupts off for a second in a legitimate long path.
pub const WATCHDOG_S_MIN: u16 = 2;
/// Longest watchdog timeout accepted (an hour).
pub const WATCHDOG_S_MAX: u16 = 3600;

/// A Linux partition's vCPU migration policy (`policy = ".."`; spumone's `core::policy`
/// decides the moves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationPolicy {
    /// vCPUs stay on their configured cores.
    #[default]
    Pinned,
    /// A vCPU leaves a core while its RTOS is runnable, and comes back when it idles.
    Spumone,
    /// The number of cores Linux uses follows its load.
    Load,
    /// A migration stress test: the vCPUs move in turn, one every 2 ms.
    Rotate,
}

impl MigrationPolicy {
    /// The config spelling: `pinned`, `spumone`, `load` or `rotate`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pinned" => Some(Self::Pinned),
            "spumone" => Some(Self::Spumone),
            "load" => Some(Self::Load),
            "rotate" => Some(Self::Rotate),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Pinned => "pinned",
            Self::Spumone => "spumone",
            Self::Load => "load",
            Self::Rotate => "rotate",
        }
    }
}

/// Shortest DSM period accepted: the runtime works from a 10 ms tick.
pub const DSM_PERIOD_MS_MIN: u32 = 10;
/// Longest DSM period accepted (an hour).
pub const DSM_PERIOD_MS_MAX: u32 = 3_600_000;

/// The DSM's CPU share when the config gives none: 1% of its core.
pub const DSM_SHARE_PERMILLE_DEFAULT: u16 = 10;
/// The whole core: the cap is off.
pub const DSM_SHARE_PERMILLE_MAX: u16 = 1000;

/// How the D-System Monitor checks a Linux partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dsm {
    /// A checker's pass starts at most this often.
    pub period_ms: u32,
    pub policy: DsmPolicy,
    /// At most this many thousandths of its core's time go to the checkers (1..=1000).
    pub share_permille: u16,
}

/// What the DSM does when a checker finds Linux compromised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsmPolicy {
    /// Print the alert only.
    Log,
    /// Freeze Linux's vCPUs (held in the hypervisor) for forensics; other partitions run on.
    Pause,
    /// Stop the partition.
    Stop,
}

impl DsmPolicy {
    /// The config spelling: `log`, `pause` or `stop`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "log" => Some(Self::Log),
            "pause" => Some(Self::Pause),
            "stop" => Some(Self::Stop),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Pause => "pause",
            Self::Stop => "stop",
        }
    }
}

impl LinuxBoot {
    /// The entry of `table` for the partition with index `partition`.
    pub fn find(table: &'static [LinuxBoot], partition: u8) -> Option<&'static LinuxBoot> {
        table.iter().find(|l| l.partition == partition)
    }

    /// What the partition with index `partition` runs.
    pub fn kind(table: &'static [LinuxBoot], partition: u8) -> Kind {
        match Self::find(table, partition) {
            Some(_) => Kind::Linux,
            None => Kind::Rtos,
        }
    }

    /// The emulated console's register frame.
    pub const fn console_range(&self) -> MemRange {
        MemRange::new(self.console, LINUX_CONSOLE_SIZE)
    }
}

/// The whole machine layout: the board and its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub board: &'static str,
    /// The machine's cores (the config's `cores`, or all the board has).
    pub cores: u8,
    /// Where the firmware leaves the DTB when it does not pass one in `x0`.
    pub dtb_hint: u64,
    /// spumone's own region.
    pub hypervisor_ram: MemRange,
    pub board_ram: &'static [MemRange],
    pub partitions: &'static [Partition],
    /// The IOMMUs spumone programs before any guest runs.
    pub smmus: &'static [Smmu],
    /// INTID of the board's console UART (its hypervisor-owned `arm,pl011`); a Linux
    /// partition's emulated console raises the same SPI. 0 if the board names none (only a
    /// config with Linux needs it).
    pub console_intid: u32,
}

impl Config {
    /// The partition with a vCPU on `core` (every core has at most one owner for now).
    pub fn partition_on_core(&self, core: u8) -> Option<&'static Partition> {
        self.partitions
            .iter()
            .find(|p| p.vcpu_on_core(core).is_some())
    }

    pub fn partition(&self, name: &str) -> Option<&'static Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// The partition whose console is `channel`.
    pub fn partition_by_channel(&self, channel: u8) -> Option<&'static Partition> {
        self.partitions
            .iter()
            .find(|p| p.console_channel == channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bounds() {
        let r = MemRange::new(0x1000, 0x2000);
        assert_eq!(r.end(), 0x3000);
        assert!(r.contains(0x1000));
        assert!(r.contains(0x2fff));
        assert!(!r.contains(0x3000));
        assert!(!r.contains(0xfff));
        assert_eq!(MemRange::new(u64::MAX - 1, 16).end(), u64::MAX);
    }

    #[test]
    fn range_relations() {
        let r = MemRange::new(0x1000, 0x2000);
        assert!(r.contains_range(&MemRange::new(0x1000, 0x2000)));
        assert!(r.contains_range(&MemRange::new(0x2000, 0x1000)));
        assert!(!r.contains_range(&MemRange::new(0x2000, 0x1001)));
        assert!(!r.contains_range(&MemRange::new(0x1000, 0)));
        assert!(r.overlaps(&MemRange::new(0x2fff, 1)));
        assert!(!r.overlaps(&MemRange::new(0x3000, 1)));
        assert!(!r.overlaps(&MemRange::new(0x0, 0x1000)));
        assert!(!r.overlaps(&MemRange::new(0x1800, 0)));
    }

    static RTOS_RAM: [MemRange; 1] = [MemRange::new(0x4400_0000, 0x0400_0000)];
    static LINUX_RAM: [MemRange; 1] = [MemRange::new(0x4800_0000, 0x1000_0000)];
    static PARTS: [Partition; 2] = [
        Partition {
            name: "rtos",
            index: 0,
            image: "rtos",
            ram: &RTOS_RAM,
            devices: &[],
            entry: 0x4400_0000,
            boot_arg: 0,
            vcpus: &[Vcpu { core: 0 }],
            console_channel: 0x10,
            preload_ns: DEFAULT_PRELOAD_NS,
        },
        Partition {
            name: "linux",
            index: 1,
            image: "linux",
            ram: &LINUX_RAM,
            devices: &[Device {
                name: "virtio0",
                base: 0x0a00_0000,
                size: 0x200,
                irqs: &[48],
                windows: &[],
            }],
            entry: 0x4820_0000,
            boot_arg: 0,
            vcpus: &[Vcpu { core: 2 }, Vcpu { core: 1 }],
            console_channel: 0x11,
            preload_ns: 0,
        },
    ];
    static CONFIG: Config = Config {
        board: "test",
        cores: 4,
        dtb_hint: 0x4000_0000,
        hypervisor_ram: MemRange::new(0x4000_0000, 0x0400_0000),
        board_ram: &[MemRange::new(0x4000_0000, 0x8000_0000)],
        partitions: &PARTS,
        smmus: &[],
        console_intid: 33,
    };

    #[test]
    fn lookups() {
        assert_eq!(CONFIG.partition_on_core(0).map(|p| p.name), Some("rtos"));
        assert_eq!(CONFIG.partition_on_core(1).map(|p| p.name), Some("linux"));
        assert!(CONFIG.partition_on_core(3).is_none());
        assert_eq!(PARTS[1].vcpu_on_core(1), Some(1));
        assert_eq!(PARTS[1].vcpu_on_core(0), None);
        assert_eq!(CONFIG.partition("linux").map(|p| p.index), Some(1));
        assert_eq!(
            CONFIG.partition_by_channel(0x10).map(|p| p.name),
            Some("rtos")
        );
        assert!(PARTS[0].owns_ram(0x47ff_ffff));
        assert!(!PARTS[0].owns_ram(0x4800_0000));
        assert_eq!(
            PARTS[1].device_at(0x0a00_01ff).map(|d| d.name),
            Some("virtio0")
        );
        assert!(PARTS[1].device_at(0x0a00_0200).is_none());
    }

    #[test]
    fn stream_grants_hold_their_range_only() {
        let grant = StreamGrant {
            device: "pcie",
            partition: 1,
            first: 0x10,
            count: 0x8,
        };
        assert!(!grant.contains(0xf));
        assert!(grant.contains(0x10));
        assert!(grant.contains(0x17));
        assert!(!grant.contains(0x18));
        let empty = StreamGrant { count: 0, ..grant };
        assert!(!empty.contains(0x10));
    }
}
