//! SMMUv3 mechanism: probe, program and enable each SMMU of the board before any guest runs,
//! and drain its event queue into the log. What the tables, commands and records hold is
//! decided in `hvcore::smmu`.
//!
//! Everything the SMMU reads or writes (stream table, context descriptors, page tables,
//! queues) is a static inside spumone's own image, which no partition maps and no stream is
//! granted.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use aarch64_cpu::asm::barrier;
use board::rt::{MemRange, Smmu};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use super::config::CONFIG;
use super::cpu::Lock;
use super::{gic, linux, timer};
use crate::hvcore::el2map::{identity_tables_bound, El2Map, MemKind, Table};
use crate::hvcore::loglimit::Class;
use crate::hvcore::platform::Platform;
use crate::hvcore::smmu::{
    self, active_gerrors, command_error_name, gerror_name, queue_base, reg, strtab_base,
    strtab_base_cfg, Cd, Event, Features, Queue, Ste, Throttle, INIT_COMMANDS, MAX_STREAMS,
};
use crate::hvcore::vcpu;
use crate::hvcore::watch::MAX_WATCHES;
use crate::hvcore::MAX_PARTITIONS;

register_structs! {
    /// The registers spumone uses, pages 0 and 1 (offsets as in `hvcore::smmu::reg`).
    SmmuRegs {
        (0x0_0000 => idr0: ReadOnly<u32>),
        (0x0_0004 => idr1: ReadOnly<u32>),
        (0x0_0008 => _r0),
        (0x0_0014 => idr5: ReadOnly<u32>),
        (0x0_0018 => _r1),
        (0x0_0020 => cr0: ReadWrite<u32>),
        (0x0_0024 => cr0ack: ReadOnly<u32>),
        (0x0_0028 => cr1: ReadWrite<u32>),
        (0x0_002c => cr2: ReadWrite<u32>),
        (0x0_0030 => _r2),
        (0x0_0050 => irq_ctrl: ReadWrite<u32>),
        (0x0_0054 => irq_ctrlack: ReadOnly<u32>),
        (0x0_0058 => _r3),
        (0x0_0060 => gerror: ReadOnly<u32>),
        (0x0_0064 => gerrorn: ReadWrite<u32>),
        (0x0_0068 => _r4),
        (0x0_0080 => strtab_base: ReadWrite<u64>),
        (0x0_0088 => strtab_base_cfg: ReadWrite<u32>),
        (0x0_008c => _r5),
        (0x0_0090 => cmdq_base: ReadWrite<u64>),
        (0x0_0098 => cmdq_prod: ReadWrite<u32>),
        (0x0_009c => cmdq_cons: ReadWrite<u32>),
        (0x0_00a0 => eventq_base: ReadWrite<u64>),
        (0x0_00a8 => _r6),
        (0x1_00a8 => eventq_prod: ReadWrite<u32>),
        (0x1_00ac => eventq_cons: ReadWrite<u32>),
        (0x1_00b0 => @END),
    }
}

// The offsets above are the ones the policy module names.
const _: () = {
    assert!(core::mem::offset_of!(SmmuRegs, cr0) == reg::CR0);
    assert!(core::mem::offset_of!(SmmuRegs, cr0ack) == reg::CR0ACK);
    assert!(core::mem::offset_of!(SmmuRegs, irq_ctrl) == reg::IRQ_CTRL);
    assert!(core::mem::offset_of!(SmmuRegs, gerrorn) == reg::GERRORN);
    assert!(core::mem::offset_of!(SmmuRegs, strtab_base_cfg) == reg::STRTAB_BASE_CFG);
    assert!(core::mem::offset_of!(SmmuRegs, cmdq_cons) == reg::CMDQ_CONS);
    assert!(core::mem::offset_of!(SmmuRegs, eventq_base) == reg::EVENTQ_BASE);
    assert!(core::mem::offset_of!(SmmuRegs, eventq_prod) == reg::EVENTQ_PROD);
    assert!(core::mem::offset_of!(SmmuRegs, eventq_cons) == reg::EVENTQ_CONS);
};

/// Board SMMUs spumone can drive.
const MAX_SMMUS: usize = 2;
/// Partitions whose RAM the SMMUs map (each gets its own identity tables).
const MAX_DMA_PARTITIONS: usize = 2;
/// Tables per identity map: a root, level-2/3 tables for unaligned RAM edges, and the
/// tables that splitting blocks for the DSM's write watches takes (each watched range has
/// two ends; kernel text and rodata, ~22 MiB, is one range). `build_maps` checks the bound
/// for the configured RAM.
const TABLES_PER_MAP: usize = 24;
const _: () = {
    // Linux's RAM in the shipped configs (1.75 GiB over two GiB regions) with every watch
    // a write watch: 1 + 2 + 2 + 2 * 8 = 21.
    assert!(identity_tables_bound(&[(0x4800_0000, 0x7000_0000)], MAX_WATCHES) <= TABLES_PER_MAP);
};
const CMDQ: Queue = Queue { log2: 4 };
/// Room for a burst. QEMU 7.2 records a fault each time it retries a refused translation (a
/// 4 KiB request into a read-only page made over a thousand records) and reports a full
/// queue as an aborted queue write (a global error) rather than by the overflow flag.
const EVENTQ: Queue = Queue { log2: 9 };
/// How long an acknowledgement or a command may take.
const TIMEOUT_US: u64 = 100_000;
/// Streams whose fault bursts are tracked at once.
const THROTTLE_STREAMS: usize = 8;

/// A linear stream table, aligned to its largest size.
#[repr(C, align(16384))]
struct StreamTable([Ste; MAX_STREAMS]);

#[repr(C, align(256))]
struct CommandQueue([[u64; 2]; 1 << 4]);

#[repr(C, align(16384))]
struct EventQueue([[u64; 4]; 1 << 9]);

/// What one SMMU reads and writes in memory.
struct SmmuMemory {
    streams: StreamTable,
    /// One context descriptor per partition index.
    cds: [Cd; MAX_PARTITIONS],
    cmdq: CommandQueue,
    events: EventQueue,
}

const _: () = {
    assert!(CMDQ.entries() * smmu::CMD_BYTES == core::mem::size_of::<CommandQueue>());
    assert!(EVENTQ.entries() * smmu::EVENT_BYTES == core::mem::size_of::<EventQueue>());
    assert!(core::mem::size_of::<Ste>() == smmu::STE_BYTES);
    assert!(core::mem::size_of::<Cd>() == smmu::CD_BYTES);
};

static MEMORY: [Lock<SmmuMemory>; MAX_SMMUS] = [const {
    Lock::new(SmmuMemory {
        streams: StreamTable([Ste::INVALID; MAX_STREAMS]),
        cds: [Cd::EMPTY; MAX_PARTITIONS],
        cmdq: CommandQueue([[0; 2]; 1 << 4]),
        events: EventQueue([[0; 4]; 1 << 9]),
    })
}; MAX_SMMUS];

/// The identity maps of the partitions with streams, one slot each.
struct Maps {
    pools: [[Table; TABLES_PER_MAP]; MAX_DMA_PARTITIONS],
    /// Tables each slot's map has taken.
    used: [usize; MAX_DMA_PARTITIONS],
    /// The slot of each partition's map.
    slot: [Option<usize>; MAX_PARTITIONS],
}

static TABLES: Lock<Maps> = Lock::new(Maps {
    pools: [const { [const { Table::EMPTY }; TABLES_PER_MAP] }; MAX_DMA_PARTITIONS],
    used: [0; MAX_DMA_PARTITIONS],
    slot: [None; MAX_PARTITIONS],
});

/// An enabled SMMU's event queue consumer and log throttle.
struct Running {
    base: usize,
    cons: u32,
    coherent: bool,
    throttle: Throttle<THROTTLE_STREAMS>,
}

static RUNNING: [Lock<Option<Running>>; MAX_SMMUS] = [const { Lock::new(None) }; MAX_SMMUS];
static ENABLED: [AtomicBool; MAX_SMMUS] = [const { AtomicBool::new(false) }; MAX_SMMUS];

/// Bit `i`: partition `i` must not start (an SMMU its streams need is missing or failed).
static REFUSED: AtomicU32 = AtomicU32::new(0);

fn regs(base: usize) -> &'static SmmuRegs {
    // SAFETY: `base` is an SMMU register frame from the board that the DTB lists and the EL2
    // map covers as device memory (all 128 KiB, both pages); accessed only through volatile
    // register accessors.
    unsafe { &*(base as *const SmmuRegs) }
}

/// Whether partition `index` may not start because its DMA would not be confined.
pub fn refuses(index: usize) -> bool {
    REFUSED.load(Ordering::Acquire) & 1u32.checked_shl(index as u32).unwrap_or(0) != 0
}

/// Probes, programs and enables every board SMMU, and routes their interrupts to a core the
/// RTOS does not use. `cores[i]` is logical core `i`'s MPIDR. Runs on the boot core before
/// any guest does; a partition whose streams an SMMU cannot confine is refused.
pub fn init(platform: &Platform, cores: &[u64]) {
    let mut refused = 0;
    let service = vcpu::first_core_without_rtos(&CONFIG, cores.len(), linux::is_rtos)
        .and_then(|core| cores.get(usize::from(core)).map(|&mpidr| (core, mpidr)));
    let roots = match build_maps() {
        Ok(roots) => roots,
        Err(what) => {
            error!("SMMU identity maps: {}", what);
            [None; MAX_PARTITIONS]
        }
    };
    for (index, board) in CONFIG.smmus.iter().enumerate() {
        let owners = smmu::partitions_of(board);
        let frame = MemRange::new(board.base, board.size);
        if index >= MAX_SMMUS {
            error!(
                "SMMU {}: spumone drives at most {} SMMUs",
                board.name, MAX_SMMUS
            );
            refused |= owners;
            continue;
        }
        if !platform.has_smmu(frame) {
            if owners != 0 {
                error!(
                    "SMMU {} at {:#x} is not in the machine's device tree: the partitions with its streams do not start",
                    board.name, board.base
                );
                refused |= owners;
            } else {
                warn!(
                    "SMMU {} at {:#x} is not in the machine's device tree (no streams granted)",
                    board.name, board.base
                );
            }
            continue;
        }
        match enable(index, board, &roots) {
            Ok((log2, coherent)) => {
                ENABLED[index].store(true, Ordering::Release);
                *RUNNING[index].lock() = Some(Running {
                    base: board.base as usize,
                    cons: 0,
                    coherent,
                    throttle: Throttle::new(),
                });
                info!(
                    "SMMU {} at {:#x} enabled: stream table of {} entries, {} streams granted",
                    board.name,
                    board.base,
                    1u32 << log2,
                    board.grants.iter().map(|g| g.count).sum::<u32>()
                );
                for grant in board.grants {
                    let owner = CONFIG
                        .partitions
                        .get(usize::from(grant.partition))
                        .map_or("?", |p| p.name);
                    info!(
                        "SMMU {}: streams {:#x}..{:#x} ({}) translate into partition {}'s RAM",
                        board.name,
                        grant.first,
                        grant.first + grant.count - 1,
                        grant.device,
                        owner
                    );
                }
                route_interrupts(board, service);
            }
            Err(what) => {
                error!(
                    "SMMU {} at {:#x}: {}; the partitions with its streams do not start",
                    board.name, board.base, what
                );
                refused |= owners;
            }
        }
    }
    REFUSED.store(refused, Ordering::Release);
}

fn route_interrupts(board: &Smmu, service: Option<(u8, u64)>) {
    let Some((core, mpidr)) = service else {
        warn!(
            "SMMU {}: every core runs the RTOS; DMA faults are aborted but not reported",
            board.name
        );
        return;
    };
    for intid in [board.event_intid, board.gerror_intid] {
        if intid != 0 {
            gic::configure_spi(intid, false, gic::DEFAULT_PRIORITY, mpidr);
            gic::set_edge_triggered(intid);
            gic::configure_spi(intid, true, gic::DEFAULT_PRIORITY, mpidr);
        }
    }
    info!(
        "SMMU {}: event and error interrupts {} and {} on core {}",
        board.name, board.event_intid, board.gerror_intid, core
    );
}

/// Waits until `done` holds, up to [`TIMEOUT_US`].
fn wait(mut done: impl FnMut() -> bool) -> bool {
    let deadline = timer::uptime_us() + TIMEOUT_US;
    while !done() {
        if timer::uptime_us() > deadline {
            return done();
        }
        core::hint::spin_loop();
    }
    true
}

fn set_cr0(r: &SmmuRegs, value: u32) -> Result<(), &'static str> {
    r.cr0.set(value);
    if wait(|| r.cr0ack.get() == value) {
        Ok(())
    } else {
        Err("CR0 update not acknowledged within 100 ms")
    }
}

/// Writes back (and drops) the cache lines of `len` bytes at `addr`, for an SMMU whose
/// accesses are not coherent with this core's caches.
fn sync_memory(coherent: bool, addr: u64, len: usize) {
    if coherent {
        barrier::dsb(barrier::ISHST);
        return;
    }
    const LINE: u64 = 64;
    let mut line = addr & !(LINE - 1);
    while line < addr + len as u64 {
        // SAFETY: a cache maintenance operation on spumone's own mapped memory; it changes
        // no data.
        unsafe {
            core::arch::asm!("dc civac, {}", in(reg) line, options(nostack, preserves_flags))
        };
        line += LINE;
    }
    barrier::dsb(barrier::SY);
}

/// Builds the identity map of each partition with streams, once for every SMMU: the root
/// of partition `i`'s tables is `roots[i]`. The lines are written back whatever the SMMUs'
/// coherency (a few tables, once).
fn build_maps() -> Result<[Option<u64>; MAX_PARTITIONS], &'static str> {
    let mut roots = [None; MAX_PARTITIONS];
    let mut maps = TABLES.lock();
    let maps = &mut *maps;
    let with_streams = smmu::partitions_with_streams(&CONFIG);
    let mut slots = 0..MAX_DMA_PARTITIONS;
    for partition in CONFIG.partitions {
        let index = usize::from(partition.index);
        if index >= MAX_PARTITIONS || with_streams & (1 << index) == 0 {
            continue;
        }
        let mut ram = [(0, 0); 8];
        for (slot, range) in ram.iter_mut().zip(partition.ram) {
            *slot = (range.base, range.size);
        }
        if partition.ram.len() > ram.len()
            || identity_tables_bound(&ram[..partition.ram.len()], MAX_WATCHES) > TABLES_PER_MAP
        {
            return Err("a partition's RAM needs more tables than spumone's pool holds");
        }
        let slot = slots.next().ok_or("too many partitions with DMA streams")?;
        let pool = &mut maps.pools[slot];
        let mut map = El2Map::new(pool);
        for range in partition.ram {
            map.map(range.base, range.size, MemKind::Normal)
                .map_err(|_| "cannot map a partition's RAM")?;
        }
        roots[index] = Some(map.root_addr());
        let used = map.tables_used();
        maps.used[slot] = used;
        maps.slot[index] = Some(slot);
        sync_memory(
            false,
            pool.as_ptr() as u64,
            used * core::mem::size_of::<Table>(),
        );
    }
    Ok(roots)
}

/// Gives DMA of partition `partition`'s devices the write permission `writable` over
/// `[base, base + size)` of its RAM, as stage 2 gives its vCPUs (the DSM's write watches):
/// edits its identity map and invalidates the TLB of every enabled SMMU that has streams
/// of it. `true` if done, or if the partition has no map (no streams).
pub fn protect(partition: usize, base: u64, size: u64, writable: bool) -> bool {
    let coherent = walks_coherent(partition);
    let mut maps = TABLES.lock();
    let maps = &mut *maps;
    let Some(slot) = maps.slot.get(partition).copied().flatten() else {
        return true;
    };
    let pool = &mut maps.pools[slot];
    let mut map = El2Map::reopen(pool, maps.used[slot]);
    // A new table is cleaned to memory before the descriptor that links it is written.
    let changed = map.set_writable(base, size, writable, &mut |table| {
        sync_memory(
            coherent,
            table as *const Table as u64,
            core::mem::size_of::<Table>(),
        )
    });
    maps.used[slot] = map.tables_used();
    let changed = match changed {
        Ok(changed) => changed,
        Err(e) => {
            warn!(
                "SMMU: cannot change DMA writes to {:#x}..{:#x} for partition {}: {}",
                base,
                base + size,
                partition,
                super::map_error_name(e)
            );
            return false;
        }
    };
    if changed == 0 {
        return true;
    }
    // Only SMMUs whose walks miss the caches need the edited tables written back (this runs
    // while Linux's vCPUs are held).
    sync_memory(
        coherent,
        pool.as_ptr() as u64,
        maps.used[slot] * core::mem::size_of::<Table>(),
    );
    let mut ok = true;
    let asid = smmu::asid(partition as u8);
    for (index, board) in CONFIG.smmus.iter().enumerate().take(MAX_SMMUS) {
        if !ENABLED[index].load(Ordering::Acquire)
            || smmu::partitions_of(board) & 1u32.checked_shl(partition as u32).unwrap_or(0) == 0
        {
            continue;
        }
        let running = RUNNING[index].lock();
        let Some(running) = running.as_ref() else {
            continue;
        };
        let mut memory = MEMORY[index].lock();
        let commands = [smmu::Command::TlbiNhAsid { asid }, smmu::Command::Sync];
        if let Err(what) = issue(regs(running.base), &mut memory, running.coherent, &commands) {
            error!("SMMU {}: TLB invalidation failed: {}", board.name, what);
            ok = false;
        }
    }
    if ok && !writable {
        let name = CONFIG.partitions.get(partition).map_or("?", |p| p.name);
        info!(
            "SMMU: DMA writes to {:#x}..{:#x} fault (partition {})",
            base,
            base + size,
            name
        );
    }
    ok
}

/// Whether every enabled SMMU with streams of `partition` walks its tables coherently with
/// this core's caches.
fn walks_coherent(partition: usize) -> bool {
    let bit = 1u32.checked_shl(partition as u32).unwrap_or(0);
    CONFIG
        .smmus
        .iter()
        .enumerate()
        .take(MAX_SMMUS)
        .filter(|(_, board)| smmu::partitions_of(board) & bit != 0)
        .all(|(index, _)| RUNNING[index].lock().as_ref().is_none_or(|r| r.coherent))
}

/// Issues `commands` and waits until the SMMU has consumed them.
fn issue(
    r: &SmmuRegs,
    memory: &mut SmmuMemory,
    coherent: bool,
    commands: &[smmu::Command],
) -> Result<(), &'static str> {
    let mut prod = r.cmdq_prod.get();
    for command in commands {
        let cons = r.cmdq_cons.get();
        if CMDQ.is_full(prod, cons) {
            return Err("command queue full");
        }
        let slot = &mut memory.cmdq.0[CMDQ.index(prod)];
        *slot = command.encode();
        sync_memory(coherent, slot.as_ptr() as u64, smmu::CMD_BYTES);
        prod = CMDQ.next(prod);
    }
    r.cmdq_prod.set(prod);
    if !wait(|| {
        CMDQ.is_empty(prod, r.cmdq_cons.get())
            || active_gerrors(r.gerror.get(), r.gerrorn.get()) != 0
    }) {
        return Err("commands not consumed within 100 ms");
    }
    let active = active_gerrors(r.gerror.get(), r.gerrorn.get());
    if active != 0 {
        error!(
            "SMMU command error: {} ({})",
            gerror_name(active),
            command_error_name(r.cmdq_cons.get())
        );
        return Err("the command queue reported an error");
    }
    Ok(())
}

/// Programs SMMU `index` and turns it on. Returns the stream table's log2 size and whether
/// its accesses are coherent.
fn enable(
    index: usize,
    board: &Smmu,
    roots: &[Option<u64>; MAX_PARTITIONS],
) -> Result<(u32, bool), &'static str> {
    let r = regs(board.base as usize);
    let features = Features::decode(r.idr0.get(), r.idr1.get(), r.idr5.get());
    let log2 = smmu::stream_table_log2(board)
        .map_err(|_| "more streams granted than spumone's table holds")?;
    let highest = CONFIG
        .partitions
        .iter()
        .filter(|p| smmu::partitions_of(board) & (1 << p.index) != 0)
        .flat_map(|p| p.ram.iter())
        .map(MemRange::end)
        .chain(core::iter::once(CONFIG.hypervisor_ram.end()))
        .max()
        .unwrap_or(0);
    let ips = smmu::check(&features, log2, highest).map_err(|e| e.describe())?;
    if features.cmdq_log2 < CMDQ.log2 || features.eventq_log2 < EVENTQ.log2 {
        return Err("its queues are smaller than spumone's");
    }
    let coherent = features.coherent;

    // Off first: the bases may only change while the SMMU and its queues are disabled.
    set_cr0(r, 0)?;
    r.irq_ctrl.set(0);
    if !wait(|| r.irq_ctrlack.get() == 0) {
        return Err("IRQ_CTRL update not acknowledged within 100 ms");
    }

    let mut memory = MEMORY[index].lock();
    let memory = &mut *memory;
    for (partition, cd) in memory.cds.iter_mut().enumerate() {
        *cd = match roots[partition] {
            Some(root) => Cd::identity(root, smmu::asid(partition as u8), ips),
            None => Cd::EMPTY,
        };
    }
    let cds = &memory.cds;
    let entries = 1usize << log2;
    smmu::fill_stream_table(board, &mut memory.streams.0[..entries], |p| {
        cds.get(usize::from(p))
            .filter(|cd| **cd != Cd::EMPTY)
            .map(|cd| cd as *const Cd as u64)
    })
    .map_err(|_| "a grant names a partition without RAM tables")?;
    memory.events.0 = [[0; 4]; 1 << 9];
    sync_memory(
        coherent,
        memory.cds.as_ptr() as u64,
        core::mem::size_of_val(&memory.cds),
    );
    sync_memory(
        coherent,
        memory.streams.0.as_ptr() as u64,
        entries * smmu::STE_BYTES,
    );
    sync_memory(
        coherent,
        memory.events.0.as_ptr() as u64,
        core::mem::size_of::<EventQueue>(),
    );

    r.cr1.set(reg::CR1_CACHED);
    r.cr2.set(reg::CR2_RECINVSID | reg::CR2_PTM);
    r.strtab_base
        .set(strtab_base(memory.streams.0.as_ptr() as u64));
    r.strtab_base_cfg.set(strtab_base_cfg(log2));
    r.cmdq_base
        .set(queue_base(memory.cmdq.0.as_ptr() as u64, CMDQ.log2));
    r.cmdq_prod.set(0);
    r.cmdq_cons.set(0);
    r.eventq_base
        .set(queue_base(memory.events.0.as_ptr() as u64, EVENTQ.log2));
    r.eventq_prod.set(0);
    r.eventq_cons.set(0);
    barrier::dsb(barrier::SY);

    set_cr0(r, reg::CR0_CMDQEN)?;
    issue(r, memory, coherent, &INIT_COMMANDS)?;
    set_cr0(r, reg::CR0_CMDQEN | reg::CR0_EVENTQEN)?;
    let irqs = (if board.event_intid != 0 {
        reg::IRQ_EVENTQ
    } else {
        0
    }) | (if board.gerror_intid != 0 {
        reg::IRQ_GERROR
    } else {
        0
    });
    r.irq_ctrl.set(irqs);
    if !wait(|| r.irq_ctrlack.get() == irqs) {
        return Err("IRQ_CTRL update not acknowledged within 100 ms");
    }
    set_cr0(r, reg::CR0_CMDQEN | reg::CR0_EVENTQEN | reg::CR0_SMMUEN)?;
    Ok((log2, coherent))
}

/// Handles `intid` if it is an enabled SMMU's event or error interrupt (the caller ends it).
pub fn handle_interrupt(intid: u32) -> bool {
    for (index, board) in CONFIG.smmus.iter().enumerate().take(MAX_SMMUS) {
        if !ENABLED[index].load(Ordering::Acquire) {
            continue;
        }
        if intid == board.event_intid {
            drain_events(index, board);
            return true;
        }
        if intid == board.gerror_intid {
            global_error(index, board);
            return true;
        }
    }
    false
}

fn global_error(index: usize, board: &Smmu) {
    let Some(running) = &*RUNNING[index].lock() else {
        return;
    };
    let r = regs(running.base);
    let gerror = r.gerror.get();
    let active = active_gerrors(gerror, r.gerrorn.get());
    if active == smmu::GERROR_EVENTQ_ABT {
        // The queue was full: the faults are aborted all the same, only their records are lost.
        // A guest can cause it at will, so it is rate-limited as that guest's line.
        let source = board.grants.first().map_or(0, |g| usize::from(g.partition));
        guest_warn!(
            source,
            Class::Dma,
            "SMMU {}: event queue full; DMA faults after it were aborted but not logged",
            board.name
        );
        r.gerrorn.set(gerror);
    } else if active != 0 {
        error!(
            "SMMU {}: global error: {} (GERROR {:#x})",
            board.name,
            gerror_name(active),
            gerror
        );
        // Acknowledged by making GERRORN equal GERROR.
        r.gerrorn.set(gerror);
    }
}

/// Reads every new event record and logs the faults, once per stream and burst.
fn drain_events(index: usize, board: &Smmu) {
    let mut running = RUNNING[index].lock();
    let Some(running) = running.as_mut() else {
        return;
    };
    let r = regs(running.base);
    let memory = MEMORY[index].lock();
    // At most a few laps: records arriving meanwhile come with their own interrupt.
    for _ in 0..4 {
        let prod = r.eventq_prod.get();
        if prod & reg::EVENTQ_OVERFLOW != running.cons & reg::EVENTQ_OVERFLOW {
            warn!(
                "SMMU {}: event queue overflowed; faults were lost",
                board.name
            );
        }
        if EVENTQ.is_empty(prod, running.cons) {
            running.cons = (running.cons & !reg::EVENTQ_OVERFLOW) | (prod & reg::EVENTQ_OVERFLOW);
            r.eventq_cons.set(running.cons);
            break;
        }
        let now = timer::uptime_us();
        let mut cons = running.cons;
        while !EVENTQ.is_empty(prod, cons) {
            let record = core::ptr::addr_of!(memory.events.0[EVENTQ.index(cons)]);
            sync_memory(running.coherent, record as u64, smmu::EVENT_BYTES);
            // SAFETY: `record` points into the event queue; the SMMU wrote it before it moved
            // PROD past it and leaves it alone until CONS moves on. Volatile because the SMMU,
            // not this program, wrote it.
            let raw = unsafe { core::ptr::read_volatile(record) };
            let event = Event::decode(raw);
            let verdict = running.throttle.record(event.stream, now);
            if let Some((stream, more)) = verdict.ended {
                warn!(
                    "dma fault: stream {:#x}: {} more in its last burst",
                    stream, more
                );
            }
            if verdict.log {
                log_event(&event);
            }
            cons = EVENTQ.next(cons);
        }
        running.cons = (cons & !reg::EVENTQ_OVERFLOW) | (prod & reg::EVENTQ_OVERFLOW);
        r.eventq_cons.set(running.cons);
    }
    running.throttle.flush(timer::uptime_us(), |stream, more| {
        warn!(
            "dma fault: stream {:#x}: {} more in its last burst",
            stream, more
        );
    });
}

fn log_event(event: &Event) {
    match event.fault {
        Some((address, access)) => warn!(
            "dma fault: stream {:#x}, address {:#x}, {} ({})",
            event.stream,
            address,
            access.name(),
            event.kind.name()
        ),
        None => warn!(
            "dma fault: stream {:#x}, {} (event {:#x})",
            event.stream,
            event.kind.name(),
            event.code
        ),
    }
}
