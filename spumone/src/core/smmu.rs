//! SMMUv3 policy: what spumone writes into an SMMU's memory structures and registers, and how
//! it reads the SMMU's event records. No MMIO here; `arch::smmu` moves these values.
//!
//! The model (Arm IHI 0070):
//! - a linear stream table indexed by stream ID (a PCI requester ID on QEMU `virt`); a stream
//!   granted to a partition gets a stage-1 STE whose single context descriptor points at an
//!   identity map of that partition's RAM, every other stream an abort STE, and streams past
//!   the table's end are aborted by the SMMU itself (`C_BAD_STREAMID`);
//! - stage 1 only: QEMU 7.2 implements no stage 2, and with an identity map stage 1 alone is
//!   the wall: the device reaches exactly the partition's RAM at the addresses the partition
//!   already uses for DMA (it sees no IOMMU);
//! - the identity map is built by [`El2Map`](super::el2map::El2Map), the builder of
//!   spumone's own map, whose `Normal` leaves (write-back, inner shareable, AF set, read/write
//!   at both privilege levels) are what a stage-1 DMA mapping needs; its 39-bit, level-1-rooted
//!   layout is what the context descriptor's T0SZ and TG0 describe.

use board::rt::{Config, Smmu, StreamGrant};

use super::el2map::{MAIR_EL2 as MAIR, VA_BITS};

/// Bytes in a stream table entry, a context descriptor, a command and an event record.
pub const STE_BYTES: usize = 64;
pub const CD_BYTES: usize = 64;
pub const CMD_BYTES: usize = 16;
pub const EVENT_BYTES: usize = 32;

/// Most streams one SMMU's stream table holds (bus 0 of a PCIe root complex).
pub const MAX_STREAMS: usize = 256;

// --- Stream table entries -------------------------------------------------------------------

const STE_V: u64 = 1;
const STE_CONFIG_SHIFT: u64 = 1;
/// STE.Config: abort every transaction, record nothing.
const CONFIG_ABORT: u64 = 0b000;
/// STE.Config: stage 1 translates, stage 2 bypassed.
const CONFIG_S1: u64 = 0b101;
/// STE.S1ContextPtr, bits [51:6].
const STE_CTX_MASK: u64 = 0x000f_ffff_ffff_ffc0;
// Second doubleword.
/// S1CIR / S1COR: context descriptors are fetched write-back, read/write-allocate.
const STE_S1CIR_WBRA: u64 = 0b01 << 2;
const STE_S1COR_WBRA: u64 = 0b01 << 4;
/// S1CSH: inner shareable.
const STE_S1CSH_ISH: u64 = 0b11 << 6;
/// SHCFG: use the incoming shareability.
const STE_SHCFG_INCOMING: u64 = 0b01 << 44;

/// One stream table entry.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ste(pub [u64; 8]);

impl Ste {
    /// V = 0: what a cleared table holds (the SMMU reports `C_BAD_STE` and aborts).
    pub const INVALID: Ste = Ste([0; 8]);

    /// Valid, Config = abort: the stream's transactions are terminated with an abort and no
    /// event is recorded.
    pub const ABORT: Ste = Ste([
        STE_V | CONFIG_ABORT << STE_CONFIG_SHIFT,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);

    /// Valid, stage-1 translation through the single context descriptor at `cd` (64-byte
    /// aligned): S1CDMax = 0 (no substreams, S1Fmt then ignored), no stall (S1STALLD = 0),
    /// no ATS, StreamWorld NS-EL1 (the context descriptor's ASID is an EL1 ASID).
    pub const fn stage1(cd: u64) -> Ste {
        Ste([
            STE_V | CONFIG_S1 << STE_CONFIG_SHIFT | (cd & STE_CTX_MASK),
            STE_S1CIR_WBRA | STE_S1COR_WBRA | STE_S1CSH_ISH | STE_SHCFG_INCOMING,
            0,
            0,
            0,
            0,
            0,
            0,
        ])
    }

    pub const fn valid(&self) -> bool {
        self.0[0] & STE_V != 0
    }

    /// STE.Config.
    pub const fn config(&self) -> u64 {
        (self.0[0] >> STE_CONFIG_SHIFT) & 0b111
    }

    /// STE.S1ContextPtr.
    pub const fn context(&self) -> u64 {
        self.0[0] & STE_CTX_MASK
    }
}

// --- Context descriptors --------------------------------------------------------------------

const CD_T0SZ_SHIFT: u64 = 0;
const CD_TG0_SHIFT: u64 = 6;
/// TG0 = 0b00: 4 KiB granule.
const CD_TG0_4K: u64 = 0b00;
/// IR0 / OR0: walks are write-back, read/write-allocate; SH0 inner shareable.
const CD_IR0_WBRA: u64 = 0b01 << 8;
const CD_OR0_WBRA: u64 = 0b01 << 10;
const CD_SH0_ISH: u64 = 0b11 << 12;
/// EPD1: no TTB1 walks (addresses with the top bits set fault).
const CD_EPD1: u64 = 1 << 30;
const CD_V: u64 = 1 << 31;
const CD_IPS_SHIFT: u64 = 32;
const CD_AA64: u64 = 1 << 41;
/// R: record faults (without it a translation fault is silent).
const CD_R: u64 = 1 << 45;
/// A: abort a faulting transaction (required when SMMU_IDR0.TERM_MODEL = 1).
const CD_A: u64 = 1 << 46;
/// ASET: the ASID is not shared with the PEs, so their broadcast TLB invalidations leave it.
const CD_ASET: u64 = 1 << 47;
const CD_ASID_SHIFT: u64 = 48;
/// CD.TTB0, bits [51:4].
const CD_TTB_MASK: u64 = 0x000f_ffff_ffff_fff0;

/// One context descriptor.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cd(pub [u64; 8]);

impl Cd {
    pub const EMPTY: Cd = Cd([0; 8]);

    /// An AArch64 stage-1 context walking the identity map at `ttb0` (4 KiB aligned) with
    /// the same input size, granule and memory attributes as spumone's own map: T0SZ
    /// `64 - VA_BITS`, 4 KiB granule, TTB1 disabled, output size `ips` (an IDR5.OAS / CD.IPS
    /// encoding), faults recorded and aborted, no stall, no hardware access/dirty updates.
    pub const fn identity(ttb0: u64, asid: u16, ips: u8) -> Cd {
        let t0sz = 64 - VA_BITS as u64;
        Cd([
            t0sz << CD_T0SZ_SHIFT
                | CD_TG0_4K << CD_TG0_SHIFT
                | CD_IR0_WBRA
                | CD_OR0_WBRA
                | CD_SH0_ISH
                | CD_EPD1
                | CD_V
                | ((ips as u64) & 0b111) << CD_IPS_SHIFT
                | CD_AA64
                | CD_R
                | CD_A
                | CD_ASET
                | (asid as u64) << CD_ASID_SHIFT,
            ttb0 & CD_TTB_MASK,
            0,
            MAIR,
            0,
            0,
            0,
            0,
        ])
    }

    pub const fn t0sz(&self) -> u32 {
        (self.0[0] & 0x3f) as u32
    }

    pub const fn ttb0(&self) -> u64 {
        self.0[1] & CD_TTB_MASK
    }

    pub const fn asid(&self) -> u16 {
        (self.0[0] >> CD_ASID_SHIFT) as u16
    }
}

/// The ASID of partition `index`'s context (0 stays unused, as VMID 0 does).
pub const fn asid(partition_index: u8) -> u16 {
    partition_index as u16 + 1
}

// --- The stream table -----------------------------------------------------------------------

/// Why an SMMU's grants cannot be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// A granted stream lies past [`MAX_STREAMS`].
    TooManyStreams { end: u64 },
    /// A grant names a partition the config does not have.
    UnknownPartition(u8),
}

/// log2 of the number of stream table entries: enough for every granted stream (at least one
/// entry, which aborts when nothing is granted). Streams past the end are `C_BAD_STREAMID`.
pub fn stream_table_log2(smmu: &Smmu) -> Result<u32, PlanError> {
    let end = smmu
        .grants
        .iter()
        .map(|g| u64::from(g.first) + u64::from(g.count))
        .max()
        .unwrap_or(1)
        .max(1);
    if end > MAX_STREAMS as u64 {
        return Err(PlanError::TooManyStreams { end });
    }
    Ok(64 - (end - 1).leading_zeros())
}

/// The grant that covers stream `sid`, if any.
pub fn grant_of(smmu: &Smmu, sid: u32) -> Option<&'static StreamGrant> {
    smmu.grants.iter().find(|g| g.contains(sid))
}

/// Fills `table` (its length is the table's entry count) for `smmu`: each granted stream
/// translates through the context descriptor `cd_of(partition index)` returns, every other
/// one aborts. A grant whose partition has no context descriptor is an error, so nothing
/// is ever left in bypass.
pub fn fill_stream_table(
    smmu: &Smmu,
    table: &mut [Ste],
    cd_of: impl Fn(u8) -> Option<u64>,
) -> Result<(), PlanError> {
    for (sid, ste) in table.iter_mut().enumerate() {
        *ste = match grant_of(smmu, sid as u32) {
            None => Ste::ABORT,
            Some(g) => {
                Ste::stage1(cd_of(g.partition).ok_or(PlanError::UnknownPartition(g.partition))?)
            }
        };
    }
    Ok(())
}

/// Bit `i` set: partition `i` has a stream granted on some SMMU of `config`.
pub fn partitions_with_streams(config: &Config) -> u32 {
    config
        .smmus
        .iter()
        .fold(0, |mask, s| mask | partitions_of(s))
}

/// Bit `i` set: partition `i` has a stream granted on `smmu`.
pub fn partitions_of(smmu: &Smmu) -> u32 {
    smmu.grants
        .iter()
        .filter_map(|g| 1u32.checked_shl(u32::from(g.partition)))
        .fold(0, |mask, bit| mask | bit)
}

// --- Identification registers ---------------------------------------------------------------

/// What the probe needs from SMMU_IDR0, IDR1 and IDR5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    pub stage1: bool,
    /// IDR0.TTF allows AArch64 tables.
    pub aarch64: bool,
    /// IDR0.COHACC: table and queue accesses are coherent with the PEs' caches.
    pub coherent: bool,
    /// IDR0.TTENDIAN allows little-endian tables.
    pub little_endian: bool,
    /// IDR1.SIDSIZE.
    pub sid_bits: u32,
    /// IDR1.CMDQS / EVENTQS: log2 of the largest queues.
    pub cmdq_log2: u32,
    pub eventq_log2: u32,
    /// IDR1.TABLES_PRESET / QUEUES_PRESET: fixed base addresses spumone cannot choose.
    pub preset: bool,
    /// IDR5.OAS encoding.
    pub oas: u8,
    pub granule_4k: bool,
}

impl Features {
    pub const fn decode(idr0: u32, idr1: u32, idr5: u32) -> Features {
        let ttf = (idr0 >> 2) & 0b11;
        let endian = (idr0 >> 21) & 0b11;
        Features {
            stage1: idr0 & (1 << 1) != 0,
            aarch64: ttf & 0b10 != 0,
            coherent: idr0 & (1 << 4) != 0,
            // 0b00 mixed, 0b10 little only; 0b11 is big only.
            little_endian: endian == 0b00 || endian == 0b10,
            sid_bits: idr1 & 0x3f,
            eventq_log2: (idr1 >> 16) & 0x1f,
            cmdq_log2: (idr1 >> 21) & 0x1f,
            preset: idr1 & (0b11 << 29) != 0,
            oas: (idr5 & 0b111) as u8,
            granule_4k: idr5 & (1 << 4) != 0,
        }
    }

    /// Output address bits of the OAS encoding.
    pub const fn oas_bits(&self) -> u32 {
        match self.oas {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            _ => 52,
        }
    }
}

/// Why an SMMU cannot enforce the grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    NoStage1,
    NoAArch64Tables,
    No4kGranule,
    BigEndianOnly,
    PresetTables,
    /// IDR1.SIDSIZE cannot name every stream of the table.
    StreamIdsTooNarrow {
        sid_bits: u32,
        needed: u32,
    },
    /// The output address size cannot reach the partition RAM (or spumone's tables).
    OutputTooSmall {
        oas_bits: u32,
        highest: u64,
    },
}

impl ProbeError {
    pub const fn describe(self) -> &'static str {
        match self {
            ProbeError::NoStage1 => "no stage-1 translation (IDR0.S1P = 0)",
            ProbeError::NoAArch64Tables => "no AArch64 translation tables (IDR0.TTF)",
            ProbeError::No4kGranule => "no 4 KiB granule (IDR5.GRAN4K = 0)",
            ProbeError::BigEndianOnly => "big-endian tables only (IDR0.TTENDIAN)",
            ProbeError::PresetTables => "preset table or queue addresses (IDR1)",
            ProbeError::StreamIdsTooNarrow { .. } => "stream IDs too narrow for the grants",
            ProbeError::OutputTooSmall { .. } => "output address size too small for the RAM",
        }
    }
}

/// Checks `features` against a stream table of `2^table_log2` entries and physical
/// addresses up to `highest` (exclusive); returns the CD.IPS encoding to use.
pub fn check(features: &Features, table_log2: u32, highest: u64) -> Result<u8, ProbeError> {
    if !features.stage1 {
        return Err(ProbeError::NoStage1);
    }
    if !features.aarch64 {
        return Err(ProbeError::NoAArch64Tables);
    }
    if !features.granule_4k {
        return Err(ProbeError::No4kGranule);
    }
    if !features.little_endian {
        return Err(ProbeError::BigEndianOnly);
    }
    if features.preset {
        return Err(ProbeError::PresetTables);
    }
    if features.sid_bits < table_log2 {
        return Err(ProbeError::StreamIdsTooNarrow {
            sid_bits: features.sid_bits,
            needed: table_log2,
        });
    }
    let oas_bits = features.oas_bits().min(48);
    if highest > 1u64 << oas_bits.min(VA_BITS) {
        return Err(ProbeError::OutputTooSmall { oas_bits, highest });
    }
    Ok(features.oas.min(5))
}

// --- Registers ------------------------------------------------------------------------------

/// Register offsets (page 0 unless noted) and fields.
pub mod reg {
    pub const IDR0: usize = 0x00;
    pub const IDR1: usize = 0x04;
    pub const IDR5: usize = 0x14;
    pub const CR0: usize = 0x20;
    pub const CR0ACK: usize = 0x24;
    pub const CR1: usize = 0x28;
    pub const CR2: usize = 0x2c;
    pub const IRQ_CTRL: usize = 0x50;
    pub const IRQ_CTRLACK: usize = 0x54;
    pub const GERROR: usize = 0x60;
    pub const GERRORN: usize = 0x64;
    pub const STRTAB_BASE: usize = 0x80;
    pub const STRTAB_BASE_CFG: usize = 0x88;
    pub const CMDQ_BASE: usize = 0x90;
    pub const CMDQ_PROD: usize = 0x98;
    pub const CMDQ_CONS: usize = 0x9c;
    pub const EVENTQ_BASE: usize = 0xa0;
    /// In page 1.
    pub const EVENTQ_PROD: usize = 0x1_00a8;
    pub const EVENTQ_CONS: usize = 0x1_00ac;

    pub const CR0_SMMUEN: u32 = 1 << 0;
    pub const CR0_EVENTQEN: u32 = 1 << 2;
    pub const CR0_CMDQEN: u32 = 1 << 3;

    /// CR1: queues and tables are accessed write-back cacheable, inner shareable.
    pub const CR1_CACHED: u32 = 0b01 // QUEUE_IC
        | 0b01 << 2 // QUEUE_OC
        | 0b11 << 4 // QUEUE_SH
        | 0b01 << 6 // TABLE_IC
        | 0b01 << 8 // TABLE_OC
        | 0b11 << 10; // TABLE_SH

    /// CR2: record `C_BAD_STREAMID` for streams past the table (RECINVSID); ignore the PEs'
    /// broadcast TLB maintenance (PTM); E2H off.
    pub const CR2_RECINVSID: u32 = 1 << 1;
    pub const CR2_PTM: u32 = 1 << 2;

    pub const IRQ_GERROR: u32 = 1 << 0;
    pub const IRQ_EVENTQ: u32 = 1 << 2;

    /// Read-allocate hint of STRTAB_BASE / CMDQ_BASE, write-allocate of EVENTQ_BASE.
    pub const BASE_ALLOC_HINT: u64 = 1 << 62;
    /// STRTAB_BASE.ADDR, bits [51:6].
    pub const STRTAB_ADDR_MASK: u64 = 0x000f_ffff_ffff_ffc0;
    /// Queue base ADDR, bits [51:5].
    pub const QUEUE_ADDR_MASK: u64 = 0x000f_ffff_ffff_ffe0;
    /// CMDQ_CONS.ERR.
    pub const CMDQ_CONS_ERR_SHIFT: u32 = 24;
    /// EVENTQ_PROD.OVFLG / EVENTQ_CONS.OVACKFLG.
    pub const EVENTQ_OVERFLOW: u32 = 1 << 31;
}

/// STRTAB_BASE for a linear table at `addr` (aligned to its size).
pub const fn strtab_base(addr: u64) -> u64 {
    reg::BASE_ALLOC_HINT | (addr & reg::STRTAB_ADDR_MASK)
}

/// STRTAB_BASE_CFG: linear format (FMT = 0), `log2` entries.
pub const fn strtab_base_cfg(log2: u32) -> u32 {
    log2 & 0x3f
}

/// CMDQ_BASE / EVENTQ_BASE: `addr` (aligned to the queue's size, at least 32 bytes) and
/// `log2` entries.
pub const fn queue_base(addr: u64, log2: u32) -> u64 {
    reg::BASE_ALLOC_HINT | (addr & reg::QUEUE_ADDR_MASK) | (log2 as u64 & 0x1f)
}

/// GERROR.EVENTQ_ABT_ERR: a record could not be written to the event queue (QEMU also
/// raises it when the queue is full).
pub const GERROR_EVENTQ_ABT: u32 = 1 << 2;

/// Global errors active in GERROR (those differing from GERRORN).
pub const fn active_gerrors(gerror: u32, gerrorn: u32) -> u32 {
    (gerror ^ gerrorn) & 0x1fd
}

/// The name of the lowest active global error bit.
pub const fn gerror_name(active: u32) -> &'static str {
    match active.trailing_zeros() {
        0 => "command queue error",
        2 => "event queue write aborted",
        3 => "PRI queue write aborted",
        4 => "command-sync MSI aborted",
        5 => "event queue MSI aborted",
        6 => "PRI queue MSI aborted",
        7 => "global error MSI aborted",
        8 => "service failure mode",
        _ => "unknown global error",
    }
}

/// CMDQ_CONS.ERR codes.
pub const fn command_error_name(cons: u32) -> &'static str {
    match (cons >> reg::CMDQ_CONS_ERR_SHIFT) & 0x7f {
        0 => "none",
        1 => "illegal command",
        2 => "command fetch aborted",
        3 => "ATC invalidation sync failed",
        _ => "unknown",
    }
}

// --- Queues ---------------------------------------------------------------------------------

/// PROD / CONS arithmetic of a queue of `2^log2` entries: an index in the low `log2` bits,
/// a wrap flag above it; higher bits (CMDQ_CONS.ERR, EVENTQ_PROD.OVFLG) are not part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    pub log2: u32,
}

impl Queue {
    const fn wrap_bit(self) -> u32 {
        1 << self.log2
    }

    const fn mask(self) -> u32 {
        (self.wrap_bit() << 1) - 1
    }

    pub const fn entries(self) -> usize {
        1 << self.log2
    }

    /// The slot a pointer names.
    pub const fn index(self, ptr: u32) -> usize {
        (ptr & (self.wrap_bit() - 1)) as usize
    }

    /// The pointer after `ptr` (the wrap flag toggles at the end).
    pub const fn next(self, ptr: u32) -> u32 {
        (ptr & self.mask()).wrapping_add(1) & self.mask()
    }

    pub const fn is_empty(self, prod: u32, cons: u32) -> bool {
        (prod ^ cons) & self.mask() == 0
    }

    pub const fn is_full(self, prod: u32, cons: u32) -> bool {
        (prod ^ cons) & self.mask() == self.wrap_bit()
    }
}

// --- Commands -------------------------------------------------------------------------------

/// The commands spumone issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Drop cached copies of stream `sid`'s STE (and its CD, `leaf` = false).
    CfgiSte { sid: u32, leaf: bool },
    /// Drop every cached STE and CD.
    CfgiAll,
    /// Drop every non-secure, non-hypervisor TLB entry.
    TlbiNsnhAll,
    /// Drop the stage-1 TLB entries (leaf and walk) tagged with `asid`, for a context
    /// without stage 2 (VMID 0).
    TlbiNhAsid { asid: u16 },
    /// Completes when every earlier command has; completion is seen in CMDQ_CONS.
    Sync,
}

pub mod opcode {
    pub const CFGI_STE: u8 = 0x03;
    pub const CFGI_ALL: u8 = 0x04;
    pub const TLBI_NH_ALL: u8 = 0x10;
    pub const TLBI_NH_ASID: u8 = 0x11;
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    pub const CMD_SYNC: u8 = 0x46;
}

impl Command {
    /// The 16-byte command queue entry, as two little-endian doublewords.
    pub const fn encode(self) -> [u64; 2] {
        match self {
            Command::CfgiSte { sid, leaf } => {
                [opcode::CFGI_STE as u64 | (sid as u64) << 32, leaf as u64]
            }
            // CFGI_STE_RANGE's encoding with Range = 31: every stream.
            Command::CfgiAll => [opcode::CFGI_ALL as u64, 31],
            Command::TlbiNsnhAll => [opcode::TLBI_NSNH_ALL as u64, 0],
            // ASID in bits [63:48], VMID [47:32] left 0.
            Command::TlbiNhAsid { asid } => [opcode::TLBI_NH_ASID as u64 | (asid as u64) << 48, 0],
            // CS = 0b00: no interrupt or event; the consumer index tells completion.
            Command::Sync => [opcode::CMD_SYNC as u64, 0],
        }
    }
}

/// What spumone issues after writing the tables and before setting SMMUEN: nothing stale
/// may outlive the new configuration.
pub const INIT_COMMANDS: [Command; 3] = [Command::CfgiAll, Command::TlbiNsnhAll, Command::Sync];

// --- Events ---------------------------------------------------------------------------------

/// An event record's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    UnsupportedUpstream,
    BadStreamId,
    SteFetch,
    BadSte,
    BadAtsRequest,
    StreamDisabled,
    TranslationForbidden,
    BadSubstreamId,
    CdFetch,
    BadCd,
    WalkAbort,
    Translation,
    AddressSize,
    Access,
    Permission,
    TlbConflict,
    ConfigConflict,
    PageRequest,
    Other(u8),
}

impl EventKind {
    pub const fn from_code(code: u8) -> EventKind {
        match code {
            0x01 => EventKind::UnsupportedUpstream,
            0x02 => EventKind::BadStreamId,
            0x03 => EventKind::SteFetch,
            0x04 => EventKind::BadSte,
            0x05 => EventKind::BadAtsRequest,
            0x06 => EventKind::StreamDisabled,
            0x07 => EventKind::TranslationForbidden,
            0x08 => EventKind::BadSubstreamId,
            0x09 => EventKind::CdFetch,
            0x0a => EventKind::BadCd,
            0x0b => EventKind::WalkAbort,
            0x10 => EventKind::Translation,
            0x11 => EventKind::AddressSize,
            0x12 => EventKind::Access,
            0x13 => EventKind::Permission,
            0x20 => EventKind::TlbConflict,
            0x21 => EventKind::ConfigConflict,
            0x24 => EventKind::PageRequest,
            other => EventKind::Other(other),
        }
    }

    /// Whether the record carries the input address (bits [191:128]) and RnW (bit 99).
    pub const fn has_address(self) -> bool {
        matches!(
            self,
            EventKind::UnsupportedUpstream
                | EventKind::BadAtsRequest
                | EventKind::TranslationForbidden
                | EventKind::WalkAbort
                | EventKind::Translation
                | EventKind::AddressSize
                | EventKind::Access
                | EventKind::Permission
                | EventKind::TlbConflict
        )
    }

    pub const fn name(self) -> &'static str {
        match self {
            EventKind::UnsupportedUpstream => "unsupported upstream transaction",
            EventKind::BadStreamId => "stream outside the stream table",
            EventKind::SteFetch => "stream table fetch aborted",
            EventKind::BadSte => "invalid stream table entry",
            EventKind::BadAtsRequest => "bad ATS request",
            EventKind::StreamDisabled => "stream disabled",
            EventKind::TranslationForbidden => "translation forbidden",
            EventKind::BadSubstreamId => "bad substream",
            EventKind::CdFetch => "context descriptor fetch aborted",
            EventKind::BadCd => "invalid context descriptor",
            EventKind::WalkAbort => "table walk aborted",
            EventKind::Translation => "translation fault",
            EventKind::AddressSize => "address size fault",
            EventKind::Access => "access flag fault",
            EventKind::Permission => "permission fault",
            EventKind::TlbConflict => "TLB conflict",
            EventKind::ConfigConflict => "configuration cache conflict",
            EventKind::PageRequest => "page request",
            EventKind::Other(_) => "unknown event",
        }
    }
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub const fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// A decoded event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub code: u8,
    pub stream: u32,
    /// The device's input address and direction, for the kinds that carry them.
    pub fault: Option<(u64, Access)>,
}

impl Event {
    /// Decodes a 32-byte record given as four little-endian doublewords.
    pub const fn decode(raw: [u64; 4]) -> Event {
        let code = (raw[0] & 0xff) as u8;
        let kind = EventKind::from_code(code);
        let stream = (raw[0] >> 32) as u32;
        let fault = if kind.has_address() {
            // RnW is bit 99: bit 35 of the second doubleword; 1 = read.
            let access = if raw[1] & (1 << 35) != 0 {
                Access::Read
            } else {
                Access::Write
            };
            Some((raw[2], access))
        } else {
            None
        };
        Event {
            kind,
            code,
            stream,
            fault,
        }
    }
}

// --- Log throttle ---------------------------------------------------------------------------

/// A burst lasts this long from its first fault; later faults of the stream inside it are
/// only counted.
pub const BURST_US: u64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Burst {
    stream: u32,
    start_us: u64,
    quiet: u32,
}

/// What to do with one fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Log this fault (the first of a burst of its stream).
    pub log: bool,
    /// A burst that ended to make room, and how many of its faults were not logged.
    pub ended: Option<(u32, u32)>,
}

/// Logs a device's faults once per stream and burst: the first fault of a stream is logged,
/// the rest inside [`BURST_US`] are counted, and the count is reported when the burst ends
/// (at the next fault or the next [`Throttle::flush`] after it).
#[derive(Clone, Debug)]
pub struct Throttle<const N: usize> {
    bursts: [Option<Burst>; N],
}

impl<const N: usize> Default for Throttle<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Throttle<N> {
    pub const fn new() -> Self {
        Throttle { bursts: [None; N] }
    }

    pub fn record(&mut self, stream: u32, now_us: u64) -> Verdict {
        let live = |b: &Burst| now_us.saturating_sub(b.start_us) < BURST_US;
        if let Some(slot) = self
            .bursts
            .iter_mut()
            .find(|b| b.is_some_and(|b| b.stream == stream))
        {
            let burst = slot.as_mut().expect("found above");
            if live(burst) {
                burst.quiet = burst.quiet.saturating_add(1);
                return Verdict {
                    log: false,
                    ended: None,
                };
            }
            let ended = (burst.quiet > 0).then_some((stream, burst.quiet));
            *burst = Burst {
                stream,
                start_us: now_us,
                quiet: 0,
            };
            return Verdict { log: true, ended };
        }
        let new = Burst {
            stream,
            start_us: now_us,
            quiet: 0,
        };
        // A free slot, else the oldest burst makes room.
        let slot = match self.bursts.iter().position(Option::is_none) {
            Some(free) => free,
            None => match (0..N).min_by_key(|&i| self.bursts[i].map_or(0, |b| b.start_us)) {
                Some(oldest) => oldest,
                None => {
                    return Verdict {
                        log: true,
                        ended: None,
                    }
                }
            },
        };
        let ended = self.bursts[slot]
            .filter(|b| b.quiet > 0)
            .map(|b| (b.stream, b.quiet));
        self.bursts[slot] = Some(new);
        Verdict { log: true, ended }
    }

    /// Ends every burst older than [`BURST_US`]; `report(stream, unlogged)` for those with
    /// unlogged faults.
    pub fn flush(&mut self, now_us: u64, mut report: impl FnMut(u32, u32)) {
        for slot in &mut self.bursts {
            if let Some(b) = *slot {
                if now_us.saturating_sub(b.start_us) >= BURST_US {
                    if b.quiet > 0 {
                        report(b.stream, b.quiet);
                    }
                    *slot = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
