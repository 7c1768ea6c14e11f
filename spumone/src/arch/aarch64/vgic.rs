//! Virtual GIC mechanism: the emulated GICD/GICR frames in each partition's MMIO table, the
//! virtual CPU interface (`ICH_*_EL2`) of the vCPU on this core, and forwarding physical
//! interrupts into list registers. The state and every decision live in `hvcore::vgic`.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Readable, Writeable, CNTV_CTL_EL0, ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2, ICH_AP0R3_EL2,
    ICH_AP1R0_EL2, ICH_AP1R1_EL2, ICH_AP1R2_EL2, ICH_AP1R3_EL2, ICH_HCR_EL2, ICH_LR0_EL2,
    ICH_LR10_EL2, ICH_LR11_EL2, ICH_LR12_EL2, ICH_LR13_EL2, ICH_LR14_EL2, ICH_LR15_EL2,
    ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2, ICH_LR4_EL2, ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2,
    ICH_LR8_EL2, ICH_LR9_EL2, ICH_VMCR_EL2, ICH_VTR_EL2,
};
use board::rt::Partition;

use super::config::CONFIG;
use super::guest::MMIO;
use super::{cpu, gic, percore};
use crate::hvcore::loglimit::Class;
use crate::hvcore::migrate::{departing_lrs, VgicState, MAX_LRS};
use crate::hvcore::mmio::MmioAccess;
use crate::hvcore::smp::{self, Placement, Posted};
use crate::hvcore::vgic::{
    self, BadAccess, Delivery, Effect, Effects, IrqRoute, ListReg, PendingQueue, Vgic, GICD_SIZE,
    MAINTENANCE_INTID, VTIMER_INTID,
};
use crate::hvcore::vsgi;
use crate::hvcore::{alone, MAX_CORES, MAX_PARTITIONS};

static VGICS: [super::cpu::Lock<Vgic>; MAX_PARTITIONS] =
    [const { super::cpu::Lock::new(Vgic::new()) }; MAX_PARTITIONS];
/// Interrupts of this core's vCPU waiting for a free list register.
static QUEUES: [super::cpu::Lock<PendingQueue>; MAX_CORES] =
    [const { super::cpu::Lock::new(PendingQueue::new()) }; MAX_CORES];
static SPI_LINES: AtomicU32 = AtomicU32::new(0);
static LIST_REGS: AtomicUsize = AtomicUsize::new(0);
/// Per core: the list register value forwarding the virtual timer PPI to the vCPU placed
/// alone on that core (or, on a shared-loop core, running alone there: `ALONE_OWNER`), or 0
/// (see `Vgic::fast_lr`). Kept in step with the vGIC under its lock.
static FAST_VTIMER_LR: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];
/// Per core of the shared loop: the vCPU running there alone and untrapped, which owns the
/// core's `FAST_VTIMER_LR` (partition << 8 | vCPU, plus 1; 0 for none). Set by that core
/// only, under the owner's vGIC lock.
static ALONE_OWNER: [AtomicU32; MAX_CORES] = [const { AtomicU32::new(0) }; MAX_CORES];
/// Per core: some interrupt waits in `QUEUES` (only this core touches its flag).
static QUEUED: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];
/// Per partition and vCPU: SGIs/PPIs other cores posted for it (see `smp::Posted`).
static POSTED: [[Posted; vgic::MAX_VCPUS]; MAX_PARTITIONS] =
    [const { [const { Posted::new() }; vgic::MAX_VCPUS] }; MAX_PARTITIONS];
/// INTIDs already reported as unclaimed, one bit each.
/// A virtual-only SPI raised for a vCPU on another core (its INTID, 0 for none), taken there
/// on the kick.
static POSTED_SPI: [[AtomicU32; vgic::MAX_VCPUS]; MAX_PARTITIONS] =
    [const { [const { AtomicU32::new(0) }; vgic::MAX_VCPUS] }; MAX_PARTITIONS];
static UNCLAIMED_LOGGED: [AtomicU32; 32] = [const { AtomicU32::new(0) }; 32];

/// Records what the physical GIC offers; called once by the boot core.
pub fn init(spi_lines: u32) {
    SPI_LINES.store(spi_lines, Ordering::Relaxed);
    LIST_REGS.store(vgic::list_regs(read_vtr()), Ordering::Relaxed);
}

/// Per-core: the maintenance interrupt reaches EL2 (it only fires while a queue waits).
pub fn init_core(mpidr: u64) {
    gic::enable_private(mpidr, MAINTENANCE_INTID);
}

/// Number of list registers.
pub fn list_regs() -> usize {
    LIST_REGS.load(Ordering::Relaxed)
}

/// Sets up partition `index`'s vGIC and routes its GICD/GICR frames to the emulation.
pub fn prepare_partition(index: usize, partition: &Partition) -> Result<(), &'static str> {
    let mut v = VGICS[index].lock();
    let owned = partition
        .devices
        .iter()
        .flat_map(|d| d.irqs.iter().copied());
    v.configure(
        partition.vcpus.len(),
        SPI_LINES.load(Ordering::Relaxed),
        owned,
    );
    refresh_fast(index, &v);
    let gicd = gic::distributor_base();
    let gicr = gic::redistributor_base();
    let mut table = MMIO[index].lock();
    table
        .register(gicd..gicd + GICD_SIZE, gicd_access)
        .map_err(|_| "cannot register the distributor")?;
    table
        .register(gicr..gicr + v.gicr_size(), gicr_access)
        .map_err(|_| "cannot register the redistributors")?;
    Ok(())
}

fn gicd_access(partition: usize, offset: u64, access: &MmioAccess) -> Option<u64> {
    let writer = writing_vcpu(partition);
    let value = emulate(partition, offset, access, "GICD", |v| {
        if access.write {
            v.gicd_write(offset, access.size, access.value)
                .map(|mut fx| {
                    fx.extend(v.spis_changed(writer));
                    (0, fx)
                })
        } else {
            v.gicd_read(offset, access.size)
                .map(|x| (x, Effects::new()))
        }
    });
    relist_writer(partition, writer, access);
    value
}

/// The vCPU of `partition` that trapped here (this core runs it), or `usize::MAX`.
fn writing_vcpu(partition: usize) -> usize {
    percore::this_core()
        .running()
        .filter(|&(p, _)| p == partition)
        .map_or(usize::MAX, |(_, vcpu)| vcpu)
}

/// After a write by `writer`: its list registers are live here, so they are brought in line
/// at once, after the physical GIC (so an interrupt taken back is already off there).
fn relist_writer(partition: usize, writer: usize, access: &MmioAccess) {
    if access.write {
        if let Some(v) = VGICS.get(partition) {
            relist_here(&mut v.lock(), writer);
        }
    }
}

fn gicr_access(partition: usize, offset: u64, access: &MmioAccess) -> Option<u64> {
    // The writer is the vCPU that trapped here: this core runs it.
    let writer = writing_vcpu(partition);
    let value = emulate(partition, offset, access, "GICR", |v| {
        if access.write {
            v.gicr_write(writer, offset, access.size, access.value)
                .map(|fx| (0, fx))
        } else {
            v.gicr_read(offset, access.size)
                .map(|x| (x, Effects::new()))
        }
    });
    relist_writer(partition, writer, access);
    value
}

fn emulate(
    partition: usize,
    offset: u64,
    access: &MmioAccess,
    frame: &str,
    op: impl FnOnce(&mut Vgic) -> Result<(u64, Effects), BadAccess>,
) -> Option<u64> {
    let mut v = VGICS.get(partition)?.lock();
    let result = op(&mut v).map(|(value, effects)| {
        for effect in effects {
            apply(partition, effect);
            if let Effect::Private {
                intid,
                enable: true,
                priority,
            } = effect
            {
                guest_info!(
                    partition,
                    Class::Vgic,
                    "vGIC: core {} PPI {} forwarded from hardware (priority {:#x})",
                    cpu::core_index(),
                    intid,
                    priority
                );
            }
        }
        value
    });
    if access.write {
        refresh_fast(partition, &v);
    }
    let unknown = v.take_unknown();
    drop(v);
    let name = CONFIG.partitions.get(partition).map_or("?", |p| p.name);
    if let Some(at) = unknown {
        guest_warn!(
            partition,
            Class::Vgic,
            "partition {}: {} offset {:#x} is not emulated: reads as zero, writes ignored",
            name,
            frame,
            at
        );
    }
    match result {
        Ok(value) => Some(value),
        Err(why) => {
            guest_warn!(
                partition,
                Class::Vgic,
                "partition {}: {} access of {} bytes at offset {:#x}: {}",
                name,
                frame,
                access.size,
                offset,
                match why {
                    BadAccess::Misaligned => "misaligned",
                    BadAccess::WrongSize => "wrong size",
                    BadAccess::OutOfRange => "beyond the frames",
                }
            );
            None
        }
    }
}

/// Recomputes the lock-free forwarding values of `partition`'s vCPUs (called with its vGIC
/// locked, after every change). A stopped partition gets none, so its cores take the slow
/// path, which notices the stop.
fn refresh_fast(partition: usize, v: &Vgic) {
    let Some(p) = CONFIG.partitions.get(partition) else {
        return;
    };
    let stopped = super::guest::is_stopped(partition);
    let owners: [u32; MAX_CORES] = core::array::from_fn(|c| ALONE_OWNER[c].load(Ordering::Relaxed));
    for (n, placed) in p.vcpus.iter().enumerate() {
        let lr = v.fast_lr(n, VTIMER_INTID, stopped);
        let home = usize::from(placed.core);
        let shared_loop = super::switch::is_shared_core(placed.core);
        let cores = alone::fast_path_cores(home, shared_loop, alone_code(partition, n), &owners);
        for (core, slot) in FAST_VTIMER_LR.iter().enumerate() {
            if cores & (1 << core) != 0 {
                slot.store(lr, Ordering::Relaxed);
            }
        }
    }
}

fn alone_code(partition: usize, vcpu: usize) -> u32 {
    ((partition as u32) << 8 | vcpu as u32) + 1
}

/// A shared-loop core (this one) runs `owner` (partition, vCPU) alone with WFI untrapped, so
/// its timer PPI may take the lock-free path; `None` closes that path again. Called with no
/// list register of another vCPU live on the core.
pub fn set_alone(core: usize, owner: Option<(usize, usize)>) {
    let (Some(slot), Some(fast)) = (ALONE_OWNER.get(core), FAST_VTIMER_LR.get(core)) else {
        return;
    };
    // Only this core changes its owner, so the one read here is still current under the lock.
    let before = slot.load(Ordering::Relaxed);
    if before != 0 {
        let partition = ((before - 1) >> 8) as usize;
        if let Some(v) = VGICS.get(partition) {
            let _v = v.lock();
            slot.store(0, Ordering::Relaxed);
            fast.store(0, Ordering::Relaxed);
        }
    }
    if let Some((partition, vcpu)) = owner {
        if let Some(v) = VGICS.get(partition) {
            let v = v.lock();
            slot.store(alone_code(partition, vcpu), Ordering::Relaxed);
            let stopped = super::guest::is_stopped(partition);
            fast.store(v.fast_lr(vcpu, VTIMER_INTID, stopped), Ordering::Relaxed);
        }
    }
}

/// Returns partition `index`'s vGIC to its boot state for a restart (none of its vCPUs
/// runs): configured afresh, nothing posted, its SPIs quiet until the new kernel enables
/// them. Virtual-only SPIs must be added again by their device models.
pub fn reset_partition(index: usize, partition: &Partition) {
    let Some(v) = VGICS.get(index) else {
        return;
    };
    let mut v = v.lock();
    let owned = || {
        partition
            .devices
            .iter()
            .flat_map(|d| d.irqs.iter().copied())
    };
    for intid in owned() {
        gic::quiesce_spi(intid);
    }
    v.configure(
        partition.vcpus.len(),
        SPI_LINES.load(Ordering::Relaxed),
        owned(),
    );
    for posted in &POSTED[index] {
        posted.take();
    }
    for spi in &POSTED_SPI[index] {
        spi.store(0, Ordering::Relaxed);
    }
    refresh_fast(index, &v);
}

/// Closes the fast path of a partition just marked stopped (or opens it again once a
/// restarted one runs).
pub fn partition_stopped(partition: usize) {
    if let Some(v) = VGICS.get(partition) {
        refresh_fast(partition, &v.lock());
    }
}

/// Forwards the just-acknowledged `intid` to this core's vCPU without any lock when the
/// cached value allows it and a list register is free; `false` leaves it to [`dispatch`].
pub fn fast_forward(core: usize, intid: u32) -> bool {
    if intid != VTIMER_INTID {
        return false;
    }
    let (Some(slot), Some(queued)) = (FAST_VTIMER_LR.get(core), QUEUED.get(core)) else {
        return false;
    };
    let lr = slot.load(Ordering::Relaxed);
    if lr == 0 || queued.load(Ordering::Relaxed) {
        return false;
    }
    let Some(n) = vgic::free_lr(read_elrsr(), list_regs()) else {
        return false;
    };
    write_lr(n, lr);
    gic::priority_drop_before_eret(intid);
    true
}

/// The MPIDR of the core that runs `vcpu` of `partition` (where it migrated, if it did).
fn core_mpidr(partition: usize, vcpu: usize) -> Option<u64> {
    let core = vcpu_core(partition, vcpu)?;
    Some(percore::CORES.get(core)?.mpidr.load(Ordering::Relaxed))
}

fn apply(partition: usize, effect: Effect) {
    match effect {
        // Only ever this core's redistributor, for the vCPU loaded here.
        Effect::Private {
            intid,
            enable,
            priority,
        } => {
            gic::configure_private(cpu::mpidr(), intid, enable, priority);
        }
        // The vGIC lock is held here: the vCPU's core syncs when it takes the kick, and only
        // if that vCPU is the one loaded there (`deliver_posted`).
        Effect::PrivateSync { vcpu } => {
            if let Some(core) = vcpu_core(partition, vcpu) {
                super::kick(core);
            }
        }
        Effect::Spi {
            intid,
            enable,
            priority,
            target_vcpu,
        } => {
            if let Some(mpidr) = core_mpidr(partition, target_vcpu) {
                gic::configure_spi(intid, enable, priority, mpidr);
            }
        }
        // The vGIC lock is held here: have the vCPU's core take them, even this one.
        Effect::SoftPending { vcpu } => {
            if let Some(core) = vcpu_core(partition, vcpu) {
                super::kick(core);
            }
        }
    }
}

fn vcpu_core(partition: usize, vcpu: usize) -> Option<usize> {
    super::migrate::core_of(partition, vcpu)
}

/// A guest's `ICC_SGI1R_EL1` write from `sender` of `partition`: posts the SGI to each target
/// vCPU; the one on this core takes it at once, other cores are kicked.
pub fn send_virtual_sgi(partition: usize, sender: usize, value: u64) {
    let vcpus = CONFIG
        .partitions
        .get(partition)
        .map_or(0, |p| p.vcpus.len());
    let sgi = vsgi::decode(value, sender, vcpus);
    let mut local = false;
    for target in sgi.vcpus() {
        let Some(posted) = POSTED.get(partition).and_then(|p| p.get(target)) else {
            continue;
        };
        let first = posted.post(1 << sgi.intid);
        let Some(core) = vcpu_core(partition, target) else {
            continue;
        };
        // Only the sender itself takes it at once; another vCPU here (one that migrated in)
        // is woken by the kick like a vCPU elsewhere.
        if percore::this_core().running() == Some((partition, target)) {
            local = true;
        } else if first {
            super::kick(core);
        }
    }
    if local {
        deliver_posted();
    }
}

/// Moves the interrupts posted for the vCPU running on this core into its list registers
/// (or the queue when they are full); disabled ones stay pending in its vGIC.
pub fn deliver_posted() {
    let Some((partition, vcpu)) = percore::this_core().running() else {
        return;
    };
    let Some(posted) = POSTED.get(partition).and_then(|p| p.get(vcpu)) else {
        return;
    };
    let bits = posted.take();
    let Some(v) = VGICS.get(partition) else {
        return;
    };
    let spi = POSTED_SPI[partition]
        .get(vcpu)
        .map_or(0, |s| s.swap(0, Ordering::AcqRel));
    let (ready, spi) = {
        let v = &mut *v.lock();
        let spi = (spi != 0)
            .then(|| v.assert_virtual_spi(spi))
            .flatten()
            .filter(|(target, _)| *target == vcpu);
        // What other vCPUs changed of this one's hardware PPIs: it is loaded here.
        for effect in v.take_private_sync(vcpu) {
            apply(partition, effect);
        }
        relist_here(v, vcpu);
        (v.take_software(vcpu, bits), spi)
    };
    for lr in ready.into_iter().chain(spi.map(|(_, lr)| lr)) {
        place_local(lr);
    }
}

/// Puts a software interrupt into this core's list registers (or its queue when they are
/// full), merging with an LR that already holds it.
fn place_local(lr: ListReg) {
    let count = list_regs().min(16);
    let mut lrs = [0u64; 16];
    let core = cpu::core_index();
    for (n, value) in lrs.iter_mut().enumerate().take(count) {
        *value = read_lr(n);
    }
    match smp::place(&lrs[..count], read_elrsr(), lr.vintid) {
        Placement::AlreadyPending => {}
        Placement::Merge(n, value) => write_lr(n, value),
        Placement::Free(n) => write_lr(n, lr.encode()),
        Placement::Queue => {
            // A full queue drops it: SGIs are edge-triggered, a lost one is the best left.
            if QUEUES[core].lock().push(lr).is_ok() {
                QUEUED[core].store(true, Ordering::Relaxed);
                write_hcr(vgic::ich_hcr(true));
            }
        }
    }
}

/// What partition `index`'s vGIC holds now (for the restart report).
pub fn counts(index: usize) -> crate::hvcore::vgic::VgicCounts {
    VGICS
        .get(index)
        .map(|v| v.lock().counts())
        .unwrap_or_default()
}

/// Makes SPI `intid` of `partition` one with no hardware behind it (an emulated device's).
pub fn add_virtual_spi(partition: usize, intid: u32) {
    if let Some(v) = VGICS.get(partition) {
        v.lock().add_virtual_spi(intid);
    }
}

/// The line of virtual-only SPI `intid` of `partition` rose: presents it to its target vCPU,
/// here or on its core by a kick.
pub fn raise_virtual_spi(partition: usize, intid: u32) {
    let Some(v) = VGICS.get(partition) else {
        return;
    };
    let Some((vcpu, lr)) = v.lock().assert_virtual_spi(intid) else {
        return;
    };
    if percore::this_core().running() == Some((partition, vcpu)) {
        place_local(lr);
        return;
    }
    let Some(core) = vcpu_core(partition, vcpu) else {
        return;
    };
    if let Some(slot) = POSTED_SPI[partition].get(vcpu) {
        slot.store(intid, Ordering::Release);
        super::kick(core);
    }
}

/// Enables the virtual CPU interface for the vCPU about to enter on this core, with empty
/// list registers.
pub fn enter_vcpu() {
    let core = cpu::core_index();
    *QUEUES[core].lock() = PendingQueue::new();
    QUEUED[core].store(false, Ordering::Relaxed);
    for n in 0..list_regs() {
        write_lr(n, 0);
    }
    write_vmcr(vgic::ICH_VMCR_RESET);
    write_hcr(vgic::ich_hcr(false));
}

/// Leaving the vCPU on this core for good: its hardware-backed interrupts must not keep
/// firing at a core with no one to take them.
pub fn leave_vcpu(running: Option<(usize, usize)>) {
    write_hcr(0);
    if running.is_none() {
        return;
    }
    for n in 0..list_regs() {
        write_lr(n, 0);
    }
    gic::quiesce_private(cpu::mpidr(), VTIMER_INTID);
    // Stops the EL1 virtual timer the departed guest left armed on this core.
    CNTV_CTL_EL0.set(0);
    barrier::isb(barrier::SY);
}

/// Handles physical interrupt `intid`, acknowledged while `running` ran on this core, unless
/// it is the hypervisor tick (`Hypervisor` is returned for the caller to handle).
pub fn dispatch(running: Option<(usize, usize)>, intid: u32, hyp_timer: u32) -> IrqRoute {
    // The tick and maintenance interrupts skip the vGIC lock.
    let own = intid == hyp_timer || intid == MAINTENANCE_INTID;
    let delivery = running
        .filter(|_| !own)
        .and_then(|(partition, vcpu)| VGICS.get(partition)?.lock().deliverable(vcpu, intid));
    let route = vgic::route_irq(intid, hyp_timer, delivery);
    match route {
        IrqRoute::Hypervisor => {}
        // A level: what asserts it (underflow while interrupts wait) is resolved first, or
        // it would fire again at once and hold this core here.
        IrqRoute::Maintenance => {
            if running.is_some() {
                refill_now();
            }
            gic::end_of_interrupt(intid);
        }
        IrqRoute::Guest(lr) => inject(intid, lr),
        IrqRoute::Unclaimed => unclaimed(intid),
    }
    route
}

fn inject(intid: u32, lr: ListReg) {
    match vgic::free_lr(read_elrsr(), list_regs()) {
        Some(n) => write_lr(n, lr.encode()),
        None => {
            let core = cpu::core_index();
            if QUEUES[core].lock().push(lr).is_err() {
                // Nowhere to keep it (the queue is full of hardware interrupts): switched
                // off, since a level interrupt ended while asserted fires again at once.
                unclaimed(intid);
                return;
            }
            QUEUED[core].store(true, Ordering::Relaxed);
        }
    }
    // Priority drop only: the guest's EOI deactivates it through the HW bit.
    gic::priority_drop(intid);
}

/// An interrupt nobody takes: end it, switch it off so a level interrupt cannot storm, and
/// report it once.
fn unclaimed(intid: u32) {
    gic::disable(cpu::mpidr(), intid);
    gic::end_of_interrupt(intid);
    let (word, bit) = ((intid / 32) as usize % 32, 1u32 << (intid % 32));
    if UNCLAIMED_LOGGED[word].fetch_or(bit, Ordering::Relaxed) & bit == 0 {
        warn!(
            "core {}: interrupt {} belongs to no running vCPU; disabled",
            cpu::core_index(),
            intid
        );
    }
}

/// Moves queued interrupts into free list registers; asks for an underflow maintenance
/// interrupt while some still wait.
pub fn refill() {
    if QUEUED[cpu::core_index()].load(Ordering::Relaxed) {
        refill_now();
    }
}

/// [`refill`] whether or not the flag says something waits, `ICH_HCR_EL2` included (the
/// maintenance interrupt's condition is cleared either way: `vgic::refill`).
fn refill_now() {
    let core = cpu::core_index();
    let mut queue = QUEUES[core].lock();
    let plan = vgic::refill(read_elrsr(), list_regs(), &mut queue);
    for &(n, value) in &plan.writes {
        write_lr(n, value);
    }
    QUEUED[core].store(!queue.is_empty(), Ordering::Relaxed);
    write_hcr(plan.hcr);
}

/// Whether a trapped WFI/WFE may sleep this core at EL2.
pub fn trapped_wait_sleeps(is_wfe: bool) -> bool {
    vgic::trapped_wait_sleeps(is_wfe, is_wfe || virtual_pending())
}

/// Whether this core's vCPU has a virtual interrupt to take: one in its list registers that
/// its CPU interface would signal (`vgic::any_signalled`, the running priority included), or
/// any waiting for a free one.
pub fn virtual_pending() -> bool {
    if QUEUED[cpu::core_index()].load(Ordering::Relaxed) {
        return true;
    }
    let mut lrs = [0u64; 16];
    let count = list_regs().min(lrs.len());
    for (n, lr) in lrs.iter_mut().enumerate().take(count) {
        *lr = read_lr(n);
    }
    let prebits = priority_bits();
    let regs = active_priority_regs(prebits);
    let mut active = [0u32; 4];
    for (n, bits) in active.iter_mut().enumerate().take(regs) {
        *bits = read_apr(false, n) | read_apr(true, n);
    }
    let running = vgic::running_priority(&active[..regs], prebits);
    vgic::any_signalled(&lrs[..count], read_vmcr(), running, prebits)
}

// ---------------------------------------------------------------------------------------------
// Saving and loading the virtual CPU interface, for a core shared by several vCPUs
// (`super::switch`).

/// `vcpu` of `partition` is being loaded on this core: its hardware PPIs' configuration
/// replaces whatever the vCPU that ran here before left in this core's redistributor.
pub fn load_private(partition: usize, vcpu: usize) {
    let Some(v) = VGICS.get(partition) else {
        return;
    };
    let mut v = v.lock();
    for effect in v.load_private(vcpu) {
        apply(partition, effect);
    }
    relist_here(&mut v, vcpu);
}

/// Brings what the list registers and queue of `vcpu`, loaded on this core, hold in line
/// with its vGIC (`Vgic::relist`); nothing is read unless something changed.
fn relist_here(v: &mut Vgic, vcpu: usize) {
    if !v.relist_due(vcpu) {
        return;
    }
    let core = cpu::core_index();
    let count = list_regs().min(16);
    let mut lrs = [0u64; 16];
    for (n, value) in lrs.iter_mut().enumerate().take(count) {
        *value = read_lr(n);
    }
    let plan = v.relist(vcpu, &lrs[..count], &mut QUEUES[core].lock());
    for &(n, value) in &plan.writes {
        write_lr(n, value);
    }
    for &intid in &plan.deactivate {
        gic::deactivate(intid);
    }
    // Emptied list registers take what waits, and the underflow request follows the queue.
    refill_now();
}

/// What the vGIC of `partition` would forward of `intid` to `vcpu` now.
pub fn deliverable(partition: usize, vcpu: usize, intid: u32) -> Option<Delivery> {
    VGICS.get(partition)?.lock().deliverable(vcpu, intid)
}

/// The hardware SPIs routed to `vcpu` of `partition` (their routes follow it).
pub fn hardware_spis_of(partition: usize, vcpu: usize) -> heapless::Vec<u32, { vgic::MAX_SPIS }> {
    VGICS
        .get(partition)
        .map(|v| v.lock().hardware_spis_of(vcpu).collect())
        .unwrap_or_default()
}

/// The vCPU that takes hardware SPI `intid` now, and how: `(partition, vcpu, delivery)`.
pub fn hardware_target(intid: u32) -> Option<(usize, usize, Delivery)> {
    VGICS.iter().enumerate().find_map(|(p, v)| {
        let v = v.lock();
        if !v.owns_spi(intid) {
            return None;
        }
        (0..v.vcpus()).find_map(|n| Some((p, n, v.deliverable(n, intid)?)))
    })
}

/// Whether interrupts were posted for `vcpu` of `partition` that it has not taken yet.
pub fn posted_waiting(partition: usize, vcpu: usize) -> bool {
    let sgis = POSTED
        .get(partition)
        .and_then(|p| p.get(vcpu))
        .is_some_and(|p| p.peek() != 0);
    let spi = POSTED_SPI
        .get(partition)
        .and_then(|p| p.get(vcpu))
        .is_some_and(|s| s.load(Ordering::Acquire) != 0);
    sgis || spi
}

/// Saves the virtual CPU interface of the vCPU leaving this core and empties it. Its virtual
/// timer must be off already: active hardware PPIs are deactivated here (their active state
/// lives in this core's redistributor) and kept as software ones (`migrate::departing_lrs`).
pub fn save_cpu_interface() -> VgicState {
    let core = cpu::core_index();
    let count = list_regs().min(MAX_LRS);
    let mut raw = [0u64; MAX_LRS];
    for (n, value) in raw.iter_mut().enumerate().take(count) {
        *value = read_lr(n);
    }
    let departure = departing_lrs(&raw[..count]);
    for &intid in &departure.deactivate {
        gic::deactivate(intid);
    }
    let queue = release_queued(core::mem::take(&mut *QUEUES[core].lock()));
    let mut state = VgicState {
        lrs: departure.lrs,
        queue,
        vmcr: read_vmcr(),
        ..VgicState::default()
    };
    QUEUED[core].store(false, Ordering::Relaxed);
    for n in 0..active_priority_regs(priority_bits()) {
        state.ap0r[n] = read_apr(false, n);
        state.ap1r[n] = read_apr(true, n);
    }
    for n in 0..count {
        write_lr(n, 0);
    }
    write_hcr(vgic::ich_hcr(false));
    state
}

/// Queued interrupts were acknowledged too: a hardware PPI among them is dropped and
/// deactivated here like a pending one in a list register (its level raises it again).
fn release_queued(mut waiting: PendingQueue) -> PendingQueue {
    let mut queue = PendingQueue::new();
    while let Some(lr) = waiting.pop() {
        match lr.pintid {
            Some(p) if p < vgic::SPI_BASE => gic::deactivate(p),
            _ => {
                let _ = queue.push(lr);
            }
        }
    }
    queue
}

/// A saved vCPU interface leaves this core: hardware PPIs put into it while the vCPU was not
/// loaded (`inject_saved`) are active on this core's redistributor, so they are deactivated
/// here and kept as software state, as for a loaded vCPU's list registers.
pub fn release_private(state: &mut VgicState) {
    let raw: heapless::Vec<u64, MAX_LRS> = state.lrs.iter().map(ListReg::encode).collect();
    let departure = departing_lrs(&raw);
    for &intid in &departure.deactivate {
        gic::deactivate(intid);
    }
    state.lrs = departure.lrs;
    state.queue = release_queued(core::mem::take(&mut state.queue));
}

/// Loads `state` into this core's virtual CPU interface (the counterpart of
/// [`save_cpu_interface`]).
pub fn restore_cpu_interface(state: &mut VgicState) {
    let core = cpu::core_index();
    let count = list_regs().min(MAX_LRS);
    for n in 0..count {
        write_lr(n, state.lrs.get(n).map_or(0, ListReg::encode));
    }
    // More than fit (a saved state from a larger interface) wait in the queue.
    let mut queue = core::mem::take(&mut state.queue);
    for lr in state.lrs.iter().skip(count) {
        let _ = queue.push(*lr);
    }
    let waiting = !queue.is_empty();
    *QUEUES[core].lock() = queue;
    QUEUED[core].store(waiting, Ordering::Relaxed);
    write_vmcr(state.vmcr);
    for n in 0..active_priority_regs(priority_bits()) {
        write_apr(false, n, state.ap0r[n]);
        write_apr(true, n, state.ap1r[n]);
    }
    write_hcr(vgic::ich_hcr(waiting));
}

/// Adds hardware interrupt `intid`, just acknowledged on this core, to the saved interface
/// of a vCPU that is not loaded (it sees it when it runs next); `false` if there is no room.
pub fn inject_saved(state: &mut VgicState, intid: u32, delivery: Delivery) -> bool {
    let lr = ListReg::hardware(intid, delivery);
    let kept = if state.lrs.len() < list_regs().min(MAX_LRS) {
        state.lrs.push(lr).is_ok()
    } else {
        state.queue.push(lr).is_ok()
    };
    if kept {
        gic::priority_drop(intid);
    } else {
        // As in `inject`: never ended while it may still be asserted.
        unclaimed(intid);
    }
    kept
}

/// Preemption priority bits of the virtual interface (`ICH_VTR_EL2.PREbits` + 1).
fn priority_bits() -> u32 {
    (((read_vtr() >> 26) & 7) + 1) as u32
}

/// How many `ICH_AP<n>R<m>_EL2` registers exist per group with `prebits` priority bits.
fn active_priority_regs(prebits: u32) -> usize {
    match prebits {
        7 => 4,
        6 => 2,
        _ => 1,
    }
}

fn read_apr(group1: bool, n: usize) -> u32 {
    let value = match (group1, n) {
        (false, 0) => ICH_AP0R0_EL2.get(),
        (false, 1) => ICH_AP0R1_EL2.get(),
        (false, 2) => ICH_AP0R2_EL2.get(),
        (false, 3) => ICH_AP0R3_EL2.get(),
        (true, 0) => ICH_AP1R0_EL2.get(),
        (true, 1) => ICH_AP1R1_EL2.get(),
        (true, 2) => ICH_AP1R2_EL2.get(),
        (true, 3) => ICH_AP1R3_EL2.get(),
        _ => 0,
    };
    value as u32
}

/// Restores active priorities of the vCPU being loaded here.
fn write_apr(group1: bool, n: usize, value: u32) {
    let value = u64::from(value);
    match (group1, n) {
        (false, 0) => ICH_AP0R0_EL2.set(value),
        (false, 1) => ICH_AP0R1_EL2.set(value),
        (false, 2) => ICH_AP0R2_EL2.set(value),
        (false, 3) => ICH_AP0R3_EL2.set(value),
        (true, 0) => ICH_AP1R0_EL2.set(value),
        (true, 1) => ICH_AP1R1_EL2.set(value),
        (true, 2) => ICH_AP1R2_EL2.set(value),
        (true, 3) => ICH_AP1R3_EL2.set(value),
        _ => {}
    }
}

fn read_vmcr() -> u64 {
    ICH_VMCR_EL2.get()
}

fn read_vtr() -> u64 {
    ICH_VTR_EL2.get()
}

fn read_elrsr() -> u64 {
    let value: u64;
    // aarch64-cpu 11 has no ICH_ELRSR_EL2 accessor.
    // SAFETY: reads which list registers are empty.
    unsafe { core::arch::asm!("mrs {}, ich_elrsr_el2", out(reg) value, options(nomem, nostack)) };
    value
}

/// Controls this core's virtual CPU interface; only the guest on this core sees it.
fn write_hcr(value: u64) {
    ICH_HCR_EL2.set(value);
    barrier::isb(barrier::SY);
}

/// The guest's view of its CPU interface control (priority mask, group enables).
fn write_vmcr(value: u64) {
    ICH_VMCR_EL2.set(value);
}

/// Writes list register `n` (ignored beyond the implemented ones, n > ICH_VTR_EL2.ListRegs).
fn write_lr(n: usize, value: u64) {
    if n >= list_regs() {
        return;
    }
    match n {
        0 => ICH_LR0_EL2.set(value),
        1 => ICH_LR1_EL2.set(value),
        2 => ICH_LR2_EL2.set(value),
        3 => ICH_LR3_EL2.set(value),
        4 => ICH_LR4_EL2.set(value),
        5 => ICH_LR5_EL2.set(value),
        6 => ICH_LR6_EL2.set(value),
        7 => ICH_LR7_EL2.set(value),
        8 => ICH_LR8_EL2.set(value),
        9 => ICH_LR9_EL2.set(value),
        10 => ICH_LR10_EL2.set(value),
        11 => ICH_LR11_EL2.set(value),
        12 => ICH_LR12_EL2.set(value),
        13 => ICH_LR13_EL2.set(value),
        14 => ICH_LR14_EL2.set(value),
        15 => ICH_LR15_EL2.set(value),
        _ => {}
    }
}

/// Reads list register `n` (0 beyond the implemented ones).
fn read_lr(n: usize) -> u64 {
    if n >= list_regs() {
        return 0;
    }
    match n {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        8 => ICH_LR8_EL2.get(),
        9 => ICH_LR9_EL2.get(),
        10 => ICH_LR10_EL2.get(),
        11 => ICH_LR11_EL2.get(),
        12 => ICH_LR12_EL2.get(),
        13 => ICH_LR13_EL2.get(),
        14 => ICH_LR14_EL2.get(),
        15 => ICH_LR15_EL2.get(),
        _ => 0,
    }
}
