//! Task management and task-dependent synchronization services.

use super::config::{MAX_ACTIVATIONS, MAX_WAKEUPS};
use super::error::ErrorCode;
use super::system::{Kernel, State, Wait};
use super::types::*;

impl Kernel {
    /// `act_tsk`: starts a dormant task, or queues one activation request.
    /// Task or interrupt context. `E_QOVR` when a request is already queued.
    pub fn activate_task(&mut self, id: TaskId) -> Result<(), ErrorCode> {
        let task = self.resolve_task(id)?;
        if self.tasks[task].state == State::Dormant {
            self.start_fresh(task);
            return Ok(());
        }
        let control = &mut self.tasks[task];
        if control.activations >= MAX_ACTIVATIONS {
            return Err(ErrorCode::QueueOverflow);
        }
        control.activations += 1;
        Ok(())
    }

    /// `ter_tsk`: forcibly ends another task. Task context only; `E_ILUSE`
    /// for the caller itself, `E_OBJ` if already dormant.
    pub fn terminate_task(&mut self, id: TaskId) -> Result<(), ErrorCode> {
        self.require_task_context()?;
        let task = self.resolve_task(id)?;
        if Some(task) == self.running {
            return Err(ErrorCode::IllegalUse);
        }
        if self.tasks[task].state == State::Dormant {
            return Err(ErrorCode::ObjectState);
        }
        self.terminate(task);
        Ok(())
    }

    /// `ext_tsk`: the caller ends itself (restarting at once if an
    /// activation was queued). The arch then dispatches and drops the
    /// caller's context.
    pub fn exit_task(&mut self) -> Result<(), ErrorCode> {
        let task = self.current()?;
        self.terminate(task);
        Ok(())
    }

    /// `slp_tsk`/`tslp_tsk`: waits for `wakeup_task`, consuming a queued
    /// wakeup if there is one. Task context only.
    pub fn sleep_task(&mut self, timeout: Timeout, now: Ticks) -> Result<Outcome<()>, ErrorCode> {
        let task = self.current()?;
        let control = &mut self.tasks[task];
        if control.wakeups > 0 {
            control.wakeups -= 1;
            return Ok(Outcome::Done(()));
        }
        if timeout.is_poll() {
            return Err(ErrorCode::Timeout);
        }
        self.block(task, Wait::Sleep, timeout.deadline(now))
    }

    /// `wup_tsk`: wakes a sleeping task, or queues the wakeup. Task or
    /// interrupt context. `E_OBJ` for a dormant task, `E_QOVR` past
    /// `MAX_WAKEUPS`.
    pub fn wakeup_task(&mut self, id: TaskId) -> Result<(), ErrorCode> {
        let task = self.resolve_task(id)?;
        match self.tasks[task].state {
            State::Dormant => Err(ErrorCode::ObjectState),
            State::Waiting(Wait::Sleep) => {
                self.release(task, Ok(WaitValue::None));
                Ok(())
            }
            _ => {
                let control = &mut self.tasks[task];
                if control.wakeups >= MAX_WAKEUPS {
                    return Err(ErrorCode::QueueOverflow);
                }
                control.wakeups += 1;
                Ok(())
            }
        }
    }

    /// `can_wup`: drops queued wakeups, returning how many there were.
    /// Task context only.
    pub fn cancel_wakeup(&mut self, id: TaskId) -> Result<u32, ErrorCode> {
        self.require_task_context()?;
        let task = self.resolve_task(id)?;
        let control = &mut self.tasks[task];
        if control.state == State::Dormant {
            return Err(ErrorCode::ObjectState);
        }
        Ok(core::mem::take(&mut control.wakeups))
    }

    /// `rel_wai`: ends any wait of the task with `E_RLWAI`. Task or
    /// interrupt context; `E_OBJ` if it is not waiting.
    pub fn release_wait(&mut self, id: TaskId) -> Result<(), ErrorCode> {
        let task = self.resolve_task(id)?;
        if !matches!(self.tasks[task].state, State::Waiting(_)) {
            return Err(ErrorCode::ObjectState);
        }
        self.release(task, Err(ErrorCode::ReleasedWait));
        Ok(())
    }

    /// `dly_tsk`: waits `ticks` (the result is `E_OK`, not `E_TMOUT`).
    /// Only `release_wait` ends it early. Task context only.
    pub fn delay_task(&mut self, ticks: Ticks, now: Ticks) -> Result<Outcome<()>, ErrorCode> {
        let task = self.current()?;
        self.block(task, Wait::Delay, Some(now.saturating_add(ticks)))
    }

    /// `chg_pri`: sets the current priority (`TPRI_INI` = initial). A ready
    /// task goes to the tail of its new queue; a waiting task moves within
    /// a priority-ordered wait queue. Task context only.
    pub fn change_priority(&mut self, id: TaskId, priority: u8) -> Result<(), ErrorCode> {
        self.require_task_context()?;
        let task = self.resolve_task(id)?;
        let priority = if priority == TPRI_INI {
            self.tasks[task].config.priority
        } else if (TMIN_TPRI..=TMAX_TPRI).contains(&priority) {
            priority
        } else {
            return Err(ErrorCode::Parameter);
        };
        let old = self.tasks[task].priority;
        match self.tasks[task].state {
            State::Dormant => return Err(ErrorCode::ObjectState),
            State::Ready => {
                self.ready.remove(&mut self.links, task, old);
                self.tasks[task].priority = priority;
                self.ready.push_back(&mut self.links, task, priority);
            }
            State::Waiting(wait) => {
                self.tasks[task].priority = priority;
                self.reorder_waiter(task, wait);
            }
        }
        Ok(())
    }

    /// `rot_rdq`: moves the head of a priority's ready queue to its tail
    /// (`TPRI_SELF` = the running task's priority). Task or interrupt
    /// context; the arch can call it from a tick for round robin.
    pub fn rotate_ready_queue(&mut self, priority: u8) -> Result<(), ErrorCode> {
        let priority = if priority == TPRI_SELF {
            let task = self.running.ok_or(ErrorCode::Parameter)?;
            self.tasks[task].priority
        } else if (TMIN_TPRI..=TMAX_TPRI).contains(&priority) {
            priority
        } else {
            return Err(ErrorCode::Parameter);
        };
        self.ready.rotate(&mut self.links, priority);
        Ok(())
    }

    /// `get_tid`: the running task, if any.
    pub fn current_task(&self) -> Option<TaskId> {
        self.running()
    }

    /// `ref_tst`-like: the state of a task.
    pub fn task_state(&self, id: TaskId) -> Result<TaskState, ErrorCode> {
        let task = self.resolve_task(id)?;
        let control = &self.tasks[task];
        Ok(match control.state {
            State::Dormant => TaskState::Dormant,
            State::Ready if self.running == Some(task) => TaskState::Running,
            State::Ready => TaskState::Ready,
            State::Waiting(wait) => TaskState::Waiting {
                reason: wait.reason(),
                deadline: control.deadline,
            },
        })
    }

    /// `get_pri`: the current priority.
    pub fn task_priority(&self, id: TaskId) -> Result<u8, ErrorCode> {
        let task = self.resolve_task(id)?;
        if self.tasks[task].state == State::Dormant {
            return Err(ErrorCode::ObjectState);
        }
        Ok(self.tasks[task].priority)
    }

    /// Number of configured tasks (ids are `1..=task_count()`).
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }
}
