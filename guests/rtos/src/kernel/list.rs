//! Intrusive doubly linked task lists.
//!
//! A task is in at most one list at a time (a ready queue or one wait
//! queue), so one pair of links per task serves every list, and insertion
//! and removal are O(1) with no allocation.

use super::config::MAX_TASKS;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Link {
    pub(super) prev: Option<u8>,
    pub(super) next: Option<u8>,
}

/// The per-task links, indexed by task index.
pub(super) type Links = [Link; MAX_TASKS];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TaskList {
    head: Option<u8>,
    tail: Option<u8>,
}

impl TaskList {
    pub(super) const EMPTY: TaskList = TaskList {
        head: None,
        tail: None,
    };

    pub(super) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    pub(super) fn front(&self) -> Option<usize> {
        self.head.map(usize::from)
    }

    pub(super) fn back(&self) -> Option<usize> {
        self.tail.map(usize::from)
    }

    pub(super) fn push_back(&mut self, links: &mut Links, task: usize) {
        self.insert_before(links, task, None);
    }

    /// Inserts `task` before `before`, or at the back when `before` is `None`.
    pub(super) fn insert_before(&mut self, links: &mut Links, task: usize, before: Option<usize>) {
        let node = Some(task as u8);
        let prev = match before {
            Some(next) => links[next].prev,
            None => self.tail,
        };
        links[task] = Link {
            prev,
            next: before.map(|next| next as u8),
        };
        match prev {
            Some(prev) => links[usize::from(prev)].next = node,
            None => self.head = node,
        }
        match before {
            Some(next) => links[next].prev = node,
            None => self.tail = node,
        }
    }

    /// Removes `task`, which must be in this list.
    pub(super) fn remove(&mut self, links: &mut Links, task: usize) {
        let Link { prev, next } = links[task];
        match prev {
            Some(prev) => links[usize::from(prev)].next = next,
            None => self.head = next,
        }
        match next {
            Some(next) => links[usize::from(next)].prev = prev,
            None => self.tail = prev,
        }
        links[task] = Link::default();
    }

    pub(super) fn pop_front(&mut self, links: &mut Links) -> Option<usize> {
        let task = self.front()?;
        self.remove(links, task);
        Some(task)
    }

    /// Members front to back; stops after `MAX_TASKS` steps even if the
    /// links were corrupted into a cycle.
    pub(super) fn iter<'a>(&self, links: &'a Links) -> impl Iterator<Item = usize> + 'a {
        core::iter::successors(self.front(), move |&task| links[task].next.map(usize::from))
            .take(MAX_TASKS)
    }
}
