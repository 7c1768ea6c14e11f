//! Semaphores, event flags and data queues.

use heapless::{Deque, Vec};

use super::config::{WaitOrder, DATA_QUEUE_CAPACITY, MAX_TASKS};
use super::error::ErrorCode;
use super::list::TaskList;
use super::system::{Kernel, State, Wait};
use super::types::*;

#[derive(Clone, Debug)]
pub(super) struct SemaphoreControl {
    pub(super) count: u32,
    pub(super) max: u32,
    pub(super) order: WaitOrder,
    pub(super) waiters: TaskList,
}

#[derive(Clone, Debug)]
pub(super) struct FlagControl {
    pub(super) pattern: u32,
    pub(super) multiple_waiters: bool,
    pub(super) order: WaitOrder,
    pub(super) waiters: TaskList,
}

#[derive(Clone, Debug)]
pub(super) struct DataQueueControl {
    pub(super) buffer: Deque<usize, DATA_QUEUE_CAPACITY>,
    pub(super) capacity: usize,
    pub(super) order: WaitOrder,
    pub(super) senders: TaskList,
    pub(super) receivers: TaskList,
}

impl Kernel {
    fn semaphore_index(&self, id: SemaphoreId) -> Result<usize, ErrorCode> {
        id.index()
            .filter(|&s| s < self.semaphores.len())
            .ok_or(ErrorCode::Id)
    }

    fn flag_index(&self, id: FlagId) -> Result<usize, ErrorCode> {
        id.index()
            .filter(|&f| f < self.flags.len())
            .ok_or(ErrorCode::Id)
    }

    fn data_queue_index(&self, id: DataQueueId) -> Result<usize, ErrorCode> {
        id.index()
            .filter(|&q| q < self.data_queues.len())
            .ok_or(ErrorCode::Id)
    }

    // ---- semaphores ----

    /// `sig_sem`: gives the resource to the first waiter, or counts it.
    /// Task or interrupt context. `E_QOVR` at the maximum count.
    pub fn signal_semaphore(&mut self, id: SemaphoreId) -> Result<(), ErrorCode> {
        let s = self.semaphore_index(id)?;
        if let Some(task) = self.semaphores[s].waiters.front() {
            self.release(task, Ok(WaitValue::None));
            return Ok(());
        }
        let semaphore = &mut self.semaphores[s];
        if semaphore.count >= semaphore.max {
            return Err(ErrorCode::QueueOverflow);
        }
        semaphore.count += 1;
        Ok(())
    }

    /// `wai_sem`/`twai_sem`: takes one resource, waiting if there is none.
    /// Task context only.
    pub fn wait_semaphore(
        &mut self,
        id: SemaphoreId,
        timeout: Timeout,
        now: Ticks,
    ) -> Result<Outcome<()>, ErrorCode> {
        let task = self.current()?;
        let s = self.semaphore_index(id)?;
        let semaphore = &mut self.semaphores[s];
        if semaphore.count > 0 {
            semaphore.count -= 1;
            return Ok(Outcome::Done(()));
        }
        if timeout.is_poll() {
            return Err(ErrorCode::Timeout);
        }
        self.block(task, Wait::Semaphore(s), timeout.deadline(now))
    }

    /// `pol_sem`: takes one resource or fails with `E_TMOUT`.
    pub fn poll_semaphore(&mut self, id: SemaphoreId) -> Result<(), ErrorCode> {
        self.wait_semaphore(id, Timeout::Poll, 0).map(|_| ())
    }

    /// `ref_sem`: the current count.
    pub fn semaphore_count(&self, id: SemaphoreId) -> Result<u32, ErrorCode> {
        Ok(self.semaphores[self.semaphore_index(id)?].count)
    }

    // ---- event flags ----

    /// `set_flg`: sets bits and releases every waiter now satisfied, in
    /// queue order (a clearing waiter stops the scan). Task or interrupt
    /// context.
    pub fn set_flag(&mut self, id: FlagId, bits: u32) -> Result<(), ErrorCode> {
        let f = self.flag_index(id)?;
        self.flags[f].pattern |= bits;
        let mut waiters: Vec<u8, MAX_TASKS> = Vec::new();
        for task in self.flags[f].waiters.iter(&self.links) {
            // A list never holds more than MAX_TASKS tasks.
            waiters.push(task as u8).map_err(|_| ErrorCode::System)?;
        }
        for task in waiters.into_iter().map(usize::from) {
            let State::Waiting(Wait::Flag { condition, .. }) = self.tasks[task].state else {
                continue;
            };
            let pattern = self.flags[f].pattern;
            if condition.is_met(pattern) {
                if condition.clear {
                    self.flags[f].pattern = 0;
                }
                self.release(task, Ok(WaitValue::Pattern(pattern)));
                if self.flags[f].pattern == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    /// `clr_flg`: keeps only the bits set in `keep` (μITRON semantics: the
    /// argument is an AND mask). Task context only.
    pub fn clear_flag(&mut self, id: FlagId, keep: u32) -> Result<(), ErrorCode> {
        self.require_task_context()?;
        let f = self.flag_index(id)?;
        self.flags[f].pattern &= keep;
        Ok(())
    }

    /// `wai_flg`/`twai_flg`: waits until `condition` holds; the result is
    /// the flag pattern at release, before any clearing. Task context only.
    /// `E_PAR` for an empty pattern, `E_ILUSE` when a single-waiter flag
    /// already has a waiter.
    pub fn wait_flag(
        &mut self,
        id: FlagId,
        condition: FlagCondition,
        timeout: Timeout,
        now: Ticks,
    ) -> Result<Outcome<u32>, ErrorCode> {
        let task = self.current()?;
        let f = self.flag_index(id)?;
        if condition.pattern == 0 {
            return Err(ErrorCode::Parameter);
        }
        let flag = &mut self.flags[f];
        if !flag.multiple_waiters && !flag.waiters.is_empty() {
            return Err(ErrorCode::IllegalUse);
        }
        let pattern = flag.pattern;
        if condition.is_met(pattern) {
            if condition.clear {
                flag.pattern = 0;
            }
            return Ok(Outcome::Done(pattern));
        }
        if timeout.is_poll() {
            return Err(ErrorCode::Timeout);
        }
        let wait = Wait::Flag { flag: f, condition };
        self.block(task, wait, timeout.deadline(now))
    }

    /// `pol_flg`: like `wait_flag` but fails with `E_TMOUT` at once.
    pub fn poll_flag(&mut self, id: FlagId, condition: FlagCondition) -> Result<u32, ErrorCode> {
        match self.wait_flag(id, condition, Timeout::Poll, 0)? {
            Outcome::Done(pattern) => Ok(pattern),
            Outcome::Blocked => Err(ErrorCode::System),
        }
    }

    /// `ref_flg`: the current pattern.
    pub fn flag_pattern(&self, id: FlagId) -> Result<u32, ErrorCode> {
        Ok(self.flags[self.flag_index(id)?].pattern)
    }

    // ---- data queues ----

    /// Hands `data` to the first receiver or buffers it; false if full.
    fn try_send(&mut self, q: usize, data: usize) -> bool {
        if let Some(receiver) = self.data_queues[q].receivers.front() {
            self.release(receiver, Ok(WaitValue::Data(data)));
            return true;
        }
        let queue = &mut self.data_queues[q];
        queue.buffer.len() < queue.capacity && queue.buffer.push_back(data).is_ok()
    }

    /// Takes the oldest element (buffered, else from the first sender) and
    /// lets the first waiting sender refill the buffer.
    fn try_receive(&mut self, q: usize) -> Option<usize> {
        let sender = self.data_queues[q].senders.front();
        let sent = sender.map(|task| match self.tasks[task].state {
            State::Waiting(Wait::Send { data, .. }) => data,
            _ => 0,
        });
        let data = match self.data_queues[q].buffer.pop_front() {
            Some(data) => {
                if let Some(sent) = sent {
                    // Room was just made, so this cannot fail.
                    let _ = self.data_queues[q].buffer.push_back(sent);
                }
                data
            }
            None => sent?,
        };
        if let Some(sender) = sender {
            self.release(sender, Ok(WaitValue::None));
        }
        Some(data)
    }

    /// `snd_dtq`/`tsnd_dtq`: sends, waiting while the queue is full. Task
    /// context only.
    pub fn send_data_queue(
        &mut self,
        id: DataQueueId,
        data: usize,
        timeout: Timeout,
        now: Ticks,
    ) -> Result<Outcome<()>, ErrorCode> {
        let task = self.current()?;
        let q = self.data_queue_index(id)?;
        if self.try_send(q, data) {
            return Ok(Outcome::Done(()));
        }
        if timeout.is_poll() {
            return Err(ErrorCode::Timeout);
        }
        self.block(task, Wait::Send { queue: q, data }, timeout.deadline(now))
    }

    /// `psnd_dtq`: sends or fails with `E_TMOUT` when full. Task or
    /// interrupt context.
    pub fn poll_send_data_queue(&mut self, id: DataQueueId, data: usize) -> Result<(), ErrorCode> {
        let q = self.data_queue_index(id)?;
        if self.try_send(q, data) {
            Ok(())
        } else {
            Err(ErrorCode::Timeout)
        }
    }

    /// `rcv_dtq`/`trcv_dtq`: receives, waiting while the queue is empty;
    /// a released receiver gets [`WaitValue::Data`]. Task context only.
    pub fn receive_data_queue(
        &mut self,
        id: DataQueueId,
        timeout: Timeout,
        now: Ticks,
    ) -> Result<Outcome<usize>, ErrorCode> {
        let task = self.current()?;
        let q = self.data_queue_index(id)?;
        if let Some(data) = self.try_receive(q) {
            return Ok(Outcome::Done(data));
        }
        if timeout.is_poll() {
            return Err(ErrorCode::Timeout);
        }
        self.block(task, Wait::Receive(q), timeout.deadline(now))
    }

    /// `prcv_dtq`: receives or fails with `E_TMOUT` when empty. Task
    /// context only.
    pub fn poll_receive_data_queue(&mut self, id: DataQueueId) -> Result<usize, ErrorCode> {
        match self.receive_data_queue(id, Timeout::Poll, 0)? {
            Outcome::Done(data) => Ok(data),
            Outcome::Blocked => Err(ErrorCode::System),
        }
    }

    /// Number of buffered elements.
    pub fn data_queue_len(&self, id: DataQueueId) -> Result<usize, ErrorCode> {
        Ok(self.data_queues[self.data_queue_index(id)?].buffer.len())
    }
}
