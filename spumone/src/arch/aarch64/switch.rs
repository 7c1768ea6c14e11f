//! Several vCPUs on one core: the EL1 context switch and the per-core run loop.
//!
//! Only a core the config shares (an RTOS vCPU and a Linux vCPU marked `shared`), or one a
//! vCPU may migrate to (a policy other than `pinned`, see `migrate.rs`), runs here; a core
//! with one vCPU and no migration keeps the direct path of `guest.rs` (WFI not trapped, no
//! EL2 timer).
//! `hvcore::sched::RunQueue` decides what runs; this module reports events to it and moves
//! registers:
//! - a trapped WFI makes the vCPU wait (unless an interrupt is pending for it) and yields;
//! - an interrupt for a vCPU that is not loaded goes into its saved list registers and wakes
//!   it; one that outranks the loaded vCPU (the RTOS over Linux) switches at once;
//! - the virtual timer of a vCPU that is not loaded is tracked as a deadline, and the EL2
//!   physical timer (`CNTHP`, PPI 26) is set to the earliest one the queue asks for.
//!
//! A switch saves the general registers (the trap frame), the EL1 system registers, FP/SIMD,
//! the virtual timer and the virtual CPU interface, and loads the other vCPU's, with its
//! `VTTBR_EL2` and `VMPIDR_EL2`. Both partitions keep their VMIDs, so no TLB flush is needed.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Readable, Writeable, CNTHCTL_EL2, CNTVOFF_EL2, CNTV_CTL_EL0, CNTV_CVAL_EL0, CPTR_EL2, HCR_EL2,
    MIDR_EL1, VMPIDR_EL2, VTCR_EL2, VTTBR_EL2,
};
use board::rt::{LinuxBoot, Partition};

use super::config::CONFIG;
use super::exception::{self, TrapFrame};
use super::{cpu, gic, migrate, percore, timer, vgic};
use crate::hvcore::alone::{self, Here, Tick};
use crate::hvcore::migrate::{
    reroutes, El1Regs, FpRegs, MigrationState, VcpuContext, VgicState, VtimerState,
};
use crate::hvcore::policy::RtosState;
use crate::hvcore::sched::{
    Class, Decision, Run, RunQueue, RunState, Ticks, VcpuId, RUNQ_CAPACITY,
};
use crate::hvcore::smp::KICK_SGI;
use crate::hvcore::vgic::{Delivery, LrState};
use crate::hvcore::{stage2, vcpu, vpsci, MAX_CORES, MAX_PARTITIONS};

/// Most vCPUs on one shared core: the config places an RTOS vCPU and one Linux vCPU on it,
/// migrations may bring every vCPU of a partition.
const SLOTS: usize = RUNQ_CAPACITY;

/// How often the RTOS's core looks at the policy while its RTOS waits (1 ms at 62.5 MHz).
const POLICY_PERIOD: Ticks = 62_500;

/// Round-robin slice among vCPUs of one class (never used while classes differ): 250 us.
/// Short, because an unmodified Linux spins on a mutex whose owner's vCPU is preempted with
/// `yield`, which cannot be trapped: every spinner waits out the rest of the owner's
/// preemption. With two Linux vCPUs on one core, `ipc_stress` ran at about one message per
/// slice (219 per second at 10 ms, 983 at 1 ms, 3,996 at 250 us).
const SLICE_TICKS: u64 = 15_625;

/// Least run of a vCPU before a woken or interrupted equal may take its core (50 us): the
/// rate limit on boost preemptions, as in Xen credit's BOOST.
const MIN_RUN_TICKS: u64 = 3_125;

/// One vCPU placed on this core and its state while it is not loaded.
struct Slot {
    id: VcpuId,
    partition: &'static Partition,
    vcpu: usize,
    ctx: VcpuContext,
    vtimer: VtimerState,
    vgic: VgicState,
}

struct CoreSched {
    queue: RunQueue,
    slots: [Option<Slot>; SLOTS],
    /// The RTOS vCPU placed here and since when it waits, for the migration policy.
    rtos: Option<VcpuId>,
    rtos_idle_since: Option<Ticks>,
    next_policy: Ticks,
    /// The vCPU running here alone with WFI/WFE untrapped (`hvcore::alone`).
    untrapped: Option<VcpuId>,
    /// The RTOS is trapped again to see whether it stays idle (`alone::worth_observing`).
    observing: bool,
    /// When an untrapped RTOS core next runs the policy.
    next_look: Ticks,
}

impl CoreSched {
    fn slot(&mut self, id: VcpuId) -> Option<&mut Slot> {
        self.slots.iter_mut().flatten().find(|s| s.id == id)
    }
}

static SCHED: [super::cpu::Lock<Option<CoreSched>>; MAX_CORES] =
    [const { super::cpu::Lock::new(None) }; MAX_CORES];
/// Per core: it runs the shared loop (read on every slow-path interrupt, so lock-free).
static SHARED: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];
/// Per core: context switches so far (logged when a vCPU leaves the core for good).
static SWITCHES: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];
/// Per core and partition: the vCPU that last ran there (`NONE_RAN`: none yet). Loading
/// another vCPU of that partition flushes its local TLB entries: they may belong to the other
/// vCPU's address spaces (a local TLBI it issued elsewhere never reached this core).
static LAST_RAN: [[AtomicU8; MAX_PARTITIONS]; MAX_CORES] =
    [const { [const { AtomicU8::new(NONE_RAN) }; MAX_PARTITIONS] }; MAX_CORES];
const NONE_RAN: u8 = u8::MAX;
/// Per core: an RTOS runs alone there untrapped, and the EL2 timer is its core's next look at
/// the policy (read by the interrupt path).
static RTOS_LOOKS: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];
/// Per core: an interrupt asked for a new scheduling decision before returning to the guest.
static RESCHED: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];

/// Whether this core runs several vCPUs through this module.
pub fn here() -> bool {
    SHARED[cpu::core_index() % MAX_CORES].load(Ordering::Relaxed)
}

/// Whether `core` runs several vCPUs: the config shares it, or a vCPU may migrate to it.
pub fn is_shared_core(core: u8) -> bool {
    vcpu::trap_policy(&CONFIG, core).shared_core || migrate::moving_core(core)
}

/// Whether `partition` has a vCPU on a shared core.
pub fn shares_core(partition: &Partition) -> bool {
    partition.vcpus.iter().any(|v| is_shared_core(v.core))
}

/// Takes (and clears) this core's request for a new decision.
pub fn take_resched() -> bool {
    RESCHED[cpu::core_index() % MAX_CORES].swap(false, Ordering::Relaxed)
}

fn class_of(partition: &Partition) -> Class {
    match LinuxBoot::kind(super::linux::LINUX, partition.index) {
        board::rt::Kind::Linux => Class::Linux,
        board::rt::Kind::Rtos => Class::Rtos,
    }
}

/// A vCPU's context before its first instruction: at `entry`, EL1h, everything masked, MMU
/// off, `x0..x2` as given.
fn boot_context(vcpu: usize, entry: u64, x: [u64; 3]) -> VcpuContext {
    let mut ctx = VcpuContext {
        pc: entry,
        pstate: vcpu::ENTRY_SPSR,
        el1: El1Regs {
            sctlr: vcpu::SCTLR_EL1_RESET,
            vmpidr: vpsci::vcpu_mpidr(vcpu as u8),
            ..El1Regs::default()
        },
        ..VcpuContext::default()
    };
    ctx.x[..3].copy_from_slice(&x);
    ctx
}

/// `ns` in counter ticks, rounded up (a lead is never shorter than configured).
fn ns_to_ticks(ns: u32) -> Ticks {
    let hz = u128::from(timer::frequency_hz());
    (u128::from(ns) * hz).div_ceil(1_000_000_000) as Ticks
}

/// Starts every vCPU placed on this shared core (vCPU 0 of each partition; the board config
/// allows no other) and runs them for good.
pub fn run_shared(core: usize) -> ! {
    let Ok(core_id) = u8::try_from(core) else {
        super::idle()
    };
    let mut sched = CoreSched {
        queue: RunQueue::new(SLICE_TICKS, MIN_RUN_TICKS),
        slots: [const { None }; SLOTS],
        rtos: None,
        rtos_idle_since: None,
        next_policy: 0,
        untrapped: None,
        observing: false,
        next_look: 0,
    };
    let mut free = sched.slots.iter_mut();
    for partition in CONFIG.partitions {
        let Some(n) = partition.vcpu_on_core(core_id) else {
            continue;
        };
        let index = usize::from(partition.index);
        if n != 0 || super::guest::is_stopped(index) {
            continue;
        }
        let (entry, x) = match super::linux::entry(partition) {
            Some(found) => {
                super::linux::keep_pristine(partition);
                found
            }
            None => (partition.entry, vcpu::boot_registers(partition, n)),
        };
        let id = VcpuId::new(partition.index, n as u8);
        let Some(slot) = free.next() else {
            error!("core {}: more vCPUs than a shared core holds", core);
            break;
        };
        *slot = Some(Slot {
            id,
            partition,
            vcpu: n,
            ctx: boot_context(n, entry, x),
            vtimer: VtimerState::default(),
            vgic: VgicState {
                vmcr: crate::hvcore::vgic::ICH_VMCR_RESET,
                ..VgicState::default()
            },
        });
        let class = class_of(partition);
        if class == Class::Rtos {
            sched.rtos = Some(id);
        }
        let _ = sched.queue.add(id, class, RunState::Ready, None);
        sched.queue.set_lead(id, ns_to_ticks(partition.preload_ns));
        super::guest::mark_entered(index, n);
        info!(
            "partition {} vcpu {}: entering at {:#x} on core {} (shared)",
            partition.name, n, entry, core
        );
    }
    *SCHED[core].lock() = Some(sched);
    SHARED[core].store(true, Ordering::Release);

    VTCR_EL2.set(stage2::vtcr_el2());
    HCR_EL2.set(vcpu::hcr_el2(vcpu::TrapPolicy { shared_core: true }));
    CPTR_EL2.set(vcpu::CPTR_EL2);
    CNTHCTL_EL2.set(vcpu::CNTHCTL_EL2);
    CNTVOFF_EL2.set(0);
    let midr = MIDR_EL1.get();
    // SAFETY: VPIDR_EL2 is what the guests read as MIDR_EL1; the real value is the sane one.
    unsafe { core::arch::asm!("msr vpidr_el2, {}", in(reg) midr, options(nostack)) };
    vgic::enter_vcpu();
    timer::stop_tick();
    // SAFETY: drops translations earlier users of these VMIDs may have left on this core.
    unsafe { core::arch::asm!("isb", "tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
    percore::this_core().set_running(None);
    let mut frame = TrapFrame::new(0, vcpu::ENTRY_SPSR);
    reschedule(&mut frame);
    exception::enter(&frame)
}

/// The loaded vCPU trapped WFI (`is_wfe`: WFE); `frame` already resumes after it.
pub fn wfi(frame: &mut TrapFrame, is_wfe: bool) {
    // A WFE waits for an event (a spinlock's `sev`) that never reaches EL2: go on, but where
    // vCPUs migrate an equal one may hold the lock, so it gets the core first.
    if is_wfe {
        // What an untrapped WFE does under QEMU's round robin (`-icount`): end this vCPU's
        // time slice, so the core it waits for runs now rather than after a slice of spinning.
        cpu::relax();
        let core = cpu::core_index();
        if !u8::try_from(core).is_ok_and(migrate::moving_core) {
            return;
        }
        if let Some(s) = SCHED[core].lock().as_mut() {
            s.queue.yield_slice();
        }
        reschedule(frame);
        return;
    }
    let pending = vgic::virtual_pending();
    if let Some(s) = SCHED[cpu::core_index()].lock().as_mut() {
        s.queue.wfi(pending);
    }
    reschedule(frame);
}

/// The IRQ vector found a decision due: `frame` now holds every general register.
pub extern "C" fn irq_switch(frame: &mut TrapFrame) {
    reschedule(frame);
}

/// The vCPU loaded here leaves for good (its partition stopped, `CPU_OFF`): the core goes
/// on with the others, or returns if none is left.
pub fn leave_loaded() {
    let core = cpu::core_index();
    {
        let mut guard = SCHED[core].lock();
        let Some(s) = guard.as_mut() else {
            return;
        };
        if let Some(id) = s.queue.loaded() {
            discard_loaded();
            let _ = s.queue.remove(id);
            if let Some(slot) = s
                .slots
                .iter_mut()
                .find(|x| x.as_ref().is_some_and(|x| x.id == id))
            {
                if let Some(gone) = slot.take() {
                    log_leaving(core, &gone);
                }
            }
        }
        percore::this_core().set_running(None);
        set_untrapped(s, core, None);
        RTOS_LOOKS[core].store(false, Ordering::Relaxed);
        // A core vCPUs may migrate to stays in the loop for them.
        if s.queue.is_empty() && !u8::try_from(core).is_ok_and(migrate::moving_core) {
            SHARED[core].store(false, Ordering::Release);
            return;
        }
    }
    let mut frame = TrapFrame::new(0, vcpu::ENTRY_SPSR);
    reschedule(&mut frame);
    exception::enter(&frame)
}

/// Logs how often this core switched vCPUs, as `slot`'s vCPU leaves it for good.
fn log_leaving(core: usize, slot: &Slot) {
    info!(
        "core {}: partition {} vcpu {} leaves after {} vCPU switches here",
        core,
        slot.partition.name,
        slot.vcpu,
        SWITCHES[core].load(Ordering::Relaxed)
    );
}

/// Empties the CPU of a vCPU that will not run again: virtual timer off, its hardware
/// interrupts deactivated, list registers cleared.
fn discard_loaded() {
    write_cntv(&VtimerState::default());
    let _ = vgic::save_cpu_interface();
}

/// Asks the run queue what runs next and applies it to `frame` (the loaded vCPU's registers);
/// waits in EL2 while nothing is ready.
fn reschedule(frame: &mut TrapFrame) {
    let core = cpu::core_index();
    loop {
        RESCHED[core].store(false, Ordering::Relaxed);
        let mut guard = SCHED[core].lock();
        let Some(s) = guard.as_mut() else {
            return;
        };
        drop_stopped(s);
        let moving = u8::try_from(core).is_ok_and(migrate::moving_core);
        if moving {
            start_requested(s, core);
            if migrate::take_work(core) {
                send_leaving(s, core, frame);
                take_arrivals(s, core);
            }
        }
        let loaded_deadline = s.queue.loaded().and_then(|_| read_cntv().deadline());
        let now = timer::counter();
        let Decision {
            run,
            timer: mut wake_at,
        } = s.queue.schedule(now, loaded_deadline);
        let runs = match run {
            Run::Continue => s.queue.loaded(),
            Run::Switch { to, .. } => Some(to),
            Run::Idle | Run::Preload { .. } => None,
        };
        let runs_class = runs
            .and_then(|id| s.slot(id))
            .map(|x| class_of(x.partition));
        if moving {
            // Busy time for the `load` policy.
            migrate::linux_runs(core, now, runs_class == Some(Class::Linux));
        }
        let mut look = moving && s.rtos.is_some() && rtos_changed(s, now);
        let runs_deadline = match run {
            Run::Switch { to, .. } => s.slot(to).and_then(|x| x.vtimer.deadline()),
            _ => loaded_deadline,
        };
        let chosen = runs.zip(runs_class);
        if let Some(at) = settle_alone(s, core, moving, now, chosen, runs_deadline, &mut look) {
            wake_at = Some(wake_at.map_or(at, |t| t.min(at)));
        }
        if moving && runs.is_none() && s.queue.holding().is_none() {
            // An idle RTOS core wakes to let displaced vCPUs return (not inside the lead
            // window of its RTOS: that is the RTOS's time).
            if let (Some(since), Some(after)) = (s.rtos_idle_since, migrate::return_after()) {
                let back = since.saturating_add(after).max(now + 1);
                wake_at = Some(wake_at.map_or(back, |t| t.min(back)));
            }
        }
        match wake_at {
            Some(at) => timer::set_deadline(at),
            None => timer::stop_tick(),
        }
        match run {
            Run::Continue => {
                drop(guard);
                if look {
                    migrate::evaluate(now);
                }
                return;
            }
            Run::Switch { from, to } | Run::Preload { from, to } => {
                if let Some(slot) = from.and_then(|id| s.slot(id)) {
                    save(slot, frame);
                    SWITCHES[core].fetch_add(1, Ordering::Relaxed);
                }
                if let Some(slot) = s.slot(to) {
                    load(slot, frame);
                }
                drop(guard);
                // Interrupts posted while it was away (now that it is the running vCPU).
                vgic::deliver_posted();
                // After the switch: a move it asks for is sent at the kick that follows.
                if look {
                    migrate::evaluate(now);
                }
                // A preload was ahead of `to`'s deadline: wait for its own timer.
                if matches!(run, Run::Switch { .. }) || idle(core, moving) {
                    return;
                }
            }
            Run::Idle => {
                drop(guard);
                if look {
                    migrate::evaluate(now);
                }
                if idle(core, moving) {
                    return;
                }
            }
        }
    }
}

/// Waits in EL2 for an interrupt with the loaded context (if any) left in place, then takes
/// what came. `true`: it was the loaded vCPU's own timer and the idle decision stood, so that
/// vCPU runs on (the O(1) `RunQueue::resume_loaded`); `false`: decide again.
fn idle(core: usize, moving: bool) -> bool {
    wait_in_el2();
    let intid = gic::acknowledge();
    if intid >= gic::SPECIAL_INTID_START {
        poll();
        return false;
    }
    // A core the policy watches decides in full: it reports the RTOS's wake to the policy.
    if intid == crate::hvcore::vgic::VTIMER_INTID && !moving && resume_loaded(core, intid) {
        return true;
    }
    interrupt(intid);
    poll();
    false
}

/// The loaded vCPU's timer interrupt `intid`, just acknowledged while the core idled: if the
/// run queue's idle decision still stands, the vCPU runs on and the interrupt goes straight
/// into its list registers. `false` leaves `intid` unhandled, for the full path.
fn resume_loaded(core: usize, intid: u32) -> bool {
    let Some(running) = percore::this_core().running() else {
        return false;
    };
    {
        let mut guard = SCHED[core].lock();
        let Some(decision) = guard
            .as_mut()
            .and_then(|s| s.queue.resume_loaded(timer::counter()))
        else {
            return false;
        };
        match decision.timer {
            Some(at) => timer::set_deadline(at),
            None => timer::stop_tick(),
        }
    }
    let tick = super::HYP_TIMER_INTID.load(Ordering::Relaxed);
    vgic::dispatch(Some(running), intid, tick);
    true
}

// `wfi` at EL2 with interrupts masked: it only wakes the core. `spumone_idle_wake` marks the
// idle wake for the path-length plugin (`hv-idle-rtos`).
core::arch::global_asm!(
    ".global spumone_idle_wait",
    ".global spumone_idle_wake",
    "spumone_idle_wait:",
    "    wfi",
    "spumone_idle_wake:",
    "    ret",
);

unsafe extern "C" {
    fn spumone_idle_wait();
}

fn wait_in_el2() {
    // SAFETY: `wfi` and `ret`: no register but the link register and no memory is touched.
    unsafe { spumone_idle_wait() };
}

/// Publishes what the RTOS here does after a decision; `true` when the policy should look:
/// the RTOS became runnable with other vCPUs here, or it waits and a period passed.
fn rtos_changed(s: &mut CoreSched, now: Ticks) -> bool {
    let Some(id) = s.rtos else {
        return false;
    };
    let runnable = s.queue.state(id) == Some(RunState::Ready);
    let was_idle = s.rtos_idle_since.is_some();
    let state = if runnable {
        s.rtos_idle_since = None;
        RtosState::Runnable
    } else {
        RtosState::IdleSince(*s.rtos_idle_since.get_or_insert(now))
    };
    migrate::publish_rtos(cpu::core_index(), Some(state));
    if runnable && was_idle {
        // It woke from a trapped wait: what an observation waited for.
        s.observing = false;
    }
    let woke = runnable && was_idle && s.queue.len() > 1;
    let periodic = !runnable && now >= s.next_policy;
    if woke || periodic {
        s.next_policy = now.saturating_add(POLICY_PERIOD);
    }
    woke || periodic
}

/// Runs the vCPU chosen to run (`chosen`: it and its class; its timer due at `deadline`)
/// untrapped if it is alone here, or traps again; on an untrapped RTOS core, runs the policy
/// (`look`) when a look is due. Returns when the EL2 timer must fire for the next look.
fn settle_alone(
    s: &mut CoreSched,
    core: usize,
    moving: bool,
    now: Ticks,
    chosen: Option<(VcpuId, Class)>,
    deadline: Option<Ticks>,
    look: &mut bool,
) -> Option<Ticks> {
    let (runs, class) = chosen.unzip();
    let here = Here {
        alone: s.queue.alone(),
        runs: class,
        linux_idle_counted: migrate::linux_idle_counted(),
        observing: s.observing,
    };
    let mut untrap = alone::untrapped(&here);
    let looks = untrap && moving && class == Some(Class::Rtos);
    if looks && now >= s.next_look {
        s.next_look = now.saturating_add(migrate::look_period());
        *look = true;
        if alone::worth_observing(now, deadline, migrate::return_after()) {
            s.observing = true;
            untrap = false;
        }
    }
    set_untrapped(s, core, if untrap { runs } else { None });
    if let Some(flag) = RTOS_LOOKS.get(core) {
        flag.store(untrap && looks, Ordering::Relaxed);
    }
    (untrap && looks).then_some(s.next_look)
}

/// Makes `owner` the vCPU running here untrapped (`None`: trap WFI/WFE again).
fn set_untrapped(s: &mut CoreSched, core: usize, owner: Option<VcpuId>) {
    if s.untrapped == owner {
        return;
    }
    if s.untrapped.is_some() != owner.is_some() {
        HCR_EL2.set(vcpu::hcr_el2(vcpu::TrapPolicy {
            shared_core: owner.is_none(),
        }));
    }
    if let Some(id) = owner {
        let name = CONFIG
            .partitions
            .get(usize::from(id.partition))
            .map_or("?", |p| p.name);
        info!(
            "core {}: partition {} vcpu {} runs alone, WFI/WFE untrapped",
            core, name, id.vcpu
        );
    }
    s.untrapped = owner;
    vgic::set_alone(
        core,
        owner.map(|id| (usize::from(id.partition), usize::from(id.vcpu))),
    );
}

/// Takes vCPUs of partitions stopped elsewhere off this core.
fn drop_stopped(s: &mut CoreSched) {
    let loaded = s.queue.loaded();
    for entry in s.slots.iter_mut() {
        let Some(slot) = entry else { continue };
        if !super::guest::is_stopped(usize::from(slot.partition.index)) {
            continue;
        }
        if loaded == Some(slot.id) {
            discard_loaded();
            percore::this_core().set_running(None);
            // The frame still holds its registers: a decision must replace them.
            RESCHED[cpu::core_index()].store(true, Ordering::Relaxed);
        }
        let _ = s.queue.remove(slot.id);
        log_leaving(cpu::core_index(), slot);
        *entry = None;
    }
}

/// A vCPU PSCI `CPU_ON` asked this core to start joins its queue (a core vCPUs may migrate to
/// runs this loop even for one vCPU).
fn start_requested(s: &mut CoreSched, core: usize) {
    let Some((entry, context)) = percore::this_core().take_start_request() else {
        return;
    };
    let Ok(core_id) = u8::try_from(core) else {
        return;
    };
    let found = CONFIG.partitions.iter().find_map(|p| {
        let n = p.vcpu_on_core(core_id).filter(|&n| n != 0)?;
        let id = VcpuId::new(p.index, n as u8);
        (!s.queue.contains(id) && !super::guest::is_stopped(usize::from(p.index)))
            .then_some((p, n, id))
    });
    let Some((partition, n, id)) = found else {
        return;
    };
    let Some(free) = s.slots.iter_mut().find(|x| x.is_none()) else {
        error!("core {}: no room for vcpu {}", core, n);
        return;
    };
    *free = Some(Slot {
        id,
        partition,
        vcpu: n,
        ctx: boot_context(n, entry, [context, 0, 0]),
        vtimer: VtimerState::default(),
        vgic: VgicState {
            vmcr: crate::hvcore::vgic::ICH_VMCR_RESET,
            ..VgicState::default()
        },
    });
    let _ = s.queue.add(id, class_of(partition), RunState::Ready, None);
    super::guest::mark_entered(usize::from(partition.index), n);
    info!(
        "partition {} vcpu {}: entering at {:#x} on core {}",
        partition.name, n, entry, core
    );
}

/// Sends away the vCPUs here that must leave: saved (the loaded one from `frame`), off the
/// queue, their state posted to the target with the new routes of their SPIs.
fn send_leaving(s: &mut CoreSched, core: usize, frame: &TrapFrame) {
    let loaded = s.queue.loaded();
    for entry in s.slots.iter_mut() {
        let Some(slot) = entry.as_mut() else {
            continue;
        };
        if !migrate::leaving(slot.id, core) {
            continue;
        }
        if loaded == Some(slot.id) {
            save(slot, frame);
            percore::this_core().set_running(None);
        } else {
            vgic::release_private(&mut slot.vgic);
        }
        let Some(removed) = s.queue.remove(slot.id) else {
            continue;
        };
        let Some(to) = migrate::depart(slot.id, core) else {
            continue;
        };
        let index = usize::from(slot.partition.index);
        let spis = vgic::hardware_spis_of(index, slot.vcpu);
        let routes = reroutes(spis.into_iter(), to);
        let state = MigrationState {
            id: slot.id,
            from: core as u8,
            class: removed.class,
            run_state: removed.state,
            context: slot.ctx,
            vtimer: slot.vtimer,
            vgic: core::mem::take(&mut slot.vgic),
            routes: routes.clone(),
        };
        *entry = None;
        migrate::post(to, state);
        // Routed away at once (after the post, so the target can take what follows the new
        // route into the posted state): stragglers here are sent on, not looped.
        let target = percore::CORES
            .get(usize::from(to))
            .map(|c| c.mpidr.load(Ordering::Relaxed));
        for route in routes.iter().zip(core::iter::repeat(target)) {
            if let (r, Some(mpidr)) = route {
                gic::route_spi(r.intid, mpidr);
            }
        }
    }
}

/// Takes the vCPUs posted to this core: queued with their state, their SPIs routed here.
fn take_arrivals(s: &mut CoreSched, core: usize) {
    while let Some(state) = migrate::take_arrival(core) {
        let count = migrate::arrive(state.id, core);
        let Some(partition) = CONFIG.partitions.get(usize::from(state.id.partition)) else {
            continue;
        };
        let index = usize::from(partition.index);
        if super::guest::is_stopped(index) {
            continue;
        }
        let Some(free) = s.slots.iter_mut().find(|x| x.is_none()) else {
            error!("core {}: no room for a migrating vCPU", core);
            continue;
        };
        let vcpu = usize::from(state.id.vcpu);
        let deadline = state.vtimer.deadline();
        // What was handed into its state on the way wakes it, like what was posted for it.
        let handed = !state.vgic.queue.is_empty()
            || state
                .vgic
                .lrs
                .iter()
                .any(|l| matches!(l.state, LrState::Pending | LrState::PendingActive));
        *free = Some(Slot {
            id: state.id,
            partition,
            vcpu,
            ctx: state.context,
            vtimer: state.vtimer,
            vgic: state.vgic,
        });
        let _ = s
            .queue
            .add(state.id, state.class, state.run_state, deadline);
        // Queued first: an SPI that follows the new route finds it here.
        let mpidr = cpu::mpidr();
        for route in &state.routes {
            gic::route_spi(route.intid, mpidr);
        }
        if vgic::posted_waiting(index, vcpu) || handed {
            s.queue.wake(state.id);
        }
        info!(
            "migrate {} vcpu {}: core {} -> core {} (migration {})",
            partition.name, vcpu, state.from, core, count
        );
    }
}

fn save(slot: &mut Slot, frame: &TrapFrame) {
    slot.ctx.x = frame.x;
    slot.ctx.pc = frame.elr;
    slot.ctx.pstate = frame.spsr;
    slot.ctx.el1 = save_el1();
    save_fp(&mut slot.ctx.fp);
    slot.vtimer = read_cntv();
    // Timer off first, so its PPI is quiet before the interface deactivates it.
    write_cntv(&VtimerState::default());
    slot.vgic = vgic::save_cpu_interface();
}

fn load(slot: &mut Slot, frame: &mut TrapFrame) {
    let index = usize::from(slot.partition.index);
    frame.x = slot.ctx.x;
    frame.elr = slot.ctx.pc;
    frame.spsr = slot.ctx.pstate;
    VTTBR_EL2.set(super::guest::vttbr(index));
    let core = cpu::core_index();
    if let Some(last) = LAST_RAN.get(core).and_then(|l| l.get(index)) {
        let before = last.swap(slot.vcpu as u8, Ordering::Relaxed);
        // The first vCPU here needs none: the core flushed every guest entry at its start.
        if before != NONE_RAN && before != slot.vcpu as u8 {
            // SAFETY: drops this core's stage-1 entries of the partition in VTTBR_EL2 (just
            // set), which another of its vCPUs left here; only TLB state changes.
            unsafe { core::arch::asm!("isb", "tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
        }
    }
    VMPIDR_EL2.set(slot.ctx.el1.vmpidr);
    load_el1(&slot.ctx.el1);
    load_fp(&slot.ctx.fp);
    vgic::restore_cpu_interface(&mut slot.vgic);
    // The other vCPU's vGIC may have switched the shared timer PPI off or re-prioritized it.
    vgic::load_private(index, slot.vcpu);
    write_cntv(&slot.vtimer);
    percore::this_core().set_running(Some((index, slot.vcpu)));
}

/// Handles every pending physical interrupt on this shared core (after one from a guest, or
/// when it wakes while idle in [`reschedule`]).
pub fn poll() {
    loop {
        let intid = gic::acknowledge();
        if intid >= gic::SPECIAL_INTID_START {
            break;
        }
        interrupt(intid);
    }
    vgic::refill();
    // What was just placed in the loaded vCPU's list registers (a posted SGI, the console's
    // SPI) must wake it if it waits.
    if let Some((p, v)) = percore::this_core().running() {
        if vgic::virtual_pending() {
            wake(cpu::core_index(), VcpuId::new(p as u8, v as u8));
        }
    }
}

/// A physical interrupt acknowledged on a shared core (from a guest or while idle): the EL2
/// timer asks for a decision; one for a vCPU that is not loaded goes into its saved state and
/// wakes it; everything else is handled as on any core.
pub fn interrupt(intid: u32) {
    let core = cpu::core_index();
    let running = percore::this_core().running();
    let tick = super::HYP_TIMER_INTID.load(Ordering::Relaxed);
    if intid == tick {
        // Masked until the decision reprograms it (its level would fire again at once).
        timer::stop_tick();
        gic::end_of_interrupt(intid);
        // An untrapped RTOS core's look waits until the RTOS's own deadline is behind it.
        if RTOS_LOOKS[core].load(Ordering::Relaxed) {
            if let Tick::DeferTo(at) = alone::on_tick(timer::counter(), read_cntv().deadline()) {
                timer::set_deadline(at);
                return;
            }
        }
        RESCHED[core].store(true, Ordering::Relaxed);
        return;
    }
    if intid == KICK_SGI {
        super::handle_acknowledged(running, intid);
        wake_posted(core);
        if migrate::has_work(core) || percore::this_core().start_requested() {
            RESCHED[core].store(true, Ordering::Relaxed);
        }
        return;
    }
    let for_loaded = running.and_then(|(p, v)| vgic::deliverable(p, v, intid));
    if for_loaded.is_some() {
        super::handle_acknowledged(running, intid);
        if let Some((p, v)) = running {
            wake(core, VcpuId::new(p as u8, v as u8));
        }
        return;
    }
    if inject_not_loaded(core, intid) || hand_on(core, intid) {
        return;
    }
    super::handle_acknowledged(running, intid);
}

/// An SPI of a migrating vCPU that is not here. On the core it left (it came before the new
/// route): pending again at the distributor, so it goes where the route points now. On the
/// core it is going to (the new route, before the arrival): into its state in the mailbox.
fn hand_on(core: usize, intid: u32) -> bool {
    if intid < crate::hvcore::vgic::SPI_BASE || !u8::try_from(core).is_ok_and(migrate::moving_core)
    {
        return false;
    }
    let Some((partition, vcpu, delivery)) = vgic::hardware_target(intid) else {
        return false;
    };
    if migrate::core_of(partition, vcpu) == Some(core) {
        let id = VcpuId::new(partition as u8, vcpu as u8);
        return migrate::with_in_flight(core, id, |state| {
            vgic::inject_saved(&mut state.vgic, intid, delivery)
        })
        .unwrap_or(false);
    }
    gic::repend_spi(intid);
    gic::end_of_interrupt(intid);
    true
}

/// Puts `intid` into the saved state of a vCPU here that is not loaded and takes it.
fn inject_not_loaded(core: usize, intid: u32) -> bool {
    let mut guard = SCHED[core].lock();
    let Some(s) = guard.as_mut() else {
        return false;
    };
    let loaded = s.queue.loaded();
    let found = s
        .slots
        .iter_mut()
        .flatten()
        .filter(|slot| Some(slot.id) != loaded)
        .find_map(|slot| {
            let d: Delivery =
                vgic::deliverable(usize::from(slot.partition.index), slot.vcpu, intid)?;
            Some((slot, d))
        });
    let Some((slot, delivery)) = found else {
        return false;
    };
    vgic::inject_saved(&mut slot.vgic, intid, delivery);
    let id = slot.id;
    if s.queue.wake(id).needs_decision() {
        RESCHED[core].store(true, Ordering::Relaxed);
    }
    true
}

/// After a kick: drops vCPUs of partitions stopped elsewhere (the stop kicks), and wakes the
/// vCPUs here (loaded or not) that other cores posted interrupts to.
fn wake_posted(core: usize) {
    let mut guard = SCHED[core].lock();
    let Some(s) = guard.as_mut() else {
        return;
    };
    drop_stopped(s);
    let waiting: heapless::Vec<VcpuId, SLOTS> = s
        .slots
        .iter()
        .flatten()
        .filter(|slot| vgic::posted_waiting(usize::from(slot.partition.index), slot.vcpu))
        .map(|slot| slot.id)
        .collect();
    for id in waiting {
        if s.queue.wake(id).needs_decision() {
            RESCHED[core].store(true, Ordering::Relaxed);
        }
    }
}

fn wake(core: usize, id: VcpuId) {
    if let Some(s) = SCHED[core].lock().as_mut() {
        if s.queue.wake(id).needs_decision() {
            RESCHED[core].store(true, Ordering::Relaxed);
        }
    }
}

fn read_cntv() -> VtimerState {
    // The EL1 virtual timer of the loaded vCPU.
    VtimerState {
        ctl: CNTV_CTL_EL0.get(),
        cval: CNTV_CVAL_EL0.get(),
    }
}

/// Sets the EL1 virtual timer to the vCPU being loaded (or off): compare value first, so an
/// enable never fires on a stale one.
fn write_cntv(t: &VtimerState) {
    CNTV_CTL_EL0.set(0);
    CNTV_CVAL_EL0.set(t.cval);
    CNTV_CTL_EL0.set(t.ctl & 0b11);
    barrier::isb(barrier::SY);
}

macro_rules! el1_regs {
    ($($field:ident => $reg:literal),* $(,)?) => {
        fn save_el1() -> El1Regs {
            let mut r = El1Regs::default();
            $(
                // SAFETY: reads an EL1 register of the vCPU leaving this core.
                unsafe {
                    core::arch::asm!(concat!("mrs {}, ", $reg), out(reg) r.$field,
                        options(nomem, nostack))
                };
            )*
            r.vmpidr = VMPIDR_EL2.get();
            r
        }

        fn load_el1(r: &El1Regs) {
            $(
                // SAFETY: restores an EL1 register of the vCPU being loaded on this core.
                unsafe {
                    core::arch::asm!(concat!("msr ", $reg, ", {}"), in(reg) r.$field,
                        options(nostack))
                };
            )*
        }
    };
}

el1_regs! {
    sctlr => "sctlr_el1",
    ttbr0 => "ttbr0_el1",
    ttbr1 => "ttbr1_el1",
    tcr => "tcr_el1",
    mair => "mair_el1",
    amair => "amair_el1",
    vbar => "vbar_el1",
    contextidr => "contextidr_el1",
    cpacr => "cpacr_el1",
    esr => "esr_el1",
    far => "far_el1",
    afsr0 => "afsr0_el1",
    afsr1 => "afsr1_el1",
    par => "par_el1",
    elr => "elr_el1",
    spsr => "spsr_el1",
    sp_el0 => "sp_el0",
    sp_el1 => "sp_el1",
    tpidr_el0 => "tpidr_el0",
    tpidrro_el0 => "tpidrro_el0",
    tpidr_el1 => "tpidr_el1",
    cntkctl => "cntkctl_el1",
    csselr => "csselr_el1",
    mdscr => "mdscr_el1",
}

fn save_fp(fp: &mut FpRegs) {
    let q = fp.q.as_mut_ptr();
    let (fpsr, fpcr): (u64, u64);
    // SAFETY: stores the 32 FP/SIMD registers (512 bytes) into `fp.q`; EL2 itself never uses
    // them (soft-float build), so they are still the guest's.
    unsafe {
        core::arch::asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "stp q0, q1, [{q}, #0]",
            "stp q2, q3, [{q}, #32]",
            "stp q4, q5, [{q}, #64]",
            "stp q6, q7, [{q}, #96]",
            "stp q8, q9, [{q}, #128]",
            "stp q10, q11, [{q}, #160]",
            "stp q12, q13, [{q}, #192]",
            "stp q14, q15, [{q}, #224]",
            "stp q16, q17, [{q}, #256]",
            "stp q18, q19, [{q}, #288]",
            "stp q20, q21, [{q}, #320]",
            "stp q22, q23, [{q}, #352]",
            "stp q24, q25, [{q}, #384]",
            "stp q26, q27, [{q}, #416]",
            "stp q28, q29, [{q}, #448]",
            "stp q30, q31, [{q}, #480]",
            "mrs {fpsr}, fpsr",
            "mrs {fpcr}, fpcr",
            q = in(reg) q,
            fpsr = out(reg) fpsr,
            fpcr = out(reg) fpcr,
            options(nostack)
        )
    };
    fp.fpsr = fpsr;
    fp.fpcr = fpcr;
}

fn load_fp(fp: &FpRegs) {
    let q = fp.q.as_ptr();
    // SAFETY: loads the vCPU's FP/SIMD registers from `fp.q` (512 bytes) and its FPSR/FPCR.
    unsafe {
        core::arch::asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "ldp q0, q1, [{q}, #0]",
            "ldp q2, q3, [{q}, #32]",
            "ldp q4, q5, [{q}, #64]",
            "ldp q6, q7, [{q}, #96]",
            "ldp q8, q9, [{q}, #128]",
            "ldp q10, q11, [{q}, #160]",
            "ldp q12, q13, [{q}, #192]",
            "ldp q14, q15, [{q}, #224]",
            "ldp q16, q17, [{q}, #256]",
            "ldp q18, q19, [{q}, #288]",
            "ldp q20, q21, [{q}, #320]",
            "ldp q22, q23, [{q}, #352]",
            "ldp q24, q25, [{q}, #384]",
            "ldp q26, q27, [{q}, #416]",
            "ldp q28, q29, [{q}, #448]",
            "ldp q30, q31, [{q}, #480]",
            "msr fpsr, {fpsr}",
            "msr fpcr, {fpcr}",
            q = in(reg) q,
            fpsr = in(reg) fp.fpsr,
            fpcr = in(reg) fp.fpcr,
            options(nostack)
        )
    };
}
