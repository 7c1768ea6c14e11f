//! The timer queue: pending deadlines sorted by time, FIFO among equal times.

use heapless::Vec;

use super::config::TIMER_CAPACITY;
use super::error::ErrorCode;
use super::types::Ticks;

/// What happens at a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerEvent {
    /// The wait of the task with this index times out.
    Task(u8),
    /// The cyclic handler with this index fires.
    Cyclic(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerEntry {
    pub deadline: Ticks,
    pub event: TimerEvent,
}

/// Fixed capacity; a linear insert is fine for a few dozen entries and
/// keeps the earliest deadline at the front.
#[derive(Clone, Debug, Default)]
pub struct TimerQueue {
    entries: Vec<TimerEntry, TIMER_CAPACITY>,
}

impl TimerQueue {
    pub const fn new() -> Self {
        TimerQueue {
            entries: Vec::new(),
        }
    }

    /// Adds an event; it goes after every entry with the same deadline.
    pub fn insert(&mut self, deadline: Ticks, event: TimerEvent) -> Result<(), ErrorCode> {
        let position = self
            .entries
            .partition_point(|entry| entry.deadline <= deadline);
        self.entries
            .insert(position, TimerEntry { deadline, event })
            .map_err(|_| ErrorCode::QueueOverflow)
    }

    /// Removes an event; returns its deadline if it was queued.
    pub fn remove(&mut self, event: TimerEvent) -> Option<Ticks> {
        let position = self.entries.iter().position(|entry| entry.event == event)?;
        Some(self.entries.remove(position).deadline)
    }

    /// The earliest deadline: what the arch programs the one-shot timer to.
    pub fn next_deadline(&self) -> Option<Ticks> {
        self.entries.first().map(|entry| entry.deadline)
    }

    /// Takes the earliest entry if its deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Ticks) -> Option<TimerEntry> {
        if self.next_deadline()? <= now {
            Some(self.entries.remove(0))
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[TimerEntry] {
        &self.entries
    }
}
