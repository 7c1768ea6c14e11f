//! Cyclic handlers and timer expiry.

use heapless::Vec;

use super::config::{CyclicConfig, MAX_CYCLICS};
use super::error::ErrorCode;
use super::system::{Kernel, State, Wait};
use super::timer::TimerEvent;
use super::types::*;

#[derive(Clone, Debug)]
pub(super) struct CyclicControl {
    pub(super) config: CyclicConfig,
    pub(super) active: bool,
    /// Next deadline, meaningful while active.
    pub(super) next: Ticks,
    pub(super) last_fired: Option<Ticks>,
    pub(super) overruns: u64,
}

/// One cyclic handler firing the arch must run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyclicFiring {
    pub id: CyclicId,
    /// The configured handler.
    pub handler: usize,
    /// The deadline this firing was programmed for: dispatch latency is
    /// measured from here.
    pub deadline: Ticks,
    /// Periods skipped because `now` was already past them (overruns).
    pub missed: u64,
}

/// What [`Kernel::on_timer`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimerReport {
    /// Cyclic handlers to call, in deadline order. Each handler appears at
    /// most once per call, so this never overflows.
    pub fired: Vec<CyclicFiring, MAX_CYCLICS>,
    /// Number of task waits that ended by timeout (or delay expiry).
    pub timeouts: usize,
}

impl Kernel {
    fn cyclic_index(&self, id: CyclicId) -> Result<usize, ErrorCode> {
        id.index()
            .filter(|&c| c < self.cyclics.len())
            .ok_or(ErrorCode::Id)
    }

    /// (Re)queues cyclic `c` at `deadline`.
    pub(super) fn arm_cyclic(&mut self, c: usize, deadline: Ticks) -> Result<(), ErrorCode> {
        let event = TimerEvent::Cyclic(c as u8);
        if self.cyclics[c].active {
            self.timers.remove(event);
            self.cyclics[c].active = false;
        }
        self.timers
            .insert(deadline, event)
            .map_err(|_| ErrorCode::System)?;
        let cyclic = &mut self.cyclics[c];
        cyclic.active = true;
        cyclic.next = deadline;
        Ok(())
    }

    /// `sta_cyc`: (re)starts a cyclic handler; it first fires at
    /// `now + phase`, then every `period` after that. Task context only.
    pub fn start_cyclic(&mut self, id: CyclicId, now: Ticks) -> Result<(), ErrorCode> {
        self.require_task_context()?;
        let c = self.cyclic_index(id)?;
        let phase = self.cyclics[c].config.phase;
        self.arm_cyclic(c, now.saturating_add(phase))
    }

    /// `stp_cyc`: stops a cyclic handler. Task context only.
    pub fn stop_cyclic(&mut self, id: CyclicId) -> Result<(), ErrorCode> {
        self.require_task_context()?;
        let c = self.cyclic_index(id)?;
        if self.cyclics[c].active {
            self.timers.remove(TimerEvent::Cyclic(c as u8));
            self.cyclics[c].active = false;
        }
        Ok(())
    }

    /// The next deadline of an active cyclic handler, `None` if stopped.
    pub fn cyclic_next_deadline(&self, id: CyclicId) -> Result<Option<Ticks>, ErrorCode> {
        let cyclic = &self.cyclics[self.cyclic_index(id)?];
        Ok(cyclic.active.then_some(cyclic.next))
    }

    /// The programmed deadline of the handler's latest firing.
    pub fn cyclic_last_deadline(&self, id: CyclicId) -> Result<Option<Ticks>, ErrorCode> {
        Ok(self.cyclics[self.cyclic_index(id)?].last_fired)
    }

    /// Total periods the handler skipped because it fired late.
    pub fn cyclic_overruns(&self, id: CyclicId) -> Result<u64, ErrorCode> {
        Ok(self.cyclics[self.cyclic_index(id)?].overruns)
    }

    /// Processes every deadline at or before `now`: timed-out waits end
    /// with `E_TMOUT` (delays with `E_OK`), and due cyclic handlers are
    /// reported and re-armed on their original grid (`deadline + period`,
    /// skipping and counting periods already past). The arch calls it from
    /// the timer interrupt, then runs the reported handlers, then
    /// reprograms the timer from [`Kernel::next_deadline`].
    pub fn on_timer(&mut self, now: Ticks) -> TimerReport {
        let mut report = TimerReport::default();
        while let Some(entry) = self.timers.pop_expired(now) {
            match entry.event {
                TimerEvent::Task(task) => {
                    let task = usize::from(task);
                    // Already out of the timer queue.
                    self.tasks[task].deadline = None;
                    let result = match self.tasks[task].state {
                        State::Waiting(Wait::Delay) => Ok(WaitValue::None),
                        _ => Err(ErrorCode::Timeout),
                    };
                    self.release(task, result);
                    report.timeouts += 1;
                }
                TimerEvent::Cyclic(c) => {
                    let c = usize::from(c);
                    let cyclic = &mut self.cyclics[c];
                    let period = cyclic.config.period;
                    let missed = (now - entry.deadline) / period;
                    let next = entry
                        .deadline
                        .saturating_add(missed.saturating_add(1).saturating_mul(period));
                    cyclic.overruns = cyclic.overruns.saturating_add(missed);
                    cyclic.last_fired = Some(entry.deadline);
                    cyclic.next = next;
                    let firing = CyclicFiring {
                        id: CyclicId::from_index(c),
                        handler: cyclic.config.handler,
                        deadline: entry.deadline,
                        missed,
                    };
                    // The slot just popped is free; a saturated deadline
                    // would fire forever, so the handler stops instead.
                    cyclic.active = next > now
                        && self
                            .timers
                            .insert(next, TimerEvent::Cyclic(c as u8))
                            .is_ok();
                    // At most one firing per handler per call.
                    let _ = report.fired.push(firing);
                }
            }
        }
        report
    }
}
