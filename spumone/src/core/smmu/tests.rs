//! Field positions are checked against Arm IHI 0070 and against how QEMU 7.2's SMMUv3 model
//! reads them (32-bit words: `word[n]` is bits `32n..32n+31` of the structure).

use super::*;
use crate::hvcore::el2map::{El2Map, MemKind, Table};
use board::rt::MemRange;

mod demo {
    include!("../../../../board/tests/golden/demo.rs");
}

/// Bits `[lo, lo + len)` of 32-bit word `word` of a structure given as doublewords.
fn word_bits(dwords: &[u64], word: usize, lo: u32, len: u32) -> u64 {
    let w = (dwords[word / 2] >> (32 * (word % 2))) & 0xffff_ffff;
    (w >> lo) & ((1u64 << len) - 1)
}

fn linux_smmu() -> &'static Smmu {
    &demo::CONFIG.smmus[0]
}

// --- STE / CD -------------------------------------------------------------------------------

#[test]
fn abort_ste_is_valid_with_config_abort() {
    let ste = Ste::ABORT;
    assert_eq!(word_bits(&ste.0, 0, 0, 1), 1, "V");
    assert_eq!(word_bits(&ste.0, 0, 1, 3), 0b000, "Config = abort");
    // QEMU: a config without bit 2 aborts, and records no event.
    assert_eq!(ste.config() & 0b100, 0);
    assert!(ste.valid());
    assert!(!Ste::INVALID.valid());
}

#[test]
fn stage1_ste_fields_where_qemu_reads_them() {
    let cd = 0x4012_3440u64;
    let ste = Ste::stage1(cd);
    assert_eq!(word_bits(&ste.0, 0, 0, 1), 1, "V");
    let config = word_bits(&ste.0, 0, 1, 3);
    assert_eq!(config, 0b101, "stage 1 translate, stage 2 bypass");
    assert_eq!(config & 0b010, 0, "no stage 2 (QEMU 7.2 rejects it)");
    assert_eq!(word_bits(&ste.0, 0, 4, 2), 0, "S1Fmt linear");
    assert_eq!(word_bits(&ste.0, 1, 27, 5), 0, "S1CDMax = 0");
    assert_eq!(word_bits(&ste.0, 2, 27, 1), 0, "S1STALLD = 0");
    assert_eq!(word_bits(&ste.0, 2, 28, 2), 0, "EATS: no ATS");
    assert_eq!(word_bits(&ste.0, 2, 30, 2), 0, "STRW = NS-EL1");
    assert_eq!(word_bits(&ste.0, 2, 2, 2), 0b01, "S1CIR write-back");
    assert_eq!(word_bits(&ste.0, 2, 6, 2), 0b11, "S1CSH inner shareable");
    // S1ContextPtr as QEMU extracts it: word1[15:0] << 32 | word0 & 0xffffffc0.
    let ptr = word_bits(&ste.0, 1, 0, 16) << 32 | word_bits(&ste.0, 0, 0, 32) & 0xffff_ffc0;
    assert_eq!(ptr, cd);
    assert_eq!(ste.context(), cd);
    // A high context pointer keeps its upper bits.
    assert_eq!(Ste::stage1(0x8_0000_0040).context(), 0x8_0000_0040);
}

#[test]
fn context_descriptor_passes_qemu_checks() {
    let ttb = 0x4050_0000u64;
    let cd = Cd::identity(ttb, 2, 4);
    assert_eq!(word_bits(&cd.0, 0, 31, 1), 1, "V");
    assert_eq!(word_bits(&cd.0, 1, 9, 1), 1, "AA64");
    assert_eq!(
        word_bits(&cd.0, 1, 14, 1),
        1,
        "A (TERM_MODEL = 1 requires it)"
    );
    assert_eq!(word_bits(&cd.0, 1, 12, 1), 0, "S (no stall)");
    assert_eq!(word_bits(&cd.0, 1, 13, 1), 1, "R: faults are recorded");
    assert_eq!(word_bits(&cd.0, 1, 10, 2), 0, "HD and HA off");
    assert_eq!(word_bits(&cd.0, 1, 15, 1), 1, "ASET");
    assert_eq!(word_bits(&cd.0, 1, 16, 16), 2, "ASID");
    assert_eq!(word_bits(&cd.0, 1, 0, 3), 4, "IPS");
    assert_eq!(word_bits(&cd.0, 1, 6, 2), 0, "TBI off");
    assert_eq!(word_bits(&cd.0, 0, 15, 1), 0, "ENDI little-endian");
    let t0sz = word_bits(&cd.0, 0, 0, 6);
    assert_eq!(t0sz, 25);
    assert!((16..=39).contains(&t0sz), "QEMU accepts T0SZ 16..39");
    assert_eq!(word_bits(&cd.0, 0, 6, 2), 0b00, "TG0 = 4 KiB");
    assert_eq!(word_bits(&cd.0, 0, 14, 1), 0, "EPD0: TTB0 walks on");
    assert_eq!(word_bits(&cd.0, 0, 30, 1), 1, "EPD1: no TTB1");
    assert_eq!(word_bits(&cd.0, 0, 8, 2), 0b01, "IR0 write-back");
    assert_eq!(word_bits(&cd.0, 0, 12, 2), 0b11, "SH0 inner shareable");
    // TTB0 as QEMU extracts it: word3[18:0] << 32 | word2 & ~0xf.
    let ttb0 = word_bits(&cd.0, 3, 0, 19) << 32 | word_bits(&cd.0, 2, 0, 32) & !0xf;
    assert_eq!(ttb0, ttb);
    assert_eq!(cd.ttb0(), ttb);
    // MAIR in the fourth doubleword: index 0 write-back, the index the leaves use.
    assert_eq!(cd.0[3] & 0xff, 0xff);
    assert_eq!(cd.asid(), 2);
    assert_eq!(cd.t0sz(), 25);
}

// --- A walk of the built tables ---------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum WalkFault {
    Translation,
    Access,
    Permission,
    AddressSize,
}

/// Walks `cd`'s TTB0 tables as the architecture (and QEMU's `smmu_ptw_64`) does: the start
/// level from T0SZ and the 4 KiB granule, valid and type bits, block levels 1-2, AF, AP[2]
/// for writes, the output size.
fn walk(cd: &Cd, pool: &[Table], addr: u64, write: bool) -> Result<u64, WalkFault> {
    assert_eq!(word_bits(&cd.0, 0, 6, 2), 0, "4 KiB granule");
    let input_bits = 64 - cd.t0sz();
    if addr >> input_bits != 0 {
        return Err(WalkFault::Translation);
    }
    let stride = 9;
    let mut level = 4 - (input_bits - 4) / stride;
    let oas = match word_bits(&cd.0, 1, 0, 3) {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        _ => 48,
    };
    let mut table_addr = cd.ttb0();
    loop {
        let table = pool
            .iter()
            .find(|t| *t as *const Table as u64 == table_addr)
            .expect("every table address is in the pool");
        let shift = 12 + stride * (3 - level);
        let index = ((addr >> shift) & 0x1ff) as usize;
        let desc = table.0[index];
        if desc & 1 == 0 {
            return Err(WalkFault::Translation);
        }
        let is_table_or_page = desc & 2 != 0;
        let out = desc & 0x0000_ffff_ffff_f000;
        if level == 3 && !is_table_or_page {
            return Err(WalkFault::Translation); // reserved at level 3
        }
        if level < 3 && is_table_or_page {
            table_addr = out;
            level += 1;
            continue;
        }
        if level == 0 {
            return Err(WalkFault::Translation); // no level-0 blocks with 4 KiB
        }
        if desc & (1 << 10) == 0 {
            return Err(WalkFault::Access);
        }
        if write && desc & (1 << 7) != 0 {
            return Err(WalkFault::Permission);
        }
        let block = 1u64 << shift;
        let pa = (out & !(block - 1)) | (addr & (block - 1));
        if pa >> oas != 0 {
            return Err(WalkFault::AddressSize);
        }
        // Normal memory (MAIR index 0, write-back), shareable.
        assert_eq!((desc >> 2) & 0b111, 0, "AttrIndx 0");
        assert_eq!((cd.0[3] >> (8 * ((desc >> 2) & 0b111))) & 0xff, 0xff);
        return Ok(pa);
    }
}

fn build_identity(pool: &mut [Table], ram: &[MemRange]) -> u64 {
    let mut map = El2Map::new(pool);
    for r in ram {
        map.map(r.base, r.size, MemKind::Normal).unwrap();
    }
    map.root_addr()
}

#[test]
fn identity_map_of_linux_ram_and_nothing_else() {
    let linux = &demo::CONFIG.partitions[1];
    assert_eq!(linux.name, "linux");
    let mut pool = vec![Table::EMPTY; 8];
    let root = build_identity(&mut pool, linux.ram);
    let cd = Cd::identity(root, asid(linux.index), 4);
    for addr in [
        0x4800_0000,
        0x4820_1234,
        0x8000_0000,
        0x9abc_def8,
        0xb7ff_fff8,
    ] {
        assert_eq!(walk(&cd, &pool, addr, true), Ok(addr), "{addr:#x} write");
        assert_eq!(walk(&cd, &pool, addr, false), Ok(addr), "{addr:#x} read");
    }
    for addr in [
        0x4400_0000u64, // the RTOS's RAM
        0x47ff_fff8,    // its last word
        0x4020_0000,    // spumone
        0x4000_0000,    // the DTB QEMU left, spumone's region
        0xb800_0000,    // the reset copy of Linux's kernel and initrd
        0xbfff_f000,
        0x0905_0000, // the SMMU's own registers
        0x0800_0000, // the GIC
        0,
        1 << 39, // past the input range
    ] {
        assert_eq!(
            walk(&cd, &pool, addr, true),
            Err(WalkFault::Translation),
            "{addr:#x}"
        );
    }
}

#[test]
fn walker_sees_broken_tables() {
    // The walk above can fail: without AF, a read-only page or an output beyond IPS.
    let mut pool = vec![Table::EMPTY; 8];
    let root = build_identity(&mut pool, &[MemRange::new(0x4800_0000, 0x20_0000)]);
    let cd = Cd::identity(root, 1, 4);
    assert_eq!(walk(&cd, &pool, 0x4800_0000, true), Ok(0x4800_0000));
    let level2 = pool[0].0[1] & 0x0000_ffff_ffff_f000;
    let t = pool
        .iter_mut()
        .find(|t| *t as *const Table as u64 == level2)
        .unwrap();
    t.0[0x40] &= !(1 << 10);
    assert_eq!(walk(&cd, &pool, 0x4800_0000, false), Err(WalkFault::Access));
    let t = pool
        .iter_mut()
        .find(|t| *t as *const Table as u64 == level2)
        .unwrap();
    t.0[0x40] |= 1 << 10 | 1 << 7;
    assert_eq!(walk(&cd, &pool, 0x4800_0000, false), Ok(0x4800_0000));
    assert_eq!(
        walk(&cd, &pool, 0x4800_0000, true),
        Err(WalkFault::Permission)
    );
    let small = Cd::identity(root, 1, 0);
    let mut high = vec![Table::EMPTY; 8];
    let root = build_identity(&mut high, &[MemRange::new(0x1_0000_0000, 0x20_0000)]);
    let small_high = Cd::identity(root, 1, 0);
    assert_eq!(
        walk(&small_high, &high, 0x1_0000_0000, false),
        Err(WalkFault::AddressSize)
    );
    assert_eq!(walk(&small, &pool, 0x4800_0000, false), Ok(0x4800_0000));
}

// --- Stream table -----------------------------------------------------------------------------

fn smmu(grants: &'static [StreamGrant]) -> Smmu {
    Smmu {
        name: "smmu",
        base: 0x0905_0000,
        size: 0x2_0000,
        event_intid: 106,
        gerror_intid: 109,
        grants,
    }
}

#[test]
fn stream_table_covers_the_grants() {
    assert_eq!(stream_table_log2(linux_smmu()), Ok(8));
    static SOME: [StreamGrant; 1] = [StreamGrant {
        device: "d",
        partition: 1,
        first: 0x10,
        count: 8,
    }];
    assert_eq!(stream_table_log2(&smmu(&SOME)), Ok(5));
    assert_eq!(stream_table_log2(&smmu(&[])), Ok(0));
    static ONE: [StreamGrant; 1] = [StreamGrant {
        device: "d",
        partition: 0,
        first: 0,
        count: 1,
    }];
    assert_eq!(stream_table_log2(&smmu(&ONE)), Ok(0));
    static WIDE: [StreamGrant; 1] = [StreamGrant {
        device: "d",
        partition: 0,
        first: 0xf0,
        count: 0x20,
    }];
    assert_eq!(
        stream_table_log2(&smmu(&WIDE)),
        Err(PlanError::TooManyStreams { end: 0x110 })
    );
}

#[test]
fn granted_streams_translate_the_rest_abort() {
    static SOME: [StreamGrant; 2] = [
        StreamGrant {
            device: "a",
            partition: 1,
            first: 0x08,
            count: 8,
        },
        StreamGrant {
            device: "b",
            partition: 2,
            first: 0x18,
            count: 1,
        },
    ];
    let s = smmu(&SOME);
    let log2 = stream_table_log2(&s).unwrap();
    assert_eq!(log2, 5);
    let mut table = vec![Ste::INVALID; 1 << log2];
    let cd_of = |p: u8| match p {
        1 => Some(0x4010_0000),
        2 => Some(0x4010_0040),
        _ => None,
    };
    fill_stream_table(&s, &mut table, cd_of).unwrap();
    for (sid, ste) in table.iter().enumerate() {
        match sid {
            0x08..=0x0f => assert_eq!(*ste, Ste::stage1(0x4010_0000), "{sid:#x}"),
            0x18 => assert_eq!(*ste, Ste::stage1(0x4010_0040)),
            _ => assert_eq!(*ste, Ste::ABORT, "{sid:#x}"),
        }
    }
    // A grant whose partition has no context is refused rather than left open.
    let err = fill_stream_table(&s, &mut table, |p| (p == 1).then_some(0x4010_0000));
    assert_eq!(err, Err(PlanError::UnknownPartition(2)));
}

#[test]
fn demo_grants_bus_zero_to_linux() {
    let s = linux_smmu();
    let mut table = vec![Ste::INVALID; 1 << stream_table_log2(s).unwrap()];
    fill_stream_table(s, &mut table, |p| (p == 1).then_some(0x4100_0000)).unwrap();
    assert!(table.iter().all(|ste| *ste == Ste::stage1(0x4100_0000)));
    assert_eq!(partitions_with_streams(&demo::CONFIG), 0b10);
    assert_eq!(partitions_of(s), 0b10);
}

// --- Identification ---------------------------------------------------------------------------

/// SMMU_IDR0/1/5 as QEMU 7.2 resets them.
const QEMU_IDR0: u32 = 1 << 1 | 2 << 2 | 1 << 4 | 1 << 12 | 2 << 21 | 1 << 24 | 1 << 26 | 1 << 27;
const QEMU_IDR1: u32 = 16 | 19 << 16 | 19 << 21;
const QEMU_IDR5: u32 = 4 | 1 << 4 | 1 << 6;

#[test]
fn qemu_smmu_is_accepted() {
    let f = Features::decode(QEMU_IDR0, QEMU_IDR1, QEMU_IDR5);
    assert!(f.stage1 && f.aarch64 && f.coherent && f.little_endian && f.granule_4k);
    assert!(!f.preset);
    assert_eq!(f.sid_bits, 16);
    assert_eq!(f.cmdq_log2, 19);
    assert_eq!(f.eventq_log2, 19);
    assert_eq!(f.oas_bits(), 44);
    assert_eq!(check(&f, 8, 0xc000_0000), Ok(4));
}

#[test]
fn unusable_smmus_are_refused() {
    let stage2_only = Features::decode(QEMU_IDR0 & !(1 << 1) | 1, QEMU_IDR1, QEMU_IDR5);
    assert_eq!(check(&stage2_only, 8, 0), Err(ProbeError::NoStage1));
    let aarch32 = Features::decode(QEMU_IDR0 & !(0b11 << 2) | 1 << 2, QEMU_IDR1, QEMU_IDR5);
    assert_eq!(check(&aarch32, 8, 0), Err(ProbeError::NoAArch64Tables));
    let narrow = Features::decode(QEMU_IDR0, QEMU_IDR1 & !0x3f | 4, QEMU_IDR5);
    assert_eq!(
        check(&narrow, 8, 0),
        Err(ProbeError::StreamIdsTooNarrow {
            sid_bits: 4,
            needed: 8
        })
    );
    let no4k = Features::decode(QEMU_IDR0, QEMU_IDR1, QEMU_IDR5 & !(1 << 4));
    assert_eq!(check(&no4k, 8, 0), Err(ProbeError::No4kGranule));
    let big = Features::decode(QEMU_IDR0 | 0b11 << 21, QEMU_IDR1, QEMU_IDR5);
    assert_eq!(check(&big, 8, 0), Err(ProbeError::BigEndianOnly));
    let preset = Features::decode(QEMU_IDR0, QEMU_IDR1 | 1 << 30, QEMU_IDR5);
    assert_eq!(check(&preset, 8, 0), Err(ProbeError::PresetTables));
    let oas32 = Features::decode(QEMU_IDR0, QEMU_IDR1, QEMU_IDR5 & !0b111);
    assert_eq!(check(&oas32, 8, 0x1_0000_0000), Ok(0));
    assert!(matches!(
        check(&oas32, 8, 0x1_0000_1000),
        Err(ProbeError::OutputTooSmall { oas_bits: 32, .. })
    ));
}

// --- Registers and queues ---------------------------------------------------------------------

#[test]
fn register_encodings() {
    assert_eq!(reg::EVENTQ_PROD & 0xffff, 0xa8);
    assert_eq!(reg::EVENTQ_CONS - reg::EVENTQ_PROD, 4);
    assert_eq!(reg::EVENTQ_CONS, 0x1_00ac);
    assert_eq!(strtab_base(0x4010_0000), 1 << 62 | 0x4010_0000);
    // The low bits of the address never leak into other fields.
    assert_eq!(strtab_base(0x4010_003f) & 0x3f, 0);
    assert_eq!(strtab_base_cfg(8), 8, "FMT linear, LOG2SIZE 8");
    assert_eq!(strtab_base_cfg(8) >> 16 & 0b11, 0);
    assert_eq!(queue_base(0x4011_0000, 4), 1 << 62 | 0x4011_0000 | 4);
    assert_eq!(queue_base(0x4011_0010, 4) & 0x1f, 4);
    assert_eq!(reg::CR1_CACHED, 0b1101_0111_0101);
    assert_eq!(
        reg::CR0_SMMUEN | reg::CR0_EVENTQEN | reg::CR0_CMDQEN,
        0b1101
    );
    assert_eq!(active_gerrors(0b101, 0b001), 0b100);
    assert_eq!(gerror_name(1), "command queue error");
    assert_eq!(gerror_name(1 << 2), "event queue write aborted");
    assert_eq!(gerror_name(GERROR_EVENTQ_ABT), "event queue write aborted");
    assert_eq!(command_error_name(1 << 24), "illegal command");
}

#[test]
fn queue_pointers_wrap() {
    let q = Queue { log2: 2 };
    assert_eq!(q.entries(), 4);
    assert!(q.is_empty(0, 0));
    let mut prod = 0;
    for _ in 0..4 {
        prod = q.next(prod);
    }
    assert_eq!(prod, 0b100, "index 0 with the wrap flag");
    assert_eq!(q.index(prod), 0);
    assert!(q.is_full(prod, 0));
    assert!(!q.is_empty(prod, 0));
    assert!(q.is_empty(prod, 0b100));
    for _ in 0..4 {
        prod = q.next(prod);
    }
    assert_eq!(prod, 0, "the wrap flag toggles back");
    // CMDQ_CONS.ERR and EVENTQ_PROD.OVFLG are not part of the pointer.
    assert!(q.is_empty(3, 3 | 1 << 24));
    assert!(q.is_empty(1 << 31 | 2, 2));
    assert_eq!(q.next(1 << 31 | 3), 0b100);
}

#[test]
fn commands_encode_as_the_spec_says() {
    let [d0, d1] = Command::CfgiSte {
        sid: 0x1234,
        leaf: true,
    }
    .encode();
    let words = [d0, d1];
    assert_eq!(word_bits(&words, 0, 0, 8), 0x03);
    assert_eq!(word_bits(&words, 1, 0, 32), 0x1234, "StreamID");
    assert_eq!(word_bits(&words, 2, 0, 1), 1, "Leaf");
    let all = Command::CfgiAll.encode();
    assert_eq!(word_bits(&all, 0, 0, 8), 0x04);
    assert_eq!(word_bits(&all, 2, 0, 5), 31, "Range = 31: every stream");
    let tlbi = Command::TlbiNsnhAll.encode();
    assert_eq!(tlbi, [0x30, 0]);
    let by_asid = Command::TlbiNhAsid { asid: 0x1234 }.encode();
    assert_eq!(word_bits(&by_asid, 0, 0, 8), 0x11);
    assert_eq!(word_bits(&by_asid, 1, 16, 16), 0x1234, "ASID");
    assert_eq!(word_bits(&by_asid, 1, 0, 16), 0, "VMID");
    assert_eq!(by_asid[1], 0);
    let sync = Command::Sync.encode();
    assert_eq!(word_bits(&sync, 0, 0, 8), 0x46);
    assert_eq!(
        word_bits(&sync, 0, 12, 2),
        0,
        "CS = none: completion by CONS"
    );
    assert_eq!(INIT_COMMANDS.last(), Some(&Command::Sync));
}

// --- Events -----------------------------------------------------------------------------------

/// An event record laid out as QEMU writes it (`EVT_SET_*`): type word0[7:0], StreamID
/// word1, RnW word3 bit 3, InputAddr words 4-5.
fn record(code: u8, sid: u32, rnw: bool, addr: u64) -> [u64; 4] {
    let words: [u32; 8] = [
        u32::from(code),
        sid,
        0,
        u32::from(rnw) << 3,
        addr as u32,
        (addr >> 32) as u32,
        0,
        0,
    ];
    let mut raw = [0u64; 4];
    for (i, d) in raw.iter_mut().enumerate() {
        *d = u64::from(words[2 * i]) | u64::from(words[2 * i + 1]) << 32;
    }
    raw
}

#[test]
fn fault_records_decode() {
    let e = Event::decode(record(0x10, 0x08, false, 0x4400_0000));
    assert_eq!(e.kind, EventKind::Translation);
    assert_eq!(e.stream, 0x08);
    assert_eq!(e.fault, Some((0x4400_0000, Access::Write)));
    let e = Event::decode(record(0x10, 0x10, true, 0x1_b800_0040));
    assert_eq!(e.fault, Some((0x1_b800_0040, Access::Read)));
    assert_eq!(e.kind.name(), "translation fault");
    let e = Event::decode(record(0x13, 0x20, false, 0x4020_0000));
    assert_eq!(e.kind, EventKind::Permission);
    assert_eq!(e.fault, Some((0x4020_0000, Access::Write)));
    assert_eq!(
        Event::decode(record(0x11, 1, true, 8)).kind,
        EventKind::AddressSize
    );
    assert_eq!(
        Event::decode(record(0x12, 1, true, 8)).kind,
        EventKind::Access
    );
}

#[test]
fn configuration_records_decode_without_address() {
    let e = Event::decode(record(0x02, 0x108, true, 0xdead_beef));
    assert_eq!(e.kind, EventKind::BadStreamId);
    assert_eq!(e.stream, 0x108);
    assert_eq!(e.fault, None);
    assert_eq!(
        Event::decode(record(0x04, 3, false, 0)).kind,
        EventKind::BadSte
    );
    assert_eq!(
        Event::decode(record(0x0a, 3, false, 0)).kind,
        EventKind::BadCd
    );
    let odd = Event::decode(record(0x7f, 3, false, 0));
    assert_eq!(odd.kind, EventKind::Other(0x7f));
    assert_eq!(odd.code, 0x7f);
    assert_eq!(odd.fault, None);
}

// --- Throttle ---------------------------------------------------------------------------------

#[test]
fn faults_are_logged_once_per_stream_and_burst() {
    let mut t: Throttle<4> = Throttle::new();
    assert!(t.record(8, 0).log);
    for i in 1..=5 {
        assert_eq!(
            t.record(8, i * 1000),
            Verdict {
                log: false,
                ended: None
            }
        );
    }
    // Another stream is independent.
    assert!(t.record(9, 2000).log);
    // After the burst the next fault is logged, with the count of the quiet ones.
    assert_eq!(
        t.record(8, BURST_US + 1),
        Verdict {
            log: true,
            ended: Some((8, 5))
        }
    );
    // A burst with no quiet faults ends silently.
    let mut reports = Vec::new();
    t.flush(3 * BURST_US, |s, n| reports.push((s, n)));
    assert!(reports.is_empty());
    assert!(t.record(8, 3 * BURST_US).log);
    assert!(!t.record(8, 3 * BURST_US + 1).log);
    assert!(!t.record(8, 3 * BURST_US + 2).log);
    t.flush(3 * BURST_US + 10, |s, n| reports.push((s, n)));
    assert!(reports.is_empty(), "the burst is still on");
    t.flush(4 * BURST_US, |s, n| reports.push((s, n)));
    assert_eq!(reports, vec![(8, 2)]);
    assert!(t.record(8, 4 * BURST_US).log);
}

#[test]
fn a_full_throttle_evicts_the_oldest_burst_with_its_count() {
    let mut t: Throttle<2> = Throttle::new();
    assert!(t.record(1, 0).log);
    assert!(!t.record(1, 1).log);
    assert!(t.record(2, 10).log);
    assert_eq!(
        t.record(3, 20),
        Verdict {
            log: true,
            ended: Some((1, 1))
        }
    );
    // Stream 1 lost its slot, so its next fault is logged again.
    assert!(t.record(1, 30).log);
}
