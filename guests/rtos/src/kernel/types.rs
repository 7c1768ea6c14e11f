//! Ids, priorities, time and the values services exchange with the arch.

/// Time: ticks of the monotonic counter the arch reads (on aarch64 the
/// virtual counter, at the counter frequency). Deadlines are absolute.
pub type Ticks = u64;

/// Highest task priority (μITRON `TMIN_TPRI`). Lower number = more urgent.
pub const TMIN_TPRI: u8 = 1;
/// Lowest task priority (μITRON `TMAX_TPRI`).
pub const TMAX_TPRI: u8 = 16;
/// Number of task priority levels.
pub const PRIORITY_LEVELS: usize = (TMAX_TPRI - TMIN_TPRI + 1) as usize;
/// `change_priority`: go back to the initial priority (μITRON `TPRI_INI`).
pub const TPRI_INI: u8 = 0;
/// `rotate_ready_queue`: the running task's priority (μITRON `TPRI_SELF`).
pub const TPRI_SELF: u8 = 0;
/// Highest interrupt priority the kernel hands out.
pub const TMIN_INTPRI: u8 = 1;
/// Lowest interrupt priority the kernel hands out.
pub const TMAX_INTPRI: u8 = 15;
/// Largest valid GICv3 interrupt id (SGI, PPI and SPI ranges).
pub const MAX_INTID: u32 = 1019;

macro_rules! object_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u8);

        impl $name {
            /// Zero-based index, if the id is not 0.
            pub(super) fn index(self) -> Option<usize> {
                usize::from(self.0).checked_sub(1)
            }

            pub(super) fn from_index(index: usize) -> Self {
                // Capacities are at most 255, checked at compile time.
                Self((index + 1) as u8)
            }
        }
    };
}

object_id!(
    /// A task id, from 1. [`TaskId::SELF`] (0) names the running task where
    /// μITRON allows `TSK_SELF`.
    TaskId
);
object_id!(
    /// A semaphore id, from 1.
    SemaphoreId
);
object_id!(
    /// An event flag id, from 1.
    FlagId
);
object_id!(
    /// A data queue id, from 1.
    DataQueueId
);
object_id!(
    /// A cyclic handler id, from 1.
    CyclicId
);

impl TaskId {
    /// The calling task (μITRON `TSK_SELF`).
    pub const SELF: TaskId = TaskId(0);
}

/// How long a service may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Do not wait (`TMO_POL`): fail with `E_TMOUT` instead.
    Poll,
    /// Wait until released (`TMO_FEVR`).
    Forever,
    /// Wait at most this many ticks; `After(0)` is the same as `Poll`.
    After(Ticks),
}

impl Timeout {
    pub(super) fn is_poll(self) -> bool {
        matches!(self, Timeout::Poll | Timeout::After(0))
    }

    /// The absolute deadline, `None` for no deadline.
    pub(super) fn deadline(self, now: Ticks) -> Option<Ticks> {
        match self {
            Timeout::Forever => None,
            Timeout::Poll => Some(now),
            Timeout::After(ticks) => Some(now.saturating_add(ticks)),
        }
    }
}

/// Converts microseconds to counter ticks, rounding up so waits are never
/// shorter than asked.
pub const fn ticks_from_micros(micros: u64, counter_hz: u64) -> Ticks {
    let ticks = (micros as u128 * counter_hz as u128).div_ceil(1_000_000);
    if ticks > u64::MAX as u128 {
        u64::MAX
    } else {
        ticks as u64
    }
}

/// What a possibly-blocking service did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// Finished at once with this value; the caller keeps running.
    Done(T),
    /// The caller now waits. The arch must dispatch; the task's eventual
    /// result comes back as [`Resume::Released`](super::Resume::Released).
    Blocked,
}

/// Value carried by a successful release from waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitValue {
    /// Nothing (sleep, delay, semaphore, data queue send).
    None,
    /// The flag pattern that satisfied an event flag wait.
    Pattern(u32),
    /// The element a data queue receive got.
    Data(usize),
}

/// The result a waiting task gets when it is released.
pub type WaitResult = Result<WaitValue, super::ErrorCode>;

/// How the ready task returns a wait result in registers: the μITRON code
/// and the value (pattern or data, 0 otherwise).
pub fn wait_result_registers(result: WaitResult) -> (i32, usize) {
    match result {
        Ok(WaitValue::None) => (0, 0),
        Ok(WaitValue::Pattern(pattern)) => (0, pattern as usize),
        Ok(WaitValue::Data(data)) => (0, data),
        Err(error) => (error.code(), 0),
    }
}

/// Event flag wait mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagMode {
    /// Every bit of the pattern must be set (`TWF_ANDW`).
    And,
    /// Any bit of the pattern is enough (`TWF_ORW`).
    Or,
}

/// What an event flag wait waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagCondition {
    /// Bits of interest; must not be 0.
    pub pattern: u32,
    pub mode: FlagMode,
    /// Clear the whole flag when this wait is satisfied.
    pub clear: bool,
}

impl FlagCondition {
    pub(super) fn is_met(&self, flag: u32) -> bool {
        match self.mode {
            FlagMode::And => flag & self.pattern == self.pattern,
            FlagMode::Or => flag & self.pattern != 0,
        }
    }
}

/// Why a task waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitReason {
    Sleep,
    Delay,
    Semaphore(SemaphoreId),
    Flag(FlagId),
    DataQueueSend(DataQueueId),
    DataQueueReceive(DataQueueId),
}

/// A task's state as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Dormant,
    Ready,
    /// The task the arch has on the CPU (last returned by `dispatch`).
    Running,
    Waiting {
        reason: WaitReason,
        /// Absolute time of the timeout, if any.
        deadline: Option<Ticks>,
    },
}
