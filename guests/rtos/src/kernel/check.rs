//! A full consistency check of the kernel state, for tests and debug builds.

use super::config::{WaitOrder, MAX_TASKS};
use super::list::{Links, TaskList};
use super::system::{Kernel, State, Wait};
use super::timer::TimerEvent;
use super::types::*;

/// Walks a list, checks its back links and counts each member's visits.
fn walk(
    list: &TaskList,
    links: &Links,
    seen: &mut [u8; MAX_TASKS],
    mut member: impl FnMut(usize) -> Result<(), &'static str>,
) -> Result<usize, &'static str> {
    let mut previous = None;
    let mut length = 0;
    for task in list.iter(links) {
        if links[task].prev.map(usize::from) != previous {
            return Err("broken back link");
        }
        seen[task] += 1;
        member(task)?;
        previous = Some(task);
        length += 1;
    }
    if previous != list.back() {
        return Err("list tail is not the last member");
    }
    Ok(length)
}

fn check_order(kernel: &Kernel, list: &TaskList, order: WaitOrder) -> Result<(), &'static str> {
    if order == WaitOrder::Priority {
        let mut last = TMIN_TPRI;
        for task in list.iter(&kernel.links) {
            let priority = kernel.tasks[task].priority;
            if priority < last {
                return Err("priority wait queue out of order");
            }
            last = priority;
        }
    }
    Ok(())
}

impl Kernel {
    /// Checks that every task is in exactly the one queue its state says,
    /// the ready bitmap matches the queues, the timer queue matches the
    /// tasks and cyclic handlers, and no object holds a waiter it should
    /// have released. Returns what is wrong first.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let mut seen = [0u8; MAX_TASKS];
        let links = &self.links;

        for priority in TMIN_TPRI..=TMAX_TPRI {
            let queue = self.ready.queue(priority);
            let bit = self.ready.bitmap() & (1 << (priority - TMIN_TPRI)) != 0;
            if bit == queue.is_empty() {
                return Err("ready bitmap disagrees with a queue");
            }
            walk(queue, links, &mut seen, |task| {
                let control = &self.tasks[task];
                if control.state != State::Ready || control.priority != priority {
                    return Err("ready queue holds a task of another state or priority");
                }
                Ok(())
            })?;
        }
        if self.ready.bitmap() >> PRIORITY_LEVELS != 0 {
            return Err("ready bitmap has bits past the last priority");
        }

        for (s, semaphore) in self.semaphores.iter().enumerate() {
            let waiters = walk(&semaphore.waiters, links, &mut seen, |task| {
                match self.tasks[task].state {
                    State::Waiting(Wait::Semaphore(at)) if at == s => Ok(()),
                    _ => Err("semaphore queue holds a task not waiting for it"),
                }
            })?;
            if semaphore.count > semaphore.max || (waiters > 0 && semaphore.count > 0) {
                return Err("semaphore count inconsistent");
            }
            check_order(self, &semaphore.waiters, semaphore.order)?;
        }

        for (f, flag) in self.flags.iter().enumerate() {
            let waiters = walk(&flag.waiters, links, &mut seen, |task| {
                match self.tasks[task].state {
                    State::Waiting(Wait::Flag {
                        flag: at,
                        condition,
                    }) if at == f => {
                        if condition.is_met(flag.pattern) {
                            Err("flag waiter left waiting although satisfied")
                        } else {
                            Ok(())
                        }
                    }
                    _ => Err("flag queue holds a task not waiting for it"),
                }
            })?;
            if waiters > 1 && !flag.multiple_waiters {
                return Err("single-waiter flag has several waiters");
            }
            check_order(self, &flag.waiters, flag.order)?;
        }

        for (q, queue) in self.data_queues.iter().enumerate() {
            let senders = walk(&queue.senders, links, &mut seen, |task| {
                match self.tasks[task].state {
                    State::Waiting(Wait::Send { queue: at, .. }) if at == q => Ok(()),
                    _ => Err("send queue holds a task not sending to it"),
                }
            })?;
            let receivers = walk(&queue.receivers, links, &mut seen, |task| {
                match self.tasks[task].state {
                    State::Waiting(Wait::Receive(at)) if at == q => Ok(()),
                    _ => Err("receive queue holds a task not receiving from it"),
                }
            })?;
            let length = queue.buffer.len();
            if length > queue.capacity
                || (senders > 0 && length < queue.capacity)
                || (receivers > 0 && length > 0)
                || (senders > 0 && receivers > 0)
            {
                return Err("data queue buffer inconsistent with its waiters");
            }
            check_order(self, &queue.senders, queue.order)?;
        }

        for (task, control) in self.tasks.iter().enumerate() {
            let expected = match control.state {
                State::Dormant | State::Waiting(Wait::Sleep | Wait::Delay) => 0,
                State::Ready | State::Waiting(_) => 1,
            };
            if seen[task] != expected {
                return Err("task is not in exactly the queue its state requires");
            }
            if expected == 0 && links[task] != Default::default() {
                return Err("unqueued task has stale links");
            }
            let timer = self
                .timers
                .entries()
                .iter()
                .filter(|entry| entry.event == TimerEvent::Task(task as u8))
                .map(|entry| entry.deadline);
            let mut timer = timer.fuse();
            let (first, second) = (timer.next(), timer.next());
            let waiting = matches!(control.state, State::Waiting(_));
            if second.is_some() || first != control.deadline || (!waiting && first.is_some()) {
                return Err("task timeout disagrees with the timer queue");
            }
            if control.state == State::Waiting(Wait::Delay) && first.is_none() {
                return Err("delay without a deadline");
            }
            if control.state == State::Dormant && (control.fresh || control.activations > 0) {
                return Err("dormant task with pending start");
            }
        }

        for (c, cyclic) in self.cyclics.iter().enumerate() {
            let mut deadlines = self
                .timers
                .entries()
                .iter()
                .filter(|entry| entry.event == TimerEvent::Cyclic(c as u8))
                .map(|entry| entry.deadline);
            let (first, second) = (deadlines.next(), deadlines.next());
            if second.is_some() || first != cyclic.active.then_some(cyclic.next) {
                return Err("cyclic handler disagrees with the timer queue");
            }
        }

        let entries = self.timers.entries();
        if entries
            .windows(2)
            .any(|pair| pair[0].deadline > pair[1].deadline)
        {
            return Err("timer queue not sorted");
        }
        if entries.len() != self.timers.len() {
            return Err("timer queue length");
        }
        Ok(())
    }
}
