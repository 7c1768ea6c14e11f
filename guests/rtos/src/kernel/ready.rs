//! Ready queues: one FIFO per priority plus a bitmap of the non-empty ones.

use super::list::{Links, TaskList};
use super::types::{PRIORITY_LEVELS, TMIN_TPRI};

const _: () = assert!(PRIORITY_LEVELS <= 32, "the bitmap is a u32");

#[derive(Clone, Debug)]
pub(super) struct ReadyQueue {
    /// Bit `n` is set iff the queue of priority `TMIN_TPRI + n` is not empty.
    bitmap: u32,
    queues: [TaskList; PRIORITY_LEVELS],
}

fn level(priority: u8) -> usize {
    usize::from(priority - TMIN_TPRI)
}

impl ReadyQueue {
    pub(super) const fn new() -> Self {
        ReadyQueue {
            bitmap: 0,
            queues: [TaskList::EMPTY; PRIORITY_LEVELS],
        }
    }

    pub(super) fn push_back(&mut self, links: &mut Links, task: usize, priority: u8) {
        let level = level(priority);
        self.queues[level].push_back(links, task);
        self.bitmap |= 1 << level;
    }

    pub(super) fn remove(&mut self, links: &mut Links, task: usize, priority: u8) {
        let level = level(priority);
        self.queues[level].remove(links, task);
        if self.queues[level].is_empty() {
            self.bitmap &= !(1 << level);
        }
    }

    /// The task that should run: head of the most urgent non-empty queue.
    pub(super) fn highest(&self) -> Option<usize> {
        if self.bitmap == 0 {
            return None;
        }
        self.queues[self.bitmap.trailing_zeros() as usize].front()
    }

    /// Moves the head of a priority's queue to its tail (round robin).
    pub(super) fn rotate(&mut self, links: &mut Links, priority: u8) {
        let queue = &mut self.queues[level(priority)];
        if let Some(head) = queue.pop_front(links) {
            queue.push_back(links, head);
        }
    }

    pub(super) fn bitmap(&self) -> u32 {
        self.bitmap
    }

    pub(super) fn queue(&self, priority: u8) -> &TaskList {
        &self.queues[level(priority)]
    }
}
