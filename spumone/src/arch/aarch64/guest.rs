//! Running guest vCPUs and handling their traps. Decisions come from `hvcore`; this module
//! moves values between them and the registers.

use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Readable, Writeable, CNTHCTL_EL2, CNTVOFF_EL2, CPACR_EL1, CPTR_EL2, ELR_EL1, ESR_EL1, ESR_EL2,
    FAR_EL1, FAR_EL2, HCR_EL2, HPFAR_EL2, MIDR_EL1, SCTLR_EL1, SPSR_EL1, VBAR_EL1, VMPIDR_EL2,
    VTCR_EL2, VTTBR_EL2,
};
use board::rt::{LinuxBoot, Partition};
use spumone_abi::mgmt::{ErrorCode, Head, Outcome};

use super::config::CONFIG;
use super::exception::{self, TrapFrame, VectorKind};
use super::{cpu, log, percore};
use crate::hvcore::esr::{Esr, ExceptionClass, FaultStatus, Wfx};
use crate::hvcore::health::{self, Action, Verdict};
use crate::hvcore::hypercall::{self, HypercallAction};
use crate::hvcore::inject::{self, GuestState, Injection};
use crate::hvcore::lifecycle::{self, Lifecycle, StopOutcome};
use crate::hvcore::loglimit::Class;
use crate::hvcore::mmio::{self, MmioAccess, MmioTable};
use crate::hvcore::smp::{next_power, PowerEvent};
use crate::hvcore::stage2::{self, S2Attrs, Stage2, TablePool};
use crate::hvcore::vpsci::{self, PartitionView, PsciCall, PsciOutcome, VcpuPower};
use crate::hvcore::{vcpu, MAX_PARTITIONS};

/// Exit code of a partition that spumone stopped because it could not be kept running.
pub const STOPPED_BY_HYPERVISOR: i64 = 255;

/// Most vCPUs per partition tracked for PSCI.
const MAX_VCPUS: usize = crate::hvcore::MAX_CORES;

/// Stage-2 tables of one partition (the root needs 8 KiB alignment).
#[repr(C, align(8192))]
struct Stage2Tables([stage2::Table; 16]);

static STAGE2_TABLES: [super::cpu::Lock<Stage2Tables>; MAX_PARTITIONS] =
    [const { super::cpu::Lock::new(Stage2Tables([[0; 512]; 16])) }; MAX_PARTITIONS];
static VTTBR: [AtomicU64; MAX_PARTITIONS] = [const { AtomicU64::new(0) }; MAX_PARTITIONS];
/// Tables used and the root's index in each partition's pool, to reopen its tree.
static STAGE2_USED: [AtomicUsize; MAX_PARTITIONS] = [const { AtomicUsize::new(0) }; MAX_PARTITIONS];
static STAGE2_ROOT: [AtomicUsize; MAX_PARTITIONS] = [const { AtomicUsize::new(0) }; MAX_PARTITIONS];

static LIFECYCLE: super::cpu::Lock<Lifecycle> = super::cpu::Lock::new(Lifecycle::new(0));
/// Mirrors "stopped" in `LIFECYCLE` so the IRQ path checks it without the lock.
static STOPPED: [AtomicBool; MAX_PARTITIONS] = [const { AtomicBool::new(false) }; MAX_PARTITIONS];
static POWER: super::cpu::Lock<[[VcpuPower; MAX_VCPUS]; MAX_PARTITIONS]> =
    super::cpu::Lock::new([[VcpuPower::Off; MAX_VCPUS]; MAX_PARTITIONS]);

/// Emulates one MMIO access at `offset` in its region; returns the value a load reads, or
/// `None` to refuse it (the guest then gets an external abort).
pub type MmioHandler = fn(partition: usize, offset: u64, access: &MmioAccess) -> Option<u64>;

/// Emulated device regions of each partition (filled by device models).
pub static MMIO: [super::cpu::Lock<MmioTable<MmioHandler, 8>>; MAX_PARTITIONS] =
    [const { super::cpu::Lock::new(MmioTable::new()) }; MAX_PARTITIONS];

/// Builds every partition's stage-2 map before any core enters a guest.
pub fn prepare_partitions() {
    *LIFECYCLE.lock() = Lifecycle::new(CONFIG.partitions.len());
    for (index, partition) in CONFIG.partitions.iter().enumerate().take(MAX_PARTITIONS) {
        if super::smmu::refuses(index) {
            error!(
                "partition {}: not started: its DMA streams are not confined",
                partition.name
            );
            LIFECYCLE.lock().stop(index, STOPPED_BY_HYPERVISOR);
            STOPPED[index].store(true, Ordering::Release);
            continue;
        }
        match build_stage2(index, partition) {
            Ok(tables) => info!(
                "partition {}: stage 2 with {} tables, VMID {}",
                partition.name,
                tables,
                vcpu::vmid(partition.index)
            ),
            Err(what) => {
                error!("partition {}: stage 2: {}", partition.name, what);
                LIFECYCLE.lock().stop(index, STOPPED_BY_HYPERVISOR);
                STOPPED[index].store(true, Ordering::Release);
            }
        }
        if let Err(what) = super::vgic::prepare_partition(index, partition) {
            error!("partition {}: vGIC: {}", partition.name, what);
            LIFECYCLE.lock().stop(index, STOPPED_BY_HYPERVISOR);
            STOPPED[index].store(true, Ordering::Release);
        }
        if let Err(what) = super::linux::prepare(partition) {
            error!("partition {}: Linux: {}", partition.name, what);
            LIFECYCLE.lock().stop(index, STOPPED_BY_HYPERVISOR);
            STOPPED[index].store(true, Ordering::Release);
        }
    }
}

fn build_stage2(index: usize, partition: &Partition) -> Result<usize, &'static str> {
    let mut tables = STAGE2_TABLES[index].lock();
    let base_pa = tables.0.as_ptr() as u64;
    let pool = TablePool::new(&mut tables.0, base_pa);
    let mut s2 = Stage2::new(pool).map_err(|_| "no room for the root table")?;
    stage2::map_partition(&mut s2, partition)?;
    VTTBR[index].store(s2.vttbr_el2(vcpu::vmid(partition.index)), Ordering::Release);
    STAGE2_USED[index].store(s2.tables_used(), Ordering::Release);
    STAGE2_ROOT[index].store(s2.root_index(), Ordering::Release);
    Ok(s2.tables_used())
}

/// Gives `[base, base + size)` of partition `index`'s RAM its stage-2 write and execute
/// permissions (the DSM's write and execute watches), splitting blocks break-before-make, then invalidates
/// the partition's TLB entries on every core, and gives its devices' DMA the same write
/// permission (SMMU). The caller keeps the partition's other vCPUs out of the guest
/// meanwhile.
pub fn stage2_protect(index: usize, base: u64, size: u64, write: bool, exec: bool) -> bool {
    let Some(tables) = STAGE2_TABLES.get(index) else {
        return false;
    };
    let mut tables = tables.lock();
    let base_pa = tables.0.as_ptr() as u64;
    let used = STAGE2_USED[index].load(Ordering::Acquire);
    let pool = TablePool::resume(&mut tables.0, base_pa, used);
    let mut s2 = Stage2::reopen(pool, STAGE2_ROOT[index].load(Ordering::Acquire));
    let attrs = S2Attrs {
        write,
        exec,
        ..S2Attrs::RAM
    };
    // A TLB invalidation acts on the VMID in VTTBR_EL2: this partition's for the while.
    let saved = VTTBR_EL2.get();
    VTTBR_EL2.set(VTTBR[index].load(Ordering::Acquire));
    barrier::isb(barrier::SY);
    let result = s2.protect_live(base, size, attrs, &mut |_| cpu::invalidate_guest_tlbs());
    STAGE2_USED[index].store(s2.tables_used(), Ordering::Release);
    cpu::invalidate_guest_tlbs();
    VTTBR_EL2.set(saved);
    barrier::isb(barrier::SY);
    if result.is_err() {
        warn!(
            "partition {}: stage 2: cannot change {:#x}+{:#x}",
            index, base, size
        );
    }
    // DMA of the partition's devices gets the same write permission: no write the stage-2
    // watch would judge can come in through the SMMU instead.
    let dma = super::smmu::protect(index, base, size, write);
    result.is_ok() && dma
}

/// Boots vCPU 0 of the partition placed on `core`, if any. Returns if there is none, the
/// core's vCPU is a secondary one (it waits for PSCI `CPU_ON`), or its partition is stopped.
pub fn run_vcpu_on(core: usize) {
    let Ok(core_id) = u8::try_from(core) else {
        return;
    };
    let Some(partition) = CONFIG.partition_on_core(core_id) else {
        return;
    };
    let index = usize::from(partition.index);
    let Some(vcpu) = partition.vcpu_on_core(core_id) else {
        return;
    };
    if vcpu != 0 || !LIFECYCLE.lock().is_running(index) {
        return;
    }
    if let Some((entry, regs)) = super::linux::entry(partition) {
        super::linux::keep_pristine(partition);
        report_resources(partition);
        enter_vcpu(core_id, partition, vcpu, entry, regs);
    }
    let [x0, x1, x2] = vcpu::boot_registers(partition, vcpu);
    enter_vcpu(core_id, partition, vcpu, partition.entry, [x0, x1, x2]);
}

/// Starts a vCPU that PSCI `CPU_ON` asked for (called by its core when idle).
pub fn start_requested_vcpu(core: usize, entry: u64, context_id: u64) {
    let Ok(core_id) = u8::try_from(core) else {
        return;
    };
    let Some(partition) = CONFIG.partition_on_core(core_id) else {
        return;
    };
    let Some(vcpu) = partition.vcpu_on_core(core_id) else {
        return;
    };
    if LIFECYCLE.lock().is_running(usize::from(partition.index)) {
        enter_vcpu(core_id, partition, vcpu, entry, [context_id, 0, 0]);
    }
}

fn enter_vcpu(core: u8, partition: &'static Partition, vcpu: usize, entry: u64, x: [u64; 3]) -> ! {
    let index = usize::from(partition.index);
    VTCR_EL2.set(stage2::vtcr_el2());
    VTTBR_EL2.set(VTTBR[index].load(Ordering::Acquire));
    HCR_EL2.set(vcpu::hcr_el2(vcpu::trap_policy(&CONFIG, core)));
    CPTR_EL2.set(vcpu::CPTR_EL2);
    CNTHCTL_EL2.set(vcpu::CNTHCTL_EL2);
    CNTVOFF_EL2.set(0);
    VMPIDR_EL2.set(vpsci::vcpu_mpidr(vcpu as u8));
    let midr = MIDR_EL1.get();
    // SAFETY: VPIDR_EL2 is what the guest reads as MIDR_EL1; the real value is the sane one.
    unsafe { core::arch::asm!("msr vpidr_el2, {}", in(reg) midr, options(nostack)) };
    SCTLR_EL1.set(vcpu::SCTLR_EL1_RESET);
    CPACR_EL1.set(0);
    VBAR_EL1.set(0);
    super::vgic::enter_vcpu();
    barrier::isb(barrier::SY);
    // SAFETY: drops any stage-1+2 translations a previous user of this VMID left on this
    // core before the guest runs.
    unsafe { core::arch::asm!("tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
    if let Some(power) = POWER.lock()[index].get_mut(vcpu) {
        *power = next_power(*power, PowerEvent::Entered);
    }
    percore::this_core().set_running(Some((index, vcpu)));
    // Its hardware PPIs as its vGIC has them now, whatever other vCPUs wrote to its frame
    // while it was off (their kicks found it not running).
    super::vgic::load_private(index, vcpu);
    if super::wants_tick(core) {
        // A shared core's hook, or the DSM's (whose core is known only after boot).
        super::timer::start_tick();
    } else {
        // Nothing for the tick to do here: it would only wake the guest's `wfi`.
        super::timer::stop_tick();
    }
    guest_info!(
        index,
        Class::Psci,
        "partition {} vcpu {}: entering at {:#x} on core {}",
        partition.name,
        vcpu,
        entry,
        core
    );
    let mut frame = TrapFrame::new(entry, vcpu::ENTRY_SPSR);
    frame.x[..3].copy_from_slice(&x);
    exception::enter(&frame)
}

/// `VTTBR_EL2` of partition `index` (its stage-2 root and VMID).
pub fn vttbr(index: usize) -> u64 {
    VTTBR.get(index).map_or(0, |v| v.load(Ordering::Acquire))
}

/// Records that `vcpu` of partition `index` entered (for PSCI `AFFINITY_INFO`).
pub fn mark_entered(index: usize, vcpu: usize) {
    if let Some(power) = POWER.lock().get_mut(index).and_then(|p| p.get_mut(vcpu)) {
        *power = next_power(*power, PowerEvent::Entered);
    }
}

/// Whether `vcpu` of partition `index` is on (entered, not `CPU_OFF`).
pub fn is_on(index: usize, vcpu: usize) -> bool {
    POWER
        .lock()
        .get(index)
        .and_then(|p| p.get(vcpu))
        .is_some_and(|&p| p == VcpuPower::On)
}

/// Partition `index`'s lifecycle state.
pub fn state(index: usize) -> Option<lifecycle::State> {
    LIFECYCLE.lock().state(index)
}

/// Per partition: the `SEQ` of the management request that asked to restart it, or
/// [`NO_RESTART`].
static RESTART_ASKED: [core::sync::atomic::AtomicU32; MAX_PARTITIONS] =
    [const { core::sync::atomic::AtomicU32::new(NO_RESTART) }; MAX_PARTITIONS];
const NO_RESTART: u32 = u32::MAX;

/// The operator's `restart` (request `seq`): the core of the partition's vCPU 0 restarts it at
/// its next kick, as its own `SYSTEM_RESET` would, and answers.
pub fn request_restart(partition: &Partition, seq: u8) {
    let index = usize::from(partition.index);
    let (Some(asked), Some(first)) = (RESTART_ASKED.get(index), partition.vcpus.first()) else {
        return;
    };
    info!("operator: restart of partition {} asked", partition.name);
    asked.store(u32::from(seq), Ordering::Release);
    super::kick(usize::from(first.core));
}

/// Whether an operator's restart of partition `index` waits for its core.
pub fn restart_asked(index: usize) -> bool {
    RESTART_ASKED
        .get(index)
        .is_some_and(|a| a.load(Ordering::Acquire) != NO_RESTART)
}

/// The kick handler's part: restarts the partition running here if the operator asked.
pub fn on_kick(running: Option<(usize, usize)>) {
    let Some((index, _)) = running else {
        return;
    };
    let Some(asked) = RESTART_ASKED.get(index) else {
        return;
    };
    let Ok(seq) = u8::try_from(asked.swap(NO_RESTART, Ordering::AcqRel)) else {
        return;
    };
    let Some(partition) = CONFIG.partitions.get(index) else {
        return;
    };
    // Checked when it was asked; checked again, since a stop or a reset may have come between.
    if !super::linux::can_restart(partition) || super::switch::shares_core(partition) {
        let outcome = Outcome::Err(ErrorCode::NotAllowed);
        log::answer(
            Head { seq, outcome },
            format_args!(
                "{} cannot be restarted from its pristine copy",
                partition.name
            ),
        );
        return;
    }
    restart_current(partition, Some(seq), "operator command")
}

/// Linux panicked or hung (the DSM's watch, on the core of its vCPU 0, which runs here): the
/// partition's `on_panic` policy applies, restart from the pristine copy or stop.
pub fn on_unhealthy(partition: &'static Partition, verdict: Verdict) {
    let Some(boot) = LinuxBoot::find(super::linux::LINUX, partition.index) else {
        return;
    };
    let can_restart =
        super::linux::can_restart(partition) && !super::switch::shares_core(partition);
    let action = health::action(boot.on_panic, can_restart);
    let doing = match action {
        Action::Restart => "restarting",
        Action::Stop => "stopping",
    };
    let cause = match verdict {
        Verdict::Alive => return,
        Verdict::Panicked { cpu } => {
            error!(
                "{} panicked (panic_cpu={}): {} (on_panic={})",
                partition.name,
                cpu,
                doing,
                boot.on_panic.name()
            );
            "panic"
        }
        Verdict::Hung { stalled_ms } => {
            error!(
                "{} hung (no progress for {} ms): {} (on_panic={})",
                partition.name,
                stalled_ms,
                doing,
                boot.on_panic.name()
            );
            "hang"
        }
    };
    log::event(format_args!(
        "partition-panicked name={} cause={} action={}",
        partition.name,
        cause,
        match action {
            Action::Restart => "restart",
            Action::Stop => "stop",
        }
    ));
    match action {
        Action::Restart => restart_current(partition, None, "on_panic = restart"),
        Action::Stop => stop_partition(partition, STOPPED_BY_HYPERVISOR, cause),
    }
}

/// Answers the operator's restart request, if it was one.
fn answer_restart(answer_to: Option<u8>, outcome: Outcome, args: core::fmt::Arguments) {
    if let Some(seq) = answer_to {
        log::answer(Head { seq, outcome }, args);
    }
}

/// Whether partition `index` was stopped (lock-free).
pub fn is_stopped(index: usize) -> bool {
    STOPPED
        .get(index)
        .is_some_and(|s| s.load(Ordering::Acquire))
}

/// The partition and vCPU running on this core; a trap from a lower EL without one is a bug.
fn running() -> (&'static Partition, usize) {
    let state = percore::this_core();
    match state
        .running()
        .and_then(|(p, v)| Some((CONFIG.partitions.get(p)?, v)))
    {
        Some(found) => found,
        None => panic!(
            "trap from a guest on core {} with no vCPU",
            cpu::core_index()
        ),
    }
}

pub fn handle_sync(frame: &mut TrapFrame) {
    let esr = Esr(ESR_EL2.get());
    let (partition, vcpu) = running();
    // Counts of rate-limited lines whose source went quiet.
    super::log::flush_suppressed();
    match esr.ec() {
        ExceptionClass::Hvc64 => handle_hvc(frame, partition),
        ExceptionClass::Smc64 => handle_smc(frame, esr, partition, vcpu),
        ExceptionClass::WfiWfe => {
            // A physical interrupt wakes EL2's `wfi` and is taken right after the return.
            let is_wfe = matches!(esr.wfx(), Some(Wfx::Wfe));
            if super::switch::here() {
                frame.elr = vcpu::resume_pc(esr, frame.elr);
                return super::switch::wfi(frame, is_wfe);
            }
            if super::vgic::trapped_wait_sleeps(is_wfe) {
                cpu::wait_for_interrupt();
            }
            frame.elr = vcpu::resume_pc(esr, frame.elr);
        }
        ExceptionClass::DataAbortLower => handle_data_abort(frame, esr, partition, vcpu),
        // EL1 writes to ICC_SGI1R_EL1 trap while HCR_EL2.IMO is set: guest SGIs are virtual.
        ExceptionClass::SysReg64
            if esr.sysreg().is_some_and(|a| a.is_icc_sgi1r() && !a.is_read) =>
        {
            let rt = esr.sysreg().map_or(31, |a| usize::from(a.rt));
            let value = frame.x.get(rt).copied().unwrap_or(0);
            super::vgic::send_virtual_sgi(usize::from(partition.index), vcpu, value);
            frame.elr = vcpu::resume_pc(esr, frame.elr);
        }
        ExceptionClass::InstAbortLower => {
            let far = FAR_EL2.get();
            // A fetch from a page the DSM made execute-never: its event path judges it.
            let permission = esr
                .inst_abort()
                .is_some_and(|a| matches!(a.ifsc, FaultStatus::Permission(_)) && !a.s1ptw);
            if permission {
                let ipa = mmio::fault_ipa(HPFAR_EL2.get(), far);
                match super::dsm::on_exec_fault(frame, partition, vcpu, ipa) {
                    super::dsm::ExecFault::Done => return,
                    super::dsm::ExecFault::Stopped => {
                        stop_current(partition, STOPPED_BY_HYPERVISOR, "dsm alert")
                    }
                    // A watch lifted since the fetch: its TLB entry is gone, so try again.
                    super::dsm::ExecFault::NotWatched
                        if partition.ram.iter().any(|r| r.contains(ipa)) =>
                    {
                        return
                    }
                    super::dsm::ExecFault::NotWatched => {}
                }
            }
            guest_warn!(
                usize::from(partition.index),
                Class::Stage2Abort,
                "partition {} vcpu {}: instruction fetch from unassigned address {:#x}: external abort injected",
                partition.name, vcpu, far
            );
            inject_abort(frame, partition, true, false, far);
        }
        other => {
            guest_warn!(
                usize::from(partition.index),
                Class::BadTrap,
                "partition {} vcpu {}: unexpected {} (ESR {:#x}) at pc {:#x}: undefined instruction injected",
                partition.name,
                vcpu,
                other.name(),
                esr.0,
                frame.elr
            );
            let injection = inject::inject_undef(frame.elr, frame.spsr, VBAR_EL1.get());
            deliver(frame, partition, injection.ok());
        }
    }
}

fn handle_hvc(frame: &mut TrapFrame, partition: &'static Partition) {
    let mut regs = [0u64; 8];
    regs.copy_from_slice(&frame.x[..8]);
    let action = hypercall::decode(&regs);
    match action {
        HypercallAction::ConsoleWrite { .. } => {
            if let Some(bytes) = action.console_bytes() {
                log::guest_console(usize::from(partition.index), partition.name, bytes);
            }
        }
        HypercallAction::Exit { code } => stop_current(partition, code as i64, "exit hypercall"),
        HypercallAction::Version | HypercallAction::Yield => {}
        HypercallAction::Invalid { .. } | HypercallAction::Unknown { .. } => {}
    }
    if let Some(value) = action.return_value() {
        frame.x[0] = value;
    }
    // The preferred return of HVC is already the next instruction.
}

fn handle_smc(frame: &mut TrapFrame, esr: Esr, partition: &'static Partition, vcpu: usize) {
    let index = usize::from(partition.index);
    let call = PsciCall::from_regs(&[frame.x[0], frame.x[1], frame.x[2], frame.x[3]]);
    let mut ram: heapless::Vec<Range<u64>, 8> = heapless::Vec::new();
    for r in partition.ram {
        let _ = ram.push(r.base..r.end());
    }
    let count = partition.vcpus.len().min(MAX_VCPUS);
    // Decided and applied under one lock, so two CPU_ONs for one vCPU cannot both succeed.
    let mut powers = POWER.lock();
    let view = PartitionView {
        vcpus: &powers[index][..count],
        ram: &ram,
    };
    let outcome = vpsci::handle(&call, &view);
    let event = match outcome {
        PsciOutcome::CpuOn { vcpu: target, .. } => Some((target, PowerEvent::CpuOnAccepted)),
        PsciOutcome::CpuOff => Some((vcpu, PowerEvent::CpuOff)),
        _ => None,
    };
    if let Some((n, event)) = event {
        powers[index][n] = next_power(powers[index][n], event);
    }
    drop(powers);
    match outcome {
        PsciOutcome::Return(_) => {}
        PsciOutcome::CpuOn {
            vcpu: target,
            entry,
            context_id,
        } => {
            let core = usize::from(partition.vcpus[target].core);
            percore::CORES[core].request_start(entry, context_id);
            super::kick(core);
        }
        PsciOutcome::Suspend => cpu::wait_for_interrupt(),
        PsciOutcome::CpuOff => {
            guest_info!(
                index,
                Class::Psci,
                "partition {} vcpu {}: CPU_OFF",
                partition.name,
                vcpu
            );
            super::idle()
        }
        PsciOutcome::SystemOff => stop_current(partition, 0, "PSCI SYSTEM_OFF"),
        PsciOutcome::SystemReset => restart_current(partition, None, "SYSTEM_RESET"),
    }
    if let Some(value) = outcome.return_value() {
        frame.x[0] = value;
    }
    // A trapped SMC leaves ELR_EL2 at the SMC itself.
    frame.elr = vcpu::resume_pc(esr, frame.elr);
}

fn handle_data_abort(frame: &mut TrapFrame, esr: Esr, partition: &'static Partition, vcpu: usize) {
    let Some(abort) = esr.data_abort() else {
        return;
    };
    let far = FAR_EL2.get();
    let hpfar = HPFAR_EL2.get();
    let index = usize::from(partition.index);
    // A write to a page the DSM write-protects: its event path judges it.
    if matches!(abort.dfsc, FaultStatus::Permission(_)) && abort.wnr {
        let ipa = mmio::fault_ipa(hpfar, far);
        match super::dsm::on_write_fault(frame, partition, vcpu, &abort, far, hpfar) {
            super::dsm::WriteFault::Done => return,
            super::dsm::WriteFault::Stopped => {
                stop_current(partition, STOPPED_BY_HYPERVISOR, "dsm alert")
            }
            // A watch lifted since the access: its TLB entry is gone, so try again.
            super::dsm::WriteFault::NotWatched if partition.ram.iter().any(|r| r.contains(ipa)) => {
                return
            }
            super::dsm::WriteFault::NotWatched => {}
        }
    }
    let reg_value = frame.x.get(usize::from(abort.reg)).copied().unwrap_or(0);
    let decoded = mmio::access_from_abort(&abort, hpfar, far, reg_value);
    if let Ok(access) = decoded {
        let handler = MMIO[index].lock().lookup(access.ipa);
        let emulated = handler.is_some();
        if let Some((handler, offset)) = handler {
            if let Some(raw) = handler(index, offset, &access) {
                if !access.write && access.reg < 31 {
                    frame.x[usize::from(access.reg)] = mmio::load_value(&access, raw);
                }
                frame.elr = vcpu::resume_pc(esr, frame.elr);
                return;
            }
        }
        guest_warn!(
            index,
            if emulated {
                Class::BadMmio
            } else {
                Class::Stage2Abort
            },
            "partition {} vcpu {}: {} MMIO {} of {} bytes at {:#x} (pc {:#x}): external abort injected",
            partition.name,
            vcpu,
            if emulated { "refused" } else { "unassigned" },
            if access.write { "write" } else { "read" },
            access.size,
            access.ipa,
            frame.elr
        );
    } else {
        let ipa = mmio::fault_ipa(hpfar, far);
        guest_warn!(
            index,
            Class::Stage2Abort,
            "partition {} vcpu {}: unassigned memory {} at {:#x} without syndrome (pc {:#x}): external abort injected",
            partition.name,
            vcpu,
            if abort.wnr { "write" } else { "read" },
            ipa,
            frame.elr
        );
    }
    inject_abort(frame, partition, false, abort.wnr, far);
}

fn inject_abort(
    frame: &mut TrapFrame,
    partition: &'static Partition,
    fetch: bool,
    write: bool,
    far: u64,
) {
    let state = GuestState {
        pc: frame.elr,
        spsr: frame.spsr,
        vbar_el1: VBAR_EL1.get(),
        is_instruction: fetch,
        write,
        far,
        il: true,
    };
    let injection = inject::inject_external_abort(&state);
    deliver(frame, partition, injection.ok());
}

/// Delivers an injected exception, or stops the partition when there is none to deliver or
/// delivering it would only fault again at the guest's vector.
fn deliver(frame: &mut TrapFrame, partition: &'static Partition, injection: Option<Injection>) {
    match injection {
        Some(injection) if !vcpu::injection_loops(frame.elr, injection.new_pc) => {
            apply(frame, &injection)
        }
        Some(_) => {
            error!(
                "partition {}: fault at its own exception vector {:#x}",
                partition.name, frame.elr
            );
            stop_current(partition, STOPPED_BY_HYPERVISOR, "fault loop at its vector")
        }
        None => stop_current(
            partition,
            STOPPED_BY_HYPERVISOR,
            "exception from a state it cannot be injected into",
        ),
    }
}

fn apply(frame: &mut TrapFrame, injection: &Injection) {
    ESR_EL1.set(injection.esr_el1);
    if let Some(far) = injection.far_el1 {
        FAR_EL1.set(far);
    }
    ELR_EL1.set(injection.elr_el1);
    SPSR_EL1.set(injection.spsr_el1);
    frame.elr = injection.new_pc;
    frame.spsr = injection.new_spsr;
}

/// A physical IRQ from a guest; `true` asks the vector for a scheduling decision (a shared
/// core), with every general register saved.
pub fn handle_irq() -> bool {
    // The fast path is closed to stopped partitions (`vgic::partition_stopped`).
    if super::handle_guest_interrupt() {
        return false;
    }
    super::log::flush_suppressed();
    // Another core stopped this core's partition: leave the guest.
    if let Some((index, _)) = percore::this_core().running() {
        if STOPPED
            .get(index)
            .is_some_and(|s| s.load(Ordering::Acquire))
        {
            super::idle()
        }
    }
    super::switch::take_resched()
}

pub fn handle_unexpected(frame: &mut TrapFrame, kind: VectorKind) {
    let (partition, vcpu) = running();
    error!(
        "partition {} vcpu {}: unexpected {} from {} (ESR {:#x}, pc {:#x}); stopping the partition",
        partition.name,
        vcpu,
        kind.type_name(),
        kind.group_name(),
        ESR_EL2.get(),
        frame.elr
    );
    stop_current(partition, STOPPED_BY_HYPERVISOR, "unexpected exception")
}

/// Restarts the partition running on this core (PSCI `SYSTEM_RESET`): its other vCPUs are
/// called off, its memory gets the pristine kernel and initrd back, and vCPU 0 boots again.
/// Other partitions are not touched. Without pristine copies the partition is stopped.
/// `answer_to`: the operator's request that asked for it; `cause`: who asked, for the log.
fn restart_current(partition: &'static Partition, answer_to: Option<u8>, cause: &str) -> ! {
    let index = usize::from(partition.index);
    if !super::linux::can_restart(partition) || super::switch::shares_core(partition) {
        warn!(
            "partition {}: SYSTEM_RESET without a reset_copy, or on a shared core: cannot restart it; stopping it",
            partition.name
        );
        stop_current(partition, 0, "PSCI SYSTEM_RESET")
    }
    if !LIFECYCLE.lock().begin_reset(index) {
        // Another vCPU's reset (or a stop) is under way; it calls this core off too.
        answer_restart(
            answer_to,
            Outcome::Err(ErrorCode::Busy),
            format_args!("a reset or a stop of {} is under way", partition.name),
        );
        super::idle()
    }
    info!("partition {}: {}: restarting it", partition.name, cause);
    STOPPED[index].store(true, Ordering::Release);
    super::vgic::partition_stopped(index);
    let here = cpu::core_index();
    let state = percore::this_core();
    super::vgic::leave_vcpu(state.running());
    state.set_running(None);
    for placed in partition.vcpus {
        let core = usize::from(placed.core);
        if core != here {
            super::kick(core);
        }
    }
    if !wait_until_left(partition) {
        error!(
            "partition {}: a vCPU did not leave for the restart",
            partition.name
        );
        answer_restart(
            answer_to,
            Outcome::Err(ErrorCode::Failed),
            format_args!("a vCPU of {} did not leave for the restart", partition.name),
        );
        LIFECYCLE.lock().stop(index, STOPPED_BY_HYPERVISOR);
        super::idle()
    }
    for placed in partition.vcpus {
        // A CPU_ON the old kernel asked for must not start the new one.
        let _ = percore::CORES[usize::from(placed.core)].take_start_request();
    }
    POWER.lock()[index] = [VcpuPower::Off; MAX_VCPUS];
    // The new kernel writes its own text while it boots: lift the DSM's watches (its DMA's
    // too), then build stage 2 afresh, so the blocks the watches split are whole again and
    // the tables they took are free: the partition gets the translation of its cold boot.
    for r in partition.ram {
        stage2_protect(index, r.base, r.size, true, true);
    }
    if let Err(what) = rebuild_stage2(index, partition) {
        error!("partition {}: stage 2: {}", partition.name, what);
        answer_restart(
            answer_to,
            Outcome::Err(ErrorCode::Failed),
            format_args!("restarting {} failed: stage 2; stopped", partition.name),
        );
        stop_current(partition, STOPPED_BY_HYPERVISOR, "restart failed")
    }
    super::vgic::reset_partition(index, partition);
    let start = super::linux::restore(partition);
    let Ok((entry, regs)) = start else {
        let why = start.err().unwrap_or("?");
        error!("partition {}: restart failed: {}", partition.name, why);
        answer_restart(
            answer_to,
            Outcome::Err(ErrorCode::Failed),
            format_args!("restarting {} failed: {}; stopped", partition.name, why),
        );
        stop_current(partition, STOPPED_BY_HYPERVISOR, "restart failed")
    };
    if !LIFECYCLE.lock().finish_reset(index) {
        answer_restart(
            answer_to,
            Outcome::Err(ErrorCode::Failed),
            format_args!("{} was stopped during its restart", partition.name),
        );
        super::idle()
    }
    super::dsm::partition_restarted(index);
    report_resources(partition);
    STOPPED[index].store(false, Ordering::Release);
    super::vgic::partition_stopped(index);
    log::event(format_args!("partition-restarted name={}", partition.name));
    answer_restart(
        answer_to,
        Outcome::Ok,
        format_args!(
            "{} restarted from its pristine copy (restart {})",
            partition.name,
            super::linux::resets(index)
        ),
    );
    let Some(first) = partition.vcpus.first() else {
        super::idle()
    };
    if let Some(power) = POWER.lock()[index].get_mut(0) {
        *power = next_power(*power, PowerEvent::CpuOnAccepted);
    }
    let core = usize::from(first.core);
    if core == here {
        enter_vcpu(first.core, partition, 0, entry, regs)
    }
    // vCPU 0 lives elsewhere: its core starts it as it would after CPU_ON (x0 = the DTB).
    percore::CORES[core].request_start(entry, regs[0]);
    super::kick(core);
    super::idle()
}

/// Builds partition `index`'s stage 2 again from its config (none of its vCPUs runs), and
/// drops every translation the old tables left in the TLBs of its VMID.
fn rebuild_stage2(index: usize, partition: &Partition) -> Result<usize, &'static str> {
    let tables = build_stage2(index, partition)?;
    let saved = VTTBR_EL2.get();
    VTTBR_EL2.set(VTTBR[index].load(Ordering::Acquire));
    barrier::isb(barrier::SY);
    cpu::invalidate_guest_tlbs();
    VTTBR_EL2.set(saved);
    barrier::isb(barrier::SY);
    Ok(tables)
}

/// Logs what spumone holds for partition `partition` as it (re)starts: its stage 2, vGIC
/// and DSM state. Every restart must report what the cold boot did (the restart tests
/// compare them): a difference is state the restart left behind.
fn report_resources(partition: &Partition) {
    let index = usize::from(partition.index);
    let s2 = {
        let mut tables = STAGE2_TABLES[index].lock();
        let base_pa = tables.0.as_ptr() as u64;
        let used = STAGE2_USED[index].load(Ordering::Acquire);
        let pool = TablePool::resume(&mut tables.0, base_pa, used);
        let s2 = Stage2::reopen(pool, STAGE2_ROOT[index].load(Ordering::Acquire));
        (s2.tables_used(), s2.stats())
    };
    let (tables, stats) = s2;
    let vgic = super::vgic::counts(index);
    let (dsm_phase, dsm_watches) = super::dsm::counts(index).unwrap_or(("off", 0));
    info!(
        "partition {} boot {} resources: stage2 tables={} gib={} mib={} pages={}; vgic vcpus={} spis={} enabled={} pending={} active={}; dsm phase={} watches={}",
        partition.name,
        super::linux::resets(index),
        tables,
        stats.gib_blocks,
        stats.mib_blocks,
        stats.pages,
        vgic.vcpus,
        vgic.spis,
        vgic.enabled,
        vgic.pending,
        vgic.active,
        dsm_phase,
        dsm_watches
    );
}

/// Waits (boundedly) until no core runs a vCPU of `partition`; `false` if one never left.
fn wait_until_left(partition: &Partition) -> bool {
    let index = usize::from(partition.index);
    // A kicked core leaves within one interrupt entry; this bound only catches a wedged one.
    for _ in 0..50_000_000u32 {
        let busy = partition.vcpus.iter().any(|placed| {
            percore::CORES[usize::from(placed.core)]
                .running()
                .is_some_and(|(p, _)| p == index)
        });
        if !busy {
            // Pairs with the departing cores' release in `set_running`: what their vCPUs
            // wrote is visible before the partition's memory is rewritten.
            core::sync::atomic::fence(Ordering::Acquire);
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// Stops the partition running on this core and idles the core (or powers off if it was the
/// last partition).
fn stop_current(partition: &'static Partition, code: i64, why: &str) -> ! {
    stop_partition(partition, code, why);
    super::idle()
}

/// Stops `partition`; other cores running it leave it at their next interrupt.
pub fn stop_partition(partition: &'static Partition, code: i64, why: &str) {
    let index = usize::from(partition.index);
    let outcome = LIFECYCLE.lock().stop(index, code);
    if outcome == StopOutcome::AlreadyStopped {
        return;
    }
    if let Some(stopped) = STOPPED.get(index) {
        stopped.store(true, Ordering::Release);
    }
    super::vgic::partition_stopped(index);
    // Its other cores leave it on the kick (the fast IRQ path is closed to it now).
    let here = cpu::core_index();
    for placed in partition.vcpus {
        let core = usize::from(placed.core);
        if core != here {
            super::kick(core);
        }
    }
    info!(
        "partition {} stopped ({}), exit code {}",
        partition.name, why, code
    );
    super::dsm::partition_stopped(index);
    // Whatever the stopped guest did, the other images must be as they were at boot.
    let last = matches!(outcome, StopOutcome::LastStopped { .. });
    super::integrity::report_after_stop(here, last);
    log::event(format_args!(
        "partition-stopped name={} code={}",
        partition.name, code
    ));
    if let StopOutcome::LastStopped { machine_code } = outcome {
        super::shutdown(machine_code)
    }
}
