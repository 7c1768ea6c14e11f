//! Which partitions still run, and the machine's exit code once none does. A partition being
//! reset (PSCI `SYSTEM_RESET`) is neither running nor stopped: its vCPUs may not start, but the
//! machine stays up for it.

use super::MAX_PARTITIONS;

/// Where one partition is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Resetting,
    Stopped { code: i64 },
}

/// What stopping a partition changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// It was already stopped (a second vCPU reporting, say); nothing to announce.
    AlreadyStopped,
    /// Stopped; others still run.
    Stopped,
    /// Stopped, and it was the last one: power off with this code.
    LastStopped { machine_code: i64 },
}

/// Running/stopped state of every partition.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    states: [State; MAX_PARTITIONS],
    count: usize,
    /// The first nonzero exit code, in stopping order.
    first_failure: Option<i64>,
}

impl Lifecycle {
    /// `count` partitions, all running (clamped to [`MAX_PARTITIONS`]).
    pub const fn new(count: usize) -> Self {
        Lifecycle {
            states: [State::Running; MAX_PARTITIONS],
            count: if count < MAX_PARTITIONS {
                count
            } else {
                MAX_PARTITIONS
            },
            first_failure: None,
        }
    }

    /// Partition `index`'s state; `None` beyond the config.
    pub fn state(&self, index: usize) -> Option<State> {
        (index < self.count).then(|| self.states[index])
    }

    pub fn is_running(&self, index: usize) -> bool {
        index < self.count && self.states[index] == State::Running
    }

    /// Partitions not stopped (a reset one counts: it comes back).
    pub fn running_count(&self) -> usize {
        self.states[..self.count]
            .iter()
            .filter(|s| !matches!(s, State::Stopped { .. }))
            .count()
    }

    /// Starts resetting running partition `index`; `false` if it is not running (stopped, or
    /// another vCPU's reset is under way).
    pub fn begin_reset(&mut self, index: usize) -> bool {
        if !self.is_running(index) {
            return false;
        }
        self.states[index] = State::Resetting;
        true
    }

    /// Ends the reset of partition `index`: it runs again. `false` if it was not resetting
    /// (say, stopped meanwhile).
    pub fn finish_reset(&mut self, index: usize) -> bool {
        if index >= self.count || self.states[index] != State::Resetting {
            return false;
        }
        self.states[index] = State::Running;
        true
    }

    /// Stops partition `index` with `code`.
    pub fn stop(&mut self, index: usize, code: i64) -> StopOutcome {
        if index >= self.count || matches!(self.states[index], State::Stopped { .. }) {
            return StopOutcome::AlreadyStopped;
        }
        self.states[index] = State::Stopped { code };
        if code != 0 && self.first_failure.is_none() {
            self.first_failure = Some(code);
        }
        if self.running_count() == 0 {
            StopOutcome::LastStopped {
                machine_code: self.first_failure.unwrap_or(0),
            }
        } else {
            StopOutcome::Stopped
        }
    }

    /// The exit code partition `index` stopped with.
    pub fn exit_code(&self, index: usize) -> Option<i64> {
        match self.states.get(index)? {
            State::Stopped { code } if index < self.count => Some(*code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_stop_reports_first_failure() {
        let mut l = Lifecycle::new(3);
        assert_eq!(l.stop(1, 0), StopOutcome::Stopped);
        assert_eq!(l.stop(0, 7), StopOutcome::Stopped);
        assert_eq!(l.stop(0, 9), StopOutcome::AlreadyStopped);
        assert_eq!(l.exit_code(0), Some(7));
        assert_eq!(l.running_count(), 1);
        assert_eq!(l.stop(2, 3), StopOutcome::LastStopped { machine_code: 7 });
    }

    #[test]
    fn clean_stops_give_zero() {
        let mut l = Lifecycle::new(1);
        assert!(l.is_running(0));
        assert_eq!(l.stop(0, 0), StopOutcome::LastStopped { machine_code: 0 });
        assert!(!l.is_running(0));
    }

    #[test]
    fn a_reset_partition_keeps_the_machine_up_and_comes_back() {
        let mut l = Lifecycle::new(2);
        assert!(l.begin_reset(1));
        assert_eq!(l.state(1), Some(State::Resetting));
        assert!(!l.is_running(1), "no vCPU may start during the reset");
        assert!(!l.begin_reset(1), "a second reset request loses");
        assert_eq!(
            l.stop(0, 0),
            StopOutcome::Stopped,
            "the resetting one still counts"
        );
        assert!(l.finish_reset(1));
        assert!(l.is_running(1));
        assert!(!l.finish_reset(1));
        assert_eq!(l.stop(1, 0), StopOutcome::LastStopped { machine_code: 0 });
    }

    #[test]
    fn a_partition_stopped_during_its_reset_stays_stopped() {
        let mut l = Lifecycle::new(2);
        assert!(l.begin_reset(0));
        assert_eq!(l.stop(0, 255), StopOutcome::Stopped);
        assert!(!l.finish_reset(0));
        assert!(!l.is_running(0));
        assert!(!l.begin_reset(0), "a stopped partition cannot be reset");
        assert_eq!(l.exit_code(0), Some(255));
    }

    #[test]
    fn out_of_range_partitions_are_ignored() {
        let mut l = Lifecycle::new(2);
        assert_eq!(l.stop(5, 1), StopOutcome::AlreadyStopped);
        assert!(!l.begin_reset(5));
        assert!(!l.finish_reset(5));
        assert_eq!(l.exit_code(5), None);
        assert_eq!(l.state(2), None);
        assert_eq!(l.state(1), Some(State::Running));
        assert_eq!(l.exit_code(1), None);
        assert_eq!(Lifecycle::new(100).running_count(), MAX_PARTITIONS);
    }
}
