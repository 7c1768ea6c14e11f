//! The checker plugin trait.

use core::fmt;

use crate::guest::{Guest, GuestError, WatchEvent};

/// How much work a periodic check may do in one call, in checker-defined units (bytes read
/// or hashed for the memory checkers). The runtime sizes it so a call stays short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    left: u64,
}

impl Budget {
    pub const fn new(units: u64) -> Self {
        Self { left: units }
    }

    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// Takes `units` if that many remain.
    pub fn take(&mut self, units: u64) -> bool {
        if units <= self.left {
            self.left -= units;
            true
        } else {
            false
        }
    }

    pub fn exhausted(&self) -> bool {
        self.left == 0
    }

    /// Runs `step` on items `*cursor..total`, `cost` units each, until the budget runs out,
    /// so a pass can span calls. Rewinds `*cursor` and returns [`Progress::Done`] after the
    /// last item; fails with [`CheckError::BudgetTooSmall`] if not even one item fits.
    pub fn run<E: From<CheckError>>(
        &mut self,
        cursor: &mut usize,
        total: usize,
        cost: u64,
        mut step: impl FnMut(usize) -> Result<(), E>,
    ) -> Result<Progress, E> {
        let start = *cursor;
        while *cursor < total {
            if !self.take(cost) {
                if *cursor == start {
                    return Err(CheckError::BudgetTooSmall.into());
                }
                return Ok(Progress::More);
            }
            step(*cursor)?;
            *cursor += 1;
        }
        *cursor = 0;
        Ok(Progress::Done)
    }
}

/// Whether a periodic check finished its pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Progress {
    /// The pass is complete (findings, if any, were reported).
    Done,
    /// The budget ran out; the next call continues where this one stopped.
    More,
}

/// Why a checker could not do its work. Integrity violations are not errors: they are
/// [`crate::Finding`]s reported through [`Guest::report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckError {
    Guest(GuestError),
    /// `check` was called before a successful `baseline`.
    NoBaseline,
    /// A symbol the checker needs is not in the kernel's symbol table.
    MissingSymbol(&'static str),
    /// The budget is too small to make any progress.
    BudgetTooSmall,
    /// The kernel has more of something than the checker has room for (the string says
    /// what).
    Capacity(&'static str),
    /// The kernel is not laid out as the checker expects (the string says how); it
    /// refuses rather than guess.
    Unexpected(&'static str),
}

impl From<GuestError> for CheckError {
    fn from(e: GuestError) -> Self {
        CheckError::Guest(e)
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Guest(e) => write!(f, "{e}"),
            CheckError::NoBaseline => write!(f, "no baseline taken"),
            CheckError::MissingSymbol(s) => write!(f, "symbol {s} unknown"),
            CheckError::BudgetTooSmall => write!(f, "budget too small"),
            CheckError::Capacity(what) => write!(f, "too many {what}"),
            CheckError::Unexpected(what) => write!(f, "unexpected kernel state: {what}"),
        }
    }
}

/// A kernel-integrity checker, compiled in as a `#![forbid(unsafe_code)]` crate.
///
/// Life cycle: the runtime calls [`Checker::baseline`] once Linux has finished booting
/// (after `mark_rodata_ro`, when init runs), then [`Checker::check`] every period with a
/// budget, and [`Checker::on_watch`] for each trapped access to a range the checker watches.
pub trait Checker {
    /// Short name used in alerts (`dsm ALERT <name> ...`).
    fn name(&self) -> &'static str;
    /// Records the known-good state.
    fn baseline(&mut self, guest: &mut dyn Guest) -> Result<(), CheckError>;
    /// Compares the guest against the baseline, doing at most `budget` work.
    fn check(&mut self, guest: &mut dyn Guest, budget: &mut Budget)
        -> Result<Progress, CheckError>;
    /// Handles a trapped access to a watched range. The default ignores it.
    fn on_watch(&mut self, guest: &mut dyn Guest, event: &WatchEvent) -> Result<(), CheckError> {
        let _ = (guest, event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_spans_calls_and_rewinds() {
        let mut cursor = 0;
        let mut seen = [0u8; 10];
        let mut step = |i: usize| -> Result<(), CheckError> {
            seen[i] += 1;
            Ok(())
        };
        assert_eq!(
            Budget::new(35).run(&mut cursor, 10, 8, &mut step),
            Ok(Progress::More)
        );
        assert_eq!(cursor, 4);
        assert_eq!(
            Budget::new(7).run(&mut cursor, 10, 8, &mut step),
            Err(CheckError::BudgetTooSmall)
        );
        let mut b = Budget::new(100);
        assert_eq!(b.run(&mut cursor, 10, 8, &mut step), Ok(Progress::Done));
        assert_eq!((cursor, b.remaining()), (0, 52));
        assert_eq!(seen, [1; 10]);
    }
}
