//! The per-core vCPU scheduler: which of the vCPUs placed on one physical core runs next.
//!
//! # What
//!
//! Each physical core owns one [`RunQueue`] holding the vCPUs placed on it, possibly of
//! different partitions. Every vCPU has a fixed [`Class`]: RTOS before DSM work before Linux.
//! The highest class with a ready vCPU runs; vCPUs of the same class share the core round
//! robin, one time slice each. A vCPU is `Ready` or `Waiting` (it trapped WFI with nothing
//! pending); an interrupt for it, or its virtual timer's deadline, makes it ready again.
//!
//! A vCPU woken that way, or sent an interrupt while it sat preempted, is *boosted*: it takes
//! the core from an equal vCPU that has run at least the minimum run (`min_run`) since it was
//! switched in, instead of waiting for the rest of that vCPU's slice. Linux's cross-CPU
//! wake-ups and IPIs then wait for a minimum run, not a whole slice, when two of its vCPUs
//! share a core. The minimum run is the rate limit (as Xen credit's BOOST has one): an equal
//! vCPU is never preempted sooner, so boosted vCPUs cannot make a core thrash, and the
//! preempted vCPU keeps its place at the front of its class.
//!
//! A waiting vCPU of the top class may have a *lead* ([`RunQueue::set_lead`]): once its
//! virtual-timer deadline is within the lead, it is loaded ahead of it (`Run::Preload`) and
//! the core idles in EL2 with it loaded, so that its own timer wakes it with nothing left to
//! switch; the EL2 timer fires at the window's start, not at the deadline. Inside that window
//! nothing of a lower class is switched in: their wakes are `Wake::Deferred` and their
//! deadlines wait until it waits again. A switch after the deadline costs the RTOS the whole
//! save and load (about 8 µs under `-icount`); the lead costs Linux at most itself per period.
//! When the core idles with a vCPU loaded and that vCPU's timer fires,
//! [`RunQueue::resume_loaded`] answers in O(1) from the idle decision (worked out with it).
//!
//! # Why this shape
//!
//! The decisions are plain data so they are tested on the host (DESIGN.md: mechanism thin,
//! policy pure). The queue never touches a register: the arch layer reports events and applies
//! the returned [`Decision`]. It is fixed-size ([`RUNQ_CAPACITY`]) and allocation-free.
//!
//! # How the arch layer drives it
//!
//! On the core that owns the queue, with the queue's lock held:
//!
//! 1. Report what happened: [`RunQueue::wfi`] for a trapped WFI of the running vCPU,
//!    [`RunQueue::wake`] when an interrupt was posted for one of its vCPUs (from any core;
//!    a `Wake::Preempt` answer from another core means "send the kick SGI"),
//!    [`RunQueue::add`] / [`RunQueue::remove`] when a vCPU arrives or leaves (migration, PSCI).
//! 2. Call [`RunQueue::schedule`] with the counter value and the running vCPU's virtual timer
//!    deadline (`CNTV_CVAL_EL0` if `CNTV_CTL_EL0` is enabled and unmasked, else `None`), at
//!    least after each event above and when the EL2 (hyp) timer fires.
//! 3. Apply `Decision::run`: `Continue` returns to the same guest; `Switch { from, to }` saves
//!    `from`'s context (if any) and loads `to`'s; `Idle` waits in EL2 `wfi` with the loaded
//!    context left in place (if the same vCPU wakes first, the next decision is `Continue`
//!    and nothing was saved or restored); `Preload { from, to }` switches as `Switch` and then
//!    waits as `Idle`. Then program the EL2 timer per `Decision::timer` (`None`: turn it off).
//!    A loaded vCPU waiting is woken by its own virtual timer, not the EL2 timer, when it has
//!    a lead; when that interrupt wakes the idle core, [`RunQueue::resume_loaded`] may stand
//!    in for the report and the decision.
//!
//! # Invariants (tested below)
//!
//! - Only a ready vCPU is chosen; a ready vCPU of a higher class always wins over a lower one.
//! - A waiting vCPU whose deadline has passed is ready after the next `schedule`, and while it
//!   waits `Decision::timer` is never later than its deadline: no timer wake-up is lost.
//!   With a lead: for a vCPU with one, the timer comes by its window's start unless it is
//!   loaded (its own timer fires); a lower-class deadline inside a window waits for the
//!   decision after the top-class vCPU's next wait (it could not take the core before).
//! - With a lead: from its window's start the top-class vCPU is loaded and nothing of a lower
//!   class is switched in; `resume_loaded` decides what `wake` and `schedule` would. With
//!   lead 0 (the default) nothing of this happens.
//! - Among ready vCPUs of one class, each runs at least once every `n` slices (`n` of them).
//! - A vCPU is preempted by an equal one only after it ran `min_run` since it was switched in.
//! - [`RunQueue::alone`]: a core with exactly one vCPU needs neither WFI trapping nor the
//!   EL2 timer (`Decision::timer` is then `None`).
//!
//! DSM work is scheduled like a vCPU of class [`Class::Dsm`]; the arch layer names it with a
//! partition index of its choosing (for example one past the last guest partition).

use super::MAX_CORES;

/// Generic-timer counter value (`CNTPCT_EL0` ticks).
pub type Ticks = u64;

/// Most vCPUs one core may hold: every vCPU of a partition spanning all cores, plus an RTOS
/// vCPU and a DSM worker.
pub const RUNQ_CAPACITY: usize = MAX_CORES + 2;

/// A vCPU, by partition index and vCPU index within the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId {
    pub partition: u8,
    pub vcpu: u8,
}

impl VcpuId {
    pub const fn new(partition: u8, vcpu: u8) -> Self {
        Self { partition, vcpu }
    }
}

/// Fixed priority class; earlier variants win.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Rtos,
    Dsm,
    Linux,
}

impl Class {
    /// Whether `self` preempts `other`.
    pub fn outranks(self, other: Class) -> bool {
        self < other
    }
}

/// Whether a vCPU may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Ready,
    /// Trapped WFI with nothing pending; woken by an interrupt or its timer deadline.
    Waiting,
}

/// What the core does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Return to the vCPU that trapped.
    Continue,
    /// Save `from` (if a vCPU is loaded), load `to`.
    Switch { from: Option<VcpuId>, to: VcpuId },
    /// Nothing is ready: wait in EL2 for an interrupt, leaving the loaded context (if any)
    /// on the CPU; a later `Switch` names it as `from`.
    Idle,
    /// Save `from` (if a vCPU is loaded), load `to`, which still waits, then wait in EL2 as
    /// for `Idle`: `to`'s deadline is within its lead, and its own virtual timer wakes it
    /// with nothing left to switch.
    Preload { from: Option<VcpuId>, to: VcpuId },
}

/// One scheduling decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub run: Run,
    /// Program the EL2 timer to fire at this counter value; `None`: no need for it.
    pub timer: Option<Ticks>,
}

/// Answer to [`RunQueue::wake`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The vCPU is not on this core.
    NotHere,
    /// It was already ready (or running): nothing changes.
    AlreadyReady,
    /// Now ready (or boosted while it sat preempted) and of the running vCPU's class: the
    /// decision due takes the core from that vCPU once it has had its minimum run.
    Woken,
    /// Now ready and it outranks what runs (or the core idles): reschedule at once.
    Preempt,
    /// Now ready, but the core is held for a vCPU of a higher class loaded ahead of its
    /// deadline: it runs once that one waits again, and the decision due stays as it is.
    Deferred,
}

impl Wake {
    /// Whether the core must decide again before it returns to the guest: at once for
    /// `Preempt`, and for `Woken` too, so the slice end of what runs gets armed. The decision
    /// before saw no equal vCPU ready and set no slice timer; a loaded vCPU that never traps
    /// (a guest spinning on the woken one without `wfe`) would otherwise keep the core for
    /// good.
    pub fn needs_decision(self) -> bool {
        matches!(self, Wake::Woken | Wake::Preempt)
    }
}

/// Why [`RunQueue::add`] refused a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    Full,
    AlreadyHere,
}

/// What [`RunQueue::remove`] hands back: the scheduling state that moves with the vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removed {
    pub class: Class,
    pub state: RunState,
    pub deadline: Option<Ticks>,
    /// It was the vCPU loaded on the core: the caller must have saved its context.
    pub was_loaded: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    id: VcpuId,
    class: Class,
    state: RunState,
    /// Virtual-timer deadline, tracked while the vCPU is not loaded.
    deadline: Option<Ticks>,
    /// Round-robin order: lower went to the back of the queue earlier.
    seq: u64,
    /// Woken, or interrupted while preempted, and not run since: it may preempt an equal.
    boost: bool,
    /// How long before its deadline a waiting top-class vCPU is loaded (0: never ahead).
    lead: Ticks,
}

impl Entry {
    /// Its lead window `[deadline - lead, deadline)` while it waits with a deadline and a lead.
    fn window(&self) -> Option<(Ticks, Ticks)> {
        let due = self
            .deadline
            .filter(|_| self.lead > 0 && self.state == RunState::Waiting)?;
        Some((due.saturating_sub(self.lead), due))
    }

    /// A waiting vCPU became ready: one not loaded joins the back of its class (`seq`) and is
    /// boosted, so it may take the core from an equal after that one's minimum run.
    fn ready_again(&mut self, loaded: bool, seq: u64) {
        self.state = RunState::Ready;
        if !loaded {
            self.seq = seq;
            self.boost = true;
        }
    }
}

/// The vCPUs on one physical core and which of them is loaded.
#[derive(Clone, Debug)]
pub struct RunQueue {
    entries: [Option<Entry>; RUNQ_CAPACITY],
    /// Slot of the vCPU whose context is on the CPU.
    loaded: Option<usize>,
    slice: Ticks,
    slice_end: Ticks,
    /// Least time a vCPU runs before a boosted equal may preempt it.
    min_run: Ticks,
    /// When the loaded vCPU was switched in.
    run_start: Ticks,
    next_seq: u64,
    /// The last decision held the core for this loaded, waiting vCPU (its lead window).
    holding: Option<usize>,
    /// What [`RunQueue::resume_loaded`] answers while the last decision still stands.
    resume: Option<Resume>,
}

/// The decision for "the loaded, waiting vCPU `slot` was woken", worked out with the idle
/// decision before it, so the wake itself is O(1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Resume {
    slot: usize,
    timer: Option<Ticks>,
}

impl RunQueue {
    /// An empty queue whose round-robin slice is `slice` ticks (at least 1), and whose
    /// vCPUs run at least `min_run` ticks (at most a slice) before a boosted equal preempts.
    pub const fn new(slice: Ticks, min_run: Ticks) -> Self {
        let slice = if slice == 0 { 1 } else { slice };
        Self {
            entries: [None; RUNQ_CAPACITY],
            loaded: None,
            slice,
            slice_end: 0,
            min_run: if min_run > slice { slice } else { min_run },
            run_start: 0,
            next_seq: 0,
            holding: None,
            resume: None,
        }
    }

    /// How many vCPUs are placed here.
    pub fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether exactly one vCPU lives here: no EL2 timer is needed, because nothing else
    /// could use the core. Whether its WFI/WFE may then go untrapped is `alone::untrapped`'s.
    pub fn alone(&self) -> bool {
        self.len() == 1
    }

    /// The vCPU whose context is loaded, if any.
    pub fn loaded(&self) -> Option<VcpuId> {
        self.loaded.and_then(|i| self.entries[i]).map(|e| e.id)
    }

    pub fn contains(&self, id: VcpuId) -> bool {
        self.slot(id).is_some()
    }

    /// The run state of `id`, if it is here.
    pub fn state(&self, id: VcpuId) -> Option<RunState> {
        self.slot(id).and_then(|i| self.entries[i]).map(|e| e.state)
    }

    fn slot(&self, id: VcpuId) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.is_some_and(|e| e.id == id))
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Places `id` here (boot, `CPU_ON`, or arrival by migration) in `state`, with its
    /// virtual-timer `deadline`; it joins the back of its class.
    pub fn add(
        &mut self,
        id: VcpuId,
        class: Class,
        state: RunState,
        deadline: Option<Ticks>,
    ) -> Result<(), AddError> {
        if self.contains(id) {
            return Err(AddError::AlreadyHere);
        }
        self.resume = None;
        let seq = self.seq();
        let slot = self
            .entries
            .iter_mut()
            .find(|e| e.is_none())
            .ok_or(AddError::Full)?;
        *slot = Some(Entry {
            id,
            class,
            state,
            deadline,
            seq,
            boost: false,
            lead: 0,
        });
        Ok(())
    }

    /// Loads `id`, a vCPU of the top class ([`Class::Rtos`]), `lead` ticks before its
    /// virtual-timer deadline while it waits, so that its own timer wakes it with nothing left
    /// to switch (0: switch at the deadline, as for any vCPU). `false` if it is not here or
    /// not of the top class. The lead stays with the queue: a vCPU that migrates starts at 0.
    pub fn set_lead(&mut self, id: VcpuId, lead: Ticks) -> bool {
        self.resume = None;
        let Some(e) = self.slot(id).and_then(|i| self.entries[i].as_mut()) else {
            return false;
        };
        if e.class != Class::Rtos {
            return false;
        }
        e.lead = lead;
        true
    }

    /// The vCPU the last decision held the core for: loaded ahead of its deadline, waiting.
    pub fn holding(&self) -> Option<VcpuId> {
        self.holding.and_then(|i| self.entries[i]).map(|e| e.id)
    }

    /// Takes `id` off this core (it migrates, powers off, or its partition stopped).
    pub fn remove(&mut self, id: VcpuId) -> Option<Removed> {
        let i = self.slot(id)?;
        let e = self.entries[i].take()?;
        self.resume = None;
        if self.holding == Some(i) {
            self.holding = None;
        }
        let was_loaded = self.loaded == Some(i);
        if was_loaded {
            self.loaded = None;
        }
        Some(Removed {
            class: e.class,
            state: e.state,
            deadline: e.deadline,
            was_loaded,
        })
    }

    /// The loaded vCPU trapped WFI. With an interrupt pending for it, it goes on; otherwise
    /// it waits (the next [`RunQueue::schedule`] picks another vCPU or idles).
    pub fn wfi(&mut self, pending: bool) {
        self.resume = None;
        if pending {
            return;
        }
        if let Some(e) = self.loaded.and_then(|i| self.entries[i].as_mut()) {
            e.state = RunState::Waiting;
        }
    }

    /// The loaded vCPU gives up the rest of its slice (a trapped WFE: it spins on a lock an
    /// equal vCPU here may hold); it stays ready and runs again after the others of its class.
    pub fn yield_slice(&mut self) {
        self.resume = None;
        self.slice_end = 0;
    }

    /// An interrupt was posted for `id`.
    pub fn wake(&mut self, id: VcpuId) -> Wake {
        let Some(i) = self.slot(id) else {
            return Wake::NotHere;
        };
        let running = self.running_class();
        let is_loaded = self.loaded == Some(i);
        let class_at =
            |q: &Self, slot: Option<usize>| slot.and_then(|s| q.entries[s]).map(|e| e.class);
        let held = class_at(self, self.holding.filter(|&h| h != i));
        let resumes = class_at(self, self.resume.map(|r| r.slot));
        let seq = self.seq();
        let Some(e) = self.entries[i].as_mut() else {
            return Wake::NotHere;
        };
        let class = e.class;
        // A wake of a lower class than the vCPU the resume is for cannot change it.
        if !resumes.is_some_and(|r| r.outranks(class)) {
            self.resume = None;
        }
        if e.state == RunState::Ready {
            // Preempted with an interrupt now pending (an IPI from an equal, say): boost it,
            // so the sender's request waits for a minimum run, not a whole slice.
            if is_loaded || e.boost {
                return Wake::AlreadyReady;
            }
            e.boost = true;
            return match running {
                Some(r) if r == class => Wake::Woken,
                _ => Wake::AlreadyReady,
            };
        }
        e.ready_again(is_loaded, seq);
        if held.is_some_and(|h| h.outranks(class)) {
            return Wake::Deferred;
        }
        match running {
            Some(r) if !is_loaded && !class.outranks(r) => Wake::Woken,
            _ => Wake::Preempt,
        }
    }

    /// Class of the loaded vCPU if it is ready (what actually runs).
    fn running_class(&self) -> Option<Class> {
        self.loaded
            .and_then(|i| self.entries[i])
            .filter(|e| e.state == RunState::Ready)
            .map(|e| e.class)
    }

    /// Decides what runs at counter value `now`. `loaded_deadline` is the loaded vCPU's
    /// virtual-timer deadline, kept in case it is switched out.
    pub fn schedule(&mut self, now: Ticks, loaded_deadline: Option<Ticks>) -> Decision {
        self.resume = None;
        self.holding = None;
        if let Some(e) = self.loaded.and_then(|i| self.entries[i].as_mut()) {
            e.deadline = loaded_deadline;
        }
        // Timer wake-ups of waiting vCPUs; they join the back of their class.
        for i in 0..RUNQ_CAPACITY {
            let is_loaded = self.loaded == Some(i);
            let fresh = self.next_seq + 1;
            if let Some(e) = self.entries[i].as_mut() {
                if e.state == RunState::Waiting && e.deadline.is_some_and(|d| d <= now) {
                    e.ready_again(is_loaded, fresh);
                    if !is_loaded {
                        self.next_seq = fresh;
                    }
                }
            }
        }

        let loaded = self.loaded;
        let loaded_id = self.loaded();
        let best = self
            .entries
            .iter()
            .flatten()
            .filter(|e| e.state == RunState::Ready)
            .map(|e| e.class)
            .min();
        // A waiting top-class vCPU inside its lead window holds the core against lower classes.
        if let Some(held) = self.preload_candidate(now) {
            let outranks_ready =
                self.entries[held].is_some_and(|e| best.is_none_or(|best| e.class.outranks(best)));
            if outranks_ready {
                return self.hold_for(held, now);
            }
        }
        let keep = best.and_then(|best| {
            loaded.filter(|&i| {
                self.entries[i].is_some_and(|e| e.state == RunState::Ready && e.class == best)
            })
        });
        // The ready vCPU of class `best` first in round-robin order, other than `me` (only a
        // boosted one if `boosted`).
        let first_ready = |q: &Self, best: Class, me: Option<usize>, boosted: bool| {
            q.entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.map(|e| (i, e)))
                .filter(|(i, e)| Some(*i) != me && e.state == RunState::Ready && e.class == best)
                .filter(|(_, e)| e.boost || !boosted)
                .min_by_key(|(_, e)| e.seq)
                .map(|(i, _)| i)
        };
        let min_run_over = now >= self.run_start.saturating_add(self.min_run);
        let choice = match (best, keep) {
            (None, _) => None,
            // A boosted equal takes the core once the loaded vCPU had its minimum run; the
            // loaded one keeps its place at the front of its class.
            (Some(best), Some(me)) if now < self.slice_end => {
                match first_ready(self, best, Some(me), true) {
                    Some(other) if min_run_over => Some(other),
                    _ => Some(me),
                }
            }
            (Some(best), Some(me)) => match first_ready(self, best, Some(me), false) {
                Some(other) => {
                    // Slice over: the loaded vCPU goes to the back of its class.
                    let seq = self.seq();
                    if let Some(e) = self.entries[me].as_mut() {
                        e.seq = seq;
                    }
                    Some(other)
                }
                None => Some(me),
            },
            (Some(best), None) => first_ready(self, best, None, false),
        };
        let Some((choice, to)) = choice.and_then(|c| Some((c, self.entries[c]?.id))) else {
            // A loaded vCPU waits (nothing is ready): its wake is worked out now.
            self.resume = loaded.map(|slot| Resume {
                slot,
                timer: self.resume_timer(now, slot),
            });
            return Decision {
                run: Run::Idle,
                timer: self.timer(now, None),
            };
        };
        let run = if Some(choice) == loaded {
            if now >= self.slice_end {
                self.slice_end = now.saturating_add(self.slice);
            }
            Run::Continue
        } else {
            self.slice_end = now.saturating_add(self.slice);
            self.run_start = now;
            self.loaded = Some(choice);
            if let Some(e) = self.entries[choice].as_mut() {
                e.boost = false;
            }
            Run::Switch {
                from: loaded_id,
                to,
            }
        };
        Decision {
            run,
            timer: self.timer(now, Some(choice)),
        }
    }

    /// The loaded, waiting vCPU was woken (an interrupt for it, its own timer's first of all)
    /// while the core idles since the last decision, which stands: it runs on. The O(1)
    /// answer to what [`RunQueue::wake`] and [`RunQueue::schedule`] would decide, worked out
    /// with the idle decision. `None` when that decision no longer stands (an event since,
    /// or a timer due by now): report the wake and decide in full.
    ///
    /// Unlike `schedule`, the timer leaves out waiting vCPUs of a lower class than the woken
    /// one, and their deadlines passed meanwhile stay unseen: they could not take the core
    /// from it, and its next wait decides them.
    pub fn resume_loaded(&mut self, now: Ticks) -> Option<Decision> {
        let resume = self.resume.take()?;
        self.holding = None;
        if self.loaded != Some(resume.slot) || resume.timer.is_some_and(|t| t <= now) {
            return None;
        }
        let e = self.entries[resume.slot]
            .as_mut()
            .filter(|e| e.state == RunState::Waiting)?;
        e.state = RunState::Ready;
        if now >= self.slice_end {
            self.slice_end = now.saturating_add(self.slice);
        }
        Some(Decision {
            run: Run::Continue,
            timer: resume.timer,
        })
    }

    /// The waiting top-class vCPU to hold the core for at `now`: inside its lead window, the
    /// earliest deadline first.
    fn preload_candidate(&self, now: Ticks) -> Option<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.as_ref()?.window()?)))
            .filter(|&(_, (start, due))| start <= now && now < due)
            .min_by_key(|&(_, (_, due))| due)
            .map(|(i, _)| i)
    }

    /// Holds the core for `held` (waiting, inside its lead window): loads it unless it is
    /// loaded already, and idles until its own virtual timer fires.
    fn hold_for(&mut self, held: usize, now: Ticks) -> Decision {
        let loaded_id = self.loaded();
        let run = match self.entries[held].as_mut() {
            Some(e) if self.loaded != Some(held) => {
                e.boost = false;
                let to = e.id;
                self.loaded = Some(held);
                self.run_start = now;
                self.slice_end = now.saturating_add(self.slice);
                Run::Preload {
                    from: loaded_id,
                    to,
                }
            }
            _ => Run::Idle,
        };
        self.holding = Some(held);
        self.resume = Some(Resume {
            slot: held,
            timer: self.resume_timer(now, held),
        });
        // Its own timer wakes it; should that never come (its interrupt switched off in its
        // GIC), the EL2 timer one lead after the deadline decides anyway.
        let backstop = self.entries[held].and_then(|e| Some(e.deadline?.saturating_add(e.lead)));
        let timer = match (self.timer(now, None), backstop) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Decision { run, timer }
    }

    /// The EL2 timer for when the loaded vCPU in `slot`, now waiting, runs again: the
    /// [`RunQueue::timer`] of it running, without lower classes.
    fn resume_timer(&self, now: Ticks, slot: usize) -> Option<Ticks> {
        let class = self.entries[slot]?.class;
        self.earliest_wake(now, Some(slot), Some(class))
    }

    /// When a waiting vCPU must be woken by the EL2 timer, if at all. One with a lead, when
    /// its window opens (at its deadline if the window is open already), unless it is loaded:
    /// then its own virtual timer wakes the core. A lower-class one due inside a lead window
    /// (`gate`: the earliest window start) waits until that top-class vCPU waits again.
    fn wake_point(&self, slot: usize, e: &Entry, now: Ticks, gate: Option<Ticks>) -> Option<Ticks> {
        let due = e.deadline?;
        if let Some((start, due)) = e.window() {
            if self.loaded == Some(slot) {
                return None;
            }
            return Some(if now < start { start } else { due });
        }
        if gate.is_some_and(|g| Class::Rtos.outranks(e.class) && due >= g) {
            return None;
        }
        Some(due)
    }

    /// The earliest [`RunQueue::wake_point`] of the waiting vCPUs other than `running`, of
    /// class `floor` or higher if given.
    fn earliest_wake(
        &self,
        now: Ticks,
        running: Option<usize>,
        floor: Option<Class>,
    ) -> Option<Ticks> {
        let gate = self
            .entries
            .iter()
            .filter_map(|e| Some(e.as_ref()?.window()?.0))
            .min();
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.map(|e| (i, e)))
            .filter(|(i, e)| Some(*i) != running && e.state == RunState::Waiting)
            .filter(|(_, e)| floor.is_none_or(|f| !f.outranks(e.class)))
            .filter_map(|(i, e)| self.wake_point(i, &e, now, gate))
            .min()
    }

    /// When the EL2 timer must fire: the earliest wake point of a waiting vCPU (its deadline,
    /// without leads), and the slice end if a vCPU of the running one's class waits for its
    /// turn (the end of the minimum run if that vCPU is boosted).
    fn timer(&self, now: Ticks, running: Option<usize>) -> Option<Ticks> {
        let deadlines = self.earliest_wake(now, running, None);
        let min_run_end = self.run_start.saturating_add(self.min_run);
        let slice = running.and_then(|r| {
            let class = self.entries[r]?.class;
            self.entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.filter(|_| i != r))
                .filter(|e| e.state == RunState::Ready && e.class == class)
                .map(|e| match e.boost {
                    true => min_run_end.min(self.slice_end),
                    false => self.slice_end,
                })
                .min()
        });
        match (deadlines, slice) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// xorshift64: deterministic pseudo-random sequences for the host tests, without a dependency.
#[cfg(test)]
pub(crate) struct XorShift(u64);

#[cfg(test)]
impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        // Spread small seeds over the bits; the state must never be 0.
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTOS: VcpuId = VcpuId::new(0, 0);
    const L0: VcpuId = VcpuId::new(1, 0);
    const L1: VcpuId = VcpuId::new(1, 1);
    const L2: VcpuId = VcpuId::new(1, 2);
    const SLICE: Ticks = 100;
    const MIN_RUN: Ticks = 10;

    fn queue(v: &[(VcpuId, Class)]) -> RunQueue {
        let mut q = RunQueue::new(SLICE, MIN_RUN);
        for &(id, class) in v {
            q.add(id, class, RunState::Ready, None).unwrap();
        }
        q
    }

    fn switch_to(d: Decision) -> Option<VcpuId> {
        match d.run {
            Run::Switch { to, .. } => Some(to),
            _ => None,
        }
    }

    #[test]
    fn higher_class_runs_first() {
        let mut q = queue(&[(L0, Class::Linux), (RTOS, Class::Rtos)]);
        let d = q.schedule(0, None);
        assert_eq!(
            d.run,
            Run::Switch {
                from: None,
                to: RTOS
            }
        );
        // Two classes, no equal competitor, nobody waiting: no timer needed.
        assert_eq!(d.timer, None);
        // The RTOS keeps the core past any slice while it is ready.
        assert_eq!(q.schedule(10 * SLICE, None).run, Run::Continue);
    }

    #[test]
    fn wfi_yields_and_interrupt_preempts() {
        let mut q = queue(&[(L0, Class::Linux), (RTOS, Class::Rtos)]);
        q.schedule(0, None);
        q.wfi(false);
        assert_eq!(q.state(RTOS), Some(RunState::Waiting));
        let d = q.schedule(5, Some(1_000));
        assert_eq!(
            d.run,
            Run::Switch {
                from: Some(RTOS),
                to: L0
            }
        );
        assert_eq!(d.timer, Some(1_000), "the RTOS's timer deadline");
        // An interrupt for the waiting RTOS asks for preemption at once.
        assert_eq!(q.wake(RTOS), Wake::Preempt);
        assert_eq!(q.wake(RTOS), Wake::AlreadyReady);
        assert_eq!(
            q.schedule(7, None).run,
            Run::Switch {
                from: Some(L0),
                to: RTOS
            }
        );
    }

    #[test]
    fn yield_hands_the_slice_to_an_equal_only() {
        let mut q = queue(&[(L0, Class::Linux), (L1, Class::Linux)]);
        assert_eq!(switch_to(q.schedule(0, None)), Some(L0));
        q.yield_slice();
        let d = q.schedule(1, None);
        assert_eq!(switch_to(d), Some(L1), "the other Linux vCPU at once");
        assert_eq!(
            q.state(L0),
            Some(RunState::Ready),
            "the yielder stays ready"
        );
        assert_eq!(d.timer, Some(1 + SLICE), "a whole slice for L1");
        // Alone in its class it just goes on.
        let mut q = queue(&[(L0, Class::Linux), (RTOS, Class::Rtos)]);
        q.schedule(0, None);
        q.wfi(false);
        assert_eq!(switch_to(q.schedule(1, None)), Some(L0));
        q.yield_slice();
        assert_eq!(q.schedule(2, None).run, Run::Continue);
    }

    #[test]
    fn woken_equal_preempts_after_the_minimum_run() {
        let mut q = queue(&[(L0, Class::Linux), (L1, Class::Linux)]);
        assert_eq!(switch_to(q.schedule(0, None)), Some(L0));
        q.wfi(false);
        assert_eq!(switch_to(q.schedule(1, None)), Some(L1));
        // L0 waits with no timer: L1 runs alone in its class, nothing to arm.
        assert_eq!(q.schedule(2, None).timer, None);
        // An interrupt for L0 while L1 runs: a decision is due...
        let woken = q.wake(L0);
        assert_eq!(woken, Wake::Woken);
        assert!(woken.needs_decision());
        assert!(!Wake::AlreadyReady.needs_decision());
        // ...which keeps L1 until it has run the minimum, and arms that, not the slice end.
        let d = q.schedule(3, None);
        assert_eq!(d.run, Run::Continue);
        assert_eq!(d.timer, Some(1 + MIN_RUN));
        assert_eq!(
            q.schedule(MIN_RUN, None).run,
            Run::Continue,
            "one tick early"
        );
        // Then L0 runs, though L1 never trapped and its slice is far from over.
        let d = q.schedule(1 + MIN_RUN, None);
        assert_eq!(switch_to(d), Some(L0));
        assert_eq!(d.timer, Some(1 + MIN_RUN + SLICE), "a whole slice for L0");
        // L1 kept its place: it runs as soon as L0 waits again.
        q.wfi(false);
        assert_eq!(switch_to(q.schedule(20, None)), Some(L1));
    }

    #[test]
    fn woken_equal_preempts_at_once_when_the_minimum_run_is_over() {
        let mut q = queue(&[(L0, Class::Linux), (L1, Class::Linux)]);
        q.schedule(0, None);
        q.wfi(false);
        q.schedule(1, None);
        assert_eq!(q.loaded(), Some(L1));
        assert_eq!(q.wake(L0), Wake::Woken);
        assert_eq!(switch_to(q.schedule(50, None)), Some(L0));
    }

    #[test]
    fn an_interrupt_for_a_preempted_equal_boosts_it_once() {
        let mut q = queue(&[(L0, Class::Linux), (L1, Class::Linux)]);
        assert_eq!(switch_to(q.schedule(0, None)), Some(L0));
        // L1 is ready and waits for its turn: the slice end is armed, no boost yet.
        assert_eq!(q.schedule(1, None).timer, Some(SLICE));
        // An IPI for L1: it runs after L0's minimum run, not at L0's slice end.
        assert_eq!(q.wake(L1), Wake::Woken);
        assert_eq!(q.wake(L1), Wake::AlreadyReady, "boosted already");
        assert_eq!(q.schedule(2, None).timer, Some(MIN_RUN));
        assert_eq!(switch_to(q.schedule(MIN_RUN, None)), Some(L1));
        // Running clears the boost: L0, sent an interrupt now, may preempt L1 in its turn,
        // but not before L1 had its own minimum run.
        assert_eq!(q.wake(L0), Wake::Woken);
        assert_eq!(q.schedule(MIN_RUN + 1, None).run, Run::Continue);
        assert_eq!(switch_to(q.schedule(2 * MIN_RUN, None)), Some(L0));
        // An interrupt for the loaded vCPU changes nothing.
        assert_eq!(q.wake(L0), Wake::AlreadyReady);
        // Nor does one for a vCPU of a lower class than what runs.
        let mut q = queue(&[(RTOS, Class::Rtos), (L0, Class::Linux)]);
        q.schedule(0, None);
        assert_eq!(q.wake(L0), Wake::AlreadyReady);
        assert_eq!(q.schedule(MIN_RUN, None).run, Run::Continue);
    }

    #[test]
    fn a_deadline_wake_boosts_too() {
        let mut q = queue(&[(L0, Class::Linux), (L1, Class::Linux)]);
        q.schedule(0, None);
        q.wfi(false);
        assert_eq!(switch_to(q.schedule(1, Some(30))), Some(L1));
        assert_eq!(q.schedule(2, None).timer, Some(30));
        assert_eq!(switch_to(q.schedule(30, None)), Some(L0));
    }

    #[test]
    fn boost_never_passes_a_higher_class() {
        let mut q = queue(&[(RTOS, Class::Rtos), (L0, Class::Linux), (L1, Class::Linux)]);
        assert_eq!(switch_to(q.schedule(0, None)), Some(RTOS));
        assert_eq!(q.wake(L1), Wake::AlreadyReady);
        assert_eq!(q.schedule(5 * SLICE, None).run, Run::Continue);
        assert_eq!(q.schedule(5 * SLICE, None).timer, None);
    }

    #[test]
    fn wfi_with_pending_interrupt_continues() {
        let mut q = queue(&[(L0, Class::Linux), (L1, Class::Linux)]);
        q.schedule(0, None);
        q.wfi(true);
        assert_eq!(q.schedule(1, None).run, Run::Continue);
    }

    #[test]
    fn lower_class_wake_does_not_preempt() {
        let mut q = queue(&[(L0, Class::Linux), (RTOS, Class::Rtos)]);
        q.schedule(0, None);
        q.wfi(false);
        q.schedule(1, None);
        assert_eq!(q.loaded(), Some(L0));
        q.wfi(false);
        assert_eq!(q.schedule(2, None).run, Run::Idle);
        // Idle core: any wake preempts the idle loop; L0 is still loaded, so it just goes on.
        assert_eq!(q.loaded(), Some(L0));
        assert_eq!(q.wake(L0), Wake::Preempt);
        assert_eq!(q.schedule(3, None).run, Run::Continue);
        assert_eq!(q.wake(RTOS), Wake::Preempt);
        assert_eq!(
            q.schedule(4, None).run,
            Run::Switch {
                from: Some(L0),
                to: RTOS
            }
        );
        q.add(L1, Class::Linux, RunState::Waiting, None).unwrap();
        assert_eq!(q.wake(L1), Wake::Woken);
    }

    #[test]
    fn round_robin_among_equals() {
        let mut q = queue(&[(L0, Class::Linux), (L1, Class::Linux), (L2, Class::Linux)]);
        let mut order = heapless::Vec::<VcpuId, 16>::new();
        let mut now = 0;
        for _ in 0..9 {
            let d = q.schedule(now, None);
            if let Some(to) = switch_to(d) {
                order.push(to).unwrap();
            }
            assert_eq!(d.timer, Some(now + SLICE), "slice end armed");
            now += SLICE;
        }
        assert_eq!(order.as_slice(), &[L0, L1, L2, L0, L1, L2, L0, L1, L2]);
        // Within the slice nothing switches.
        assert_eq!(q.schedule(now - 1, None).run, Run::Continue);
    }

    #[test]
    fn preempted_vcpu_resumes_before_its_peers() {
        let mut q = queue(&[(L0, Class::Linux), (L1, Class::Linux)]);
        q.add(RTOS, Class::Rtos, RunState::Waiting, None).unwrap();
        q.schedule(0, None);
        assert_eq!(q.loaded(), Some(L0));
        assert_eq!(q.wake(RTOS), Wake::Preempt);
        q.schedule(10, None);
        q.wfi(false);
        assert_eq!(switch_to(q.schedule(20, None)), Some(L0));
    }

    #[test]
    fn timer_deadline_wakes_a_waiting_vcpu() {
        let mut q = queue(&[(L0, Class::Linux), (RTOS, Class::Rtos)]);
        q.schedule(0, None);
        q.wfi(false);
        let d = q.schedule(10, Some(500));
        assert_eq!(d.timer, Some(500));
        // Early hyp-timer interrupt: nothing to wake.
        assert_eq!(q.schedule(499, None).run, Run::Continue);
        assert_eq!(
            q.schedule(500, None).run,
            Run::Switch {
                from: Some(L0),
                to: RTOS
            }
        );
        // A deadline already passed when the vCPU trapped WFI: it does not wait at all.
        q.wfi(false);
        assert_eq!(q.schedule(600, Some(550)).run, Run::Continue);
    }

    #[test]
    fn arriving_waiting_vcpu_keeps_its_deadline() {
        let mut from = queue(&[(L0, Class::Linux), (L1, Class::Linux)]);
        from.schedule(0, None);
        from.wfi(false);
        from.schedule(10, Some(300));
        let r = from.remove(L0).unwrap();
        assert_eq!((r.state, r.deadline), (RunState::Waiting, Some(300)));
        let mut to = queue(&[(L2, Class::Linux)]);
        to.add(L0, r.class, r.state, r.deadline).unwrap();
        assert_eq!(to.schedule(20, None).timer, Some(300));
        to.schedule(300, None);
        assert_eq!(to.state(L0), Some(RunState::Ready));
        // Its deadline passed while it was in flight: ready at once.
        let mut late = RunQueue::new(SLICE, MIN_RUN);
        late.add(L0, r.class, r.state, r.deadline).unwrap();
        assert_eq!(
            late.schedule(400, None).run,
            Run::Switch { from: None, to: L0 }
        );
    }

    #[test]
    fn lone_vcpu_needs_no_timer() {
        let mut q = queue(&[(L0, Class::Linux)]);
        assert!(q.alone());
        let d = q.schedule(0, Some(50));
        assert_eq!(d.timer, None);
        assert_eq!(q.schedule(10 * SLICE, Some(50)).timer, None);
        q.add(RTOS, Class::Rtos, RunState::Waiting, None).unwrap();
        assert!(!q.alone());
    }

    #[test]
    fn add_and_remove() {
        let mut q = queue(&[(L0, Class::Linux)]);
        assert_eq!(
            q.add(L0, Class::Linux, RunState::Ready, None),
            Err(AddError::AlreadyHere)
        );
        for n in 1..RUNQ_CAPACITY as u8 {
            q.add(VcpuId::new(2, n), Class::Linux, RunState::Ready, None)
                .unwrap();
        }
        assert_eq!(
            q.add(L1, Class::Linux, RunState::Ready, None),
            Err(AddError::Full)
        );
        q.schedule(0, Some(77));
        assert_eq!(q.loaded(), Some(L0));
        q.schedule(1, Some(88));
        let r = q.remove(L0).unwrap();
        assert_eq!(
            r,
            Removed {
                class: Class::Linux,
                state: RunState::Ready,
                deadline: Some(88),
                was_loaded: true
            }
        );
        assert_eq!(q.remove(L0), None);
        assert_eq!(q.wake(L0), Wake::NotHere);
        assert!(matches!(
            q.schedule(2, None).run,
            Run::Switch { from: None, .. }
        ));
    }

    #[test]
    fn empty_core_idles() {
        let mut q = RunQueue::new(SLICE, MIN_RUN);
        let d = q.schedule(0, None);
        assert_eq!(d.run, Run::Idle);
        assert_eq!(d.timer, None);
    }

    const LEAD: Ticks = 20;

    /// L0 runs, the RTOS (lead [`LEAD`]) waits for `due`.
    fn rtos_waits_beside_l0(due: Ticks) -> RunQueue {
        let mut q = queue(&[(L0, Class::Linux), (RTOS, Class::Rtos)]);
        assert!(q.set_lead(RTOS, LEAD));
        q.schedule(0, None);
        q.wfi(false);
        let d = q.schedule(5, Some(due));
        assert_eq!(switch_to(d), Some(L0));
        q
    }

    #[test]
    fn the_rtos_is_loaded_one_lead_before_its_deadline() {
        let mut q = rtos_waits_beside_l0(1_000);
        // The EL2 timer is armed for the lead window, not the deadline.
        assert_eq!(q.schedule(6, None).timer, Some(1_000 - LEAD));
        assert_eq!(q.schedule(1_000 - LEAD - 1, None).run, Run::Continue);
        let d = q.schedule(1_000 - LEAD, Some(5_000));
        assert_eq!(
            d.run,
            Run::Preload {
                from: Some(L0),
                to: RTOS
            }
        );
        assert_eq!(q.loaded(), Some(RTOS));
        assert_eq!(q.holding(), Some(RTOS));
        assert_eq!(
            q.state(RTOS),
            Some(RunState::Waiting),
            "loaded, still waiting"
        );
        // Its own timer wakes it; the EL2 timer only backs that up, one lead after.
        assert_eq!(d.timer, Some(1_000 + LEAD));
        // The deadline: nothing is left to switch.
        let d = q.resume_loaded(1_000).expect("the idle decision stands");
        assert_eq!(d.run, Run::Continue);
        assert_eq!(d.timer, None, "nothing of its class waits");
        assert_eq!(q.state(RTOS), Some(RunState::Ready));
        assert_eq!(q.holding(), None);
        assert_eq!(q.resume_loaded(1_001), None, "once only");
        // It waits again: L0 gets the core back, its lost time at most the lead.
        q.wfi(false);
        let d = q.schedule(1_010, Some(2_000));
        assert_eq!(switch_to(d), Some(L0));
        assert_eq!(d.timer, Some(2_000 - LEAD));
    }

    #[test]
    fn nothing_lower_switches_in_inside_the_lead_window() {
        let mut q = rtos_waits_beside_l0(1_000);
        q.schedule(1_000 - LEAD, Some(990));
        assert_eq!(q.loaded(), Some(RTOS));
        // L0, preempted ready, is held off: the core idles with the RTOS loaded. (The loaded
        // deadline passed in is the RTOS's own now.)
        let d = q.schedule(985, Some(1_000));
        assert_eq!(d.run, Run::Idle);
        assert_eq!(d.timer, Some(1_000 + LEAD));
        assert_eq!(q.schedule(999, Some(1_000)).run, Run::Idle);
        // An interrupt for a waiting Linux vCPU in the window needs no decision, and the
        // resume still stands.
        let mut q = rtos_waits_beside_l0(1_000);
        q.add(L1, Class::Linux, RunState::Waiting, Some(990))
            .unwrap();
        let d = q.schedule(1_000 - LEAD, None);
        assert_eq!(
            d.timer,
            Some(1_000 + LEAD),
            "L1's 990 is not armed in the window"
        );
        let woken = q.wake(L1);
        assert_eq!(woken, Wake::Deferred);
        assert!(!woken.needs_decision());
        assert_eq!(q.resume_loaded(1_000).map(|d| d.run), Some(Run::Continue));
        // After the RTOS waits again, the Linux vCPUs run.
        q.wfi(false);
        assert!(matches!(
            switch_to(q.schedule(1_005, Some(3_000))),
            Some(L0 | L1)
        ));
    }

    #[test]
    fn a_ready_rtos_never_waits_for_the_window() {
        // Woken early by an interrupt, the RTOS takes the core at once, window or not.
        let mut q = rtos_waits_beside_l0(1_000);
        assert_eq!(q.wake(RTOS), Wake::Preempt);
        assert_eq!(
            q.schedule(500, None).run,
            Run::Switch {
                from: Some(L0),
                to: RTOS
            }
        );
        // Woken inside the window while preloaded: it just goes on.
        let mut q = rtos_waits_beside_l0(1_000);
        q.schedule(1_000 - LEAD, None);
        assert_eq!(q.wake(RTOS), Wake::Preempt);
        assert_eq!(q.resume_loaded(990), None, "the full path after a wake");
        assert_eq!(q.schedule(990, None).run, Run::Continue);
    }

    #[test]
    fn the_resume_falls_back_when_the_decision_no_longer_stands() {
        // An equal vCPU's timer due by then: decide in full.
        let mut q = rtos_waits_beside_l0(1_000);
        q.add(
            VcpuId::new(3, 0),
            Class::Rtos,
            RunState::Waiting,
            Some(1_000),
        )
        .unwrap();
        q.schedule(1_000 - LEAD, None);
        assert_eq!(q.holding(), Some(RTOS));
        assert_eq!(q.resume_loaded(1_000), None);
        // Any event since the decision withdraws it.
        let mut q = rtos_waits_beside_l0(1_000);
        q.schedule(1_000 - LEAD, None);
        q.add(L1, Class::Linux, RunState::Ready, None).unwrap();
        assert_eq!(q.resume_loaded(1_000), None);
        // A core idle with the RTOS loaded outside its window resumes it too.
        let mut q = queue(&[(L0, Class::Linux), (RTOS, Class::Rtos)]);
        assert!(q.set_lead(RTOS, LEAD));
        q.schedule(0, None);
        q.wfi(false);
        assert_eq!(switch_to(q.schedule(1, Some(1_000))), Some(L0));
        q.wfi(false);
        let d = q.schedule(2, Some(500));
        // L0 waits until 500, before the window: armed. Back on L0's watch, the RTOS's window.
        assert_eq!(d.run, Run::Idle);
        assert_eq!(d.timer, Some(500));
        let d = q.resume_loaded(100).unwrap();
        assert_eq!((d.run, d.timer), (Run::Continue, Some(1_000 - LEAD)));
    }

    #[test]
    fn the_loaded_rtos_waiting_relies_on_its_own_timer() {
        let mut q = queue(&[(RTOS, Class::Rtos), (L0, Class::Linux)]);
        assert!(q.set_lead(RTOS, LEAD));
        assert_eq!(switch_to(q.schedule(0, None)), Some(RTOS));
        q.wfi(false);
        assert_eq!(switch_to(q.schedule(1, Some(1_000))), Some(L0));
        // Both wait, L0 loaded: the EL2 timer is armed for the RTOS's window start.
        q.wfi(false);
        let d = q.schedule(2, Some(1_995));
        assert_eq!((d.run, d.timer), (Run::Idle, Some(1_000 - LEAD)));
        let d = q.schedule(1_000 - LEAD, Some(1_995));
        assert_eq!(
            d.run,
            Run::Preload {
                from: Some(L0),
                to: RTOS
            }
        );
        let d = q.resume_loaded(1_000).unwrap();
        assert_eq!(
            d.timer, None,
            "L0 is lower: its turn comes when the RTOS waits"
        );
        // The RTOS waits for 2,000 and stays loaded: its own virtual timer wakes the core,
        // and L0's 1,995, inside the window from 1,980, waits for that too.
        q.wfi(false);
        let d = q.schedule(1_010, Some(2_000));
        assert_eq!((d.run, d.timer), (Run::Idle, None));
        assert_eq!(q.loaded(), Some(RTOS));
        let d = q.resume_loaded(2_000).unwrap();
        assert_eq!(d.run, Run::Continue);
        q.wfi(false);
        assert_eq!(
            switch_to(q.schedule(2_010, Some(3_000))),
            Some(L0),
            "taken then"
        );
    }

    #[test]
    fn lead_zero_is_the_switch_at_the_deadline() {
        let mut q = queue(&[(L0, Class::Linux), (RTOS, Class::Rtos)]);
        assert!(q.set_lead(RTOS, 0));
        assert!(!q.set_lead(L0, LEAD), "only the top class is loaded ahead");
        q.schedule(0, None);
        q.wfi(false);
        assert_eq!(q.schedule(10, Some(500)).timer, Some(500));
        assert_eq!(q.schedule(499, None).run, Run::Continue);
        assert_eq!(q.holding(), None);
        assert_eq!(
            q.schedule(500, None).run,
            Run::Switch {
                from: Some(L0),
                to: RTOS
            }
        );
    }

    /// Event-driven: the EL2 timer fires exactly when armed, the loaded vCPU's own timer at
    /// its deadline, other events at random; the RTOS waits for periodic deadlines. With a
    /// lead, after every decision: the RTOS is loaded from its window start on (never late),
    /// nothing lower is switched in inside the window, the EL2 timer is armed by the window
    /// start, and the O(1) resume decides what the full path would. With lead 0 nothing is
    /// ever loaded ahead or held (the tests above are the lead-0 behaviour, unchanged).
    #[test]
    fn random_sequences_with_a_lead_keep_the_deadline() {
        let ids = [
            (RTOS, Class::Rtos),
            (VcpuId::new(2, 0), Class::Dsm),
            (L0, Class::Linux),
            (L1, Class::Linux),
        ];
        const PERIOD: Ticks = 300;
        for lead in [0, 1, LEAD, 90] {
            for seed in 1..30u64 {
                let mut rng = XorShift::new(seed);
                let mut q = RunQueue::new(SLICE, MIN_RUN);
                for &(id, class) in &ids {
                    q.add(id, class, RunState::Ready, None).unwrap();
                }
                assert!(q.set_lead(RTOS, lead));
                let mut hw: [Option<Ticks>; 4] = [None; 4];
                let at = |id: VcpuId| ids.iter().position(|(i, _)| *i == id).unwrap();
                let mut now: Ticks = 0;
                let mut armed: Option<Ticks> = None;
                let mut resumed = 0;
                for _ in 0..3_000 {
                    let li = q.loaded().map(at);
                    let own = li
                        .filter(|&i| q.state(ids[i].0) == Some(RunState::Waiting))
                        .and_then(|i| hw[i]);
                    let random = now + 1 + rng.below(60);
                    let next = [Some(random), armed, own]
                        .into_iter()
                        .flatten()
                        .min()
                        .unwrap();
                    now = next.max(now);
                    let deadline = li.and_then(|i| hw[i]);
                    let d = if own.is_some_and(|t| t <= now) {
                        // The loaded vCPU's own timer interrupt, while the core idles.
                        let loaded = ids[li.unwrap()].0;
                        let mut full = q.clone();
                        full.wake(loaded);
                        let expect = full.schedule(now, deadline);
                        match q.resume_loaded(now) {
                            Some(d) => {
                                resumed += 1;
                                assert_eq!(d.run, expect.run, "the resume decides as in full");
                                d
                            }
                            None => {
                                q.wake(loaded);
                                q.schedule(now, deadline)
                            }
                        }
                    } else if armed.is_some_and(|t| t <= now) {
                        q.schedule(now, deadline)
                    } else {
                        let running = li.filter(|&i| q.state(ids[i].0) == Some(RunState::Ready));
                        let due = match (rng.below(3), running) {
                            (0, Some(i)) => {
                                hw[i] = Some(if i == 0 {
                                    (now / PERIOD + 1) * PERIOD
                                } else {
                                    now + 1 + rng.below(400)
                                });
                                q.wfi(rng.below(4) == 0);
                                true
                            }
                            (1, _) => {
                                let (id, _) = ids[rng.below(4) as usize];
                                q.wake(id).needs_decision()
                            }
                            _ => rng.below(4) == 0,
                        };
                        if !due {
                            continue;
                        }
                        let deadline = q.loaded().map(at).and_then(|i| hw[i]);
                        q.schedule(now, deadline)
                    };
                    armed = d.timer;
                    check_lead(&q, d, now, lead);
                }
                if lead > 1 {
                    assert!(resumed > 0, "seed {seed}: the O(1) resume never ran");
                }
            }
        }

        fn check_lead(q: &RunQueue, d: Decision, now: Ticks, lead: Ticks) {
            if lead == 0 {
                assert_eq!(q.holding(), None);
                assert!(
                    !matches!(d.run, Run::Preload { .. }),
                    "lead 0 never loads ahead"
                );
                return;
            }
            let rtos = q.entries.iter().flatten().find(|e| e.id == RTOS).unwrap();
            let Some((start, due)) = rtos.window() else {
                return;
            };
            assert!(due > now, "expired deadline left waiting");
            if now >= start {
                assert_eq!(
                    q.loaded(),
                    Some(RTOS),
                    "the RTOS is loaded through its window"
                );
                assert!(
                    matches!(d.run, Run::Idle | Run::Preload { to: RTOS, .. }),
                    "nothing else switched in inside the window"
                );
            } else if q.loaded() != Some(RTOS) {
                assert!(
                    d.timer.is_some_and(|t| t <= start),
                    "armed by the window start"
                );
            }
        }
    }

    /// Random events on a queue of mixed classes; after every decision the invariants hold.
    #[test]
    fn random_sequences_keep_invariants() {
        let ids = [
            (RTOS, Class::Rtos),
            (VcpuId::new(2, 0), Class::Dsm),
            (L0, Class::Linux),
            (L1, Class::Linux),
            (L2, Class::Linux),
        ];
        for seed in 1..40u64 {
            let mut rng = XorShift::new(seed);
            let mut q = RunQueue::new(SLICE, MIN_RUN);
            // What the loaded vCPU's timer holds (the hardware register, in the model).
            let mut hw_deadline: [Option<Ticks>; 5] = [None; 5];
            for &(id, class) in &ids {
                q.add(id, class, RunState::Ready, None).unwrap();
            }
            let mut now: Ticks = 0;
            let mut armed: Option<Ticks> = None;
            for _ in 0..3_000 {
                now += rng.below(60);
                let loaded = q.loaded();
                let li = loaded.and_then(|l| ids.iter().position(|(i, _)| *i == l));
                match rng.below(4) {
                    0 => {
                        if let Some(li) = li {
                            hw_deadline[li] = Some(now + rng.below(400));
                        }
                        q.wfi(rng.below(4) == 0);
                    }
                    1 => {
                        let (id, _) = ids[rng.below(5) as usize];
                        q.wake(id);
                    }
                    _ => {}
                }
                // The EL2 timer must have fired if its time came.
                if armed.is_some_and(|t| t <= now) || rng.below(3) == 0 {
                    let ran_since = q.run_start;
                    let d = q.schedule(now, li.and_then(|i| hw_deadline[i]));
                    armed = d.timer;
                    check(&q, d, now);
                    // Rate limit: an equal that could go on is preempted only after its
                    // minimum run (the tests never yield a slice).
                    if let Run::Switch { from: Some(f), to } = d.run {
                        let class = |v: VcpuId| ids.iter().find(|(i, _)| *i == v).unwrap().1;
                        if q.state(f) == Some(RunState::Ready) && class(f) == class(to) {
                            assert!(now - ran_since >= MIN_RUN, "{f:?} preempted too soon");
                        }
                    }
                }
            }
        }

        fn check(q: &RunQueue, d: Decision, now: Ticks) {
            let entries: heapless::Vec<Entry, RUNQ_CAPACITY> =
                q.entries.iter().flatten().copied().collect();
            let best = entries
                .iter()
                .filter(|e| e.state == RunState::Ready)
                .map(|e| e.class)
                .min();
            if d.run == Run::Idle {
                assert_eq!(best, None, "idle only with nothing ready");
            } else {
                let e = q.entries[q.loaded.unwrap()].unwrap();
                assert_eq!(e.state, RunState::Ready, "only ready vCPUs run");
                assert_eq!(Some(e.class), best, "the highest ready class runs");
            }
            for e in entries.iter().filter(|e| e.state == RunState::Waiting) {
                if let Some(dl) = e.deadline {
                    assert!(dl > now, "expired deadline left waiting");
                    assert!(d.timer.is_some_and(|t| t <= dl), "wake-up would be lost");
                }
            }
        }
    }
}
