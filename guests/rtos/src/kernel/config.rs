//! Static capacities and the boot-time object configuration.

use super::types::Ticks;

/// Capacity of each object table. Ids run from 1 to the configured count.
pub const MAX_TASKS: usize = 32;
pub const MAX_SEMAPHORES: usize = 16;
pub const MAX_FLAGS: usize = 16;
pub const MAX_DATA_QUEUES: usize = 8;
/// Largest buffer a data queue can be configured with.
pub const DATA_QUEUE_CAPACITY: usize = 16;
pub const MAX_CYCLICS: usize = 8;
pub const MAX_INTERRUPTS: usize = 32;
/// One timeout per task plus one deadline per cyclic handler: never full.
pub const TIMER_CAPACITY: usize = MAX_TASKS + MAX_CYCLICS;
/// Activation requests a non-dormant task can queue (μITRON `TMAX_ACTCNT`).
pub const MAX_ACTIVATIONS: u8 = 1;
/// Wakeup requests a task can queue (μITRON `TMAX_WUPCNT`).
pub const MAX_WAKEUPS: u32 = 15;

// Ids and list links are stored as u8.
const _: () = assert!(MAX_TASKS <= 255 && MAX_SEMAPHORES <= 255 && MAX_FLAGS <= 255);
const _: () = assert!(MAX_DATA_QUEUES <= 255 && MAX_CYCLICS <= 255);

/// Order of a wait queue (μITRON `TA_TFIFO` / `TA_TPRI`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOrder {
    Fifo,
    /// By current task priority, FIFO among equals.
    Priority,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskConfig {
    /// Initial priority, `TMIN_TPRI..=TMAX_TPRI`.
    pub priority: u8,
    /// Opaque to the kernel: which function the arch starts the task in.
    pub entry: usize,
    /// Passed back with `entry` when the task starts.
    pub arg: usize,
    /// Ready at boot (μITRON `TA_ACT`).
    pub activate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemaphoreConfig {
    pub initial: u32,
    /// At least 1 and at least `initial`.
    pub max: u32,
    pub order: WaitOrder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagConfig {
    pub initial: u32,
    /// Several tasks may wait at once (μITRON `TA_WMUL`).
    pub multiple_waiters: bool,
    pub order: WaitOrder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataQueueConfig {
    /// Buffered elements, `0..=DATA_QUEUE_CAPACITY`; 0 means only direct
    /// hand-off between a sender and a receiver.
    pub capacity: usize,
    /// Order of waiting senders; receivers always wait FIFO.
    pub order: WaitOrder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyclicConfig {
    /// Opaque to the kernel: which function the arch calls.
    pub handler: usize,
    /// Ticks between firings; not 0.
    pub period: Ticks,
    /// Ticks from start to the first firing.
    pub phase: Ticks,
    /// Started at boot (μITRON `TA_STA`).
    pub start: bool,
}

/// All objects, fixed at boot like a μITRON static configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct Config<'a> {
    pub tasks: &'a [TaskConfig],
    pub semaphores: &'a [SemaphoreConfig],
    pub flags: &'a [FlagConfig],
    pub data_queues: &'a [DataQueueConfig],
    pub cyclics: &'a [CyclicConfig],
}
