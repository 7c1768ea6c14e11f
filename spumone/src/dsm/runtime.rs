//! When the checkers run and what a finding leads to.
//!
//! The runtime is driven by a periodic call ([`Runtime::step`], from an EL2 tick). Until
//! Linux has booted it only waits; the caller says when ([`super::guest::LinuxGuest::boot_complete`])
//! and [`Runtime::baseline`] records every checker's known-good state. Then each step runs
//! at most one `check` call of one checker, within that checker's budget; a checker's pass
//! starts at most once per period and may span steps. Checkers take turns, so a long pass
//! (text hashing) does not hold back a short one (the syscall table).
//!
//! Two limits keep the checkers from starving Linux whatever the period:
//! - a **CPU-share cap** ([`Runtime::with_share`]): a token bucket fills at the share of elapsed
//!   time and each check call (and any handshake the caller charges) drains it by the time it
//!   took; no call starts while the bucket is empty, so over any window the DSM uses at most
//!   its share plus one burst ([`BURST_WINDOW_US`] of share) and one call;
//! - a **per-checker time slice** ([`Runtime::with_slice`]): a divisible pass (text hashing)
//!   gets the units per call that fit its slice, learnt from its last call, so one call stays
//!   short whatever the hashing speed.
//!
//! Findings go through the response policy: `log` keeps checking, `pause` and `stop` end
//! checking and tell the caller to freeze or stop the partition; [`Runtime::resume`] ends a
//! pause.

use board::rt::DsmPolicy;
use dsm_api::{Budget, CheckError, Checker, Finding, Guest, GuestError, Progress, WatchEvent};
use spumone_abi::mgmt::ErrorCode;

/// Where the runtime is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for Linux to boot.
    Booting,
    Running,
    /// A finding froze the partition (policy `pause`); [`Runtime::resume`] goes back.
    Paused,
    /// A finding stopped the partition (policy `stop`).
    Stopped,
}

/// What the caller must do about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Pause,
    Stop,
}

/// What happened, for the log. Times are in the caller's clock (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `checker`'s baseline took `ns`; `error` if it failed (the checker is then left out).
    Baseline {
        checker: &'static str,
        ns: u64,
        error: Option<CheckError>,
    },
    /// A pass of `checker` completed: `ns` spent in `calls` check calls, `elapsed_us` from
    /// its first call to its last.
    PassDone {
        checker: &'static str,
        ns: u64,
        calls: u32,
        elapsed_us: u64,
    },
    /// A check call failed; the pass is dropped and tried again next period.
    CheckFailed {
        checker: &'static str,
        error: CheckError,
    },
    Alert(Finding),
    /// The response to the first alert (policy `pause` or `stop`).
    Respond(Response),
}

/// Where a checker is in its cycle.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Left out (its baseline failed).
    off: bool,
    /// Its baseline found no vCPU at EL1 (the cross-view checkers need the kernel's page
    /// tables from one); it is retried on its turns until it succeeds or fails otherwise.
    retry_baseline: bool,
    /// A pass has begun and not finished.
    in_pass: bool,
    /// When the next pass may begin (µs).
    due_us: u64,
    /// When the current pass began (µs).
    started_us: u64,
    /// Time spent in this pass's calls.
    spent_ns: u64,
    calls: u32,
}

/// How much a checker may do in one call.
#[derive(Debug, Clone, Copy)]
struct CallBudget {
    /// Units of the next call.
    units: u64,
    /// Bounds on `units`: the configured budget, and the least a call may get.
    max: u64,
    min: u64,
    /// Target length of one call (0: fixed budget, `units == max`).
    slice_ns: u64,
    /// This checker's period, if shorter than the runtime's (0: the runtime's).
    period_us: u64,
}

impl CallBudget {
    /// After a call that took `taken` units in `ns`: the units that fit the slice.
    fn learn(&mut self, taken: u64, ns: u64) {
        if self.slice_ns == 0 || taken == 0 || ns == 0 {
            return;
        }
        let fit = u128::from(taken) * u128::from(self.slice_ns) / u128::from(ns);
        self.units = u64::try_from(fit)
            .unwrap_or(u64::MAX)
            .clamp(self.min, self.max);
    }
}

/// Share in thousandths at which the cap is off (the whole core).
pub const SHARE_UNCAPPED: u16 = 1000;
/// The bucket holds at most this much elapsed time's worth of share: after an idle stretch
/// the DSM may catch up by that much at once.
pub const BURST_WINDOW_US: u64 = 1_000_000;

/// The CPU-share cap: a token bucket of ns the DSM may spend.
#[derive(Debug, Clone, Copy)]
struct Share {
    permille: u16,
    /// Credit in ns; negative while a call that ran over is paid back.
    credit_ns: i64,
    /// When the credit was last brought up to date.
    at_us: Option<u64>,
}

impl Share {
    const fn new(permille: u16) -> Self {
        Self {
            permille,
            credit_ns: 0,
            at_us: None,
        }
    }

    fn capped(&self) -> bool {
        self.permille < SHARE_UNCAPPED
    }

    fn cap_ns(&self) -> i64 {
        (BURST_WINDOW_US * u64::from(self.permille)) as i64
    }

    /// The credit at `now_us`: `permille` ns per elapsed µs is a share of `permille`/1000.
    fn credit_at(&self, now_us: u64) -> i64 {
        let Some(at) = self.at_us else {
            return self.cap_ns();
        };
        let earned = now_us
            .saturating_sub(at)
            .saturating_mul(u64::from(self.permille));
        self.credit_ns
            .saturating_add(i64::try_from(earned).unwrap_or(i64::MAX))
            .min(self.cap_ns())
    }

    fn allows(&self, now_us: u64) -> bool {
        !self.capped() || self.credit_at(now_us) > 0
    }

    fn charge(&mut self, now_us: u64, ns: u64) {
        if !self.capped() {
            return;
        }
        self.credit_ns = self
            .credit_at(now_us)
            .saturating_sub(i64::try_from(ns).unwrap_or(i64::MAX));
        self.at_us = Some(now_us);
    }
}

/// The DSM's schedule and response policy for `N` checkers.
pub struct Runtime<const N: usize> {
    period_us: u64,
    policy: DsmPolicy,
    /// Budget per `check` call, per checker.
    budgets: [CallBudget; N],
    share: Share,
    /// Time charged since the baseline (check calls and handshakes), for the log.
    spent_ns: u64,
    slots: [Slot; N],
    phase: Phase,
    /// The checker that gets the next turn.
    next: usize,
    alerts: u32,
}

impl<const N: usize> Runtime<N> {
    /// A runtime with fixed budgets (units per call) and no share cap.
    pub const fn new(period_ms: u32, policy: DsmPolicy, budgets: [u64; N]) -> Self {
        let mut calls = [CallBudget {
            units: 0,
            max: 0,
            min: 0,
            slice_ns: 0,
            period_us: 0,
        }; N];
        let mut i = 0;
        while i < N {
            calls[i].units = budgets[i];
            calls[i].max = budgets[i];
            calls[i].min = budgets[i];
            i += 1;
        }
        Self {
            period_us: period_ms as u64 * 1000,
            policy,
            budgets: calls,
            share: Share::new(SHARE_UNCAPPED),
            spent_ns: 0,
            slots: [Slot {
                off: false,
                retry_baseline: false,
                in_pass: false,
                due_us: 0,
                started_us: 0,
                spent_ns: 0,
                calls: 0,
            }; N],
            phase: Phase::Booting,
            next: 0,
            alerts: 0,
        }
    }

    /// Caps the DSM at `permille` thousandths of its core ([`SHARE_UNCAPPED`] or more: no
    /// cap; 0 is taken as 1, the least share that still checks).
    pub const fn with_share(mut self, permille: u16) -> Self {
        self.share = Share::new(if permille == 0 { 1 } else { permille });
        self
    }

    /// Gives `checker` a time slice per call: its budget (units) becomes at most the
    /// configured one and at least `min_units`, sized from its last call to take about
    /// `slice_ns`.
    pub const fn with_slice(mut self, checker: usize, slice_ns: u64, min_units: u64) -> Self {
        if checker < N {
            let b = &mut self.budgets[checker];
            b.slice_ns = slice_ns;
            b.min = if min_units < b.max { min_units } else { b.max };
        }
        self
    }

    /// Gives `checker` a period of its own when shorter than the runtime's: a cheap check
    /// (a few registers) can run often enough to see a short-lived change.
    pub const fn with_period(mut self, checker: usize, period_ms: u32) -> Self {
        let us = period_ms as u64 * 1000;
        if checker < N && us < self.period_us {
            self.budgets[checker].period_us = us;
        }
        self
    }

    fn period_of(&self, checker: usize) -> u64 {
        match self.budgets[checker].period_us {
            0 => self.period_us,
            us => us,
        }
    }

    /// The units `checker`'s next call gets.
    pub fn units(&self, checker: usize) -> Option<u64> {
        self.budgets.get(checker).map(|b| b.units)
    }

    /// Time charged against the share since the baseline (ns).
    pub fn spent_ns(&self) -> u64 {
        self.spent_ns
    }

    /// Charges `ns` of DSM work done outside a check call at `now_us` (a register capture
    /// handshake, say) against the share.
    pub fn charge(&mut self, now_us: u64, ns: u64) {
        self.share.charge(now_us, ns);
        self.spent_ns = self.spent_ns.saturating_add(ns);
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn alerts(&self) -> u32 {
        self.alerts
    }

    /// Takes every checker's baseline (Linux has booted) and starts checking: the first
    /// passes are due at once. `drain` yields the findings the guest queued. `checkers` are
    /// the `N` checkers, in the order of the budgets.
    pub fn baseline<G: Guest>(
        &mut self,
        now_us: u64,
        clock: &mut dyn FnMut() -> u64,
        guest: &mut G,
        drain: &mut dyn FnMut(&mut G) -> Option<Finding>,
        checkers: &mut [&mut dyn Checker],
        out: &mut dyn FnMut(Event),
    ) {
        if self.phase != Phase::Booting {
            return;
        }
        self.phase = Phase::Running;
        for (slot, checker) in self.slots.iter_mut().zip(checkers.iter_mut()) {
            Self::take_baseline(slot, now_us, clock, guest, &mut **checker, out);
        }
        self.respond_to_findings(guest, drain, out);
    }

    /// One checker's baseline into `slot`. A failure for want of a vCPU at EL1 is not
    /// logged and leaves the baseline to be retried; any other leaves the checker out.
    fn take_baseline<G: Guest>(
        slot: &mut Slot,
        now_us: u64,
        clock: &mut dyn FnMut() -> u64,
        guest: &mut G,
        checker: &mut dyn Checker,
        out: &mut dyn FnMut(Event),
    ) {
        let t0 = clock();
        let result = checker.baseline(guest);
        let ns = clock().wrapping_sub(t0);
        let retry = matches!(
            result,
            Err(CheckError::Guest(GuestError::RegisterUnavailable(_)))
        );
        *slot = Slot {
            off: result.is_err() && !retry,
            retry_baseline: retry,
            due_us: now_us,
            ..Slot::default()
        };
        if !retry {
            out(Event::Baseline {
                checker: checker.name(),
                ns,
                error: result.err(),
            });
        }
    }

    /// Back to the booting phase (the partition restarted): a new baseline is needed.
    pub fn restart(&mut self) {
        if self.phase != Phase::Stopped {
            self.phase = Phase::Booting;
        }
    }

    /// The operator's pause: a running partition is paused as a finding under policy
    /// `pause` would pause it, whatever the policy (the caller holds its vCPUs). `None` in
    /// any other phase: booting (no baseline yet), paused already, or stopped.
    pub fn pause(&mut self) -> Option<Response> {
        (self.phase == Phase::Running).then(|| {
            self.phase = Phase::Paused;
            Response::Pause
        })
    }

    /// Why [`Runtime::pause`] would refuse now, as the management channel answers it; `None`
    /// while a pause would be taken.
    pub fn pause_refusal(&self) -> Option<(ErrorCode, &'static str)> {
        match self.phase {
            Phase::Running => None,
            Phase::Booting => Some((ErrorCode::Busy, "the DSM is still taking its baselines")),
            Phase::Paused => Some((ErrorCode::InvalidState, "it is paused already")),
            Phase::Stopped => Some((ErrorCode::InvalidState, "it is stopped")),
        }
    }

    /// Resumes checking after a pause (a command from outside).
    pub fn resume(&mut self) {
        if self.phase == Phase::Paused {
            self.phase = Phase::Running;
        }
    }

    /// Makes checker `i` due at `now_us` (the operator's `check`): it begins a pass at its next
    /// turn, or goes on with the one under way. `false` if there is no such checker or it is
    /// left out.
    pub fn due_now(&mut self, i: usize, now_us: u64) -> bool {
        match self.slots.get_mut(i) {
            Some(slot) if !slot.off => {
                slot.due_us = slot.due_us.min(now_us);
                true
            }
            _ => false,
        }
    }

    /// The checker whose turn it is at `now_us`, if any: one with a pass under way or due,
    /// starting from the one after the last served, while the share allows a call.
    /// [`Runtime::step`] runs this one.
    pub fn pick(&self, now_us: u64) -> Option<usize> {
        if self.phase != Phase::Running || !self.share.allows(now_us) {
            return None;
        }
        (0..N).map(|k| (self.next + k) % N).find(|&i| {
            let s = &self.slots[i];
            !s.off && (s.in_pass || now_us >= s.due_us)
        })
    }

    /// One turn: at most one `check` call of one checker, then the findings it raised go
    /// through the policy. Returns the index of the checker that ran.
    pub fn step<G: Guest>(
        &mut self,
        now_us: u64,
        clock: &mut dyn FnMut() -> u64,
        guest: &mut G,
        drain: &mut dyn FnMut(&mut G) -> Option<Finding>,
        checkers: &mut [&mut dyn Checker],
        out: &mut dyn FnMut(Event),
    ) -> Option<usize> {
        self.step_with(now_us, clock, guest, drain, checkers, out, &mut |_, _| 0)
    }

    /// [`Runtime::step`] with a handshake first (a register capture, say): `handshake` gets the
    /// picked checker's name and returns the time it took, which the share is charged after
    /// the call. Charged before, it could empty the bucket between the pick and the call, and
    /// the same checker would be picked, handshaken for and skipped at every step.
    #[allow(clippy::too_many_arguments)]
    pub fn step_with<G: Guest>(
        &mut self,
        now_us: u64,
        clock: &mut dyn FnMut() -> u64,
        guest: &mut G,
        drain: &mut dyn FnMut(&mut G) -> Option<Finding>,
        checkers: &mut [&mut dyn Checker],
        out: &mut dyn FnMut(Event),
        handshake: &mut dyn FnMut(&'static str, &mut G) -> u64,
    ) -> Option<usize> {
        let i = self.pick(now_us).filter(|&i| i < checkers.len())?;
        let ns = handshake(checkers[i].name(), guest);
        let ran = self.turn(i, now_us, clock, guest, drain, checkers, out);
        self.charge(now_us, ns);
        ran
    }

    /// Checker `i`'s turn (picked at `now_us`).
    #[allow(clippy::too_many_arguments)]
    fn turn<G: Guest>(
        &mut self,
        i: usize,
        now_us: u64,
        clock: &mut dyn FnMut() -> u64,
        guest: &mut G,
        drain: &mut dyn FnMut(&mut G) -> Option<Finding>,
        checkers: &mut [&mut dyn Checker],
        out: &mut dyn FnMut(Event),
    ) -> Option<usize> {
        self.next = (i + 1) % N;
        let period_us = self.period_of(i);
        let slot = &mut self.slots[i];
        if slot.retry_baseline {
            Self::take_baseline(slot, now_us, clock, guest, &mut *checkers[i], out);
            self.respond_to_findings(guest, drain, out);
            return Some(i);
        }
        if !slot.in_pass {
            *slot = Slot {
                in_pass: true,
                started_us: now_us,
                due_us: slot.due_us,
                ..Slot::default()
            };
        }
        let units = self.budgets[i].units;
        let mut budget = Budget::new(units);
        let t0 = clock();
        let result = checkers[i].check(guest, &mut budget);
        let ns = clock().wrapping_sub(t0);
        self.budgets[i].learn(units - budget.remaining().min(units), ns);
        self.share.charge(now_us, ns);
        self.spent_ns = self.spent_ns.saturating_add(ns);
        slot.spent_ns = slot.spent_ns.wrapping_add(ns);
        slot.calls = slot.calls.saturating_add(1);
        let name = checkers[i].name();
        match result {
            Ok(Progress::More) => {}
            Ok(Progress::Done) => {
                slot.in_pass = false;
                slot.due_us = slot.started_us.saturating_add(period_us);
                out(Event::PassDone {
                    checker: name,
                    ns: slot.spent_ns,
                    calls: slot.calls,
                    elapsed_us: now_us.saturating_sub(slot.started_us),
                });
            }
            Err(error) => {
                slot.in_pass = false;
                slot.due_us = now_us.saturating_add(period_us);
                out(Event::CheckFailed {
                    checker: name,
                    error,
                });
            }
        }
        self.respond_to_findings(guest, drain, out);
        Some(i)
    }

    /// A trapped write to a watched range, before it lands: every checker with a baseline
    /// judges it ([`Checker::on_watch`]) and its findings go through the policy at once.
    /// Returns whether the write may be performed: yes unless the policy paused or stopped
    /// the partition (with `log` an illegitimate write is reported and let through).
    pub fn on_watch<G: Guest>(
        &mut self,
        guest: &mut G,
        drain: &mut dyn FnMut(&mut G) -> Option<Finding>,
        checkers: &mut [&mut dyn Checker],
        event: &WatchEvent,
        out: &mut dyn FnMut(Event),
    ) -> bool {
        if self.phase == Phase::Running {
            for (slot, checker) in self.slots.iter().zip(checkers.iter_mut()) {
                if slot.off || slot.retry_baseline {
                    continue;
                }
                if let Err(error) = checker.on_watch(guest, event) {
                    out(Event::CheckFailed {
                        checker: checker.name(),
                        error,
                    });
                }
            }
            self.respond_to_findings(guest, drain, out);
        }
        !matches!(self.phase, Phase::Paused | Phase::Stopped)
    }

    fn respond_to_findings<G>(
        &mut self,
        guest: &mut G,
        drain: &mut dyn FnMut(&mut G) -> Option<Finding>,
        out: &mut dyn FnMut(Event),
    ) {
        while let Some(finding) = drain(guest) {
            self.alerts = self.alerts.saturating_add(1);
            out(Event::Alert(finding));
            if let Some(response) = self.apply_policy() {
                out(Event::Respond(response));
            }
        }
    }

    /// The policy's answer to one alert: only the first alert of a running partition pauses
    /// or stops it.
    fn apply_policy(&mut self) -> Option<Response> {
        if self.phase != Phase::Running {
            return None;
        }
        match self.policy {
            DsmPolicy::Log => None,
            DsmPolicy::Pause => {
                self.phase = Phase::Paused;
                Some(Response::Pause)
            }
            DsmPolicy::Stop => {
                self.phase = Phase::Stopped;
                Some(Response::Stop)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsm_api::symbols::Layout;
    use dsm_api::{Access, GuestError, KernelInfo, KernelSymbols, PhysRange, SysReg, WatchId};

    static SYMS: KernelSymbols = KernelSymbols {
        symbols: &[],
        layout: Layout {
            stext: 0,
            etext: 0,
            rodata_end: 0,
            init_begin: 0,
            image_size: 0,
        },
        sys_call_table: None,
        tramp_vectors: None,
        jump_table: None,
    };

    /// A guest that only queues findings.
    #[derive(Default)]
    struct Queue(std::vec::Vec<Finding>);

    impl Guest for Queue {
        fn ram(&self) -> &[PhysRange] {
            &[]
        }
        fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<(), GuestError> {
            Err(GuestError::OutsideRam {
                pa,
                len: buf.len() as u64,
            })
        }
        fn vcpus(&self) -> usize {
            1
        }
        fn sysreg(&self, _: usize, reg: SysReg) -> Result<u64, GuestError> {
            Err(GuestError::RegisterUnavailable(reg))
        }
        fn kernel(&self) -> Result<KernelInfo, GuestError> {
            Err(GuestError::KernelUnknown)
        }
        fn symbols(&self) -> &KernelSymbols {
            &SYMS
        }
        fn pause(&mut self) -> Result<(), GuestError> {
            Ok(())
        }
        fn resume(&mut self) {}
        fn watch(&mut self, _: PhysRange, _: Access) -> Result<WatchId, GuestError> {
            Err(GuestError::WatchUnavailable)
        }
        fn unwatch(&mut self, _: WatchId) {}
        fn report(&mut self, f: Finding) {
            self.0.push(f);
        }
        fn heartbeat(&mut self, _: &'static str) {}
    }

    fn drain(q: &mut Queue) -> Option<Finding> {
        (!q.0.is_empty()).then(|| q.0.remove(0))
    }

    /// A checker whose pass is `units` budget units long; it reports when `bad` is set.
    struct Fake {
        name: &'static str,
        units: u64,
        done: u64,
        calls: u32,
        bad: bool,
        fail_baseline: bool,
    }

    fn fake(name: &'static str, units: u64) -> Fake {
        Fake {
            name,
            units,
            done: 0,
            calls: 0,
            bad: false,
            fail_baseline: false,
        }
    }

    impl Checker for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn baseline(&mut self, _: &mut dyn Guest) -> Result<(), CheckError> {
            if self.fail_baseline {
                Err(CheckError::MissingSymbol("x"))
            } else {
                Ok(())
            }
        }
        fn check(&mut self, g: &mut dyn Guest, b: &mut Budget) -> Result<Progress, CheckError> {
            self.calls += 1;
            let n = b.remaining().min(self.units - self.done);
            b.take(n);
            self.done += n;
            if self.bad {
                g.report(Finding {
                    checker: self.name,
                    what: "changed",
                    at: self.done,
                    expected: 0,
                    found: 1,
                });
            }
            if self.done == self.units {
                self.done = 0;
                Ok(Progress::Done)
            } else {
                Ok(Progress::More)
            }
        }
    }

    struct Run {
        events: std::vec::Vec<Event>,
        clock: u64,
    }

    impl Run {
        fn new() -> Self {
            Self {
                events: std::vec::Vec::new(),
                clock: 0,
            }
        }
        fn step<const N: usize>(
            &mut self,
            rt: &mut Runtime<N>,
            now_us: u64,
            g: &mut Queue,
            c: &mut [&mut dyn Checker],
        ) -> Option<usize> {
            let clock = &mut self.clock;
            let events = &mut self.events;
            rt.step(
                now_us,
                &mut || {
                    *clock += 7;
                    *clock
                },
                g,
                &mut drain,
                c,
                &mut |e| events.push(e),
            )
        }
        fn baseline<const N: usize>(
            &mut self,
            rt: &mut Runtime<N>,
            now_us: u64,
            g: &mut Queue,
            c: &mut [&mut dyn Checker],
        ) {
            let events = &mut self.events;
            rt.baseline(now_us, &mut || 0, g, &mut drain, c, &mut |e| events.push(e));
        }
    }

    #[test]
    fn nothing_runs_before_the_baseline() {
        let mut a = fake("a", 10);
        let mut rt = Runtime::new(100, DsmPolicy::Stop, [10]);
        let mut g = Queue::default();
        let mut run = Run::new();
        assert_eq!(run.step(&mut rt, 0, &mut g, &mut [&mut a]), None);
        assert_eq!(a.calls, 0);
        assert_eq!(rt.phase(), Phase::Booting);
        run.baseline(&mut rt, 0, &mut g, &mut [&mut a]);
        assert_eq!(rt.phase(), Phase::Running);
        assert_eq!(run.step(&mut rt, 0, &mut g, &mut [&mut a]), Some(0));
        assert_eq!(a.calls, 1);
    }

    #[test]
    fn passes_follow_the_period_and_span_steps_within_the_budget() {
        // 25 units at 10 a call: three calls a pass; period 100 ms.
        let mut a = fake("a", 25);
        let mut rt = Runtime::new(100, DsmPolicy::Log, [10]);
        let mut g = Queue::default();
        let mut run = Run::new();
        run.baseline(&mut rt, 1_000, &mut g, &mut [&mut a]);
        let mut ran_at = std::vec::Vec::new();
        for t in (1_000..400_000).step_by(10_000) {
            if run.step(&mut rt, t, &mut g, &mut [&mut a]).is_some() {
                ran_at.push(t);
            }
        }
        // Passes begin at 1 ms, 101 ms, 201 ms, 301 ms and take three ticks each.
        let want: std::vec::Vec<u64> = [1_000, 101_000, 201_000, 301_000]
            .iter()
            .flat_map(|&s| [s, s + 10_000, s + 20_000])
            .collect();
        assert_eq!(ran_at, want);
        let done: std::vec::Vec<_> = run
            .events
            .iter()
            .filter_map(|e| match e {
                Event::PassDone { calls, ns, .. } => Some((*calls, *ns)),
                _ => None,
            })
            .collect();
        assert_eq!(done, [(3, 21); 4], "3 calls of 7 clock units each");
    }

    #[test]
    fn a_checker_made_due_runs_before_its_period_and_keeps_its_period_after() {
        let mut a = fake("a", 10);
        let mut rt = Runtime::new(100, DsmPolicy::Log, [10]);
        let mut g = Queue::default();
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut a]);
        assert_eq!(run.step(&mut rt, 0, &mut g, &mut [&mut a]), Some(0));
        // Not due again until 100 ms...
        assert_eq!(run.step(&mut rt, 20_000, &mut g, &mut [&mut a]), None);
        // ...unless asked for.
        assert!(rt.due_now(0, 30_000));
        assert_eq!(run.step(&mut rt, 30_000, &mut g, &mut [&mut a]), Some(0));
        assert_eq!(a.calls, 2);
        assert_eq!(run.step(&mut rt, 40_000, &mut g, &mut [&mut a]), None);
        assert!(!rt.due_now(1, 0), "no such checker");
    }

    #[test]
    fn a_long_pass_does_not_hold_back_a_short_one() {
        let mut long = fake("long", 1_000);
        let mut short = fake("short", 1);
        let mut rt = Runtime::new(50, DsmPolicy::Log, [10, 10]);
        let mut g = Queue::default();
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut long, &mut short]);
        for t in (0..1_000_000).step_by(10_000) {
            run.step(&mut rt, t, &mut g, &mut [&mut long, &mut short]);
        }
        // One second at a 50 ms period: the short checker passes every period even though
        // the long one never finishes (100 calls would be needed; it gets every other tick
        // while the short one is due).
        assert_eq!(short.calls, 20);
        assert!(long.calls >= 50, "{}", long.calls);
    }

    #[test]
    fn stop_policy_stops_once_and_checking_ends() {
        let mut a = fake("a", 1);
        let mut b = fake("b", 1);
        let mut rt = Runtime::new(10, DsmPolicy::Stop, [1, 1]);
        let mut g = Queue::default();
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut a, &mut b]);
        a.bad = true;
        b.bad = true;
        run.step(&mut rt, 0, &mut g, &mut [&mut a, &mut b]);
        assert_eq!(rt.phase(), Phase::Stopped);
        assert_eq!(
            run.step(&mut rt, 100_000, &mut g, &mut [&mut a, &mut b]),
            None
        );
        assert_eq!(b.calls, 0);
        let responses = run
            .events
            .iter()
            .filter(|e| matches!(e, Event::Respond(_)))
            .count();
        assert_eq!(responses, 1);
        assert!(run
            .events
            .iter()
            .any(|e| matches!(e, Event::Alert(f) if f.checker == "a")));
        rt.restart();
        assert_eq!(rt.phase(), Phase::Stopped, "a stopped partition stays so");
    }

    #[test]
    fn log_policy_keeps_checking_and_pause_waits_for_resume() {
        let mut a = fake("a", 1);
        a.bad = true;
        let mut rt = Runtime::new(10, DsmPolicy::Log, [1]);
        let mut g = Queue::default();
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut a]);
        for t in [0, 10_000, 20_000] {
            run.step(&mut rt, t, &mut g, &mut [&mut a]);
        }
        assert_eq!((rt.phase(), rt.alerts(), a.calls), (Phase::Running, 3, 3));
        assert!(!run.events.iter().any(|e| matches!(e, Event::Respond(_))));

        let mut rt = Runtime::new(10, DsmPolicy::Pause, [1]);
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut a]);
        run.step(&mut rt, 0, &mut g, &mut [&mut a]);
        assert_eq!(rt.phase(), Phase::Paused);
        assert!(run.events.contains(&Event::Respond(Response::Pause)));
        assert_eq!(run.step(&mut rt, 50_000, &mut g, &mut [&mut a]), None);
        rt.resume();
        assert_eq!(rt.phase(), Phase::Running);
        assert!(run.step(&mut rt, 50_000, &mut g, &mut [&mut a]).is_some());
    }

    #[test]
    fn the_operators_pause_holds_only_a_running_partition_and_resume_undoes_it() {
        let mut a = fake("a", 1);
        let mut rt = Runtime::new(10, DsmPolicy::Stop, [1]);
        let mut g = Queue::default();
        assert_eq!(rt.pause(), None, "no pause before the baseline");
        assert_eq!(rt.phase(), Phase::Booting);
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut a]);
        for _ in 0..3 {
            assert_eq!(rt.pause(), Some(Response::Pause));
            assert_eq!(rt.phase(), Phase::Paused);
            assert_eq!(rt.pause(), None, "paused already");
            assert_eq!(run.step(&mut rt, 50_000, &mut g, &mut [&mut a]), None);
            rt.resume();
            assert_eq!(rt.phase(), Phase::Running);
        }
        // A stopped partition stays stopped.
        a.bad = true;
        run.step(&mut rt, 100_000, &mut g, &mut [&mut a]);
        assert_eq!(rt.phase(), Phase::Stopped);
        assert_eq!(rt.pause(), None);
        rt.resume();
        assert_eq!(rt.phase(), Phase::Stopped);
    }

    #[test]
    fn a_refused_pause_says_why_in_each_phase() {
        let mut a = fake("a", 1);
        let mut rt = Runtime::new(10, DsmPolicy::Stop, [1]);
        let mut g = Queue::default();
        assert_eq!(rt.pause_refusal().map(|r| r.0), Some(ErrorCode::Busy));
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut a]);
        assert_eq!(
            rt.pause_refusal(),
            None,
            "a running partition can be paused"
        );
        assert!(rt.pause().is_some());
        assert_eq!(
            rt.pause_refusal(),
            Some((ErrorCode::InvalidState, "it is paused already"))
        );
        rt.resume();
        a.bad = true;
        run.step(&mut rt, 100_000, &mut g, &mut [&mut a]);
        assert_eq!(
            rt.pause_refusal(),
            Some((ErrorCode::InvalidState, "it is stopped"))
        );
    }

    #[test]
    fn a_failed_baseline_leaves_the_checker_out_and_a_finding_at_baseline_counts() {
        let mut a = fake("a", 1);
        a.fail_baseline = true;
        let mut b = fake("b", 1);
        let mut rt = Runtime::new(10, DsmPolicy::Stop, [1, 1]);
        let mut g = Queue::default();
        g.0.push(Finding {
            checker: "b",
            what: "hooked before baseline",
            at: 0,
            expected: 0,
            found: 1,
        });
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut a, &mut b]);
        assert!(run.events.contains(&Event::Baseline {
            checker: "a",
            ns: 0,
            error: Some(CheckError::MissingSymbol("x"))
        }));
        assert_eq!(rt.phase(), Phase::Stopped);
        assert_eq!(rt.alerts(), 1);
    }

    #[test]
    fn a_restart_waits_for_a_new_baseline() {
        let mut a = fake("a", 1);
        let mut rt = Runtime::new(10, DsmPolicy::Stop, [1]);
        let mut g = Queue::default();
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut a]);
        assert!(run.step(&mut rt, 0, &mut g, &mut [&mut a]).is_some());
        rt.restart();
        assert_eq!(rt.phase(), Phase::Booting);
        assert_eq!(run.step(&mut rt, 50_000, &mut g, &mut [&mut a]), None);
        assert_eq!(a.calls, 1);
        run.baseline(&mut rt, 60_000, &mut g, &mut [&mut a]);
        let baselines = run
            .events
            .iter()
            .filter(|e| matches!(e, Event::Baseline { .. }))
            .count();
        assert_eq!(baselines, 2);
        assert!(run.step(&mut rt, 60_000, &mut g, &mut [&mut a]).is_some());
    }

    #[test]
    fn a_baseline_without_a_vcpu_at_el1_is_retried_until_it_succeeds() {
        /// A baseline that finds no vCPU at EL1 `misses` times, then succeeds.
        struct NeedsEl1 {
            misses: u32,
            baselines: u32,
            checks: u32,
        }
        impl Checker for NeedsEl1 {
            fn name(&self) -> &'static str {
                "x"
            }
            fn baseline(&mut self, _: &mut dyn Guest) -> Result<(), CheckError> {
                self.baselines += 1;
                if self.baselines <= self.misses {
                    Err(GuestError::RegisterUnavailable(SysReg::Pstate).into())
                } else {
                    Ok(())
                }
            }
            fn check(&mut self, _: &mut dyn Guest, _: &mut Budget) -> Result<Progress, CheckError> {
                self.checks += 1;
                Ok(Progress::Done)
            }
        }
        let mut x = NeedsEl1 {
            misses: 2,
            baselines: 0,
            checks: 0,
        };
        let mut a = fake("a", 1);
        let mut rt = Runtime::new(100, DsmPolicy::Stop, [1, 1]);
        let mut g = Queue::default();
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut x, &mut a]);
        assert_eq!(x.baselines, 1);
        // Only a baseline that worked (a's) is logged; x is not left out.
        let logged = |run: &Run| {
            run.events
                .iter()
                .filter_map(|e| match e {
                    Event::Baseline { checker, error, .. } => Some((*checker, *error)),
                    _ => None,
                })
                .collect::<std::vec::Vec<_>>()
        };
        assert_eq!(logged(&run), [("a", None)]);
        // x and a alternate; x's turns retry its baseline (fails once more, then works),
        // and only after that does x check.
        for t in (0..60_000).step_by(10_000) {
            run.step(&mut rt, t, &mut g, &mut [&mut x, &mut a]);
        }
        assert_eq!(x.baselines, 3);
        assert_eq!(x.checks, 1, "checked from the turn after its baseline");
        assert_eq!(logged(&run), [("a", None), ("x", None)]);
        assert_eq!(rt.phase(), Phase::Running);

        // Any other baseline error leaves the checker out for good.
        let mut y = fake("y", 1);
        y.fail_baseline = true;
        let mut rt = Runtime::new(100, DsmPolicy::Stop, [1]);
        run.baseline(&mut rt, 0, &mut g, &mut [&mut y]);
        for t in (0..60_000).step_by(10_000) {
            assert_eq!(run.step(&mut rt, t, &mut g, &mut [&mut y]), None);
        }
    }

    #[test]
    fn a_failed_check_is_retried_next_period() {
        struct Failing(u32);
        impl Checker for Failing {
            fn name(&self) -> &'static str {
                "f"
            }
            fn baseline(&mut self, _: &mut dyn Guest) -> Result<(), CheckError> {
                Ok(())
            }
            fn check(&mut self, _: &mut dyn Guest, _: &mut Budget) -> Result<Progress, CheckError> {
                self.0 += 1;
                Err(CheckError::BudgetTooSmall)
            }
        }
        let mut f = Failing(0);
        let mut rt = Runtime::new(100, DsmPolicy::Stop, [1]);
        let mut g = Queue::default();
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut f]);
        for t in (0..250_000).step_by(10_000) {
            run.step(&mut rt, t, &mut g, &mut [&mut f]);
        }
        assert_eq!(f.0, 3, "at 0, 100 and 200 ms");
        assert_eq!(rt.phase(), Phase::Running);
    }

    /// Lets a write through unless it stores `bad`.
    struct Judge {
        seen: u32,
    }

    impl Checker for Judge {
        fn name(&self) -> &'static str {
            "judge"
        }
        fn baseline(&mut self, _: &mut dyn Guest) -> Result<(), CheckError> {
            Ok(())
        }
        fn check(&mut self, _: &mut dyn Guest, _: &mut Budget) -> Result<Progress, CheckError> {
            Ok(Progress::Done)
        }
        fn on_watch(&mut self, g: &mut dyn Guest, e: &WatchEvent) -> Result<(), CheckError> {
            self.seen += 1;
            if e.value == 0xbad {
                g.report(Finding::new("judge", "bad write", e.pa, 0, e.value));
            }
            Ok(())
        }
    }

    fn event(value: u64) -> WatchEvent {
        WatchEvent {
            id: WatchId(0),
            pa: 0x4821_0000,
            access: Access::Write,
            vcpu: 1,
            pc: 0xffff_8000_0801_0000,
            value,
            len: 4,
        }
    }

    #[test]
    fn a_watched_write_is_judged_at_once_and_the_policy_decides_if_it_lands() {
        for (policy, lands, phase) in [
            (DsmPolicy::Log, true, Phase::Running),
            (DsmPolicy::Stop, false, Phase::Stopped),
            (DsmPolicy::Pause, false, Phase::Paused),
        ] {
            let mut rt = Runtime::<1>::new(200, policy, [1]);
            let mut judge = Judge { seen: 0 };
            let mut run = Run::new();
            let mut g = Queue::default();
            let mut events = std::vec::Vec::new();
            // Before the baseline nothing is judged and the write lands.
            assert!(rt.on_watch(
                &mut g,
                &mut drain,
                &mut [&mut judge],
                &event(0xbad),
                &mut |e| { events.push(e) }
            ));
            assert_eq!(judge.seen, 0);
            run.baseline(&mut rt, 0, &mut g, &mut [&mut judge]);
            assert!(rt.on_watch(
                &mut g,
                &mut drain,
                &mut [&mut judge],
                &event(0x1f),
                &mut |e| { events.push(e) }
            ));
            assert!(events.is_empty(), "a legitimate write raises nothing");
            let landed = rt.on_watch(
                &mut g,
                &mut drain,
                &mut [&mut judge],
                &event(0xbad),
                &mut |e| events.push(e),
            );
            assert_eq!((landed, rt.phase()), (lands, phase), "{policy:?}");
            assert!(matches!(events[0], Event::Alert(f) if f.what == "bad write"));
            assert_eq!(events.len(), if lands { 1 } else { 2 });
            assert_eq!(judge.seen, 2);
        }
    }

    /// A checker whose calls cost `ns_per_unit` of the shared clock per unit taken; a pass
    /// is `units` long.
    struct Timed<'a> {
        clock: &'a std::cell::Cell<u64>,
        ns_per_unit: u64,
        units: u64,
        done: u64,
        taken: std::vec::Vec<u64>,
    }

    impl<'a> Timed<'a> {
        fn new(clock: &'a std::cell::Cell<u64>, ns_per_unit: u64, units: u64) -> Self {
            Self {
                clock,
                ns_per_unit,
                units,
                done: 0,
                taken: std::vec::Vec::new(),
            }
        }
    }

    impl Checker for Timed<'_> {
        fn name(&self) -> &'static str {
            "timed"
        }
        fn baseline(&mut self, _: &mut dyn Guest) -> Result<(), CheckError> {
            Ok(())
        }
        fn check(&mut self, _: &mut dyn Guest, b: &mut Budget) -> Result<Progress, CheckError> {
            let n = b.remaining().min(self.units - self.done);
            b.take(n);
            self.taken.push(n);
            self.clock.set(self.clock.get() + n * self.ns_per_unit);
            self.done += n;
            if self.done == self.units {
                self.done = 0;
                Ok(Progress::Done)
            } else {
                Ok(Progress::More)
            }
        }
    }

    /// Baseline of `c` alone, on its own clock.
    fn timed_baseline<const N: usize>(rt: &mut Runtime<N>, c: &mut Timed) {
        let clock = c.clock;
        let mut g = Queue::default();
        rt.baseline(
            0,
            &mut || clock.get(),
            &mut g,
            &mut drain,
            &mut [c],
            &mut |_| {},
        );
    }

    /// One step of `c` alone at `now_us`.
    fn timed_step<const N: usize>(rt: &mut Runtime<N>, c: &mut Timed, now_us: u64) -> bool {
        let clock = c.clock;
        let mut g = Queue::default();
        rt.step(
            now_us,
            &mut || clock.get(),
            &mut g,
            &mut drain,
            &mut [c],
            &mut |_| {},
        )
        .is_some()
    }

    /// Ticks every 10 ms for `secs` of elapsed time; returns the ns spent in checks.
    fn ticks<const N: usize>(rt: &mut Runtime<N>, c: &mut Timed, secs: u64) -> u64 {
        timed_baseline(rt, c);
        for t in (0..secs * 1_000_000).step_by(10_000) {
            timed_step(rt, c, t);
        }
        rt.spent_ns()
    }

    #[test]
    fn the_share_cap_bounds_the_time_spent_in_checks_whatever_the_period() {
        // Every call takes 5 ms (half of each 10 ms tick) and passes never end.
        let clock = std::cell::Cell::new(0);
        let mut uncapped = Runtime::new(10, DsmPolicy::Log, [5]);
        let mut c = Timed::new(&clock, 1_000_000, u64::MAX);
        assert_eq!(ticks(&mut uncapped, &mut c, 10), 1000 * 5_000_000);

        for permille in [10, 100, 300] {
            let clock = std::cell::Cell::new(0);
            let mut rt = Runtime::new(10, DsmPolicy::Log, [5]).with_share(permille);
            let mut c = Timed::new(&clock, 1_000_000, u64::MAX);
            let spent = ticks(&mut rt, &mut c, 10);
            // 10 s at the share, plus at most one burst and one call.
            let allowed = 10_000_000 * u64::from(permille) + BURST_WINDOW_US * u64::from(permille);
            assert!(
                spent <= allowed + 5_000_000,
                "{permille}: {spent} > {allowed}"
            );
            // And the cap does not starve the checker: at least the share minus one call.
            let due = 10_000_000 * u64::from(permille);
            assert!(spent + 5_000_000 >= due, "{permille}: {spent} < {due}");
        }
    }

    #[test]
    fn a_call_over_the_credit_is_paid_back_before_the_next() {
        // 1% share; one 50 ms call: the next waits about 50 ms / 1% = 5 s.
        let clock = std::cell::Cell::new(0);
        let mut rt = Runtime::new(10, DsmPolicy::Log, [50]).with_share(10);
        let mut c = Timed::new(&clock, 1_000_000, u64::MAX);
        timed_baseline(&mut rt, &mut c);
        let ran: std::vec::Vec<u64> = (0..12_000_000)
            .step_by(10_000)
            .filter(|&t| timed_step(&mut rt, &mut c, t))
            .collect();
        // The bucket starts full (10 ms), so the first call runs at once and leaves 40 ms of
        // debt: 4 s to pay back, then 50 ms more each 5 s.
        assert_eq!(ran, [0, 4_010_000, 9_010_000]);
    }

    #[test]
    fn handshakes_charged_by_the_caller_count_against_the_share() {
        let clock = std::cell::Cell::new(0);
        let mut rt = Runtime::new(10, DsmPolicy::Log, [1]).with_share(10);
        let mut c = Timed::new(&clock, 1, u64::MAX);
        timed_baseline(&mut rt, &mut c);
        rt.charge(0, 20_000_000);
        assert_eq!(rt.spent_ns(), 20_000_000);
        assert_eq!(rt.pick(1_000_000), None, "10 ms of debt left after 1 s");
        assert_eq!(rt.pick(2_010_000), Some(0));
    }

    #[test]
    fn a_sliced_checker_gets_the_units_that_fit_its_slice() {
        // Configured 64 Ki units, at least 4 Ki, 1 ms a call.
        for (ns_per_unit, want) in [(100, 10_000), (10, 65_536), (1_000, 4_096)] {
            let clock = std::cell::Cell::new(0);
            let mut rt = Runtime::new(10, DsmPolicy::Log, [65_536]).with_slice(0, 1_000_000, 4_096);
            let mut c = Timed::new(&clock, ns_per_unit, u64::MAX);
            ticks(&mut rt, &mut c, 1);
            assert_eq!(
                c.taken[0], 65_536,
                "the first call gets the configured budget"
            );
            assert!(
                c.taken[1..].iter().all(|&n| n == want),
                "{ns_per_unit}: {:?}",
                c.taken
            );
            assert_eq!(rt.units(0), Some(want));
        }
        // Without a slice the budget stays fixed.
        let clock = std::cell::Cell::new(0);
        let mut rt = Runtime::new(10, DsmPolicy::Log, [65_536]);
        let mut c = Timed::new(&clock, 100, u64::MAX);
        ticks(&mut rt, &mut c, 1);
        assert!(c.taken.iter().all(|&n| n == 65_536));
    }

    #[test]
    fn a_pass_reports_its_elapsed_time() {
        let mut a = fake("a", 25);
        let mut rt = Runtime::new(100, DsmPolicy::Log, [10]);
        let mut g = Queue::default();
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut a]);
        for t in (0..30_000).step_by(10_000) {
            run.step(&mut rt, t, &mut g, &mut [&mut a]);
        }
        assert!(run.events.iter().any(|e| matches!(
            e,
            Event::PassDone {
                calls: 3,
                elapsed_us: 20_000,
                ..
            }
        )));
    }

    #[test]
    fn a_cheap_checker_may_have_a_shorter_period_of_its_own() {
        let mut fast = fake("fast", 1);
        let mut slow = fake("slow", 1);
        // 1 s for all, 100 ms for the first; a longer own period is ignored.
        let mut rt = Runtime::new(1_000, DsmPolicy::Log, [1, 1])
            .with_period(0, 100)
            .with_period(1, 5_000);
        let mut g = Queue::default();
        let mut run = Run::new();
        run.baseline(&mut rt, 0, &mut g, &mut [&mut fast, &mut slow]);
        for t in (0..2_000_000).step_by(10_000) {
            run.step(&mut rt, t, &mut g, &mut [&mut fast, &mut slow]);
        }
        assert_eq!((fast.calls, slow.calls), (20, 2));
    }

    #[test]
    fn a_handshake_costlier_than_a_ticks_credit_does_not_starve_the_checkers() {
        // 1% share earns 100 µs per 10 ms tick; each call needs a 300 µs handshake and takes
        // 1 µs. Charged after its call, every checker still gets its turns.
        let clock = std::cell::Cell::new(0);
        let mut a = Timed::new(&clock, 1_000, u64::MAX);
        let mut rt = Runtime::new(10, DsmPolicy::Log, [1]).with_share(10);
        timed_baseline(&mut rt, &mut a);
        let mut g = Queue::default();
        let mut handshakes = 0;
        for t in (0..10_000_000).step_by(10_000) {
            rt.step_with(
                t,
                &mut || clock.get(),
                &mut g,
                &mut drain,
                &mut [&mut a],
                &mut |_| {},
                &mut |_, _| {
                    handshakes += 1;
                    300_000
                },
            );
        }
        // 10 s at 1% is 100 ms: about 330 calls of 301 µs, each with its one handshake.
        assert_eq!(a.taken.len(), handshakes);
        assert!((300..=370).contains(&handshakes), "{handshakes}");
        assert!(rt.spent_ns() <= 100_000_000 + 10_000_000 + 301_000);
    }

    #[test]
    fn under_the_cap_every_checker_keeps_its_own_period() {
        // demo's shape: two 200 ms checks, three 500 ms ones, a text hash of 1 ms calls that
        // never ends; 5% share.
        let clock = std::cell::Cell::new(0);
        let mut fast = [Timed::new(&clock, 30_000, 1), Timed::new(&clock, 30_000, 1)];
        let mut cross = [
            Timed::new(&clock, 600_000, 1),
            Timed::new(&clock, 600_000, 1),
            Timed::new(&clock, 600_000, 1),
        ];
        let mut hash = Timed::new(&clock, 1_000_000, u64::MAX);
        let mut rt = Runtime::new(20_000, DsmPolicy::Log, [1; 6])
            .with_share(50)
            .with_period(0, 200)
            .with_period(1, 200)
            .with_period(3, 500)
            .with_period(4, 500)
            .with_period(5, 500);
        let mut g = Queue::default();
        let [f0, f1] = &mut fast;
        let [c0, c1, c2] = &mut cross;
        let mut all: [&mut dyn Checker; 6] = [f0, f1, &mut hash, c0, c1, c2];
        rt.baseline(
            0,
            &mut || clock.get(),
            &mut g,
            &mut drain,
            &mut all,
            &mut |_| {},
        );
        for t in (0..10_000_000).step_by(10_000) {
            rt.step(
                t,
                &mut || clock.get(),
                &mut g,
                &mut drain,
                &mut all,
                &mut |_| {},
            );
        }
        for (i, c) in fast.iter().enumerate() {
            assert!(c.taken.len() >= 45, "fast {i}: {}", c.taken.len());
        }
        for (i, c) in cross.iter().enumerate() {
            assert!(c.taken.len() >= 18, "cross {i}: {}", c.taken.len());
        }
        assert!(hash.taken.len() > 100, "{}", hash.taken.len());
    }
}
