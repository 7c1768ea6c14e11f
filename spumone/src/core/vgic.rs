//! Virtual GICv3 of a partition: the emulated distributor (`GICD`) and redistributors (`GICR`)
//! its guests program, and the list-register bookkeeping that delivers interrupts.
//!
//! Guests use the CPU interface through the `ICC_*` system registers, which the hardware
//! virtualises (`ICV_*`) once `ICH_HCR_EL2.En` is set; only the distributor and redistributor
//! MMIO frames are emulated here. Interrupts backed by hardware (the virtual timer PPI and the
//! SPIs of the partition's devices) are mirrored to the physical GIC through [`Effect`]s and
//! injected with `HW = 1` list registers, so the guest's virtual EOI deactivates the physical
//! interrupt without a trap.

/// Size of the distributor frame.
pub const GICD_SIZE: u64 = 0x1_0000;
/// Size of one redistributor (`RD_base` + `SGI_base`), one per vCPU.
pub const GICR_FRAME_SIZE: u64 = 0x2_0000;
const SGI_BASE: u64 = 0x1_0000;

/// The EL1 virtual timer's PPI.
pub const VTIMER_INTID: u32 = 27;
/// The GIC's virtual CPU interface maintenance PPI.
pub const MAINTENANCE_INTID: u32 = 25;
/// Private interrupts whose physical counterpart is forwarded to the guest.
const HW_PRIVATE: u32 = 1 << VTIMER_INTID;

/// Most vCPUs of one partition.
pub const MAX_VCPUS: usize = super::MAX_CORES;
/// Most SPIs one partition may own.
pub const MAX_SPIS: usize = 32;
/// First SPI INTID.
pub const SPI_BASE: u32 = 32;
/// INTIDs from here on are special.
pub const SPECIAL_INTID: u32 = 1020;

// Distributor registers.
const GICD_CTLR: u64 = 0x0000;
const GICD_TYPER: u64 = 0x0004;
const GICD_IIDR: u64 = 0x0008;
const GICD_IGROUPR: u64 = 0x0080;
const GICD_ISENABLER: u64 = 0x0100;
const GICD_ICENABLER: u64 = 0x0180;
const GICD_ISPENDR: u64 = 0x0200;
const GICD_ICPENDR: u64 = 0x0280;
const GICD_ISACTIVER: u64 = 0x0300;
const GICD_ICACTIVER: u64 = 0x0380;
const GICD_IPRIORITYR: u64 = 0x0400;
const GICD_ITARGETSR: u64 = 0x0800;
const GICD_ICFGR: u64 = 0x0C00;
const GICD_IGRPMODR: u64 = 0x0D00;
const GICD_NSACR: u64 = 0x0E00;
const GICD_SGIR: u64 = 0x0F00;
const GICD_IROUTER: u64 = 0x6000;
const GICD_IROUTER_END: u64 = 0x7FE0;
const ID_REGS: u64 = 0xFFD0;
const PIDR2: u64 = 0xFFE8;

// Redistributor registers (`RD_base`, then `SGI_base` offsets from the frame start).
const GICR_CTLR: u64 = 0x0000;
const GICR_IIDR: u64 = 0x0004;
const GICR_TYPER: u64 = 0x0008;
const GICR_STATUSR: u64 = 0x0010;
const GICR_WAKER: u64 = 0x0014;
const GICR_IGROUPR0: u64 = SGI_BASE + 0x0080;
const GICR_ISENABLER0: u64 = SGI_BASE + 0x0100;
const GICR_ICENABLER0: u64 = SGI_BASE + 0x0180;
const GICR_ISPENDR0: u64 = SGI_BASE + 0x0200;
const GICR_ICPENDR0: u64 = SGI_BASE + 0x0280;
const GICR_ISACTIVER0: u64 = SGI_BASE + 0x0300;
const GICR_ICACTIVER0: u64 = SGI_BASE + 0x0380;
const GICR_IPRIORITYR: u64 = SGI_BASE + 0x0400;
const GICR_ICFGR0: u64 = SGI_BASE + 0x0C00;
const GICR_ICFGR1: u64 = SGI_BASE + 0x0C04;
const GICR_IGRPMODR0: u64 = SGI_BASE + 0x0D00;
const GICR_NSACR: u64 = SGI_BASE + 0x0E00;

/// `GICD_CTLR` as a single-security-state GIC shows it: EnableGrp0, EnableGrp1, ARE (always
/// on), DS (always on).
const CTLR_ENABLE_MASK: u32 = 0b11;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;
/// `GICD_IIDR`/`GICR_IIDR`: product 0x53 ('S'), no JEP106 implementer (not a real part).
const IIDR: u32 = 0x5300_0000;
/// `PIDR2`: ArchRev 3 (GICv3), JEDEC bit set, as GICv3 parts report.
const PIDR2_VALUE: u32 = 0x3B;
/// `GICD_TYPER.IDbits`: 10 INTID bits (no LPIs).
const TYPER_IDBITS: u32 = 9 << 19;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const TYPER_LAST: u64 = 1 << 4;
/// `GICD_IROUTER.IRM`: route to any participating PE.
const IROUTER_IRM: u64 = 1 << 31;
const IROUTER_MASK: u64 = 0xFF_8000_0000 | 0xFF_FFFF;
/// SGIs are always edge-triggered: `GICR_ICFGR0` reads as 0xAAAA_AAAA.
const ICFGR0_SGI: u32 = 0xAAAA_AAAA;

/// Why an access cannot be emulated; the guest gets an external abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadAccess {
    /// The access is not aligned to its size.
    Misaligned,
    /// The register does not support an access of that size.
    WrongSize,
    /// The offset lies beyond the emulated frames.
    OutOfRange,
}

/// A change the physical GIC must mirror for an interrupt backed by hardware.
///
/// A private interrupt's physical state lives in the redistributor of the core that runs its
/// vCPU, which that core may share with another partition's vCPU (the RTOS). So a guest write
/// reaches a physical redistributor only as [`Effect::Private`], and only for the writer's
/// own frame: it is applied on the writer's core, where the writer is loaded. A write to
/// another vCPU's frame changes that vCPU's virtual state alone; its core picks the change up
/// when that vCPU is loaded there ([`Effect::PrivateSync`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Configure private interrupt `intid` on this core (the writer's, which it runs on).
    Private {
        intid: u32,
        enable: bool,
        priority: u8,
    },
    /// Another vCPU changed hardware-backed private interrupts of `vcpu`: its core applies
    /// them ([`Vgic::take_private_sync`]) when `vcpu` runs there, and never otherwise.
    PrivateSync { vcpu: usize },
    /// Configure SPI `intid`, routed to the core running `target_vcpu`.
    Spi {
        intid: u32,
        enable: bool,
        priority: u8,
        target_vcpu: usize,
    },
    /// `vcpu` has software-pending interrupts it takes now (`Vgic::take_software`).
    SoftPending { vcpu: usize },
}

/// The effects of one write: a register touches at most 32 interrupts.
pub type Effects = heapless::Vec<Effect, 32>;

/// Emulated state of one vCPU's SGIs and PPIs (its redistributor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrivateIrqs {
    group: u32,
    enabled: u32,
    pending: u32,
    active: u32,
    priority: [u8; 32],
    /// `GICR_ICFGR1`: PPI trigger modes, two bits each.
    config: u32,
    grpmod: u32,
    /// `GICR_WAKER.ProcessorSleep`.
    asleep: bool,
    /// Hardware-backed interrupts another vCPU reconfigured, not yet applied on this vCPU's
    /// core.
    stale: u32,
    /// SGIs/PPIs whose group, priority or enable changed since this vCPU's core last brought
    /// what its list registers already hold in line ([`Vgic::relist`]).
    relist: u32,
    /// The same for the partition's SPIs (any of them: routes move them between vCPUs).
    relist_spis: bool,
}

impl PrivateIrqs {
    /// Reset state: everything disabled, group 0, priority 0, redistributor asleep.
    pub const fn new() -> Self {
        Self {
            group: 0,
            enabled: 0,
            pending: 0,
            active: 0,
            priority: [0; 32],
            config: 0,
            grpmod: 0,
            asleep: true,
            stale: 0,
            relist: 0,
            relist_spis: false,
        }
    }
}

impl Default for PrivateIrqs {
    fn default() -> Self {
        Self::new()
    }
}

/// Emulated state of one SPI the partition owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spi {
    pub intid: u32,
    group1: bool,
    enabled: bool,
    pending: bool,
    active: bool,
    priority: u8,
    edge: bool,
    grpmod: bool,
    route: u64,
    /// No physical interrupt behind it: an emulated device's line (the console UART).
    virtual_only: bool,
}

impl Spi {
    const fn new(intid: u32) -> Self {
        Self {
            virtual_only: false,
            intid,
            group1: false,
            enabled: false,
            pending: false,
            active: false,
            priority: 0,
            edge: false,
            grpmod: false,
            route: 0,
        }
    }
}

/// How an interrupt is presented to the guest in a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub priority: u8,
    pub group1: bool,
}

/// Counts of what a vGIC holds ([`Vgic::counts`]): its vCPUs and SPIs, and how many of its
/// interrupts (SGIs and PPIs of every vCPU, and SPIs) are enabled, pending or active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VgicCounts {
    pub vcpus: usize,
    pub spis: usize,
    pub enabled: u32,
    pub pending: u32,
    pub active: u32,
}

/// The virtual GIC of one partition.
#[derive(Clone, Debug)]
pub struct Vgic {
    vcpus: usize,
    /// `GICD_TYPER.ITLinesNumber`.
    it_lines: u32,
    ctlr: u32,
    private: [PrivateIrqs; MAX_VCPUS],
    spis: heapless::Vec<Spi, MAX_SPIS>,
    /// The last access to an unknown register, for the log (rate-limited there).
    last_unknown: Option<u64>,
    /// A distributor write changed an SPI's group, priority, enable or route
    /// ([`Vgic::spis_changed`]).
    spis_moved: bool,
}

impl Default for Vgic {
    fn default() -> Self {
        Self::new()
    }
}

/// The vCPU of `vcpus` an SPI with `GICD_IROUTER` value `route` goes to: `Aff0` if it names
/// one of them, else vCPU 0.
const fn route_target(route: u64, vcpus: usize) -> usize {
    let aff0 = (route & 0xFF) as usize;
    let upper = route & 0xFF_00FF_FF00;
    if route & IROUTER_IRM == 0 && upper == 0 && aff0 < vcpus {
        aff0
    } else {
        0
    }
}

/// Byte `index` of a little-endian `value`.
const fn byte(value: u64, index: u64) -> u8 {
    (value >> (index * 8)) as u8
}

fn check(offset: u64, size: u8, allowed: &[u8]) -> Result<(), BadAccess> {
    if !allowed.contains(&size) {
        return Err(BadAccess::WrongSize);
    }
    if !offset.is_multiple_of(u64::from(size)) {
        return Err(BadAccess::Misaligned);
    }
    Ok(())
}

/// A 64-bit register read with a 64-bit access or either 32-bit half.
fn read64(reg_offset: u64, offset: u64, size: u8, value: u64) -> Result<u64, BadAccess> {
    check(offset, size, &[4, 8])?;
    Ok(if size == 8 {
        value
    } else if offset == reg_offset {
        value & 0xFFFF_FFFF
    } else {
        value >> 32
    })
}

impl Vgic {
    /// An unconfigured vGIC (no vCPUs), for statics.
    pub const fn new() -> Self {
        Self {
            vcpus: 0,
            it_lines: 0,
            ctlr: 0,
            private: [PrivateIrqs::new(); MAX_VCPUS],
            spis: heapless::Vec::new(),
            last_unknown: None,
            spis_moved: false,
        }
    }

    /// Resets to `vcpus` vCPUs, a distributor with `spi_lines` SPIs (as the physical
    /// `GICD_TYPER` reports), and the SPIs in `owned` (INTIDs; others and duplicates are
    /// ignored, and so are SPIs beyond [`MAX_SPIS`]).
    pub fn configure(&mut self, vcpus: usize, spi_lines: u32, owned: impl Iterator<Item = u32>) {
        *self = Self::new();
        self.vcpus = vcpus.min(MAX_VCPUS);
        let lines = (spi_lines + SPI_BASE).clamp(32, SPECIAL_INTID);
        self.it_lines = lines.div_ceil(32) - 1;
        for intid in owned {
            let valid = (SPI_BASE..lines).contains(&intid);
            if valid && self.spi(intid).is_none() {
                let _ = self.spis.push(Spi::new(intid));
            }
        }
    }

    /// Number of vCPUs (redistributor frames).
    pub const fn vcpus(&self) -> usize {
        self.vcpus
    }

    /// Size of the redistributor region the guests see.
    pub const fn gicr_size(&self) -> u64 {
        self.vcpus as u64 * GICR_FRAME_SIZE
    }

    /// The SPIs this partition owns.
    pub fn owned_spis(&self) -> impl Iterator<Item = u32> + '_ {
        self.spis.iter().map(|s| s.intid)
    }

    /// The hardware-backed SPIs routed to `vcpu` (their physical routes follow it when it
    /// migrates).
    pub fn hardware_spis_of(&self, vcpu: usize) -> impl Iterator<Item = u32> + '_ {
        self.spis
            .iter()
            .filter(move |s| !s.virtual_only && self.spi_target(s) == vcpu)
            .map(|s| s.intid)
    }

    /// What this vGIC holds now, to compare a restarted partition's with its cold boot's.
    pub fn counts(&self) -> VgicCounts {
        let private = &self.private[..self.vcpus];
        let bits =
            |f: fn(&PrivateIrqs) -> u32| private.iter().map(|p| f(p).count_ones()).sum::<u32>();
        let spis = |f: fn(&Spi) -> bool| self.spis.iter().filter(|s| f(s)).count() as u32;
        VgicCounts {
            vcpus: self.vcpus,
            spis: self.spis.len(),
            enabled: bits(|p| p.enabled) + spis(|s| s.enabled),
            pending: bits(|p| p.pending) + spis(|s| s.pending),
            active: bits(|p| p.active) + spis(|s| s.active),
        }
    }

    /// Whether the partition owns SPI `intid`.
    pub fn owns_spi(&self, intid: u32) -> bool {
        self.spi(intid).is_some()
    }

    fn spi(&self, intid: u32) -> Option<&Spi> {
        self.spis.iter().find(|s| s.intid == intid)
    }

    fn spi_mut(&mut self, intid: u32) -> Option<&mut Spi> {
        self.spis.iter_mut().find(|s| s.intid == intid)
    }

    /// The offset of the last access to an unknown register, to be logged.
    pub fn take_unknown(&mut self) -> Option<u64> {
        self.last_unknown.take()
    }

    fn unknown_access(&mut self, offset: u64) {
        self.last_unknown = Some(offset);
    }

    /// How a physical interrupt `intid` that fired on `vcpu`'s core reaches that vCPU, or
    /// `None` if the vCPU does not take it (not backed by hardware, not owned, disabled, or
    /// an SPI routed elsewhere).
    pub fn deliverable(&self, vcpu: usize, intid: u32) -> Option<Delivery> {
        if intid < SPI_BASE {
            if vcpu >= self.vcpus || HW_PRIVATE & (1 << intid) == 0 {
                return None;
            }
            let p = &self.private[vcpu];
            if p.enabled & (1 << intid) == 0 {
                return None;
            }
            return Some(Delivery {
                priority: p.priority[intid as usize],
                group1: p.group & (1 << intid) != 0,
            });
        }
        let spi = self.spi(intid).filter(|s| !s.virtual_only)?;
        (spi.enabled && self.spi_target(spi) == vcpu).then_some(Delivery {
            priority: spi.priority,
            group1: spi.group1,
        })
    }

    /// Adds `posted` to `vcpu`'s software-pending SGIs/PPIs, then takes those enabled, as list
    /// register values; disabled ones stay pending until the guest enables them.
    pub fn take_software(&mut self, vcpu: usize, posted: u32) -> heapless::Vec<ListReg, 32> {
        let mut out = heapless::Vec::new();
        let Some(p) = self.private.get_mut(vcpu).filter(|_| vcpu < self.vcpus) else {
            return out;
        };
        p.pending |= posted;
        let ready = p.pending & p.enabled;
        p.pending &= !ready;
        for intid in (0..32).filter(|i| ready & (1 << i) != 0) {
            let delivery = Delivery {
                priority: p.priority[intid as usize],
                group1: p.group & (1 << intid) != 0,
            };
            let _ = out.push(ListReg::software(intid, delivery));
        }
        out
    }

    /// The list register value that forwards `intid` to `vcpu` straight from the IRQ path
    /// without the lock, or 0 when it must take the locked path (disabled, not a private
    /// hardware interrupt, or a stopped partition whose cores must notice the stop there).
    /// The caller keeps it per core only for the one vCPU running alone there.
    pub fn fast_lr(&self, vcpu: usize, intid: u32, stopped: bool) -> u64 {
        if stopped || intid >= SPI_BASE {
            return 0;
        }
        self.deliverable(vcpu, intid)
            .map_or(0, |d| ListReg::hardware(intid, d).encode())
    }

    /// The vCPU an SPI is routed to: `Aff0` if it names one of ours, else vCPU 0.
    fn spi_target(&self, spi: &Spi) -> usize {
        route_target(spi.route, self.vcpus)
    }

    /// What the physical GIC must mirror for `spi`; nothing for a virtual-only one.
    fn spi_effect(&self, spi: &Spi) -> Option<Effect> {
        (!spi.virtual_only).then_some(Effect::Spi {
            intid: spi.intid,
            enable: spi.enabled,
            priority: spi.priority,
            target_vcpu: self.spi_target(spi),
        })
    }

    /// Adds SPI `intid` as one the partition owns with no physical interrupt behind it (ignored
    /// if it is out of range, already owned, or the table is full).
    pub fn add_virtual_spi(&mut self, intid: u32) {
        let lines = (self.it_lines + 1) * 32;
        if (SPI_BASE..lines).contains(&intid) && self.spi(intid).is_none() {
            let mut spi = Spi::new(intid);
            spi.virtual_only = true;
            let _ = self.spis.push(spi);
        }
    }

    /// The level of virtual-only SPI `intid` rose: the vCPU it goes to and its list register
    /// value, or `None` if it is not such an SPI or the guest has it disabled.
    pub fn assert_virtual_spi(&self, intid: u32) -> Option<(usize, ListReg)> {
        let spi = self.spi(intid).filter(|s| s.virtual_only && s.enabled)?;
        let delivery = Delivery {
            priority: spi.priority,
            group1: spi.group1,
        };
        Some((self.spi_target(spi), ListReg::software(intid, delivery)))
    }

    fn private_effect(&self, vcpu: usize, intid: u32) -> Option<Effect> {
        let p = &self.private[vcpu];
        (HW_PRIVATE & (1 << intid) != 0).then_some(Effect::Private {
            intid,
            enable: p.enabled & (1 << intid) != 0,
            priority: p.priority[intid as usize],
        })
    }

    // ---- distributor ----

    /// A guest load of `size` bytes at `offset` in the distributor.
    pub fn gicd_read(&mut self, offset: u64, size: u8) -> Result<u64, BadAccess> {
        if offset >= GICD_SIZE {
            return Err(BadAccess::OutOfRange);
        }
        if (GICD_IPRIORITYR..GICD_ICFGR).contains(&offset) {
            check(offset, size, &[1, 4])?;
            if offset >= GICD_ITARGETSR {
                return Ok(0);
            }
            let first = (offset - GICD_IPRIORITYR) as u32;
            let mut value = 0u64;
            for i in 0..u32::from(size) {
                let prio = self.spi(first + i).map_or(0, |s| s.priority);
                value |= u64::from(prio) << (i * 8);
            }
            return Ok(value);
        }
        if (GICD_IROUTER..GICD_IROUTER_END).contains(&offset) {
            let reg = offset & !7;
            let intid = ((reg - GICD_IROUTER) / 8) as u32;
            let route = self.spi(intid).map_or(0, |s| s.route);
            return read64(reg, offset, size, route);
        }
        check(offset, size, &[4])?;
        let value = match offset {
            GICD_CTLR => self.ctlr | CTLR_ARE | CTLR_DS,
            GICD_TYPER => self.it_lines | TYPER_IDBITS,
            GICD_IIDR => IIDR,
            PIDR2 => PIDR2_VALUE,
            GICD_IGROUPR..=0x0FFF => self.spi_bits(offset),
            ID_REGS..=0xFFFC => 0,
            0x0010..=0x007F | 0x1000..=0x5FFF | GICD_IROUTER_END..ID_REGS => {
                self.unknown_access(offset);
                0
            }
            _ => 0,
        };
        Ok(u64::from(value))
    }

    /// Reads one 32-interrupt bitmap register of the `GICD_I*R` banks.
    fn spi_bits(&mut self, offset: u64) -> u32 {
        let (bank, word) = ((offset & !0x7F), ((offset & 0x7F) / 4) as u32);
        let field: fn(&Spi) -> bool = match bank {
            GICD_IGROUPR => |s| s.group1,
            GICD_ISENABLER | GICD_ICENABLER => |s| s.enabled,
            GICD_ISPENDR | GICD_ICPENDR => |s| s.pending,
            GICD_ISACTIVER | GICD_ICACTIVER => |s| s.active,
            GICD_IGRPMODR => |s| s.grpmod,
            GICD_ICFGR..=0x0CFF => return self.spi_config_word(offset),
            GICD_NSACR..=0x0FFF => return 0,
            _ => {
                self.unknown_access(offset);
                return 0;
            }
        };
        let mut value = 0;
        for spi in &self.spis {
            if spi.intid / 32 == word {
                value |= u32::from(field(spi)) << (spi.intid % 32);
            }
        }
        value
    }

    fn spi_config_word(&self, offset: u64) -> u32 {
        let first = ((offset - GICD_ICFGR) / 4 * 16) as u32;
        let mut value = 0;
        for spi in &self.spis {
            if (first..first + 16).contains(&spi.intid) && spi.edge {
                value |= 2 << ((spi.intid - first) * 2);
            }
        }
        value
    }

    /// A guest store of `size` bytes of `value` at `offset` in the distributor.
    pub fn gicd_write(&mut self, offset: u64, size: u8, value: u64) -> Result<Effects, BadAccess> {
        let mut effects = Effects::new();
        if offset >= GICD_SIZE {
            return Err(BadAccess::OutOfRange);
        }
        if (GICD_IPRIORITYR..GICD_ICFGR).contains(&offset) {
            check(offset, size, &[1, 4])?;
            if offset >= GICD_ITARGETSR {
                return Ok(effects);
            }
            let first = (offset - GICD_IPRIORITYR) as u32;
            for i in 0..u32::from(size) {
                if let Some(spi) = self.spi_mut(first + i) {
                    spi.priority = byte(value, u64::from(i));
                    self.spis_moved = true;
                }
                if let Some(spi) = self.spi(first + i) {
                    effects.extend(self.spi_effect(spi));
                }
            }
            return Ok(effects);
        }
        if (GICD_IROUTER..GICD_IROUTER_END).contains(&offset) {
            check(offset, size, &[4, 8])?;
            let reg = offset & !7;
            let intid = ((reg - GICD_IROUTER) / 8) as u32;
            self.spis_moved |= self.spi(intid).is_some();
            if let Some(spi) = self.spi_mut(intid) {
                spi.route = match (size, offset == reg) {
                    (8, _) => value,
                    (_, true) => (spi.route & !0xFFFF_FFFF) | (value & 0xFFFF_FFFF),
                    (_, false) => (spi.route & 0xFFFF_FFFF) | (value << 32),
                } & IROUTER_MASK;
            }
            if let Some(spi) = self.spi(intid) {
                effects.extend(self.spi_effect(spi));
            }
            return Ok(effects);
        }
        check(offset, size, &[4])?;
        let value = value as u32;
        match offset {
            GICD_CTLR => self.ctlr = value & CTLR_ENABLE_MASK,
            GICD_IGROUPR..=0x03FF | GICD_IGRPMODR..=0x0D7F => {
                let word = ((offset & 0x7F) / 4) as u32;
                let bank = offset & !0x7F;
                let mut changed = heapless::Vec::<u32, 32>::new();
                let mut moved = false;
                for spi in self.spis.iter_mut().filter(|s| s.intid / 32 == word) {
                    let bit = value & (1 << (spi.intid % 32)) != 0;
                    let before = spi.enabled;
                    let group_before = spi.group1;
                    match bank {
                        GICD_IGROUPR => spi.group1 = bit,
                        GICD_IGRPMODR => spi.grpmod = bit,
                        GICD_ISENABLER if bit => spi.enabled = true,
                        GICD_ICENABLER if bit => spi.enabled = false,
                        GICD_ISPENDR if bit => spi.pending = true,
                        GICD_ICPENDR if bit => spi.pending = false,
                        GICD_ISACTIVER if bit => spi.active = true,
                        GICD_ICACTIVER if bit => spi.active = false,
                        _ => {}
                    }
                    if spi.enabled != before {
                        let _ = changed.push(spi.intid);
                    }
                    moved |= spi.enabled != before || spi.group1 != group_before;
                }
                self.spis_moved |= moved;
                for intid in changed {
                    if let Some(spi) = self.spi(intid) {
                        effects.extend(self.spi_effect(spi));
                    }
                }
            }
            GICD_ICFGR..=0x0CFF => {
                let first = ((offset - GICD_ICFGR) / 4 * 16) as u32;
                for spi in self.spis.iter_mut() {
                    if (first..first + 16).contains(&spi.intid) {
                        spi.edge = value & (2 << ((spi.intid - first) * 2)) != 0;
                    }
                }
            }
            GICD_TYPER | GICD_IIDR | GICD_NSACR..=GICD_SGIR | ID_REGS..=0xFFFC => {}
            0x0F04..=0x0FFF => {}
            _ => self.unknown_access(offset),
        }
        Ok(effects)
    }

    // ---- redistributors ----

    /// A guest load at `offset` in the redistributor region (frame `n` = vCPU `n`).
    pub fn gicr_read(&mut self, offset: u64, size: u8) -> Result<u64, BadAccess> {
        let vcpu = (offset / GICR_FRAME_SIZE) as usize;
        if vcpu >= self.vcpus {
            return Err(BadAccess::OutOfRange);
        }
        let reg = offset % GICR_FRAME_SIZE;
        if (GICR_IPRIORITYR..GICR_IPRIORITYR + 32).contains(&reg) {
            check(reg, size, &[1, 4])?;
            let first = (reg - GICR_IPRIORITYR) as usize;
            let p = &self.private[vcpu];
            let value = (0..usize::from(size))
                .map(|i| u64::from(p.priority[first + i]) << (i * 8))
                .fold(0, |acc, b| acc | b);
            return Ok(value);
        }
        if (GICR_TYPER..GICR_TYPER + 8).contains(&reg) {
            let last = if vcpu + 1 == self.vcpus {
                TYPER_LAST
            } else {
                0
            };
            let typer = (vcpu as u64) << 32 | (vcpu as u64) << 8 | last;
            return read64(GICR_TYPER, reg, size, typer);
        }
        check(reg, size, &[4])?;
        let p = &self.private[vcpu];
        let value = match reg {
            GICR_CTLR | GICR_STATUSR => 0,
            GICR_IIDR => IIDR,
            GICR_WAKER if p.asleep => WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP,
            GICR_WAKER => 0,
            PIDR2 => PIDR2_VALUE,
            GICR_IGROUPR0 => p.group,
            GICR_ISENABLER0 | GICR_ICENABLER0 => p.enabled,
            GICR_ISPENDR0 | GICR_ICPENDR0 => p.pending,
            GICR_ISACTIVER0 | GICR_ICACTIVER0 => p.active,
            GICR_ICFGR0 => ICFGR0_SGI,
            GICR_ICFGR1 => p.config,
            GICR_IGRPMODR0 => p.grpmod,
            GICR_NSACR => 0,
            ID_REGS..=0xFFFC => 0,
            _ => {
                self.unknown_access(offset);
                0
            }
        };
        Ok(u64::from(value))
    }

    /// A store by vCPU `writer` at `offset` in the redistributor region. Only a write to
    /// the writer's own frame yields [`Effect::Private`] (see [`Effect`]).
    pub fn gicr_write(
        &mut self,
        writer: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Effects, BadAccess> {
        let mut effects = Effects::new();
        let vcpu = (offset / GICR_FRAME_SIZE) as usize;
        if vcpu >= self.vcpus {
            return Err(BadAccess::OutOfRange);
        }
        let reg = offset % GICR_FRAME_SIZE;
        if (GICR_IPRIORITYR..GICR_IPRIORITYR + 32).contains(&reg) {
            check(reg, size, &[1, 4])?;
            let first = (reg - GICR_IPRIORITYR) as u32;
            let mut touched = 0u32;
            let mut moved = 0u32;
            for i in 0..u32::from(size) {
                let intid = first + i;
                let slot = &mut self.private[vcpu].priority[intid as usize];
                let new = byte(value, u64::from(i));
                if *slot != new {
                    moved |= 1 << intid;
                }
                *slot = new;
                touched |= 1 << intid;
            }
            self.private_changed(writer, vcpu, touched & HW_PRIVATE, moved, &mut effects);
            return Ok(effects);
        }
        if (GICR_TYPER..GICR_TYPER + 8).contains(&reg) {
            check(reg, size, &[4, 8])?;
            return Ok(effects);
        }
        check(reg, size, &[4])?;
        let bits = value as u32;
        let p = &mut self.private[vcpu];
        let enabled_before = p.enabled;
        let group_before = p.group;
        match reg {
            GICR_WAKER => p.asleep = bits & WAKER_PROCESSOR_SLEEP != 0,
            GICR_IGROUPR0 => p.group = bits,
            GICR_ISENABLER0 => p.enabled |= bits,
            GICR_ICENABLER0 => p.enabled &= !bits,
            GICR_ISPENDR0 => p.pending |= bits,
            GICR_ICPENDR0 => p.pending &= !bits,
            GICR_ISACTIVER0 => p.active |= bits,
            GICR_ICACTIVER0 => p.active &= !bits,
            GICR_ICFGR1 => p.config = bits,
            GICR_IGRPMODR0 => p.grpmod = bits,
            GICR_CTLR | GICR_IIDR | GICR_STATUSR | GICR_ICFGR0 | GICR_NSACR | PIDR2 => {}
            ID_REGS..=0xFFFC => {}
            _ => self.unknown_access(offset),
        }
        let p = &self.private[vcpu];
        if matches!(reg, GICR_ISPENDR0 | GICR_ISENABLER0) && p.pending & p.enabled != 0 {
            let _ = effects.push(Effect::SoftPending { vcpu });
        }
        // A write to an enable register reprograms the hardware-backed ones it names even when
        // the virtual bit does not change: the physical one may have been switched off behind
        // the guest's back (an interrupt that fired while it was disabled is disabled there),
        // and on a GIC the write takes effect at once.
        let named = match reg {
            GICR_ISENABLER0 | GICR_ICENABLER0 => bits,
            _ => 0,
        };
        let p = &self.private[vcpu];
        let changed = ((enabled_before ^ p.enabled) | named) & HW_PRIVATE;
        // What the vCPU's list registers may already hold of these is presented differently
        // now (`Vgic::relist`).
        let presented = (enabled_before ^ p.enabled) | (group_before ^ p.group);
        self.private_changed(writer, vcpu, changed, presented, &mut effects);
        Ok(effects)
    }

    /// `writer` reconfigured the hardware-backed private interrupts `changed` of `vcpu`, and
    /// changed how the SGIs/PPIs `presented` are presented (group, priority, enable): the
    /// physical redistributor follows at once only for the writer's own frame; another
    /// vCPU's are marked stale, and its core is asked once to sync them. `presented` is
    /// marked for [`Vgic::relist`] either way (the writer's own core relists after the write).
    fn private_changed(
        &mut self,
        writer: usize,
        vcpu: usize,
        changed: u32,
        presented: u32,
        fx: &mut Effects,
    ) {
        let p = &mut self.private[vcpu];
        let ask = (p.stale == 0 && changed != 0) || (p.relist == 0 && presented != 0);
        p.relist |= presented;
        if writer == vcpu {
            fx.extend(self.private_effects(vcpu, changed));
            return;
        }
        if ask {
            let _ = fx.push(Effect::PrivateSync { vcpu });
        }
        p.stale |= changed;
    }

    /// The [`Effect::Private`]s that put `intids` of `vcpu` into the physical redistributor.
    fn private_effects(&self, vcpu: usize, intids: u32) -> impl Iterator<Item = Effect> + '_ {
        (0..32)
            .filter(move |i| intids & (1 << i) != 0)
            .filter_map(move |i| self.private_effect(vcpu, i))
    }

    /// Whether [`Vgic::relist`] has something to do for `vcpu` (so its core need not read
    /// its list registers otherwise).
    pub fn relist_due(&self, vcpu: usize) -> bool {
        vcpu < self.vcpus && (self.private[vcpu].relist != 0 || self.private[vcpu].relist_spis)
    }

    /// After a distributor write by vCPU `writer`: if it changed how an SPI is presented
    /// (group, priority, enable, route), every vCPU relists its SPIs ([`Vgic::relist`]); the
    /// writer's core does so at once, the others are asked once ([`Effect::PrivateSync`]).
    pub fn spis_changed(&mut self, writer: usize) -> Effects {
        let mut fx = Effects::new();
        if !core::mem::take(&mut self.spis_moved) {
            return fx;
        }
        for (vcpu, p) in self.private.iter_mut().enumerate().take(self.vcpus) {
            if !p.relist_spis && vcpu != writer {
                let _ = fx.push(Effect::PrivateSync { vcpu });
            }
            p.relist_spis = true;
        }
        fx
    }

    /// For the core `vcpu` is loaded on: brings the SGIs/PPIs its list registers (`lrs`, raw
    /// values) and its `queue` already hold, but the guest has not yet taken, in line with
    /// how its redistributor presents them now, for those whose group, priority or enable
    /// changed since the last call (from whichever frame).
    ///
    /// An interrupt is put into a list register with the group and priority of that moment.
    /// On a GIC, a pending interrupt regrouped, re-prioritized or disabled is signalled as
    /// it is now; a list register is not. So one presented in a group the guest does not
    /// enable or at a priority its mask hides stayed pending there for good, after the guest
    /// had set the interrupt right, and for a hardware one (the timer) the physical interrupt
    /// stayed active with it: the vCPU got no timer interrupt again. Now a pending entry of a
    /// still enabled interrupt takes its current group and priority; one of a disabled
    /// interrupt is taken back: a hardware one is deactivated (its level raises it again
    /// once enabled), a software one is pending in the redistributor again. Entries the guest
    /// has acknowledged (active) are left for its EOI.
    pub fn relist(&mut self, vcpu: usize, lrs: &[u64], queue: &mut PendingQueue) -> Relist {
        let mut out = Relist::default();
        let Some(p) = self.private.get_mut(vcpu).filter(|_| vcpu < self.vcpus) else {
            return out;
        };
        let marked = core::mem::take(&mut p.relist);
        let spis_marked = core::mem::take(&mut p.relist_spis);
        let (spis, vcpus) = (&self.spis, self.vcpus);
        let mut fix = |lr: ListReg, deactivate: &mut heapless::Vec<u32, 32>| -> Option<ListReg> {
            if lr.state != LrState::Pending {
                return Some(lr);
            }
            if lr.vintid >= SPI_BASE {
                let Some(spi) = spis.iter().find(|s| s.intid == lr.vintid && spis_marked) else {
                    return Some(lr);
                };
                if spi.enabled && route_target(spi.route, vcpus) == vcpu {
                    return Some(ListReg {
                        priority: spi.priority,
                        group1: spi.group1,
                        ..lr
                    });
                }
                // Disabled or routed elsewhere: a hardware one fires again where it goes now
                // (its level holds); an emulated device's line is left as it was.
                return match lr.pintid {
                    Some(pintid) => {
                        let _ = deactivate.push(pintid);
                        None
                    }
                    None => Some(lr),
                };
            }
            let bit = 1u32 << lr.vintid;
            if marked & bit == 0 {
                return Some(lr);
            }
            if p.enabled & bit == 0 {
                match lr.pintid {
                    Some(pintid) => {
                        let _ = deactivate.push(pintid);
                    }
                    None => p.pending |= bit,
                }
                return None;
            }
            Some(ListReg {
                priority: p.priority[lr.vintid as usize],
                group1: p.group & bit != 0,
                ..lr
            })
        };
        for (n, &raw) in lrs.iter().enumerate() {
            let lr = ListReg::decode(raw);
            if lr.state == LrState::Invalid {
                continue;
            }
            let value = fix(lr, &mut out.deactivate).map_or(0, |l| l.encode());
            if value != raw {
                let _ = out.writes.push((n, value));
            }
        }
        queue.retain_map(|lr| fix(lr, &mut out.deactivate));
        out
    }

    /// For the core `vcpu` is loaded on: what other vCPUs changed of its hardware-backed
    /// private interrupts since it last took them.
    pub fn take_private_sync(&mut self, vcpu: usize) -> Effects {
        let Some(p) = self.private.get_mut(vcpu).filter(|_| vcpu < self.vcpus) else {
            return Effects::new();
        };
        let stale = core::mem::take(&mut p.stale);
        self.private_effects(vcpu, stale).collect()
    }

    /// For the core `vcpu` is being loaded on: the whole configuration of its
    /// hardware-backed private interrupts (what another vCPU on that core left there is
    /// overwritten), stale marks included.
    pub fn load_private(&mut self, vcpu: usize) -> Effects {
        let Some(p) = self.private.get_mut(vcpu).filter(|_| vcpu < self.vcpus) else {
            return Effects::new();
        };
        p.stale = 0;
        self.private_effects(vcpu, HW_PRIVATE).collect()
    }
}

/// What to do with a physical interrupt EL2 acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqRoute {
    /// The hypervisor's own (its tick): handle, then priority drop and deactivate.
    Hypervisor,
    /// The virtual interface's maintenance interrupt: refill list registers, end it.
    Maintenance,
    /// For the vCPU running here: this list register, then priority drop only.
    Guest(ListReg),
    /// For no one running here: disable, end, report.
    Unclaimed,
}

/// Routes physical `intid`, given the hypervisor tick's INTID and how the vCPU running on this
/// core takes it (`Vgic::deliverable`, `None` without a vCPU).
pub const fn route_irq(intid: u32, hyp_timer: u32, delivery: Option<Delivery>) -> IrqRoute {
    if intid == hyp_timer {
        IrqRoute::Hypervisor
    } else if intid == MAINTENANCE_INTID {
        IrqRoute::Maintenance
    } else if let Some(delivery) = delivery {
        IrqRoute::Guest(ListReg::hardware(intid, delivery))
    } else {
        IrqRoute::Unclaimed
    }
}

/// At most this many physical interrupts are acknowledged in one pass at EL2: whatever a
/// guest makes its sources do (a level interrupt ended while still asserted fires again at
/// once), the core gets back to its tick, its kicks and its vCPU in between.
pub const MAX_ACKS_PER_PASS: usize = 32;

/// One pass over the physical interrupts pending at this core: `ack` acknowledges the next
/// (`None` once the CPU interface has none), `handle` deals with it. `false` if the pass
/// stopped at [`MAX_ACKS_PER_PASS`] with some maybe still pending.
pub fn drain_acks(mut ack: impl FnMut() -> Option<u32>, mut handle: impl FnMut(u32)) -> bool {
    for _ in 0..MAX_ACKS_PER_PASS {
        match ack() {
            Some(intid) => handle(intid),
            None => return true,
        }
    }
    false
}

/// Whether the maintenance interrupt is asserted for underflow (`ICH_MISR_EL2.U`): `UIE` set
/// in `hcr` and at most one of the `count` list registers holding an interrupt (`elrsr`, bit
/// set = empty). It is a level: ending it changes nothing while this holds.
pub const fn underflow_asserted(hcr: u64, elrsr: u64, count: usize) -> bool {
    let usable = if count >= 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    };
    let held = count as u32 - (elrsr & usable).count_ones();
    hcr & ich_hcr::EN != 0 && hcr & ich_hcr::UIE != 0 && held <= 1
}

/// What [`Vgic::relist`] asks of a vCPU's interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relist {
    /// `(n, value)`: list register `n` takes `value` (0: emptied).
    pub writes: heapless::Vec<(usize, u64), 16>,
    /// Physical interrupts taken back from the guest: deactivated on this core.
    pub deactivate: heapless::Vec<u32, 32>,
}

/// What to write to a vCPU's interface to move its queued interrupts into list registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refill {
    /// `(n, value)`: list register `n` takes `value`.
    pub writes: heapless::Vec<(usize, u64), 64>,
    /// `ICH_HCR_EL2` afterwards: underflow maintenance only while some still wait.
    pub hcr: u64,
}

/// Moves `queue`'s most urgent interrupts into the empty ones of `count` list registers
/// (`elrsr`, bit set = empty). Done for every maintenance interrupt before it is ended: the
/// result never leaves [`underflow_asserted`] true (either the queue is empty and `UIE`
/// off, or every list register is full), so the interrupt does not fire again at once.
pub fn refill(elrsr: u64, count: usize, queue: &mut PendingQueue) -> Refill {
    let mut writes = heapless::Vec::new();
    let mut free = elrsr;
    while let Some(n) = free_lr(free, count) {
        let Some(lr) = queue.pop() else {
            break;
        };
        let _ = writes.push((n, lr.encode()));
        free &= !(1 << n);
    }
    Refill {
        writes,
        hcr: ich_hcr(!queue.is_empty()),
    }
}

/// Whether a trapped wait instruction may sleep the core at EL2: only a WFI with no virtual
/// interrupt pending (EL2's `wfi` cannot see those); a WFE returns at once, since an event
/// (`SEV` from another core) would not wake EL2's `wfi`.
pub const fn trapped_wait_sleeps(is_wfe: bool, virtual_pending: bool) -> bool {
    !is_wfe && !virtual_pending
}

/// `ICH_HCR_EL2` bits.
pub mod ich_hcr {
    /// Virtual CPU interface enable.
    pub const EN: u64 = 1 << 0;
    /// Maintenance interrupt when at most one list register holds an interrupt.
    pub const UIE: u64 = 1 << 1;
}

/// `ICH_HCR_EL2` for a vCPU: the interface on, underflow maintenance only while interrupts
/// wait for a free list register.
pub const fn ich_hcr(queue_waiting: bool) -> u64 {
    if queue_waiting {
        ich_hcr::EN | ich_hcr::UIE
    } else {
        ich_hcr::EN
    }
}

/// `ICH_VMCR_EL2` at vCPU entry: as a CPU interface comes out of reset (priority mask 0,
/// both groups off, EOImode 0), the guest programs it through `ICC_*`.
pub const ICH_VMCR_RESET: u64 = 0;

/// State of an interrupt in a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    Invalid = 0,
    Pending = 1,
    Active = 2,
    PendingActive = 3,
}

/// One `ICH_LR<n>_EL2` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListReg {
    pub vintid: u32,
    /// The physical INTID the guest's deactivation also deactivates (`HW = 1`).
    pub pintid: Option<u32>,
    pub priority: u8,
    pub group1: bool,
    pub state: LrState,
}

const LR_VINTID_MASK: u64 = 0xFFFF_FFFF;
const LR_PINTID_SHIFT: u32 = 32;
const LR_PINTID_MASK: u64 = 0x3FF;
const LR_PRIORITY_SHIFT: u32 = 48;
const LR_GROUP: u64 = 1 << 60;
const LR_HW: u64 = 1 << 61;
const LR_STATE_SHIFT: u32 = 62;

impl ListReg {
    /// A pending interrupt forwarded from hardware: its `pINTID` is its `vINTID`.
    pub const fn hardware(intid: u32, delivery: Delivery) -> Self {
        Self {
            vintid: intid,
            pintid: Some(intid),
            priority: delivery.priority,
            group1: delivery.group1,
            state: LrState::Pending,
        }
    }

    /// A pending interrupt with no physical one behind it (SGIs, software-pending PPIs): the
    /// guest's EOI completes it.
    pub const fn software(intid: u32, delivery: Delivery) -> Self {
        Self {
            vintid: intid,
            pintid: None,
            priority: delivery.priority,
            group1: delivery.group1,
            state: LrState::Pending,
        }
    }

    pub const fn encode(&self) -> u64 {
        let mut lr = (self.vintid as u64) & LR_VINTID_MASK;
        if let Some(p) = self.pintid {
            lr |= LR_HW | ((p as u64 & LR_PINTID_MASK) << LR_PINTID_SHIFT);
        }
        if self.group1 {
            lr |= LR_GROUP;
        }
        lr | (self.priority as u64) << LR_PRIORITY_SHIFT | (self.state as u64) << LR_STATE_SHIFT
    }

    pub const fn decode(lr: u64) -> Self {
        let state = match lr >> LR_STATE_SHIFT {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        };
        Self {
            vintid: (lr & LR_VINTID_MASK) as u32,
            pintid: if lr & LR_HW != 0 {
                Some(((lr >> LR_PINTID_SHIFT) & LR_PINTID_MASK) as u32)
            } else {
                None
            },
            priority: (lr >> LR_PRIORITY_SHIFT) as u8,
            group1: lr & LR_GROUP != 0,
            state,
        }
    }
}

/// Number of list registers from `ICH_VTR_EL2.ListRegs`.
pub const fn list_regs(ich_vtr: u64) -> usize {
    (ich_vtr & 0x1F) as usize + 1
}

/// The first free list register per `ICH_ELRSR_EL2` (bit set = empty) among `count`.
pub const fn free_lr(elrsr: u64, count: usize) -> Option<usize> {
    let usable = if count >= 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    };
    let free = elrsr & usable;
    if free == 0 {
        None
    } else {
        Some(free.trailing_zeros() as usize)
    }
}

/// `ICH_VMCR_EL2` fields: group 0 and group 1 enables, and the priority mask.
const VMCR_VENG0: u64 = 1 << 0;
const VMCR_VENG1: u64 = 1 << 1;
const VMCR_VPMR_SHIFT: u32 = 24;

/// The running priority of a vCPU interface with `prebits` priority bits (one more than
/// `ICH_VTR_EL2.PREbits`), from its active-priority registers: `active[n]` is `ICH_AP0R<n>_EL2 | ICH_AP1R<n>_EL2`
/// (bit `i` of the concatenation is priority `i << (8 - prebits)`). `None` when nothing is
/// active: the interface is idle.
pub fn running_priority(active: &[u32], prebits: u32) -> Option<u8> {
    let shift = 8u32.saturating_sub(prebits.clamp(1, 8));
    active.iter().enumerate().find_map(|(n, &bits)| {
        (bits != 0).then(|| {
            let index = n as u32 * 32 + bits.trailing_zeros();
            (index << shift).min(0xFF) as u8
        })
    })
}

/// Whether one of `lrs` would be signalled to the vCPU whose `ICH_VMCR_EL2` is `vmcr` and
/// whose running priority is `running` ([`running_priority`]): pending, its group enabled,
/// its priority above the mask, and its group priority above the running one. Only such an
/// interrupt wakes a WFI on hardware, so only it keeps a trapped WFI from sleeping: one the
/// vCPU masks would make its idle loop spin through trapped WFIs instead. (A vCPU parked
/// inside a handler, as Linux's stop loop is inside `IPI_CPU_STOP`, then sleeps.)
///
/// The group priority is taken at the finest grouping `prebits` allows: a coarser binary
/// point only preempts less, so this may say "signalled" where hardware would not (a spin
/// through trapped WFIs, as before), never the other way (a lost wake-up).
pub fn any_signalled(lrs: &[u64], vmcr: u64, running: Option<u8>, prebits: u32) -> bool {
    let mask = (vmcr >> VMCR_VPMR_SHIFT) & 0xFF;
    let group_bits = !(0xFFu8 >> prebits.clamp(1, 8));
    lrs.iter().any(|&raw| {
        let lr = ListReg::decode(raw);
        let pending = matches!(lr.state, LrState::Pending | LrState::PendingActive);
        let group = if lr.group1 { VMCR_VENG1 } else { VMCR_VENG0 };
        let preempts = running.is_none_or(|r| lr.priority & group_bits < r);
        pending && vmcr & group != 0 && u64::from(lr.priority) < mask && preempts
    })
}

/// Interrupts of one vCPU waiting for a free list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingQueue {
    entries: [Option<ListReg>; Self::CAPACITY],
}

impl Default for PendingQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl PendingQueue {
    pub const CAPACITY: usize = 16;

    pub const fn new() -> Self {
        Self {
            entries: [None; Self::CAPACITY],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(Option::is_none)
    }

    /// Queues `lr`; an interrupt already queued stays queued once. A hardware interrupt
    /// (acknowledged and active at the physical GIC until the guest's EOI of this entry
    /// deactivates it) is never the one left out: it takes the place of a software entry with
    /// its vINTID, and in a full queue that of the least urgent software entry, which is
    /// dropped (software ones are edge-like SGIs/PPIs). `Err` only if full of hardware ones,
    /// or full for a software one.
    pub fn push(&mut self, lr: ListReg) -> Result<(), ListReg> {
        let hardware = lr.pintid.is_some();
        if let Some(same) = self
            .entries
            .iter_mut()
            .flatten()
            .find(|e| e.vintid == lr.vintid)
        {
            if hardware && same.pintid.is_none() {
                *same = lr;
            }
            return Ok(());
        }
        if let Some(slot) = self.entries.iter_mut().find(|e| e.is_none()) {
            *slot = Some(lr);
            return Ok(());
        }
        if !hardware {
            return Err(lr);
        }
        let victim = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.filter(|e| e.pintid.is_none()).map(|e| (e.priority, i)))
            .max()
            .map(|(_, i)| i);
        match victim {
            Some(i) => {
                self.entries[i] = Some(lr);
                Ok(())
            }
            None => Err(lr),
        }
    }

    /// Replaces each entry by what `f` makes of it (`None` drops it).
    pub fn retain_map(&mut self, mut f: impl FnMut(ListReg) -> Option<ListReg>) {
        for entry in &mut self.entries {
            if let Some(lr) = entry.take() {
                *entry = f(lr);
            }
        }
    }

    /// Takes the most urgent entry (lowest priority value; oldest slot on a tie).
    pub fn pop(&mut self) -> Option<ListReg> {
        let index = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.map(|e| (e.priority, i)))
            .min()?
            .1;
        self.entries[index].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RD: u64 = 0;
    const SGI: u64 = SGI_BASE;

    fn vgic(vcpus: usize, spis: &[u32]) -> Vgic {
        let mut v = Vgic::new();
        v.configure(vcpus, 256, spis.iter().copied());
        v
    }

    fn frame(n: u64) -> u64 {
        n * GICR_FRAME_SIZE
    }

    #[test]
    fn gicr_typer_walk_finds_each_vcpu_and_last() {
        let mut v = vgic(3, &[]);
        for n in 0..3u64 {
            let typer = v.gicr_read(frame(n) + 8, 8).unwrap();
            assert_eq!(typer >> 32, n, "affinity");
            assert_eq!((typer >> 8) & 0xFFFF, n, "processor number");
            assert_eq!(typer & TYPER_LAST != 0, n == 2, "Last");
            let lo = v.gicr_read(frame(n) + 8, 4).unwrap();
            let hi = v.gicr_read(frame(n) + 12, 4).unwrap();
            assert_eq!(hi << 32 | lo, typer);
        }
        assert_eq!(v.gicr_read(frame(3) + 8, 8), Err(BadAccess::OutOfRange));
        assert_eq!(v.gicr_size(), 3 * GICR_FRAME_SIZE);
    }

    #[test]
    fn counts_return_to_the_configured_state() {
        let mut v = vgic(3, &[33, 40]);
        v.add_virtual_spi(41);
        let fresh = v.counts();
        assert_eq!(
            fresh,
            VgicCounts {
                vcpus: 3,
                spis: 3,
                ..VgicCounts::default()
            }
        );
        v.gicd_write(GICD_ISENABLER + 4, 4, 1 << (40 - 32)).unwrap();
        v.gicd_write(GICD_ISPENDR + 4, 4, 1 << (33 - 32)).unwrap();
        v.gicr_write(1, frame(1) + SGI_BASE + 0x100, 4, 1 << 27)
            .unwrap();
        let used = v.counts();
        assert_eq!((used.enabled, used.pending), (2, 1));
        v.configure(3, 256, [33, 40].into_iter());
        v.add_virtual_spi(41);
        assert_eq!(v.counts(), fresh, "a reset leaves nothing behind");
    }

    #[test]
    fn hardware_spis_follow_their_route() {
        let mut v = vgic(3, &[33, 40]);
        v.add_virtual_spi(41);
        // Out of reset every SPI targets vCPU 0; route 40 to vCPU 2.
        v.gicd_write(GICD_IROUTER + 40 * 8, 8, 2).unwrap();
        let of = |v: &Vgic, n| v.hardware_spis_of(n).collect::<Vec<_>>();
        assert_eq!(of(&v, 0), [33], "virtual-only 41 has no physical route");
        assert_eq!(of(&v, 2), [40]);
        assert!(of(&v, 1).is_empty());
    }

    #[test]
    fn waker_wakes_the_redistributor() {
        let mut v = vgic(1, &[]);
        assert_eq!(v.gicr_read(RD + 0x14, 4).unwrap(), 0b110);
        v.gicr_write(0, RD + 0x14, 4, 0).unwrap();
        assert_eq!(
            v.gicr_read(RD + 0x14, 4).unwrap() & WAKER_CHILDREN_ASLEEP as u64,
            0
        );
        v.gicr_write(0, RD + 0x14, 4, 0b10).unwrap();
        assert_eq!(v.gicr_read(RD + 0x14, 4).unwrap(), 0b110);
    }

    #[test]
    fn enabling_the_vtimer_mirrors_it_to_hardware() {
        let mut v = vgic(2, &[]);
        v.gicr_write(1, frame(1) + SGI + 0x400 + 24, 4, 0x80_00_00_00)
            .unwrap();
        assert_eq!(v.gicr_read(frame(1) + SGI + 0x400 + 27, 1).unwrap(), 0x80);
        v.gicr_write(1, frame(1) + SGI + 0x80, 4, u32::MAX.into())
            .unwrap();
        assert_eq!(v.deliverable(1, 27), None, "still disabled");
        let effects = v.gicr_write(1, frame(1) + SGI + 0x100, 4, 1 << 27).unwrap();
        assert_eq!(
            effects.as_slice(),
            &[Effect::Private {
                intid: 27,
                enable: true,
                priority: 0x80
            }]
        );
        assert_eq!(
            v.deliverable(1, 27),
            Some(Delivery {
                priority: 0x80,
                group1: true
            })
        );
        assert_eq!(v.deliverable(0, 27), None, "other vCPU's PPI untouched");
        // Enabling again programs it again (the physical one may have been switched off).
        let effects = v.gicr_write(1, frame(1) + SGI + 0x100, 4, 1 << 27).unwrap();
        assert_eq!(effects.len(), 1);
        // A priority change while enabled is mirrored.
        let effects = v.gicr_write(1, frame(1) + SGI + 0x41B, 1, 0x40).unwrap();
        assert_eq!(effects.len(), 1);
        let effects = v.gicr_write(1, frame(1) + SGI + 0x180, 4, 1 << 27).unwrap();
        assert_eq!(
            effects.as_slice(),
            &[Effect::Private {
                intid: 27,
                enable: false,
                priority: 0x40
            }]
        );
        assert_eq!(v.deliverable(1, 27), None);
        assert_eq!(v.gicr_read(frame(1) + SGI + 0x100, 4).unwrap(), 0);
    }

    /// The physical effect that configures the virtual timer PPI on the writer's core.
    fn vtimer(enable: bool, priority: u8) -> Effect {
        Effect::Private {
            intid: VTIMER_INTID,
            enable,
            priority,
        }
    }

    /// vCPU 0's timer set up by vCPU 0: group 1, priority 0xa0, enabled.
    fn vcpu0_timer_on(v: &mut Vgic) {
        v.gicr_write(0, SGI + 0x400 + 24, 4, 0xA0 << 24).unwrap();
        v.gicr_write(0, SGI + 0x80, 4, u32::MAX.into()).unwrap();
        let effects = v.gicr_write(0, SGI + 0x100, 4, 1 << 27).unwrap();
        assert_eq!(
            effects.as_slice(),
            &[vtimer(true, 0xA0)],
            "its own frame: this core's redistributor"
        );
    }

    #[test]
    fn a_storm_at_another_vcpus_frame_reaches_no_physical_redistributor() {
        // vCPU 0 shares its core with the RTOS; vCPU 1 on another core storms frame 0.
        let mut v = vgic(2, &[]);
        vcpu0_timer_on(&mut v);
        let mut syncs = 0;
        for _ in 0..1000 {
            for (reg, size, value) in [
                (SGI + 0x180, 4, 1 << 27),
                (SGI + 0x100, 4, 1 << 27),
                (SGI + 0x41B, 1, 0xFF),
                (SGI + 0x400 + 24, 4, 0),
                (SGI + 0x180, 4, u64::from(u32::MAX)),
            ] {
                for effect in v.gicr_write(1, reg, size, value).unwrap() {
                    match effect {
                        Effect::PrivateSync { vcpu: 0 } => syncs += 1,
                        other => panic!("vCPU 1's write to frame 0 gave {other:?}"),
                    }
                }
            }
        }
        assert_eq!(syncs, 1, "one sync request until vCPU 0's core takes it");
        // The frame owner's virtual state changed, vCPU 1's did not.
        assert_eq!(v.deliverable(0, 27), None);
        assert_eq!(v.gicr_read(SGI + 0x41B, 1).unwrap(), 0);
        assert_eq!(v.gicr_read(frame(1) + SGI + 0x100, 4).unwrap(), 0);
        assert!(v.take_private_sync(1).is_empty());
        // vCPU 0's core applies it when vCPU 0 runs there, once.
        assert_eq!(v.take_private_sync(0).as_slice(), &[vtimer(false, 0)]);
        assert!(v.take_private_sync(0).is_empty());
        // Re-enabled from vCPU 1: asked again; loading vCPU 0 applies all and clears it.
        let effects = v.gicr_write(1, SGI + 0x100, 4, 1 << 27).unwrap();
        assert_eq!(effects.as_slice(), &[Effect::PrivateSync { vcpu: 0 }]);
        assert_eq!(
            v.deliverable(0, 27),
            Some(Delivery {
                priority: 0,
                group1: true
            })
        );
        assert_eq!(v.load_private(0).as_slice(), &[vtimer(true, 0)]);
        assert!(v.take_private_sync(0).is_empty());
        // Software state set from another frame is delivered to the owner when it runs.
        v.gicr_write(0, SGI + 0x100, 4, 1 << 3).unwrap();
        let effects = v.gicr_write(1, SGI + 0x200, 4, 1 << 3).unwrap();
        assert_eq!(effects.as_slice(), &[Effect::SoftPending { vcpu: 0 }]);
        assert!(v.take_software(1, 0).is_empty());
        assert_eq!(v.take_software(0, 0)[0].vintid, 3);
    }

    /// spumone switches a physical PPI off when it fires for a vCPU that has it disabled; if
    /// the guest's later enable found the virtual bit already set, nothing reprogrammed the
    /// physical one and the vCPU never got its timer again. An enable write always does.
    #[test]
    fn an_enable_write_reprograms_the_physical_ppi_even_if_already_enabled() {
        let mut v = vgic(2, &[]);
        vcpu0_timer_on(&mut v);
        assert!(v.take_private_sync(0).is_empty());
        // From another vCPU's thread: vCPU 0's core is asked to apply it.
        let effects = v.gicr_write(1, SGI + 0x100, 4, 1 << 27).unwrap();
        assert_eq!(effects.as_slice(), &[Effect::PrivateSync { vcpu: 0 }]);
        assert_eq!(v.take_private_sync(0).as_slice(), &[vtimer(true, 0xA0)]);
        // From its own frame: at once.
        let effects = v.gicr_write(0, SGI + 0x100, 4, 1 << 27).unwrap();
        assert_eq!(effects.as_slice(), &[vtimer(true, 0xA0)]);
        // Bits it does not name change nothing.
        assert!(v.gicr_write(0, SGI + 0x100, 4, 1 << 3).unwrap().is_empty());
    }

    #[test]
    fn only_the_writers_own_frame_reaches_hardware() {
        let mut v = vgic(4, &[40]);
        let regs = (0..0x1000u64)
            .step_by(4)
            .map(|r| SGI + r)
            .chain((0..0x100).step_by(4));
        let regs: Vec<u64> = regs.collect();
        for writer in 0..4 {
            for target in 0..4u64 {
                for &reg in &regs {
                    for (size, value) in [(4, u64::from(u32::MAX)), (1, 0x55), (4, 0), (8, 0)] {
                        let Ok(effects) = v.gicr_write(writer, frame(target) + reg, size, value)
                        else {
                            continue;
                        };
                        let own = writer as u64 == target;
                        for effect in effects {
                            match effect {
                                Effect::Private { intid, .. } => {
                                    assert!(own && intid == VTIMER_INTID, "{effect:?}")
                                }
                                Effect::PrivateSync { vcpu } => {
                                    assert!(!own && vcpu as u64 == target, "{effect:?}")
                                }
                                Effect::SoftPending { vcpu } => assert_eq!(vcpu as u64, target),
                                Effect::Spi { .. } => panic!("{effect:?}"),
                            }
                        }
                    }
                }
            }
        }
        assert!(v.load_private(7).is_empty() && v.take_private_sync(7).is_empty());
    }

    #[test]
    fn fast_lr_follows_enable_priority_and_stop() {
        let mut v = vgic(2, &[40]);
        assert_eq!(v.fast_lr(1, 27, false), 0, "disabled");
        v.gicr_write(1, frame(1) + SGI + 0x400 + 24, 4, 0x80_00_00_00)
            .unwrap();
        v.gicr_write(1, frame(1) + SGI + 0x80, 4, u32::MAX.into())
            .unwrap();
        v.gicr_write(1, frame(1) + SGI + 0x100, 4, 1 << 27).unwrap();
        let d = v.deliverable(1, 27).unwrap();
        let lr = ListReg::hardware(27, d).encode();
        assert_ne!(lr, 0);
        assert_eq!(v.fast_lr(1, 27, false), lr);
        assert_eq!(v.fast_lr(1, 27, true), 0, "stopped partition");
        assert_eq!(v.fast_lr(0, 27, false), 0, "other vCPU");
        v.gicr_write(1, frame(1) + SGI + 0x41B, 1, 0x40).unwrap();
        assert_ne!(v.fast_lr(1, 27, false), lr, "priority change seen");
        v.gicr_write(1, frame(1) + SGI + 0x180, 4, 1 << 27).unwrap();
        assert_eq!(v.fast_lr(1, 27, false), 0, "disabled again");
        v.gicd_write(GICD_ISENABLER + 4, 4, 1 << 8).unwrap();
        assert_eq!(v.fast_lr(0, 40, false), 0, "SPIs take the locked path");
    }

    #[test]
    fn virtual_spis_are_emulated_without_effects() {
        let mut v = Vgic::new();
        v.configure(3, 224, [48].into_iter());
        v.add_virtual_spi(33);
        v.add_virtual_spi(33);
        v.add_virtual_spi(2000);
        assert_eq!(v.owned_spis().collect::<Vec<_>>(), [48, 33]);
        assert_eq!(v.assert_virtual_spi(33), None, "disabled");
        assert_eq!(v.assert_virtual_spi(48), None, "backed by hardware");
        let fx = v.gicd_write(GICD_ISENABLER + 4, 4, 1 << 1).unwrap();
        assert!(fx.is_empty(), "{fx:?}");
        v.gicd_write(GICD_IPRIORITYR + 33, 1, 0xa0).unwrap();
        v.gicd_write(GICD_IROUTER + 33 * 8, 8, 2).unwrap();
        let (vcpu, lr) = v.assert_virtual_spi(33).unwrap();
        assert_eq!(vcpu, 2);
        assert_eq!(lr.vintid, 33);
        assert_eq!(lr.pintid, None);
        assert_eq!(lr.priority, 0xa0);
        assert_eq!(v.deliverable(2, 33), None, "never forwarded from hardware");
    }

    #[test]
    fn software_private_interrupts_have_no_effects() {
        let mut v = vgic(1, &[]);
        assert!(v.gicr_write(0, SGI + 0x100, 4, 0xFFFF).unwrap().is_empty());
        assert_eq!(v.gicr_read(SGI + 0x100, 4).unwrap(), 0xFFFF);
        assert_eq!(
            v.deliverable(0, 3),
            None,
            "SGIs are not forwarded from hardware"
        );
        v.gicr_write(0, SGI + 0x200, 4, 0b101).unwrap();
        v.gicr_write(0, SGI + 0x280, 4, 0b1).unwrap();
        assert_eq!(v.gicr_read(SGI + 0x200, 4).unwrap(), 0b100);
        assert_eq!(v.gicr_read(SGI + 0xC00, 4).unwrap(), 0xAAAA_AAAA);
        v.gicr_write(0, SGI + 0xC04, 4, 0x2).unwrap();
        assert_eq!(v.gicr_read(SGI + 0xC04, 4).unwrap(), 0x2);
    }

    #[test]
    fn software_pending_interrupts_wait_for_their_enable() {
        let mut v = vgic(2, &[]);
        v.gicr_write(0, SGI + 0x80, 4, 0xFFFF_FFFF).unwrap();
        v.gicr_write(0, SGI + 0x400, 4, 0x1020_3040).unwrap();
        v.gicr_write(0, SGI + 0x100, 4, 0b10).unwrap();
        // SGI 0 is disabled: it stays pending; SGI 1 goes.
        let lrs = v.take_software(0, 0b11);
        assert_eq!(lrs.len(), 1);
        assert_eq!(lrs[0].vintid, 1);
        assert_eq!(lrs[0].pintid, None, "no physical interrupt behind it");
        assert_eq!((lrs[0].priority, lrs[0].group1), (0x30, true));
        assert_eq!(v.gicr_read(SGI + 0x200, 4).unwrap(), 0b1);
        // Enabling it asks for delivery; then it is taken once.
        let effects = v.gicr_write(0, SGI + 0x100, 4, 0b1).unwrap();
        assert_eq!(effects.as_slice(), [Effect::SoftPending { vcpu: 0 }]);
        let lrs = v.take_software(0, 0);
        assert_eq!(lrs.iter().map(|l| l.vintid).collect::<Vec<_>>(), [0]);
        assert!(v.take_software(0, 0).is_empty());
        // Software-pending through GICR_ISPENDR0 on vCPU 1 (frame 1).
        let f1 = frame(1) + SGI;
        assert!(v.gicr_write(1, f1 + 0x200, 4, 1 << 6).unwrap().is_empty());
        v.gicr_write(1, f1 + 0x100, 4, 1 << 5).unwrap();
        let effects = v.gicr_write(1, f1 + 0x200, 4, 1 << 5).unwrap();
        assert_eq!(effects.as_slice(), [Effect::SoftPending { vcpu: 1 }]);
        assert_eq!(v.take_software(1, 0)[0].vintid, 5);
        assert!(v.take_software(7, 1).is_empty(), "no such vCPU");
    }

    #[test]
    fn bad_sizes_and_alignment_are_refused() {
        let mut v = vgic(1, &[40]);
        assert_eq!(v.gicr_read(SGI + 0x100, 2), Err(BadAccess::WrongSize));
        assert_eq!(v.gicr_read(SGI + 0x102, 1), Err(BadAccess::WrongSize));
        assert_eq!(v.gicr_read(SGI + 0x401, 4), Err(BadAccess::Misaligned));
        assert_eq!(v.gicr_read(0xC, 8), Err(BadAccess::Misaligned));
        assert_eq!(v.gicd_read(0x4, 8), Err(BadAccess::WrongSize));
        assert_eq!(v.gicd_write(0x6104, 8, 0), Err(BadAccess::Misaligned));
        assert_eq!(v.gicd_read(0x1_0000, 4), Err(BadAccess::OutOfRange));
        assert!(v.gicd_read(0x428, 1).is_ok());
    }

    #[test]
    fn unknown_offsets_are_raz_wi_and_reported() {
        let mut v = vgic(1, &[]);
        assert_eq!(v.gicr_read(SGI + 0x4000, 4).unwrap(), 0);
        assert_eq!(v.take_unknown(), Some(SGI + 0x4000));
        assert_eq!(v.take_unknown(), None);
        assert!(v.gicd_write(0x0020, 4, 5).unwrap().is_empty());
        assert_eq!(v.take_unknown(), Some(0x20));
        v.gicd_read(0x5000, 4).unwrap();
        v.gicr_write(0, SGI + 0x4000, 4, 1).unwrap();
        assert_eq!(v.take_unknown(), Some(SGI + 0x4000), "the last one");
        // Known RAZ/WI registers are not reported.
        assert_eq!(v.gicd_read(0x0810, 4).unwrap(), 0);
        assert_eq!(v.gicd_read(0xFFD0, 4).unwrap(), 0);
        let mut fresh = vgic(1, &[]);
        fresh.gicd_read(0xFFD0, 4).unwrap();
        assert_eq!(fresh.take_unknown(), None);
    }

    #[test]
    fn distributor_identification() {
        let mut v = vgic(1, &[]);
        let typer = v.gicd_read(0x4, 4).unwrap();
        assert_eq!(typer & 0x1F, 8, "288 lines: 256 SPIs + 32");
        assert_eq!((typer >> 19) & 0x1F, 9);
        assert_eq!((v.gicd_read(0xFFE8, 4).unwrap() >> 4) & 0xF, 3);
        assert_eq!(v.gicd_read(0x8, 4).unwrap(), u64::from(IIDR));
        assert_eq!((v.gicr_read(0xFFE8, 4).unwrap() >> 4) & 0xF, 3);
        let mut small = Vgic::new();
        small.configure(1, 0, [].into_iter());
        assert_eq!(small.gicd_read(0x4, 4).unwrap() & 0x1F, 0);
    }

    #[test]
    fn gicd_ctlr_keeps_enables_and_are() {
        let mut v = vgic(1, &[]);
        assert_eq!(v.gicd_read(0, 4).unwrap(), u64::from(CTLR_ARE | CTLR_DS));
        v.gicd_write(0, 4, u64::from(CTLR_ARE | 0b10 | (1 << 31)))
            .unwrap();
        assert_eq!(
            v.gicd_read(0, 4).unwrap(),
            u64::from(CTLR_ARE | CTLR_DS | 0b10)
        );
    }

    #[test]
    fn owned_spis_are_emulated_and_mirrored() {
        let mut v = vgic(2, &[48, 49, 33, 48, 2000]);
        assert_eq!(v.owned_spis().collect::<Vec<_>>(), [48, 49, 33]);
        // Priority for SPI 48 and 49 in one word.
        let effects = v.gicd_write(0x400 + 48, 4, 0x20_10).unwrap();
        assert_eq!(effects.len(), 2);
        assert_eq!(v.gicd_read(0x400 + 48, 4).unwrap(), 0x20_10);
        v.gicd_write(0x80 + 4, 4, u64::from(u32::MAX)).unwrap();
        assert_eq!(v.gicd_read(0x84, 4).unwrap(), 1 << 1 | 1 << 16 | 1 << 17);
        // Route 49 to vCPU 1.
        v.gicd_write(0x6000 + 49 * 8, 8, 1).unwrap();
        assert_eq!(v.gicd_read(0x6000 + 49 * 8, 8).unwrap(), 1);
        let effects = v.gicd_write(0x104, 4, 1 << 16 | 1 << 17 | 1 << 20).unwrap();
        assert_eq!(
            effects.as_slice(),
            &[
                Effect::Spi {
                    intid: 48,
                    enable: true,
                    priority: 0x10,
                    target_vcpu: 0
                },
                Effect::Spi {
                    intid: 49,
                    enable: true,
                    priority: 0x20,
                    target_vcpu: 1
                }
            ]
        );
        assert_eq!(v.gicd_read(0x104, 4).unwrap(), 1 << 16 | 1 << 17);
        assert_eq!(
            v.deliverable(1, 49),
            Some(Delivery {
                priority: 0x20,
                group1: true
            })
        );
        assert_eq!(v.deliverable(0, 49), None, "routed elsewhere");
        assert_eq!(v.deliverable(0, 52), None, "not owned");
        assert!(v.owns_spi(33) && !v.owns_spi(52));
        // Unowned SPIs are RAZ/WI.
        v.gicd_write(0x104, 4, 1 << 20).unwrap();
        v.gicd_write(0x400 + 52, 1, 0x55).unwrap();
        assert_eq!(v.gicd_read(0x400 + 52, 1).unwrap(), 0);
        // Routing by halves, and to a vCPU that does not exist falls back to vCPU 0.
        v.gicd_write(0x6000 + 49 * 8, 4, 7).unwrap();
        assert_eq!(v.deliverable(0, 49).map(|d| d.priority), Some(0x20));
        v.gicd_write(0x6000 + 49 * 8 + 4, 4, 0).unwrap();
        assert_eq!(v.gicd_read(0x6000 + 49 * 8 + 4, 4).unwrap(), 0);
        // Config and disable.
        v.gicd_write(0xC00 + 12, 4, 2 << 2).unwrap();
        assert_eq!(v.gicd_read(0xC00 + 12, 4).unwrap(), 2 << 2);
        let effects = v.gicd_write(0x184, 4, 1 << 16).unwrap();
        assert!(matches!(
            effects[0],
            Effect::Spi {
                intid: 48,
                enable: false,
                ..
            }
        ));
        assert_eq!(v.deliverable(0, 48), None);
    }

    #[test]
    fn list_register_encoding() {
        let lr = ListReg::hardware(
            27,
            Delivery {
                priority: 0xA0,
                group1: true,
            },
        );
        let raw = lr.encode();
        assert_eq!(raw & 0xFFFF_FFFF, 27);
        assert_eq!((raw >> 32) & 0x3FF, 27);
        assert_eq!((raw >> 48) & 0xFF, 0xA0);
        assert_ne!(raw & LR_GROUP, 0);
        assert_ne!(raw & LR_HW, 0);
        assert_eq!(raw >> 62, 1, "pending");
        assert_eq!(ListReg::decode(raw), lr);
        let soft = ListReg {
            vintid: 5,
            pintid: None,
            priority: 0,
            group1: false,
            state: LrState::PendingActive,
        };
        assert_eq!(soft.encode(), 5 | 3 << 62);
        assert_eq!(ListReg::decode(soft.encode()), soft);
    }

    #[test]
    fn free_list_register_choice() {
        assert_eq!(list_regs(0x9000_0003), 4);
        assert_eq!(free_lr(0b1111, 4), Some(0));
        assert_eq!(free_lr(0b1100, 4), Some(2));
        assert_eq!(free_lr(0, 4), None);
        assert_eq!(
            free_lr(0b1_0000, 4),
            None,
            "bits beyond the implemented LRs"
        );
        assert_eq!(free_lr(1 << 15, 16), Some(15));
    }

    #[test]
    fn only_an_interrupt_the_vcpu_would_take_is_signalled() {
        let lr = |priority, group1, state| {
            ListReg {
                vintid: 27,
                pintid: Some(27),
                priority,
                group1,
                state,
            }
            .encode()
        };
        // Group 1 on, priority mask 0xf0 (Linux's).
        let vmcr = 0xF0 << VMCR_VPMR_SHIFT | VMCR_VENG1;
        assert!(any_signalled(
            &[0, lr(0xA0, true, LrState::Pending)],
            vmcr,
            None,
            5
        ));
        assert!(any_signalled(
            &[lr(0xA0, true, LrState::PendingActive)],
            vmcr,
            None,
            5
        ));
        assert!(!any_signalled(
            &[lr(0xA0, true, LrState::Active)],
            vmcr,
            None,
            5
        ));
        assert!(
            !any_signalled(&[0, 0], vmcr, None, 5),
            "empty list registers"
        );
        assert!(
            !any_signalled(&[lr(0xF0, true, LrState::Pending)], vmcr, None, 5),
            "at the mask"
        );
        assert!(
            !any_signalled(&[lr(0xA0, false, LrState::Pending)], vmcr, None, 5),
            "group 0 is off"
        );
        assert!(any_signalled(
            &[lr(0xA0, false, LrState::Pending)],
            vmcr | VMCR_VENG0,
            None,
            5
        ));
        assert!(
            !any_signalled(&[lr(0x00, true, LrState::Pending)], VMCR_VENG1, None, 5),
            "mask 0 (reset) signals nothing"
        );
        assert!(any_signalled(
            &[
                lr(0xA0, false, LrState::Pending),
                lr(0x10, true, LrState::Pending)
            ],
            vmcr,
            None,
            5
        ));
    }

    #[test]
    fn running_priority_is_the_highest_active_one() {
        assert_eq!(running_priority(&[0], 5), None, "idle");
        // 5 bits: bit i is priority i << 3; SGI 2 active at 0xa0 is bit 20.
        assert_eq!(running_priority(&[1 << 20], 5), Some(0xA0));
        assert_eq!(running_priority(&[1 << 20 | 1 << 2], 5), Some(0x10));
        // 7 bits: four registers, bit i is priority i << 1.
        assert_eq!(running_priority(&[0, 0, 0, 1 << 16], 7), Some(0xE0));
        assert_eq!(running_priority(&[0, 1, 0, 0], 7), Some(0x40));
    }

    #[test]
    fn an_active_interrupt_holds_back_those_it_would_not_preempt() {
        let pending = |priority| {
            ListReg {
                vintid: 27,
                pintid: Some(27),
                priority,
                group1: true,
                state: LrState::Pending,
            }
            .encode()
        };
        let vmcr = 0xF0 << VMCR_VPMR_SHIFT | VMCR_VENG1;
        // Linux's stop loop: IPI_CPU_STOP active at 0xa0, its timer pending at 0xa0.
        let stop = running_priority(&[1 << 20], 5);
        assert!(
            !any_signalled(&[pending(0xA0)], vmcr, stop, 5),
            "same priority"
        );
        assert!(
            !any_signalled(&[pending(0xC0)], vmcr, stop, 5),
            "lower priority"
        );
        assert!(
            any_signalled(&[pending(0x80)], vmcr, stop, 5),
            "higher priority"
        );
        // 0xa4 is 0xa0's group at 5 bits: it does not preempt 0xa0 either.
        assert!(!any_signalled(&[pending(0xA4)], vmcr, stop, 5));
        assert!(any_signalled(&[pending(0xA4)], vmcr, None, 5), "idle");
    }

    #[test]
    fn pending_queue_orders_by_priority_and_dedupes() {
        let mut q = PendingQueue::new();
        assert!(q.is_empty());
        let mk = |intid, priority| {
            ListReg::hardware(
                intid,
                Delivery {
                    priority,
                    group1: true,
                },
            )
        };
        q.push(mk(40, 0x80)).unwrap();
        q.push(mk(41, 0x10)).unwrap();
        q.push(mk(40, 0x80)).unwrap();
        q.push(mk(42, 0x80)).unwrap();
        assert_eq!(q.pop().map(|l| l.vintid), Some(41));
        assert_eq!(q.pop().map(|l| l.vintid), Some(40));
        assert_eq!(q.pop().map(|l| l.vintid), Some(42));
        assert_eq!(q.pop(), None);
        for i in 0..PendingQueue::CAPACITY as u32 {
            q.push(mk(100 + i, 0)).unwrap();
        }
        assert_eq!(q.push(mk(999, 0)), Err(mk(999, 0)));
    }

    fn sw(intid: u32, priority: u8) -> ListReg {
        ListReg::software(
            intid,
            Delivery {
                priority,
                group1: true,
            },
        )
    }

    fn hw(intid: u32, priority: u8) -> ListReg {
        ListReg::hardware(
            intid,
            Delivery {
                priority,
                group1: true,
            },
        )
    }

    /// A hardware interrupt left out of the queue was ended unmasked: a level one (the
    /// timer, a PCIe INTx SPI) fired again at once, for good, once a guest had filled the
    /// queue with software-pending SGIs/PPIs.
    #[test]
    fn a_full_queue_still_takes_a_hardware_interrupt() {
        let mut q = PendingQueue::new();
        for i in 0..PendingQueue::CAPACITY as u32 {
            q.push(sw(i, if i == 5 { 0xF0 } else { 0x10 })).unwrap();
        }
        assert_eq!(q.push(sw(20, 0)), Err(sw(20, 0)));
        assert_eq!(q.push(hw(27, 0x80)), Ok(()));
        assert_eq!(q.push(hw(36, 0x80)), Ok(()));
        let mut out = heapless::Vec::<ListReg, 32>::new();
        while let Some(lr) = q.pop() {
            out.push(lr).unwrap();
        }
        assert!(out.contains(&hw(27, 0x80)) && out.contains(&hw(36, 0x80)));
        // The least urgent software one made room first.
        assert!(!out.iter().any(|l| l.vintid == 5));
        assert_eq!(out.len(), PendingQueue::CAPACITY);
        // Full of hardware ones: refused (the caller masks the source).
        for i in 0..PendingQueue::CAPACITY as u32 {
            q.push(hw(32 + i, 0)).unwrap();
        }
        assert_eq!(q.push(hw(60, 0)), Err(hw(60, 0)));
    }

    /// A hardware PPI 27 acknowledged while a software-pending 27 was queued was merged into
    /// it: no HW bit, so the guest's EOI never deactivated the physical one and the vCPU got
    /// no timer interrupt again.
    #[test]
    fn a_hardware_interrupt_replaces_a_queued_software_one() {
        let mut q = PendingQueue::new();
        q.push(sw(27, 0x80)).unwrap();
        q.push(hw(27, 0x80)).unwrap();
        q.push(sw(27, 0x80)).unwrap();
        assert_eq!(q.pop(), Some(hw(27, 0x80)));
        assert_eq!(q.pop(), None);
    }

    /// The maintenance interrupt is a level: ended without a refill while interrupts wait and
    /// the list registers have drained, it fires again at once, and the core acknowledged and
    /// ended it for good. A refill always clears it.
    #[test]
    fn a_refill_clears_the_underflow_maintenance_interrupt() {
        const LRS: usize = 4;
        let all_empty = (1u64 << LRS) - 1;
        for waiting in 0..8u32 {
            for elrsr in 0..=all_empty {
                let mut q = PendingQueue::new();
                for i in 0..waiting {
                    q.push(sw(i, 0x80)).unwrap();
                }
                let hcr = ich_hcr(!q.is_empty());
                let r = refill(elrsr | !all_empty, LRS, &mut q);
                let mut after = elrsr;
                for &(n, value) in &r.writes {
                    assert!(
                        elrsr & (1 << n) != 0,
                        "only empty list registers are written"
                    );
                    assert_ne!(value, 0);
                    after &= !(1 << n);
                }
                assert!(
                    !underflow_asserted(r.hcr, after, LRS),
                    "waiting {waiting}, elrsr {elrsr:#x}: still asserted"
                );
                let moved = r.writes.len() as u32;
                assert_eq!(moved, waiting.min(elrsr.count_ones()));
                // What asserted it before stays asserted without the refill.
                if waiting > 0 && elrsr.count_ones() >= 3 {
                    assert!(underflow_asserted(hcr, elrsr, LRS));
                }
            }
        }
        assert!(!underflow_asserted(ich_hcr::UIE, all_empty, LRS));
    }

    #[test]
    fn a_pass_over_pending_interrupts_is_bounded() {
        // A level interrupt that never goes away.
        let mut handled = 0;
        assert!(!drain_acks(|| Some(25), |_| handled += 1));
        assert_eq!(handled, MAX_ACKS_PER_PASS);
        let mut left = vec![27, 40, 26];
        let mut seen = Vec::new();
        assert!(drain_acks(|| left.pop(), |i| seen.push(i)));
        assert_eq!(seen, [26, 40, 27]);
    }

    /// Linux's CPU interface as it runs: group 1 on, priority mask 0xf0.
    const LINUX_VMCR: u64 = VMCR_VENG1 | 0xF0 << VMCR_VPMR_SHIFT;

    /// Whether vCPU 0 would take its timer from `lrs` (`prebits` as QEMU's interface has).
    fn takes_timer(lrs: &[u64]) -> bool {
        lrs.iter()
            .any(|&l| ListReg::decode(l).vintid == VTIMER_INTID)
            && any_signalled(lrs, LINUX_VMCR, None, 5)
    }

    /// The storm left vCPU 0's timer at a priority Linux masks, or in group 0, when it fired:
    /// its list register kept that presentation after another vCPU restored the frame, the
    /// vCPU never took it, and the physical PPI stayed active (no timer interrupt again).
    /// After the restore, vCPU 0's core relists: the pending entry takes the restored group
    /// and priority, wherever it waits.
    #[test]
    fn a_timer_already_listed_follows_a_restore_from_another_frame() {
        for (reg, size, wild) in [
            (SGI + 0x41B, 1, 0xFF),
            (SGI + 0x41B, 1, 0xF0),
            (SGI + 0x80, 4, 0),
        ] {
            let mut v = vgic(2, &[]);
            vcpu0_timer_on(&mut v);
            assert!(v.relist(0, &[], &mut PendingQueue::new()).writes.is_empty());
            // The storm, from vCPU 1, then the timer fires on vCPU 0's core.
            v.gicr_write(1, reg, size, wild).unwrap();
            v.take_private_sync(0);
            v.relist(0, &[], &mut PendingQueue::new());
            let fired = ListReg::hardware(27, v.deliverable(0, 27).unwrap());
            let mut lrs = [fired.encode(), 0, 0, 0];
            let mut queue = PendingQueue::new();
            queue.push(fired).unwrap();
            assert!(!takes_timer(&lrs), "{reg:#x}: hidden from the guest");
            // vCPU 1 restores the frame as it was.
            let effects = v.gicr_write(1, SGI + 0x80, 4, u32::MAX.into()).unwrap();
            assert!(effects.len() <= 1, "{effects:?}");
            v.gicr_write(1, SGI + 0x400 + 24, 4, 0xA0 << 24).unwrap();
            let effects = v.gicr_write(1, SGI + 0x100, 4, 1 << 27).unwrap();
            assert!(
                effects
                    .iter()
                    .all(|e| *e == Effect::PrivateSync { vcpu: 0 }),
                "{effects:?}"
            );
            assert!(v.relist_due(0) && !v.relist_due(1));
            // vCPU 0's core takes the kick.
            assert_eq!(v.take_private_sync(0).as_slice(), &[vtimer(true, 0xA0)]);
            let plan = v.relist(0, &lrs, &mut queue);
            assert!(plan.deactivate.is_empty(), "still enabled: kept");
            for &(n, value) in &plan.writes {
                lrs[n] = value;
            }
            assert!(takes_timer(&lrs), "{reg:#x}: {:#x}", lrs[0]);
            assert_eq!(
                lrs[0],
                ListReg::hardware(27, v.deliverable(0, 27).unwrap()).encode()
            );
            assert_eq!(
                queue.pop().map(|l| (l.priority, l.group1)),
                Some((0xA0, true))
            );
            assert!(!v.relist_due(0));
        }
    }

    /// A pending entry of an interrupt disabled since is taken back: a hardware one is
    /// deactivated (it fires again once enabled), a software one pends in the redistributor
    /// until enabled. Entries the guest has acknowledged, other vCPUs' and unchanged
    /// interrupts are left alone.
    #[test]
    fn a_listed_interrupt_disabled_since_is_taken_back() {
        let mut v = vgic(2, &[]);
        vcpu0_timer_on(&mut v);
        v.gicr_write(0, SGI + 0x100, 4, 0b1110).unwrap();
        v.relist(0, &[], &mut PendingQueue::new());
        let d = v.deliverable(0, 27).unwrap();
        let sgi = |n| ListReg::software(n, d);
        let active = ListReg {
            state: LrState::Active,
            ..sgi(2)
        };
        let lrs = [
            ListReg::hardware(27, d).encode(),
            sgi(1).encode(),
            active.encode(),
            sgi(3).encode(),
        ];
        let mut queue = PendingQueue::new();
        queue.push(ListReg::hardware(27, d)).unwrap();
        queue.push(sgi(1)).unwrap();
        // vCPU 1 disables 27, 1 and 2 in frame 0; vCPU 0 disables nothing of its own.
        let effects = v.gicr_write(1, SGI + 0x180, 4, (1 << 27) | 0b110).unwrap();
        assert_eq!(effects.as_slice(), &[Effect::PrivateSync { vcpu: 0 }]);
        assert!(!v.relist_due(1));
        assert!(v.relist(1, &lrs, &mut queue.clone()).writes.is_empty());
        let plan = v.relist(0, &lrs, &mut queue);
        assert_eq!(plan.writes.as_slice(), &[(0, 0), (1, 0)]);
        assert_eq!(plan.deactivate.as_slice(), &[27, 27]);
        assert!(queue.is_empty());
        // Enabled again: the software one is delivered then.
        v.gicr_write(0, SGI + 0x100, 4, 0b10).unwrap();
        let again: Vec<u32> = v.take_software(0, 0).iter().map(|l| l.vintid).collect();
        assert_eq!(again, [1]);
        // A write to its own frame marks it too: the writer's core relists right after it.
        assert!(v.relist_due(0));
        assert!(v.relist(0, &[0; 4], &mut queue).writes.is_empty());
        assert!(!v.relist_due(0));
    }

    /// The same for an SPI: a distributor write (here by vCPU 0) relists every vCPU's SPIs; a
    /// pending one routed elsewhere since is deactivated where it waits (it fires again where
    /// it goes now).
    #[test]
    fn a_listed_spi_follows_the_distributor() {
        let mut v = vgic(2, &[40]);
        v.gicd_write(GICD_IROUTER + 40 * 8, 8, 1).unwrap();
        v.gicd_write(GICD_IPRIORITYR + 40, 1, 0xFF).unwrap();
        v.gicd_write(GICD_IGROUPR + 4, 4, 1 << 8).unwrap();
        v.gicd_write(GICD_ISENABLER + 4, 4, 1 << 8).unwrap();
        v.spis_changed(usize::MAX);
        v.relist(1, &[], &mut PendingQueue::new());
        let fired = ListReg::hardware(40, v.deliverable(1, 40).unwrap());
        let lrs = [fired.encode()];
        assert!(!any_signalled(&lrs, LINUX_VMCR, None, 5), "masked");
        assert!(!v.relist_due(1));
        v.gicd_write(GICD_IPRIORITYR + 40, 1, 0xA0).unwrap();
        assert_eq!(
            v.spis_changed(0).as_slice(),
            &[Effect::PrivateSync { vcpu: 1 }]
        );
        assert!(v.spis_changed(0).is_empty(), "once per write");
        assert!(v.relist_due(0) && v.relist_due(1));
        let plan = v.relist(1, &lrs, &mut PendingQueue::new());
        assert_eq!(plan.writes.len(), 1);
        assert!(any_signalled(&[plan.writes[0].1], LINUX_VMCR, None, 5));
        // Routed to vCPU 0: taken back from vCPU 1.
        v.gicd_write(GICD_IROUTER + 40 * 8, 8, 0).unwrap();
        v.spis_changed(0);
        let plan = v.relist(1, &lrs, &mut PendingQueue::new());
        assert_eq!(plan.writes.as_slice(), &[(0, 0)]);
        assert_eq!(plan.deactivate.as_slice(), &[40]);
    }

    #[test]
    fn ich_hcr_sets_underflow_only_while_waiting() {
        assert_eq!(ich_hcr(false), ich_hcr::EN);
        assert_eq!(ich_hcr(true), ich_hcr::EN | ich_hcr::UIE);
    }

    #[test]
    fn physical_interrupts_are_routed() {
        let d = Delivery {
            priority: 0x10,
            group1: true,
        };
        assert_eq!(route_irq(26, 26, Some(d)), IrqRoute::Hypervisor);
        assert_eq!(route_irq(25, 26, None), IrqRoute::Maintenance);
        assert_eq!(
            route_irq(27, 26, Some(d)),
            IrqRoute::Guest(ListReg::hardware(27, d))
        );
        assert_eq!(route_irq(27, 26, None), IrqRoute::Unclaimed);
        assert_eq!(route_irq(40, 26, None), IrqRoute::Unclaimed);
    }

    #[test]
    fn trapped_waits_never_lose_a_wakeup() {
        assert!(trapped_wait_sleeps(false, false));
        assert!(!trapped_wait_sleeps(false, true));
        assert!(!trapped_wait_sleeps(true, false));
        assert!(!trapped_wait_sleeps(true, true));
    }
}
