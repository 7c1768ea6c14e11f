//! Moving vCPUs between cores by IPI, and acting on the Linux partitions' migration policy.
//!
//! `hvcore::migrate::Migration` decides every step; this module keeps one per vCPU, the
//! per-core mailboxes of states in flight, and the kicks. The run loop of `switch.rs` does
//! the saving and loading at its next decision:
//! - [`request`] (the policy, on the RTOS's core) marks the vCPU leaving and kicks the source;
//! - the source takes it off its queue, saves it, [`depart`]s and [`post`]s the state to the
//!   target's mailbox, which kicks the target;
//! - the target takes it ([`take_arrival`]), [`arrive`]s, routes its SPIs, queues it.
//!
//! Lock order: the location table is a leaf (nothing else is locked while it is held).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use board::rt::LinuxBoot;

use super::config::{CONFIG, LINUX};
use crate::hvcore::migrate::{Location, Migration, MigrationState, Requested};
use crate::hvcore::policy::{self, LinuxVcpu, Observed, Policy, RtosCore, RtosState};
use crate::hvcore::sched::{Ticks, VcpuId, RUNQ_CAPACITY};
use crate::hvcore::{vcpu, MAX_CORES, MAX_PARTITIONS};

const MAX_VCPUS: usize = MAX_CORES;
/// `DELIVER_TO` before `init`: use the config's core.
const UNSET: u8 = u8::MAX;

/// Each partition's policy for this run (the config's, or the host tools' override).
static POLICIES: super::cpu::Lock<[Policy; MAX_PARTITIONS]> =
    super::cpu::Lock::new([Policy::Pinned; MAX_PARTITIONS]);
/// Some partition's policy measures Linux's busy time from trapped WFIs (`load`).
static LINUX_IDLE_COUNTED: AtomicBool = AtomicBool::new(false);
/// The `spumone` policy's `return_after`, 0 if no partition has it (read on every idle
/// decision, so not behind the `POLICIES` lock).
static RETURN_AFTER: AtomicU64 = AtomicU64::new(0);
/// How often an untrapped RTOS core runs the policy (`alone::LOOK_PERIOD` unless a policy
/// needs to look more often).
static LOOK_PERIOD: AtomicU64 = AtomicU64::new(crate::hvcore::alone::LOOK_PERIOD);
/// Cores that may receive a migrating vCPU (bit per core): they run the switch loop.
static MOVING_CORES: AtomicU32 = AtomicU32::new(0);
static LOCATIONS: super::cpu::Lock<[[Migration; MAX_VCPUS]; MAX_PARTITIONS]> =
    super::cpu::Lock::new([[Migration::new(0); MAX_VCPUS]; MAX_PARTITIONS]);
/// Lock-free mirror of `Migration::deliver_to` for the interrupt paths.
static DELIVER_TO: [[AtomicU8; MAX_VCPUS]; MAX_PARTITIONS] =
    [const { [const { AtomicU8::new(UNSET) }; MAX_VCPUS] }; MAX_PARTITIONS];
/// States posted to each core, taken at its next decision.
static INBOX: [super::cpu::Lock<heapless::Vec<MigrationState, RUNQ_CAPACITY>>; MAX_CORES] =
    [const { super::cpu::Lock::new(heapless::Vec::new()) }; MAX_CORES];
/// Per core: something for it to send or take (set before its kick).
static WORK: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];
/// Per core hosting an RTOS vCPU: 0 none, 1 runnable, `t + 2` waiting since counter `t`.
static RTOS: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];
/// Migrations completed so far.
static COUNT: AtomicU64 = AtomicU64::new(0);
/// Per core: counter ticks spent running Linux vCPUs (the `load` policy's input).
static BUSY: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];
/// Per core: counter value + 1 since when it runs a Linux vCPU, 0 while it does not.
static LINUX_SINCE: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];
/// The `load` policy's last window: when it started and `BUSY` then.
static WINDOW: super::cpu::Lock<(Ticks, [u64; MAX_CORES])> =
    super::cpu::Lock::new((0, [0; MAX_CORES]));
/// How long the `load` policy measures before it decides (100 ms at 62.5 MHz).
const LOAD_WINDOW: Ticks = 6_250_000;

/// The migration policy of partition `index` for this run.
fn run_policy(index: u8) -> Policy {
    let Some(boot) = LinuxBoot::find(LINUX, index) else {
        return Policy::Pinned;
    };
    let name = super::linux::policy_for_run().unwrap_or(boot.policy.name());
    Policy::from_name(name).unwrap_or(Policy::Pinned)
}

/// Reads the policies and places every vCPU on its config core (boot core, before any guest
/// runs and before the vGIC computes its fast paths).
pub fn init() {
    let mut policies = POLICIES.lock();
    let mut locations = LOCATIONS.lock();
    for partition in CONFIG.partitions.iter().take(MAX_PARTITIONS) {
        let index = usize::from(partition.index);
        let policy = run_policy(partition.index);
        policies[index] = policy;
        for (n, placed) in partition.vcpus.iter().enumerate().take(MAX_VCPUS) {
            locations[index][n] = Migration::new(placed.core);
            DELIVER_TO[index][n].store(placed.core, Ordering::Relaxed);
        }
        if LinuxBoot::find(LINUX, partition.index).is_some() {
            info!(
                "partition {}: migration policy {}",
                partition.name,
                policy.name()
            );
        }
    }
    let counted = policies.iter().any(|p| matches!(p, Policy::Load(_)));
    LINUX_IDLE_COUNTED.store(counted, Ordering::Relaxed);
    let after = policies.iter().find_map(|p| match p {
        Policy::Spumone(s) => Some(s.return_after.max(1)),
        _ => None,
    });
    RETURN_AFTER.store(after.unwrap_or(0), Ordering::Relaxed);
    let look = policies
        .iter()
        .filter_map(Policy::look_every)
        .fold(crate::hvcore::alone::LOOK_PERIOD, Ticks::min);
    LOOK_PERIOD.store(look.max(1), Ordering::Relaxed);
    let mask = vcpu::cores_of_partitions(&CONFIG, |p| {
        !matches!(policies[usize::from(p)], Policy::Pinned)
    });
    MOVING_CORES.store(mask, Ordering::Release);
}

/// The migration policy of partition `index` for this run.
pub fn policy_name(index: usize) -> &'static str {
    POLICIES.lock().get(index).map_or("pinned", Policy::name)
}

/// Whether a policy needs Linux's vCPUs to trap WFI even where one runs alone (see
/// `hvcore::alone`).
pub fn linux_idle_counted() -> bool {
    LINUX_IDLE_COUNTED.load(Ordering::Relaxed)
}

/// How often an untrapped RTOS core runs the policy.
pub fn look_period() -> Ticks {
    LOOK_PERIOD.load(Ordering::Relaxed)
}

/// Whether `core` may receive a migrating vCPU (only under a policy other than `pinned`).
pub fn moving_core(core: u8) -> bool {
    MOVING_CORES.load(Ordering::Acquire) & 1u32.checked_shl(u32::from(core)).unwrap_or(0) != 0
}

/// The core that takes interrupts for `vcpu` of `partition` (where it lives, or where it is
/// going while in flight).
pub fn core_of(partition: usize, vcpu: usize) -> Option<usize> {
    let slot = DELIVER_TO.get(partition)?.get(vcpu)?;
    match slot.load(Ordering::Acquire) {
        UNSET => {
            let core = CONFIG.partitions.get(partition)?.vcpus.get(vcpu)?.core;
            Some(usize::from(core))
        }
        core => Some(usize::from(core)),
    }
}

fn with_location<R>(id: VcpuId, f: impl FnOnce(&mut Migration) -> R) -> Option<R> {
    let mut locations = LOCATIONS.lock();
    let m = locations
        .get_mut(usize::from(id.partition))?
        .get_mut(usize::from(id.vcpu))?;
    let result = f(m);
    DELIVER_TO[usize::from(id.partition)][usize::from(id.vcpu)]
        .store(m.deliver_to(), Ordering::Release);
    Some(result)
}

fn signal(core: u8) {
    if let Some(work) = WORK.get(usize::from(core)) {
        work.store(true, Ordering::Release);
        super::kick(usize::from(core));
    }
}

/// Asks for `id` to move to core `to`; kicks the source if it must send it.
pub fn request(id: VcpuId, to: u8) {
    if let Some(Ok(Requested::Started { kick })) = with_location(id, |m| m.request(to)) {
        signal(kick);
    }
}

/// Takes (clears) whether this core has migration work.
pub fn take_work(core: usize) -> bool {
    WORK.get(core)
        .is_some_and(|w| w.swap(false, Ordering::Acquire))
}

/// Whether `core` has migration work waiting (left set).
pub fn has_work(core: usize) -> bool {
    WORK.get(core).is_some_and(|w| w.load(Ordering::Acquire))
}

/// Whether `core` must send `id` away now.
pub fn leaving(id: VcpuId, core: usize) -> bool {
    let core = core as u8;
    with_location(id, |m| m.leaving(core)).unwrap_or(false)
}

/// `id` was taken off `core`'s queue and saved: the target to post it to.
pub fn depart(id: VcpuId, core: usize) -> Option<u8> {
    let core = core as u8;
    match with_location(id, |m| m.depart(core))? {
        Ok(to) => Some(to),
        Err(misstep) => {
            error!(
                "migration: vcpu {}.{} cannot depart core {} ({})",
                id.partition,
                id.vcpu,
                core,
                location_name(misstep.location)
            );
            None
        }
    }
}

fn location_name(location: Location) -> &'static str {
    match location {
        Location::Running(_) => "running",
        Location::Leaving { .. } => "leaving",
        Location::InFlight { .. } => "in flight",
    }
}

/// Posts a departed vCPU's state to core `to` and kicks it.
pub fn post(to: u8, state: MigrationState) {
    let Some(inbox) = INBOX.get(usize::from(to)) else {
        return;
    };
    if inbox.lock().push(state).is_err() {
        // One entry per vCPU that can be in flight to it: cannot fill up.
        error!("migration: core {} mailbox full", to);
    }
    signal(to);
}

/// The next state posted to `core`.
pub fn take_arrival(core: usize) -> Option<MigrationState> {
    INBOX.get(core)?.lock().pop()
}

/// Runs `f` on the state of `id` waiting in `core`'s mailbox, if it is there.
pub fn with_in_flight<R>(
    core: usize,
    id: VcpuId,
    f: impl FnOnce(&mut MigrationState) -> R,
) -> Option<R> {
    let mut inbox = INBOX.get(core)?.lock();
    inbox.iter_mut().find(|s| s.id == id).map(f)
}

/// `id` arrived on `core`; returns how many migrations completed so far.
pub fn arrive(id: VcpuId, core: usize) -> u64 {
    let core = core as u8;
    if let Some(Err(misstep)) = with_location(id, |m| m.arrive(core)) {
        error!(
            "migration: vcpu {}.{} cannot arrive on core {} ({})",
            id.partition,
            id.vcpu,
            core,
            location_name(misstep.location)
        );
    }
    COUNT.fetch_add(1, Ordering::AcqRel) + 1
}

/// Migrations completed so far.
pub fn count() -> u64 {
    COUNT.load(Ordering::Acquire)
}

/// Publishes what the RTOS vCPU on `core` does (for the policy).
pub fn publish_rtos(core: usize, state: Option<RtosState>) {
    let value = match state {
        None => 0,
        Some(RtosState::Runnable) => 1,
        Some(RtosState::IdleSince(t)) => t.saturating_add(2),
    };
    if let Some(slot) = RTOS.get(core) {
        slot.store(value, Ordering::Release);
    }
}

/// How long an idle RTOS must wait before displaced vCPUs come back, if any partition's
/// policy brings them back at all.
pub fn return_after() -> Option<Ticks> {
    match RETURN_AFTER.load(Ordering::Relaxed) {
        0 => None,
        after => Some(after),
    }
}

/// Core `core` runs a Linux vCPU from `now` on (`runs`), or not: closes the interval before.
pub fn linux_runs(core: usize, now: Ticks, runs: bool) {
    let (Some(since), Some(busy)) = (LINUX_SINCE.get(core), BUSY.get(core)) else {
        return;
    };
    let before = since.swap(if runs { now + 1 } else { 0 }, Ordering::AcqRel);
    if before != 0 {
        busy.fetch_add(now.saturating_sub(before - 1), Ordering::AcqRel);
    }
}

/// Busy ticks of `core` up to `now`, the interval still open included (a vCPU running alone
/// may not trap for a whole window).
fn busy_until(core: usize, now: Ticks) -> u64 {
    let since = LINUX_SINCE[core].load(Ordering::Acquire);
    let open = if since == 0 {
        0
    } else {
        now.saturating_sub(since - 1)
    };
    BUSY[core].load(Ordering::Acquire) + open
}

/// Each core's busy fraction since the last window, once a window has passed (else `None`).
fn busy_window(now: Ticks) -> Option<[policy::Permille; MAX_CORES]> {
    let mut window = WINDOW.lock();
    let (start, before) = *window;
    let length = now.checked_sub(start)?;
    if length < LOAD_WINDOW {
        return None;
    }
    let current: [u64; MAX_CORES] = core::array::from_fn(|c| busy_until(c, now));
    *window = (now, current);
    Some(core::array::from_fn(|c| {
        policy::busy_permille(current[c].saturating_sub(before[c]), length)
    }))
}

/// Runs every moving partition's policy on the state now and requests its moves.
pub fn evaluate(now: Ticks) {
    let mut rtos: heapless::Vec<RtosCore, MAX_CORES> = heapless::Vec::new();
    for (core, slot) in RTOS.iter().enumerate() {
        let state = match slot.load(Ordering::Acquire) {
            0 => continue,
            1 => RtosState::Runnable,
            t => RtosState::IdleSince(t - 2),
        };
        let _ = rtos.push(RtosCore {
            core: core as u8,
            state,
        });
    }
    let policies = *POLICIES.lock();
    for partition in CONFIG.partitions.iter().take(MAX_PARTITIONS) {
        let index = usize::from(partition.index);
        let policy = policies[index];
        let busy = match policy {
            Policy::Pinned => continue,
            // The spumone policy uses them only to break ties between equal cores.
            Policy::Spumone(_) => [0; MAX_CORES],
            // Its step comes from the time alone.
            Policy::Rotate(_) => [0; MAX_CORES],
            // `load` decides once a window, on what each core ran in it.
            Policy::Load(_) => match busy_window(now) {
                Some(busy) => busy,
                None => continue,
            },
        };
        // A vCPU not started yet starts on its home core (PSCI `CPU_ON`): it stays there.
        let on: heapless::Vec<bool, MAX_VCPUS> = (0..partition.vcpus.len().min(MAX_VCPUS))
            .map(|n| super::guest::is_on(index, n))
            .collect();
        let vcpus: heapless::Vec<LinuxVcpu, MAX_VCPUS> = {
            let locations = LOCATIONS.lock();
            partition
                .vcpus
                .iter()
                .enumerate()
                .take(MAX_VCPUS)
                .map(|(n, placed)| {
                    let m = locations[index][n];
                    LinuxVcpu {
                        id: VcpuId::new(partition.index, n as u8),
                        core: m.deliver_to(),
                        home: placed.core,
                        movable: on[n] && matches!(m.location(), Location::Running(_)),
                    }
                })
                .collect()
        };
        let observed = Observed {
            now,
            allowed: vcpu::cores_of(partition),
            vcpus: &vcpus,
            rtos: &rtos,
            busy: &busy,
        };
        for m in policy::decide(&policy, &observed) {
            request(m.vcpu, m.to);
        }
    }
}
