//! The DSM runtime's mechanism: guest memory and vCPU registers for `hvcore`-style pure code
//! in `crate::dsm`, the EL2 tick that drives it, and the pause / stop responses.
//!
//! Interim placement (until the per-core scheduler gives the DSM a slot of its own): the
//! runtime runs in EL2 from the tick of the core of the checked Linux's vCPU 0, and only if no
//! other partition shares that core, so a check delays only Linux, never the RTOS.
//!
//! Registers of the other Linux vCPUs are captured by kicking their cores: each saves its EL1
//! registers and `ELR_EL2`/`SPSR_EL2` when it takes the kick, and goes on (or is held while
//! the partition is paused).

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{
    Readable, Writeable, CNTPCT_EL0, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0, ELR_EL2, MAIR_EL1,
    SCTLR_EL1, SPSR_EL2, SP_EL0, SP_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1, VBAR_EL1,
};
use board::rt::{DsmPolicy, Partition};
use dsm_api::{Access, Checker, Finding, Guest, PhysRange, WatchEvent, WatchId};
use spumone_abi::mgmt::{record, ErrorCode, Head, Outcome};

use super::config::{CONFIG, LINUX};
use super::exception::TrapFrame;
use super::{cpu, guest, log, percore, timer};
use crate::dsm::guest::{Backend, LinuxGuest, Perms, VcpuRegs};
use crate::dsm::runtime::{Event, Phase, Response, Runtime};
use crate::dsm::vitals::Vitals;
use crate::hvcore::capture::Captures;
use crate::hvcore::esr::DataAbort;
use crate::hvcore::health::{self, Sample, Verdict, Watchdog};
use crate::hvcore::hold::{Hold, Ticket};
use crate::hvcore::loglimit::Class;
use crate::hvcore::mgmt::Dsm;
use crate::hvcore::mmio::fault_ipa;
use crate::hvcore::watch::{self, DecodeError, Store};
use crate::hvcore::MAX_CORES;

include!(concat!(env!("OUT_DIR"), "/kernel_symbols.rs"));

/// One compiled-in checker: budget per call (units), the least budget per call, a time slice
/// per call in µs (0: the budget is fixed) and a period of its own in ms (0: the config's).
struct Entry {
    on: bool,
    name: &'static str,
    units: u64,
    least: u64,
    slice_us: u64,
    period_ms: u32,
}

/// A checker with a fixed budget, at the config's period.
const fn fixed(on: bool, name: &'static str, units: u64) -> Entry {
    Entry {
        on,
        name,
        units,
        least: units,
        slice_us: 0,
        period_ms: 0,
    }
}

/// How often the register checks run at the least: they cost about a microsecond (vectors) and
/// 30 µs (syscall table) a pass, and a swapped VBAR_EL1 may be put back within seconds.
const FAST_PERIOD_MS: u32 = 200;

/// The compiled-in checkers in the order they take turns. Budgets: a vCPU each for
/// `vectors`, 8 bytes per entry for `syscall-table` (a whole table), bytes hashed for
/// `text-hash` (whole 64 KiB chunks: up to four, as many as fit its 1 ms slice, at least
/// one), and objects read for the cross-view checkers, whose pass is atomic and must fit one
/// call (`PASS_COST`).
const TABLE: [Entry; 7] = [
    Entry {
        period_ms: FAST_PERIOD_MS,
        ..fixed(cfg!(feature = "dsm-vectors"), "vectors", 16)
    },
    Entry {
        period_ms: FAST_PERIOD_MS,
        ..fixed(
            cfg!(feature = "dsm-syscall-table"),
            "syscall-table",
            8 * 512,
        )
    },
    Entry {
        on: cfg!(feature = "dsm-text-hash"),
        name: "text-hash",
        units: 4 * TEXT_HASH_CHUNK,
        least: TEXT_HASH_CHUNK,
        slice_us: 1_000,
        period_ms: 0,
    },
    Entry {
        period_ms: CROSS_VIEW_PERIOD_MS,
        ..fixed(
            cfg!(feature = "dsm-module-list"),
            "module-list",
            cost(cfg!(feature = "dsm-module-list"), 0),
        )
    },
    Entry {
        period_ms: CROSS_VIEW_PERIOD_MS,
        ..fixed(
            cfg!(feature = "dsm-hidden-tasks"),
            "hidden-tasks",
            cost(cfg!(feature = "dsm-hidden-tasks"), 1),
        )
    },
    Entry {
        period_ms: CREDS_PERIOD_MS,
        ..fixed(
            cfg!(feature = "dsm-creds"),
            "creds",
            cost(cfg!(feature = "dsm-creds"), 2),
        )
    },
    // Its work is the execute watch; a pass only re-arms a refused one.
    fixed(cfg!(feature = "dsm-data-exec"), "data-exec", 1),
];

/// How often the cross-view checks run at the least (each pass 0.1 to 0.7 ms under
/// `-icount`, up to 13 ms on the wall clock under TCG, where at 500 ms they took most of the
/// cap and delayed the register checks past a 2 s VBAR swap): `creds` judges a task against
/// what an earlier pass saw of it, so a task that starts and gains root between two passes,
/// or gains root and exits between them, is never caught. The config's period is then the
/// text hash's, the one expensive pass.
const CROSS_VIEW_PERIOD_MS: u32 = 2_000;

/// `creds` runs with the other cross views. Each pass stops Linux's vCPUs, and at 200 ms the
/// kernel build under `-icount` took 1.126× as long as native (the DSM off: 1.012×). An id
/// written in place is caught whenever a pass sees it (`uid not its user_struct's`); the
/// history rule (`uid 0 without exec`) needs a pass before the change and one after it, so
/// a task that gains root and exits within a period can slip between them.
const CREDS_PERIOD_MS: u32 = CROSS_VIEW_PERIOD_MS;

/// The text hash's unit of work (`monitor_text_hash::CHUNK`): a call hashes whole chunks.
const TEXT_HASH_CHUNK: u64 = 64 * 1024;
#[cfg(feature = "dsm-text-hash")]
const _: () = assert!(TEXT_HASH_CHUNK == monitor_text_hash::CHUNK);

/// A cross-view checker's `PASS_COST` (0 when it is not compiled in).
const fn cost(on: bool, which: u8) -> u64 {
    if !on {
        return 0;
    }
    match which {
        #[cfg(feature = "dsm-module-list")]
        0 => monitor_module_list::PASS_COST,
        #[cfg(feature = "dsm-hidden-tasks")]
        1 => monitor_hidden_tasks::PASS_COST,
        #[cfg(feature = "dsm-creds")]
        2 => monitor_creds::PASS_COST,
        _ => 0,
    }
}

const CHECKERS: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < TABLE.len() {
        n += TABLE[i].on as usize;
        i += 1;
    }
    n
};

/// The compiled-in checkers' budgets and names, in the runtime's order.
const ENABLED: ([u64; CHECKERS], [&str; CHECKERS]) = {
    let (mut budgets, mut names) = ([0u64; CHECKERS], [""; CHECKERS]);
    let (mut i, mut k) = (0, 0);
    while i < TABLE.len() {
        if TABLE[i].on {
            budgets[k] = TABLE[i].units;
            names[k] = TABLE[i].name;
            k += 1;
        }
        i += 1;
    }
    (budgets, names)
};
const BUDGETS: [u64; CHECKERS] = ENABLED.0;
const NAMES: [&str; CHECKERS] = ENABLED.1;

#[cfg(feature = "dsm-vectors")]
static VECTORS: super::cpu::Lock<monitor_vectors::VectorsChecker> =
    super::cpu::Lock::new(monitor_vectors::VectorsChecker::new());
#[cfg(feature = "dsm-syscall-table")]
static SYSCALLS: super::cpu::Lock<monitor_syscall_table::SyscallTableChecker> =
    super::cpu::Lock::new(monitor_syscall_table::SyscallTableChecker::new());
#[cfg(feature = "dsm-text-hash")]
static TEXT_HASH: super::cpu::Lock<monitor_text_hash::TextHashChecker> =
    super::cpu::Lock::new(monitor_text_hash::TextHashChecker::new());
#[cfg(feature = "dsm-module-list")]
static MODULE_LIST: super::cpu::Lock<monitor_module_list::ModuleListChecker> =
    super::cpu::Lock::new(monitor_module_list::ModuleListChecker::new(
        dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64,
    ));
#[cfg(feature = "dsm-hidden-tasks")]
static HIDDEN_TASKS: super::cpu::Lock<monitor_hidden_tasks::HiddenTasksChecker> =
    super::cpu::Lock::new(monitor_hidden_tasks::HiddenTasksChecker::new(
        dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64,
    ));
#[cfg(feature = "dsm-data-exec")]
static DATA_EXEC: super::cpu::Lock<monitor_data_exec::DataExecChecker> =
    super::cpu::Lock::new(monitor_data_exec::DataExecChecker::new());
#[cfg(feature = "dsm-creds")]
static CREDS: super::cpu::Lock<monitor_creds::CredsChecker> = super::cpu::Lock::new(
    monitor_creds::CredsChecker::new(dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64),
);

/// Checkers that read other vCPUs' registers (their pass captures them first).
/// The cross-view checkers need a vCPU at EL1 for the kernel's page tables (TTBR1).
const NEEDS_REGISTERS: [&str; 6] = [
    "vectors",
    "syscall-table",
    "module-list",
    "hidden-tasks",
    "creds",
    "data-exec",
];

/// Registers one core captured for the DSM.
struct Capture {
    /// Stored before the answer is published ([`QUESTIONS`]).
    regs: super::cpu::Lock<VcpuRegs>,
    /// This core is in [`hold`] (further up its stack, for a nested kick).
    in_hold: AtomicBool,
}

static CAPTURES: [Capture; MAX_CORES] = [const {
    Capture {
        regs: super::cpu::Lock::new(VcpuRegs {
            ttbr0: 0,
            ttbr1: 0,
            tcr: 0,
            sctlr: 0,
            vbar: 0,
            mair: 0,
            pc: 0,
            pstate: 0,
        }),
        in_hold: AtomicBool::new(false),
    }
}; MAX_CORES];

/// Which core was asked for its registers, and which question it answered
/// (`hvcore::capture`, loom-checked).
static QUESTIONS: Captures<MAX_CORES> = Captures::new();
/// Whether the checked partition's vCPUs are to be held in EL2, and which core holds for
/// which request (`hvcore::hold`, loom-checked).
static HOLD: Hold<MAX_CORES> = Hold::new();
/// The request that keeps a paused partition held, until the operator's resume.
static PAUSE_TICKET: super::cpu::Lock<Option<Ticket>> = super::cpu::Lock::new(None);
/// Index of the checked partition, or `usize::MAX`.
static CHECKED: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The core the runtime runs on, or `usize::MAX`.
static DSM_CORE: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The runtime is in a step on its core (a nested tick must not re-enter it).
static BUSY: AtomicBool = AtomicBool::new(false);

/// How long the runtime waits for a kicked core to capture its registers.
const CAPTURE_WAIT_US: u64 = 2_000;
/// How long a pause waits for the other cores to hold their vCPUs. Longer than a capture:
/// a failed pause drops a whole cross-view pass, and under QEMU on a busy host an idle
/// core's thread often takes more than 2 ms to wake. It only ever delays Linux.
const PAUSE_WAIT_US: u64 = 20_000;

/// What the DSM's handshakes with Linux's other cores cost, for the log: how many, and the
/// counter time they took in total and at most (a handshake's wait, or a pause's hold).
struct HandshakeTimes {
    count: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl HandshakeTimes {
    const fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    fn add(&self, ns: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn get(&self) -> (u64, u64, u64) {
        (
            self.count.load(Ordering::Relaxed),
            self.total_ns.load(Ordering::Relaxed) / 1000,
            self.max_ns.load(Ordering::Relaxed) / 1000,
        )
    }
}

/// Register captures (kick to every register set in).
static CAPTURE_TIMES: HandshakeTimes = HandshakeTimes::new();
/// Pauses: from the request to every other vCPU held.
static PAUSE_TIMES: HandshakeTimes = HandshakeTimes::new();
/// Pauses: from every vCPU held to the resume (the checker's work meanwhile).
static HELD_TIMES: HandshakeTimes = HandshakeTimes::new();
/// When the current pause had every vCPU held (counter ns; 0: none).
static HELD_SINCE_NS: AtomicU64 = AtomicU64::new(0);

/// Logs the handshake totals so far (with the register checks' pass lines).
fn log_handshakes() {
    let (captures, capture_us, capture_max) = CAPTURE_TIMES.get();
    let (pauses, pause_us, pause_max) = PAUSE_TIMES.get();
    let (_, held_us, held_max) = HELD_TIMES.get();
    info!(
        "dsm handshakes: {} captures {} us (max {} us); {} pauses {} us to hold (max {} us), held {} us (max {} us)",
        captures,
        capture_us,
        capture_max,
        pauses,
        pause_us,
        pause_max,
        held_us,
        held_max
    );
}

struct ArchBackend {
    partition: &'static Partition,
    /// The hold this backend asked for ([`Backend::pause`]), until its resume.
    ticket: Option<Ticket>,
}

fn own_regs() -> VcpuRegs {
    VcpuRegs {
        ttbr0: TTBR0_EL1.get(),
        ttbr1: TTBR1_EL1.get(),
        tcr: TCR_EL1.get(),
        sctlr: SCTLR_EL1.get(),
        vbar: VBAR_EL1.get(),
        mair: MAIR_EL1.get(),
        pc: ELR_EL2.get(),
        pstate: SPSR_EL2.get(),
    }
}

impl ArchBackend {
    fn index(&self) -> usize {
        usize::from(self.partition.index)
    }

    /// Cores other than this one that run a vCPU of the partition now.
    fn other_cores(&self) -> impl Iterator<Item = usize> + '_ {
        let here = cpu::core_index();
        let index = self.index();
        self.partition
            .vcpus
            .iter()
            .map(|v| usize::from(v.core))
            .filter(move |&c| {
                c != here && percore::CORES[c].running().is_some_and(|(p, _)| p == index)
            })
    }

    /// Asks every other core of the partition for its registers and waits (boundedly).
    fn capture_all(&self) {
        let generation = QUESTIONS.ask(self.other_cores());
        for core in self.other_cores() {
            super::kick(core);
        }
        let t0 = now_ns();
        let deadline = timer::uptime_us() + CAPTURE_WAIT_US;
        while timer::uptime_us() < deadline
            && self
                .other_cores()
                .any(|c| !QUESTIONS.answered(c, generation))
        {
            cpu::relax();
        }
        CAPTURE_TIMES.add(now_ns().wrapping_sub(t0));
    }
}

impl Backend for ArchBackend {
    fn read_ram(&self, pa: u64, buf: &mut [u8]) {
        // SAFETY: `LinuxGuest` checked that `[pa, pa + len)` lies in the partition's RAM,
        // which EL2 maps as normal memory at the same address; a guest may change it
        // meanwhile, which only changes the bytes read (plain bytes, no invariants).
        unsafe { super::copy::copy_from(pa as usize, buf) };
    }

    fn regs(&self, vcpu: usize) -> Option<VcpuRegs> {
        let core = usize::from(self.partition.vcpus.get(vcpu)?.core);
        let running = percore::CORES[core]
            .running()
            .is_some_and(|(p, v)| p == self.index() && v == vcpu);
        if !running {
            return None;
        }
        if core == cpu::core_index() {
            return Some(own_regs());
        }
        QUESTIONS.current(core).then(|| *CAPTURES[core].regs.lock())
    }

    fn pause(&mut self) -> bool {
        // One request per pause: a second pause without a resume keeps the first.
        let ticket = self.ticket.take().unwrap_or_else(|| HOLD.request());
        let generation = ticket.generation();
        self.ticket = Some(ticket);
        for core in self.other_cores() {
            super::kick(core);
        }
        let t0 = now_ns();
        let deadline = timer::uptime_us() + PAUSE_WAIT_US;
        while timer::uptime_us() < deadline {
            if self.other_cores().all(|c| HOLD.holds(c, generation)) {
                let held = now_ns();
                PAUSE_TIMES.add(held.wrapping_sub(t0));
                HELD_SINCE_NS.store(held, Ordering::Relaxed);
                return true;
            }
            cpu::relax();
        }
        PAUSE_TIMES.add(now_ns().wrapping_sub(t0));
        false
    }

    fn resume(&mut self) {
        let since = HELD_SINCE_NS.swap(0, Ordering::Relaxed);
        if since != 0 {
            HELD_TIMES.add(now_ns().wrapping_sub(since));
        }
        if let Some(ticket) = self.ticket.take() {
            HOLD.release(ticket);
        }
        // The cores go back once no other hold is in force (a pause's, say).
        if !HOLD.in_force() {
            for core in self.other_cores() {
                super::kick(core);
            }
        }
    }

    /// Stage-2 permissions change with the partition's other vCPUs held in EL2, so no
    /// vCPU walks a block while it is split (break-before-make, see `guest::stage2_protect`).
    fn protect(&mut self, base: u64, size: u64, perms: Perms) -> bool {
        if !self.pause() {
            self.resume();
            warn!(
                "dsm: cannot change stage 2 for {:#x}..{:#x} now: Linux's other vCPUs were not held in time",
                base,
                base + size
            );
            return false;
        }
        let ok = guest::stage2_protect(self.index(), base, size, perms.write, perms.exec);
        self.resume();
        if ok && !perms.write {
            info!(
                "dsm: writes to {:#x}..{:#x} trap (stage 2 read-only)",
                base,
                base + size
            );
        }
        // Making one page executable again (a fetch let through) is logged by the caller.
        if ok && !perms.exec {
            info!(
                "dsm: instruction fetches from {:#x}..{:#x} trap (stage 2 execute-never)",
                base,
                base + size
            );
        }
        ok
    }

    fn sha256_compress(&self, state: &mut [u32; 8], blocks: &[[u8; 64]]) {
        super::sha256::compress(state, blocks);
    }
}

struct State {
    guest: LinuxGuest<ArchBackend>,
    runtime: Runtime<CHECKERS>,
    /// Restarts of the partition already seen.
    resets: u32,
    /// The panic check and progress watchdog of this boot of Linux.
    health: Health,
}

/// What the DSM watches of Linux's life, per boot.
struct Health {
    watchdog: Watchdog,
    /// Found once the DSM knows the kernel's place; `Err` once looking failed (no retry
    /// until the next boot).
    vitals: Option<Result<Vitals, ()>>,
    /// A verdict was handed to the policy: nothing more until the next boot.
    reported: bool,
}

impl Health {
    const fn new(timeout_ms: u64) -> Self {
        Self {
            watchdog: Watchdog::new(timeout_ms),
            vitals: None,
            reported: false,
        }
    }
}

static STATE: super::cpu::Lock<Option<State>> = super::cpu::Lock::new(None);

/// Sets the runtime up for the first Linux partition with `dsm` settings.
pub fn init() {
    let Some((boot, settings)) = LINUX.iter().find_map(|l| Some((l, l.dsm?))) else {
        return;
    };
    let Some(partition) = CONFIG.partitions.get(usize::from(boot.partition)) else {
        return;
    };
    if super::linux::dsm_off_for_run() {
        info!(
            "dsm: off for this run (--no-dsm): not checking partition {}",
            partition.name
        );
        return;
    }
    let Some(symbols) = KERNEL else {
        return;
    };
    super::sha256::init(now_ns);
    let core = match crate::dsm::placement(&CONFIG, partition) {
        Ok(core) => core,
        Err(why) => {
            warn!(
                "dsm: not checking partition {}: {}",
                partition.name,
                match why {
                    crate::dsm::PlacementError::NoVcpu => "no vCPU",
                    crate::dsm::PlacementError::SharedCore(_) =>
                        "its vCPU 0 shares its core with another partition",
                }
            );
            return;
        }
    };
    let mut ram: heapless::Vec<PhysRange, { crate::dsm::guest::MAX_RAM }> = heapless::Vec::new();
    for r in partition.ram {
        let _ = ram.push(PhysRange::new(r.base, r.size));
    }
    let guest = LinuxGuest::new(
        ArchBackend {
            partition,
            ticket: None,
        },
        &ram,
        partition.vcpus.len(),
        symbols,
        boot.kernel.base,
    );
    let policy = if super::linux::dsm_pause_for_run() {
        DsmPolicy::Pause
    } else {
        settings.policy
    };
    let mut runtime =
        Runtime::new(settings.period_ms, policy, BUDGETS).with_share(settings.share_permille);
    let mut k = 0;
    for entry in TABLE {
        if entry.on {
            if entry.slice_us > 0 {
                runtime = runtime.with_slice(k, entry.slice_us * 1000, entry.least);
            }
            if entry.period_ms > 0 && entry.period_ms < settings.period_ms {
                runtime = runtime.with_period(k, entry.period_ms);
                info!(
                    "dsm: checker {} every {} ms (its own period)",
                    entry.name, entry.period_ms
                );
            }
            k += 1;
        }
    }
    *STATE.lock() = Some(State {
        guest,
        runtime,
        resets: 0,
        health: Health::new(u64::from(boot.watchdog_s) * 1000),
    });
    {
        let mut stats = STATS.lock();
        for (slot, entry) in stats.iter_mut().zip(TABLE.iter().filter(|e| e.on)) {
            slot.name = entry.name;
        }
    }
    POLICY.store(policy as u8, Ordering::Relaxed);
    PHASE.store(PHASE_BOOTING, Ordering::Release);
    CHECKED.store(usize::from(partition.index), Ordering::Release);
    DSM_CORE.store(usize::from(core), Ordering::Release);
    info!(
        "dsm: checking partition {} from core {} every {} ms, policy {}, {} checkers, share {}/1000 of the core",
        partition.name,
        core,
        settings.period_ms,
        policy.name(),
        CHECKERS,
        settings.share_permille
    );
}

/// The partition `index` stopped: if the DSM checked it, its handshake totals go to the log.
pub fn partition_stopped(index: usize) {
    if CHECKED.load(Ordering::Acquire) == index {
        // A stopped partition is not paused: a restart must not find its cores held.
        release_pause();
        PHASE.store(PHASE_STOPPED, Ordering::Release);
        // Nothing serves a pause or resume of it any more.
        drop_check("the partition stopped first");
        for (asked, slot) in [
            (&PAUSE_ASKED, &PAUSE_ANSWER),
            (&RESUME_ASKED, &RESUME_ANSWER),
        ] {
            if asked.swap(false, Ordering::AcqRel) {
                let outcome = Outcome::Err(ErrorCode::InvalidState);
                answer(slot, outcome, format_args!("the partition stopped first"));
            }
        }
        log_handshakes();
    }
}

/// Partition `index` restarted (none of its vCPUs runs yet): if the DSM checks it, it forgets
/// the old kernel and its watches and takes new baselines once the new one has booted.
pub fn partition_restarted(index: usize) {
    if CHECKED.load(Ordering::Acquire) != index {
        return;
    }
    if let Some(state) = STATE.lock().as_mut() {
        rebaseline(state, super::linux::resets(index));
        publish(&state.runtime);
    }
}

/// Back to the booting phase for boot `resets` of the checked partition.
fn rebaseline(state: &mut State, resets: u32) {
    state.resets = resets;
    state.health = Health::new(state.health.watchdog.timeout_ms());
    state.guest.forget_kernel();
    state.runtime.restart();
    drop_check("the partition restarted first");
}

/// The DSM's state of partition `index` for the restart report: its phase and watches
/// (`None`: it does not check it).
pub fn counts(index: usize) -> Option<(&'static str, usize)> {
    if CHECKED.load(Ordering::Acquire) != index {
        return None;
    }
    let lock = STATE.lock();
    let state = lock.as_ref()?;
    Some((
        phase_name(PHASE.load(Ordering::Acquire)),
        state.guest.watch_count(),
    ))
}

fn phase_name(phase: u8) -> &'static str {
    match phase {
        PHASE_BOOTING => "booting",
        PHASE_RUNNING => "running",
        PHASE_PAUSED => "paused",
        PHASE_STOPPED => "stopped",
        _ => "off",
    }
}

/// Whether the DSM needs `core`'s EL2 tick.
pub fn runs_on(core: u8) -> bool {
    DSM_CORE.load(Ordering::Acquire) == usize::from(core)
}

/// The kick handler's part: capture this core's registers if asked, and stay in EL2 while
/// the checked partition is paused.
pub fn on_kick(running: Option<(usize, usize)>) {
    let checked = CHECKED.load(Ordering::Acquire);
    if running.is_none_or(|(p, _)| p != checked) {
        return;
    }
    let core = cpu::core_index();
    if let Some(generation) = QUESTIONS.pending(core) {
        *CAPTURES[core].regs.lock() = own_regs();
        QUESTIONS.answer(core, generation);
        // The DSM's core waits for this: under round-robin `-icount`, hand it the turn now
        // rather than after the rest of this vCPU's slice (about 1.2 ms a capture before).
        cpu::relax();
    }
    if core == DSM_CORE.load(Ordering::Acquire) {
        serve_resume();
    }
    if HOLD.in_force() {
        hold(checked);
    }
}

/// The operator asked to resume the paused partition (served on the DSM's core).
static RESUME_ASKED: AtomicBool = AtomicBool::new(false);
/// The pending resume found the runtime locked (logged once per resume).
static RESUME_WAITED: AtomicBool = AtomicBool::new(false);

/// An operator command from the console: resume the partition the DSM paused. Console input
/// arrives on the core of Linux's vCPU 0, the DSM's; the request is served there at once, or
/// at the next kick if the runtime is busy meanwhile.
/// `answer`: the management request to answer once it is served.
pub fn operator_resume(answer_to: Option<u8>) {
    let dsm_core = DSM_CORE.load(Ordering::Acquire);
    if dsm_core >= MAX_CORES {
        warn!("operator: resume asked, but the DSM checks no partition");
        if let Some(seq) = answer_to {
            let outcome = Outcome::Err(ErrorCode::NotSupported);
            log::answer(
                Head { seq, outcome },
                format_args!("the DSM checks no partition"),
            );
        }
        return;
    }
    info!("operator: resume asked");
    if let Some(seq) = answer_to {
        RESUME_ANSWER.store(u32::from(seq), Ordering::Release);
    }
    RESUME_ASKED.store(true, Ordering::Release);
    if dsm_core == cpu::core_index() {
        serve_resume();
    } else {
        super::kick(dsm_core);
    }
}

/// Resumes the paused partition if the operator asked: the runtime checks again, the held
/// vCPUs go back to Linux. Without a pause the request is only logged.
fn serve_resume() {
    if !RESUME_ASKED.load(Ordering::Acquire) {
        return;
    }
    // Never wait here: this may run nested in a hold or a trap on this core.
    let Some(mut lock) = STATE.try_lock() else {
        if !RESUME_WAITED.swap(true, Ordering::Relaxed) {
            info!("operator: the resume waits for the DSM's runtime, busy on another core");
        }
        return;
    };
    RESUME_WAITED.store(false, Ordering::Relaxed);
    RESUME_ASKED.store(false, Ordering::Release);
    let Some(state) = lock.as_mut() else {
        return;
    };
    let partition = state.guest.backend_mut().partition;
    if state.runtime.phase() != Phase::Paused {
        warn!(
            "operator: resume asked, but partition {} is not paused by the DSM",
            partition.name
        );
        answer(
            &RESUME_ANSWER,
            Outcome::Err(ErrorCode::InvalidState),
            format_args!("{} is not paused", partition.name),
        );
        return;
    }
    state.runtime.resume();
    publish(&state.runtime);
    drop(lock);
    release_pause();
    for vcpu in partition.vcpus {
        let core = usize::from(vcpu.core);
        if core != cpu::core_index() {
            super::kick(core);
        }
    }
    info!(
        "partition {} resumed by the DSM (operator command)",
        partition.name
    );
    log::event(format_args!("partition-resumed name={}", partition.name));
    answer(
        &RESUME_ANSWER,
        Outcome::Ok,
        format_args!("{} resumed", partition.name),
    );
}

/// Ends the hold that keeps a paused partition's vCPUs in EL2, if there is one.
fn release_pause() {
    if let Some(ticket) = PAUSE_TICKET.lock().take() {
        HOLD.release(ticket);
    }
}

/// Keeps this core in EL2 while a hold is in force and the partition is not stopped.
/// Interrupts that arrive meanwhile are taken as usual (a guest's go to its list registers
/// for later).
fn hold(partition: usize) {
    let core = cpu::core_index();
    let c = &CAPTURES[core];
    if c.in_hold.swap(true, Ordering::AcqRel) {
        return; // already holding further up this stack
    }
    let dsm_core = core == DSM_CORE.load(Ordering::Acquire);
    // `stay` acknowledges the request in force: the requester counts this core as held
    // from then until it releases it.
    while HOLD.stay(core) && !guest::is_stopped(partition) {
        cpu::wait_for_interrupt();
        super::handle_pending_interrupts();
        // A resume that found the runtime locked when it came is retried only at a kick, and
        // nothing kicks the DSM's own core while it holds: serve it here.
        if dsm_core {
            serve_resume();
        }
        // QEMU counts a virtual interrupt pending in the list registers as work, so that
        // WFI returns at once while the held vCPU has one; under round-robin `-icount` this
        // core then spun until QEMU's 100 ms kick before the DSM's core ran again (holds of
        // 0.3 to 0.9 s for a 1 ms pass). `yield` hands the turn on.
        cpu::relax();
    }
    c.in_hold.store(false, Ordering::Release);
}

fn now_ns() -> u64 {
    let freq = timer::frequency_hz().max(1);
    ((u128::from(CNTPCT_EL0.get()) * 1_000_000_000) / u128::from(freq)) as u64
}

/// The EL2 tick: on the DSM's core, while it runs the checked Linux's vCPU 0, one turn of
/// the runtime.
pub fn on_tick(running: Option<(usize, usize)>) {
    let core = cpu::core_index();
    let checked = CHECKED.load(Ordering::Acquire);
    if DSM_CORE.load(Ordering::Acquire) != core || running != Some((checked, 0)) {
        return;
    }
    if BUSY.swap(true, Ordering::AcqRel) {
        return;
    }
    let operator = PAUSE_ASKED.swap(false, Ordering::AcqRel);
    let response = if operator { serve_pause() } else { step() };
    let unhealthy = if response.is_none() {
        watch_health()
    } else {
        None
    };
    BUSY.store(false, Ordering::Release);
    if let Some((partition, response)) = response {
        let cause = if operator {
            "(operator command)"
        } else {
            "by the DSM"
        };
        respond(partition, response, cause);
    }
    if let Some((partition, verdict)) = unhealthy {
        // The partition's on_panic policy: this core runs its vCPU 0, as a restart needs.
        guest::on_unhealthy(partition, verdict);
    }
}

/// One sample of Linux's panic state and progress, while it runs past its baselines (its
/// kernel found); a verdict other than alive once per boot. On the DSM's core with vCPU 0
/// running here, so its virtual timer is in the registers.
fn watch_health() -> Option<(&'static Partition, Verdict)> {
    let mut lock = STATE.lock();
    let state = lock.as_mut()?;
    let partition = state.guest.backend_mut().partition;
    let health = &mut state.health;
    if health.reported || state.runtime.phase() != Phase::Running {
        // Held by a pause, booting, stopped: Linux is not supposed to make progress.
        health.watchdog.unwatched();
        return None;
    }
    let vitals = *health.vitals.get_or_insert_with(|| {
        let found = Vitals::locate(&state.guest).map_err(|_| ());
        match found {
            Ok(_) => info!(
                "dsm: watching partition {}: its panic_cpu, and its progress (watchdog {} ms)",
                partition.name,
                health.watchdog.timeout_ms()
            ),
            Err(()) => warn!(
                "dsm: partition {}: panic_cpu or jiffies not found: no panic check or watchdog this boot",
                partition.name
            ),
        }
        found
    });
    let vitals = vitals.ok()?;
    let (panic_cpu, jiffies) = vitals.read(&state.guest);
    let sample = Sample {
        now_ms: timer::uptime_us() / 1000,
        panic_cpu,
        jiffies,
        tick_overdue: health::tick_overdue(
            CNTV_CTL_EL0.get(),
            CNTV_CVAL_EL0.get(),
            CNTVCT_EL0.get(),
            timer::frequency_hz(),
        ),
    };
    let verdict = health.watchdog.sample(sample);
    if verdict == Verdict::Alive {
        return None;
    }
    health.reported = true;
    Some((partition, verdict))
}

/// The operator asked to pause the checked partition (served at the DSM's next tick).
static PAUSE_ASKED: AtomicBool = AtomicBool::new(false);

/// An operator command from the console: pause the partition the DSM checks, as a finding
/// under policy `pause` would. It is served at the DSM's next tick on its core, where a
/// finding's pause starts too, so both take the same path.
/// `answer_to`: the management request to answer once it is served.
pub fn operator_pause(answer_to: Option<u8>) {
    if DSM_CORE.load(Ordering::Acquire) >= MAX_CORES {
        warn!("operator: pause asked, but the DSM checks no partition");
        if let Some(seq) = answer_to {
            let outcome = Outcome::Err(ErrorCode::NotSupported);
            log::answer(
                Head { seq, outcome },
                format_args!("the DSM checks no partition"),
            );
        }
        return;
    }
    info!("operator: pause asked");
    if let Some(seq) = answer_to {
        PAUSE_ANSWER.store(u32::from(seq), Ordering::Release);
    }
    PAUSE_ASKED.store(true, Ordering::Release);
}

/// The runtime's answer to the operator's pause: pause a running partition, else say why not.
fn serve_pause() -> Option<(&'static Partition, Response)> {
    let mut lock = STATE.lock();
    let state = lock.as_mut()?;
    let partition = state.guest.backend_mut().partition;
    let response = state.runtime.pause();
    publish(&state.runtime);
    if let Some((code, why)) = response
        .is_none()
        .then(|| state.runtime.pause_refusal())
        .flatten()
    {
        warn!(
            "operator: pause asked, but partition {} is not running under the DSM (booting, paused or stopped)",
            partition.name
        );
        answer(
            &PAUSE_ANSWER,
            Outcome::Err(code),
            format_args!("cannot pause {}: {}", partition.name, why),
        );
    }
    response.map(|r| (partition, r))
}

/// Applies the policy's response on this core: stops the partition, or holds its other
/// vCPUs on their cores and then this one here (`cause` says who asked, for the log).
fn respond(partition: &'static Partition, response: Response, cause: &str) {
    match response {
        Response::Stop => {
            guest::stop_partition(partition, guest::STOPPED_BY_HYPERVISOR, "dsm alert")
        }
        Response::Pause => {
            let mut others = ArchBackend {
                partition,
                ticket: None,
            };
            let held = others.pause();
            // The pause's request stays in force until the operator's resume.
            if let Some(ticket) = others.ticket.take() {
                if let Some(earlier) = PAUSE_TICKET.lock().replace(ticket) {
                    HOLD.release(earlier);
                }
            }
            if !held {
                warn!(
                    "partition {}: a vCPU did not stop for the pause",
                    partition.name
                );
            }
            info!("partition {} paused {}", partition.name, cause);
            log::event(format_args!("partition-paused name={}", partition.name));
            // Before the hold, which lasts until the resume. A finding's pause answers a
            // pending operator's pause too: the partition is paused either way.
            answer(
                &PAUSE_ANSWER,
                Outcome::Ok,
                format_args!("{} paused", partition.name),
            );
            hold(usize::from(partition.index));
        }
    }
}

/// Watched writes judged legitimate and performed.
static PERFORMED: AtomicU64 = AtomicU64::new(0);

/// What became of a write that faulted at stage 2 (see [`on_write_fault`]).
pub enum WriteFault {
    /// Not a watched page of the checked partition.
    NotWatched,
    /// Performed (or skipped) and the vCPU moved past it.
    Done,
    /// Refused; the DSM stopped the partition.
    Stopped,
}

/// Locks the runtime from a trap on a Linux core. The DSM core may hold it while it pauses
/// Linux, so kicks are taken meanwhile (a pause holds this core here until it ends).
fn lock_state() -> super::cpu::LockGuard<'static, Option<State>> {
    loop {
        if let Some(s) = STATE.try_lock() {
            return s;
        }
        super::handle_pending_interrupts();
        core::hint::spin_loop();
    }
}

/// A write to a stage-2 read-only page of the checked partition: the event path. The store
/// is decoded (syndrome, else the instruction at the guest PC), each watched part is judged
/// by the checkers before it lands, and then either performed from EL2 with the vCPU moved
/// past the instruction, or refused by the policy (alert already raised).
pub fn on_write_fault(
    frame: &mut TrapFrame,
    partition: &'static Partition,
    vcpu: usize,
    abort: &DataAbort,
    far: u64,
    hpfar: u64,
) -> WriteFault {
    let t0 = now_ns();
    if CHECKED.load(Ordering::Acquire) != usize::from(partition.index) {
        return WriteFault::NotWatched;
    }
    let ipa = fault_ipa(hpfar, far);
    let mut lock = lock_state();
    let Some(state) = lock.as_mut() else {
        return WriteFault::NotWatched;
    };
    if !state.guest.page_watched(ipa) {
        return WriteFault::NotWatched;
    }
    let store = match watch::from_syndrome(abort, hpfar, far, &frame.x) {
        Ok(Some(store)) => Ok(store),
        Ok(None) => fetch_and_decode(&state.guest, frame, ipa),
        Err(DecodeError::CacheMaintenance) => {
            // `dc ivac` needs write permission; skipping it loses no data.
            frame.elr += 4;
            return WriteFault::Done;
        }
        Err(e) => Err(e),
    };
    let base = WatchEvent {
        id: WatchId(0),
        pa: ipa,
        access: Access::Write,
        vcpu,
        pc: frame.elr,
        value: 0,
        len: 0,
    };
    let mut events: heapless::Vec<WatchEvent, 2> = heapless::Vec::new();
    match &store {
        Ok(store) => {
            for part in store.parts() {
                if let Some(id) = state.guest.watched(part.ipa, u64::from(part.len)) {
                    let _ = events.push(WatchEvent {
                        id,
                        pa: part.ipa,
                        value: part.value,
                        len: part.len,
                        ..base
                    });
                }
            }
        }
        // Undecodable: judged as a write of unknown size and value.
        Err(_) => {
            if let Some(id) = state.guest.watched(ipa, 1) {
                let _ = events.push(WatchEvent { id, ..base });
            }
        }
    }
    let (perform, response, paused) = judge(state, partition, t0, &events);
    drop(lock);
    match (store, perform) {
        (Ok(store), true) => {
            perform_store(frame, &store);
            let n = PERFORMED.fetch_add(1, Ordering::Relaxed) + 1;
            // The first, then every 10,000th (ftrace alone patches ~40,000 sites).
            if n % 10_000 == 1 {
                info!(
                    "dsm: watched write #{} at {:#x} judged and performed (event_ns={})",
                    n,
                    ipa,
                    now_ns().wrapping_sub(t0)
                );
            }
            WriteFault::Done
        }
        (Err(_), true) => {
            guest_warn!(
                usize::from(partition.index),
                Class::Stage2Abort,
                "partition {} vcpu {}: undecodable write to watched page {:#x} (pc {:#x}) skipped",
                partition.name,
                vcpu,
                ipa,
                frame.elr
            );
            frame.elr += 4;
            WriteFault::Done
        }
        (_, false) => match refuse(partition, response, paused) {
            Refusal::Resumed => {
                // The refused write is dropped, never made (retried, it would only raise the
                // same alert and pause again).
                frame.elr += 4;
                WriteFault::Done
            }
            Refusal::Held => WriteFault::Done,
            Refusal::Stopped => WriteFault::Stopped,
        },
    }
}

/// What a refused access led to (see [`refuse`]).
enum Refusal {
    /// Its alert paused the partition, and the operator resumed it.
    Resumed,
    /// The partition was paused already; this vCPU was held until the resume.
    Held,
    /// The partition is stopped.
    Stopped,
}

/// Carries out the policy's answer to a refused access (`paused`: the partition was paused
/// by an earlier alert).
fn refuse(partition: &'static Partition, response: Option<Response>, paused: bool) -> Refusal {
    match (response, paused) {
        (Some(Response::Pause), _) => {
            respond(partition, Response::Pause, "by the DSM");
            Refusal::Resumed
        }
        (None, true) => {
            hold(usize::from(partition.index));
            Refusal::Held
        }
        (Some(Response::Stop), _) => {
            respond(partition, Response::Stop, "by the DSM");
            Refusal::Stopped
        }
        (None, false) => Refusal::Stopped,
    }
}

/// The checkers judge trapped accesses (`t0`: when the fault was taken, for the alert's
/// `event_ns`). Returns whether every access may go ahead, the response the policy asks
/// for, and whether the partition is paused.
fn judge(
    state: &mut State,
    partition: &'static Partition,
    t0: u64,
    events: &[WatchEvent],
) -> (bool, Option<Response>, bool) {
    let mut allow = true;
    let mut response = None;
    let mut out = |event: Event| match event {
        Event::Alert(finding) => alert_event(partition, &finding, now_ns().wrapping_sub(t0)),
        other => {
            if let Some(r) = report(partition, other) {
                response = Some(r);
            }
        }
    };
    let mut drain = |g: &mut LinuxGuest<ArchBackend>| g.take_finding();
    let (runtime, guest) = (&mut state.runtime, &mut state.guest);
    with_checkers(|checkers| {
        for event in events {
            allow &= runtime.on_watch(guest, &mut drain, checkers, event, &mut out);
        }
    });
    publish(&state.runtime);
    (allow, response, state.runtime.phase() == Phase::Paused)
}

/// What became of an instruction fetch that faulted at stage 2 (see [`on_exec_fault`]).
pub enum ExecFault {
    /// Not an execute-watched page of the checked partition.
    NotWatched,
    /// Let through (the page is executable from now on) or held by a pause; the vCPU
    /// retries the fetch when it runs again.
    Done,
    /// Refused; the DSM stopped the partition.
    Stopped,
}

/// Fetches let through on execute-watched pages (policy `log`, or no checker objected).
static LET_THROUGH: AtomicU64 = AtomicU64::new(0);

/// An instruction fetch from a stage-2 execute-never page of the checked partition: the
/// event path for execute watches. The checkers judge it before any instruction there runs;
/// then the page is made executable (so the vCPU's retry runs it), or the policy stops or
/// pauses Linux (alert already raised). A paused vCPU retries the fetch after the resume
/// and faults again; the checker reports a page once, so that fetch is let through.
pub fn on_exec_fault(
    frame: &mut TrapFrame,
    partition: &'static Partition,
    vcpu: usize,
    ipa: u64,
) -> ExecFault {
    let t0 = now_ns();
    if CHECKED.load(Ordering::Acquire) != usize::from(partition.index) {
        return ExecFault::NotWatched;
    }
    let mut lock = lock_state();
    let Some(state) = lock.as_mut() else {
        return ExecFault::NotWatched;
    };
    let Some(id) = state.guest.exec_watched(ipa) else {
        return ExecFault::NotWatched;
    };
    let event = WatchEvent {
        id,
        pa: ipa,
        access: Access::Execute,
        vcpu,
        pc: frame.elr,
        value: 0,
        len: 0,
    };
    let (allow, response, paused) = judge(state, partition, t0, &[event]);
    if allow {
        // Stage 2 changes with Linux's other vCPUs held; this one is in EL2 already.
        let lifted = state.guest.lift_exec_page(ipa);
        drop(lock);
        let n = LET_THROUGH.fetch_add(1, Ordering::Relaxed) + 1;
        guest_warn!(
            usize::from(partition.index),
            Class::Stage2Abort,
            "dsm: fetch #{} from execute-watched page {:#x} (pc {:#x}) let through{}",
            n,
            ipa & !0xFFF,
            frame.elr,
            if lifted {
                "; the page stays executable"
            } else {
                "; stage 2 unchanged, it will fault again"
            }
        );
        return ExecFault::Done;
    }
    drop(lock);
    match refuse(partition, response, paused) {
        Refusal::Resumed | Refusal::Held => ExecFault::Done,
        Refusal::Stopped => ExecFault::Stopped,
    }
}

/// The store at the guest PC, fetched through the vCPU's own stage-1 tables.
fn fetch_and_decode(
    guest: &LinuxGuest<ArchBackend>,
    frame: &TrapFrame,
    ipa: u64,
) -> Result<Store, DecodeError> {
    let s1 = dsm_api::Stage1Regs {
        ttbr0: TTBR0_EL1.get(),
        ttbr1: TTBR1_EL1.get(),
        tcr: TCR_EL1.get(),
    };
    let mut read = |pa| {
        guest
            .read_u64_phys(pa)
            .map_err(|_| dsm_api::WalkError::OutsideRam { pa })
    };
    let t =
        dsm_api::walk::translate(&s1, frame.elr, &mut read).map_err(|_| DecodeError::Unknown)?;
    let mut insn = [0u8; 4];
    guest
        .read_phys(t.pa, &mut insn)
        .map_err(|_| DecodeError::Unknown)?;
    watch::decode(u32::from_le_bytes(insn), &frame.x, guest_sp(frame), ipa)
}

/// The stack pointer of the EL the guest trapped from (`SPSR_EL2.M`: EL1h uses `SP_EL1`).
fn guest_sp(frame: &TrapFrame) -> u64 {
    if frame.spsr & 0xF == 0b0101 {
        SP_EL1.get()
    } else {
        SP_EL0.get()
    }
}

/// Performs a judged store in the guest's RAM from EL2 and moves the vCPU past it.
fn perform_store(frame: &mut TrapFrame, store: &Store) {
    for part in store.parts() {
        let addr = part.ipa as usize;
        let aligned = part.ipa % u64::from(part.len) == 0;
        // SAFETY: the part lies on a watched page, inside the partition's RAM (watches are
        // only set there), which EL2 maps as normal memory at the same address. An aligned
        // store of the guest's size keeps it single-copy atomic (a text patch must be).
        unsafe {
            match (part.len, aligned) {
                (8, true) => core::ptr::write_volatile(addr as *mut u64, part.value),
                (4, true) => core::ptr::write_volatile(addr as *mut u32, part.value as u32),
                (2, true) => core::ptr::write_volatile(addr as *mut u16, part.value as u16),
                _ => {
                    for i in 0..usize::from(part.len) {
                        let byte = (part.value >> (8 * i)) as u8;
                        core::ptr::write_volatile((addr + i) as *mut u8, byte);
                    }
                }
            }
        }
    }
    if let Some((reg, value)) = store.writeback {
        match frame.x.get_mut(usize::from(reg)) {
            Some(x) => *x = value,
            None if frame.spsr & 0xF == 0b0101 => SP_EL1.set(value),
            None => SP_EL0.set(value),
        }
    }
    frame.elr += 4;
}

/// An alert of the event path, with the time from the fault to it.
fn alert_event(partition: &Partition, finding: &Finding, ns: u64) {
    count_finding(finding);
    let mut text: heapless::String<192> = heapless::String::new();
    let _ = write!(text, "{finding}");
    error!("dsm ALERT {} (event_ns={})", text.as_str(), ns);
    log::event(format_args!(
        "dsm-alert checker={} partition={}",
        finding.checker, partition.name
    ));
}

fn step() -> Option<(&'static Partition, Response)> {
    let mut state = STATE.lock();
    let state = state.as_mut()?;
    let partition = state.guest.backend_mut().partition;
    let resets = super::linux::resets(usize::from(partition.index));
    if resets != state.resets {
        // Missed at the restart itself (`partition_restarted`).
        rebaseline(state, resets);
    }
    let now_us = timer::uptime_us();
    arm_check(&mut state.runtime, now_us);
    let response = with_checkers(|checkers| run_step(state, partition, now_us, checkers));
    publish(&state.runtime);
    // Before the response: a finding of the check may stop the partition.
    answer_check();
    response
}

/// Runs `f` on the compiled-in checkers, locked in their turn order (after `STATE`).
fn with_checkers<R>(f: impl FnOnce(&mut [&mut dyn Checker]) -> R) -> R {
    #[cfg(feature = "dsm-vectors")]
    let mut vectors = VECTORS.lock();
    #[cfg(feature = "dsm-syscall-table")]
    let mut syscalls = SYSCALLS.lock();
    #[cfg(feature = "dsm-text-hash")]
    let mut text_hash = TEXT_HASH.lock();
    #[cfg(feature = "dsm-module-list")]
    let mut module_list = MODULE_LIST.lock();
    #[cfg(feature = "dsm-hidden-tasks")]
    let mut hidden_tasks = HIDDEN_TASKS.lock();
    #[cfg(feature = "dsm-creds")]
    let mut creds = CREDS.lock();
    #[cfg(feature = "dsm-data-exec")]
    let mut data_exec = DATA_EXEC.lock();
    let mut checkers: heapless::Vec<&mut dyn Checker, 7> = heapless::Vec::new();
    #[cfg(feature = "dsm-vectors")]
    let _ = checkers.push(&mut *vectors);
    #[cfg(feature = "dsm-syscall-table")]
    let _ = checkers.push(&mut *syscalls);
    #[cfg(feature = "dsm-text-hash")]
    let _ = checkers.push(&mut *text_hash);
    #[cfg(feature = "dsm-module-list")]
    let _ = checkers.push(&mut *module_list);
    #[cfg(feature = "dsm-hidden-tasks")]
    let _ = checkers.push(&mut *hidden_tasks);
    #[cfg(feature = "dsm-creds")]
    let _ = checkers.push(&mut *creds);
    #[cfg(feature = "dsm-data-exec")]
    let _ = checkers.push(&mut *data_exec);
    f(&mut checkers[..])
}

fn run_step(
    state: &mut State,
    partition: &'static Partition,
    now_us: u64,
    checkers: &mut [&mut dyn Checker],
) -> Option<(&'static Partition, Response)> {
    let mut response = None;
    let mut out = |event: Event| {
        if let Some(r) = report(partition, event) {
            response = Some((partition, r));
        }
    };
    let mut drain = |g: &mut LinuxGuest<ArchBackend>| g.take_finding();
    match state.runtime.phase() {
        Phase::Booting => {
            if !state.guest.boot_complete(0) {
                return None;
            }
            if let Ok(k) = state.guest.kernel() {
                info!(
                    "dsm: partition {} booted: _text at VA {:#x} (slide {:#x}), PA {:#x}; taking baselines",
                    partition.name,
                    k.text_va,
                    k.slide(),
                    k.text_pa
                );
            }
            state.guest.backend_mut().capture_all();
            state.runtime.baseline(
                now_us,
                &mut now_ns,
                &mut state.guest,
                &mut drain,
                checkers,
                &mut out,
            );
        }
        Phase::Running => {
            // The capture's wait is the DSM's time too (charged after the call it served).
            state.runtime.step_with(
                now_us,
                &mut now_ns,
                &mut state.guest,
                &mut drain,
                checkers,
                &mut out,
                &mut |name, guest| {
                    if !NEEDS_REGISTERS.contains(&name) {
                        return 0;
                    }
                    let t0 = now_ns();
                    guest.backend_mut().capture_all();
                    now_ns().wrapping_sub(t0)
                },
            );
        }
        Phase::Paused | Phase::Stopped => {}
    }
    let dropped = state.guest.take_dropped();
    if dropped > 0 {
        warn!("dsm: {} findings dropped (queue full)", dropped);
    }
    response
}

/// Logs one runtime event; returns the response the policy asks for.
fn report(partition: &Partition, event: Event) -> Option<Response> {
    let mut text: heapless::String<160> = heapless::String::new();
    match event {
        Event::Baseline {
            checker,
            ns,
            error: None,
        } => info!("dsm baseline {}: {} us", checker, ns / 1000),
        Event::Baseline {
            checker,
            error: Some(e),
            ..
        } => {
            let _ = write!(text, "{e}");
            warn!(
                "dsm baseline {} failed: {}; checker left out",
                checker,
                text.as_str()
            );
        }
        Event::PassDone {
            checker,
            ns,
            calls,
            elapsed_us,
        } => {
            check_pass_done(checker, ns, calls);
            let n = checker_slot(checker).map(|i| {
                let mut stats = STATS.lock();
                let slot = &mut stats[i];
                slot.passes = slot.passes.wrapping_add(1);
                slot.last_pass_ns = ns;
                slot.last_pass_at_ms = timer::uptime_us() / 1000;
                slot.passes
            });
            // The first pass, then every hundredth, so the log stays readable.
            if n.is_some_and(|n| n % 100 == 1) {
                info!(
                    "dsm pass {} #{}: {} ns in {} calls over {} ms",
                    checker,
                    n.unwrap_or(0),
                    ns,
                    calls,
                    elapsed_us / 1000
                );
                if checker == "vectors" {
                    log_handshakes();
                }
            }
        }
        Event::CheckFailed { checker, error } => {
            let _ = write!(text, "{error}");
            warn!("dsm check {} failed: {}", checker, text.as_str());
            check_failed(checker, text.as_str());
        }
        Event::Alert(finding) => alert(partition, &finding),
        Event::Respond(r) => return Some(r),
    }
    None
}

fn checker_slot(name: &str) -> Option<usize> {
    let mut i = 0;
    for entry in TABLE {
        if entry.on {
            if entry.name == name {
                return Some(i);
            }
            i += 1;
        }
    }
    None
}

fn alert(partition: &Partition, finding: &Finding) {
    count_finding(finding);
    let mut text: heapless::String<192> = heapless::String::new();
    let _ = write!(text, "{finding}");
    error!("dsm ALERT {}", text.as_str());
    log::event(format_args!(
        "dsm-alert checker={} partition={}",
        finding.checker, partition.name
    ));
}

/// One more finding of `finding`'s checker, for `status`.
fn count_finding(finding: &Finding) {
    if let Some(i) = checker_slot(finding.checker) {
        let mut stats = STATS.lock();
        stats[i].findings = stats[i].findings.wrapping_add(1);
    }
}

/// Each checker's passes and findings so far, for `status` (a leaf lock, taken after `STATE`).
static STATS: super::cpu::Lock<[record::Checker<'static>; CHECKERS]> = super::cpu::Lock::new(
    [record::Checker {
        name: "",
        passes: 0,
        last_pass_ns: 0,
        last_pass_at_ms: 0,
        findings: 0,
    }; CHECKERS],
);
/// The response policy for this run (`DsmPolicy as u8`).
static POLICY: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
/// The runtime's phase, published after each change so the console's core reads it without
/// the runtime's lock (`PHASE_*`).
static PHASE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(PHASE_OFF);
/// The DSM's time and alerts so far, published after each step.
static SPENT_NS: AtomicU64 = AtomicU64::new(0);
static ALERTS: AtomicU32 = AtomicU32::new(0);

const PHASE_OFF: u8 = 0;
const PHASE_BOOTING: u8 = 1;
const PHASE_RUNNING: u8 = 2;
const PHASE_PAUSED: u8 = 3;
const PHASE_STOPPED: u8 = 4;

/// Publishes what `status` and the management channel read of the runtime.
fn publish(runtime: &Runtime<CHECKERS>) {
    let phase = match runtime.phase() {
        Phase::Booting => PHASE_BOOTING,
        Phase::Running => PHASE_RUNNING,
        Phase::Paused => PHASE_PAUSED,
        Phase::Stopped => PHASE_STOPPED,
    };
    PHASE.store(phase, Ordering::Release);
    SPENT_NS.store(runtime.spent_ns(), Ordering::Relaxed);
    ALERTS.store(runtime.alerts(), Ordering::Relaxed);
}

/// Whether the DSM holds partition `index` paused.
pub fn is_paused(index: usize) -> bool {
    CHECKED.load(Ordering::Acquire) == index && PHASE.load(Ordering::Acquire) == PHASE_PAUSED
}

/// Whether the DSM can pause partition `index` now.
pub fn pause_ability(index: usize) -> Dsm {
    if CHECKED.load(Ordering::Acquire) != index {
        return Dsm::Off;
    }
    match PHASE.load(Ordering::Acquire) {
        PHASE_BOOTING => Dsm::Baselining,
        PHASE_OFF => Dsm::Off,
        _ => Dsm::Checking,
    }
}

/// Whether an operator's pause or resume waits to be served.
pub fn operator_busy() -> bool {
    PAUSE_ASKED.load(Ordering::Acquire) || RESUME_ASKED.load(Ordering::Acquire)
}

/// The DSM's `status` records (none while it checks no partition).
pub fn status(emit: &mut dyn FnMut(&dyn core::fmt::Display)) {
    let Some(partition) = CONFIG.partitions.get(CHECKED.load(Ordering::Acquire)) else {
        return;
    };
    let phase = phase_name(PHASE.load(Ordering::Acquire));
    let policy = [DsmPolicy::Log, DsmPolicy::Pause, DsmPolicy::Stop]
        .into_iter()
        .find(|p| *p as u8 == POLICY.load(Ordering::Relaxed))
        .map_or("?", DsmPolicy::name);
    emit(&record::Dsm {
        partition: partition.name,
        core: DSM_CORE.load(Ordering::Acquire),
        phase,
        policy,
        alerts: ALERTS.load(Ordering::Relaxed),
        spent_us: SPENT_NS.load(Ordering::Relaxed) / 1000,
        uptime_us: timer::uptime_us(),
    });
    let stats = *STATS.lock();
    for checker in &stats {
        emit(checker);
    }
}

/// The management request waiting for the outcome of the operator's pause or resume: its
/// `SEQ`, or [`NO_ANSWER`].
static PAUSE_ANSWER: AtomicU32 = AtomicU32::new(NO_ANSWER);
static RESUME_ANSWER: AtomicU32 = AtomicU32::new(NO_ANSWER);
const NO_ANSWER: u32 = u32::MAX;

/// Answers the request waiting in `slot`, if one does.
fn answer(slot: &AtomicU32, outcome: Outcome, args: core::fmt::Arguments) {
    if let Ok(seq) = u8::try_from(slot.swap(NO_ANSWER, Ordering::AcqRel)) {
        log::answer(Head { seq, outcome }, args);
    }
}

/// The operator's `check`, from the request to its verdict.
struct PendingCheck {
    seq: u8,
    /// Its index in the runtime's order.
    checker: usize,
    /// Made due in the runtime, with its findings counted from then.
    armed: bool,
    findings_before: u32,
    /// The pass that ended: its time and calls.
    done: Option<(u64, u32)>,
}

/// A leaf lock, taken after `STATE`.
static CHECK: super::cpu::Lock<Option<PendingCheck>> = super::cpu::Lock::new(None);

/// The compiled-in checkers' names, for `check`.
pub fn checker_names() -> &'static [&'static str] {
    &NAMES
}

/// Whether an operator's `check` waits for its verdict.
pub fn check_pending() -> bool {
    CHECK.lock().is_some()
}

/// The operator's `check` of checker `checker` (request `seq`): the runtime makes it due at its
/// next step, and the verdict is answered when its pass ends (or the pass under way, if one
/// is).
pub fn operator_check(checker: usize, seq: u8) {
    info!(
        "operator: check {} asked",
        NAMES.get(checker).copied().unwrap_or("?")
    );
    *CHECK.lock() = Some(PendingCheck {
        seq,
        checker,
        armed: false,
        findings_before: 0,
        done: None,
    });
}

fn arm_check(runtime: &mut Runtime<CHECKERS>, now_us: u64) {
    let mut pending = CHECK.lock();
    let Some(check) = pending.as_mut().filter(|c| !c.armed) else {
        return;
    };
    if !runtime.due_now(check.checker, now_us) {
        let (seq, outcome) = (check.seq, Outcome::Err(ErrorCode::Failed));
        *pending = None;
        log::answer(
            Head { seq, outcome },
            format_args!("that checker is left out (its baseline failed)"),
        );
        return;
    }
    check.armed = true;
    check.findings_before = STATS.lock()[check.checker].findings;
}

fn check_pass_done(checker: &str, ns: u64, calls: u32) {
    let mut pending = CHECK.lock();
    if let Some(check) = pending.as_mut() {
        if check.armed && NAMES.get(check.checker) == Some(&checker) {
            check.done = Some((ns, calls));
        }
    }
}

fn check_failed(checker: &str, why: &str) {
    let mut pending = CHECK.lock();
    let Some(check) = pending.as_ref() else {
        return;
    };
    if check.armed && NAMES.get(check.checker) == Some(&checker) {
        let (seq, outcome) = (check.seq, Outcome::Err(ErrorCode::Failed));
        *pending = None;
        log::answer(
            Head { seq, outcome },
            format_args!("{checker} failed: {why}"),
        );
    }
}

/// Answers the operator's `check` once its pass has ended, with the findings it raised.
fn answer_check() {
    let mut pending = CHECK.lock();
    let Some(check) = pending.as_ref() else {
        return;
    };
    let Some((ns, calls)) = check.done else {
        return;
    };
    let findings = STATS.lock()[check.checker]
        .findings
        .wrapping_sub(check.findings_before);
    let (seq, name) = (check.seq, NAMES[check.checker]);
    *pending = None;
    let verdict = if findings == 0 {
        "no finding"
    } else {
        "compromised: see its alerts"
    };
    log::answer(
        Head {
            seq,
            outcome: Outcome::Ok,
        },
        format_args!(
            "{}: {} ({} findings; pass of {} ns in {} calls)",
            name, verdict, findings, ns, calls
        ),
    );
}

/// A pending `check` can no longer be answered with a verdict.
fn drop_check(why: &str) {
    if let Some(check) = CHECK.lock().take() {
        let (seq, outcome) = (check.seq, Outcome::Err(ErrorCode::InvalidState));
        log::answer(Head { seq, outcome }, format_args!("{why}"));
    }
}
