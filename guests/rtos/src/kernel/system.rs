//! The kernel state, boot, context tracking, dispatching and the internal
//! wait/release machinery every service builds on.

use heapless::{Deque, Vec};

use super::config::*;
use super::cyclic::CyclicControl;
use super::error::ErrorCode;
use super::interrupt::InterruptLine;
use super::list::{Link, Links, TaskList};
use super::ready::ReadyQueue;
use super::sync::{DataQueueControl, FlagControl, SemaphoreControl};
use super::timer::{TimerEvent, TimerQueue};
use super::types::*;

/// What a waiting task waits for, with what it needs on release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    Sleep,
    Delay,
    Semaphore(usize),
    Flag {
        flag: usize,
        condition: FlagCondition,
    },
    Send {
        queue: usize,
        data: usize,
    },
    Receive(usize),
}

impl Wait {
    pub(super) fn reason(self) -> WaitReason {
        match self {
            Wait::Sleep => WaitReason::Sleep,
            Wait::Delay => WaitReason::Delay,
            Wait::Semaphore(s) => WaitReason::Semaphore(SemaphoreId::from_index(s)),
            Wait::Flag { flag, .. } => WaitReason::Flag(FlagId::from_index(flag)),
            Wait::Send { queue, .. } => WaitReason::DataQueueSend(DataQueueId::from_index(queue)),
            Wait::Receive(queue) => WaitReason::DataQueueReceive(DataQueueId::from_index(queue)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Dormant,
    /// Ready or running: in the ready queue of its current priority.
    Ready,
    Waiting(Wait),
}

#[derive(Clone, Debug)]
pub(super) struct TaskControl {
    pub(super) config: TaskConfig,
    pub(super) priority: u8,
    pub(super) state: State,
    pub(super) activations: u8,
    pub(super) wakeups: u32,
    /// Mirrors this task's entry in the timer queue.
    pub(super) deadline: Option<Ticks>,
    /// Set on release from waiting, handed to the arch by `dispatch`.
    pub(super) result: Option<WaitResult>,
    /// Must start from its entry point rather than resume.
    pub(super) fresh: bool,
}

/// How the arch resumes the task it switches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// No task is ready: idle until an interrupt.
    Idle,
    /// Restore the saved context unchanged (it was preempted, or never left).
    Continue,
    /// Build a new context that calls `entry(arg)`.
    Start { entry: usize, arg: usize },
    /// Restore the saved context and return this result from the service
    /// the task blocked in (see [`wait_result_registers`]).
    Released(WaitResult),
}

/// A context switch decision from [`Kernel::dispatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// Task whose context the arch was running (save it, unless dormant).
    pub from: Option<TaskId>,
    /// Task to run now.
    pub to: Option<TaskId>,
    pub resume: Resume,
}

/// The whole kernel state. See the module documentation for the protocol.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub(super) tasks: Vec<TaskControl, MAX_TASKS>,
    pub(super) links: Links,
    pub(super) ready: ReadyQueue,
    /// Index of the task the arch has on the CPU.
    pub(super) running: Option<usize>,
    pub(super) timers: TimerQueue,
    pub(super) semaphores: Vec<SemaphoreControl, MAX_SEMAPHORES>,
    pub(super) flags: Vec<FlagControl, MAX_FLAGS>,
    pub(super) data_queues: Vec<DataQueueControl, MAX_DATA_QUEUES>,
    pub(super) cyclics: Vec<CyclicControl, MAX_CYCLICS>,
    pub(super) interrupts: Vec<InterruptLine, MAX_INTERRUPTS>,
    pub(super) interrupt_nesting: u32,
}

fn valid_task_priority(priority: u8) -> bool {
    (TMIN_TPRI..=TMAX_TPRI).contains(&priority)
}

impl Kernel {
    /// Builds every object, makes `activate` tasks ready and starts
    /// `start` cyclic handlers relative to `now`. Nothing runs until the
    /// arch calls [`Kernel::dispatch`].
    ///
    /// Errors: `E_NOMEM` when a table or buffer is too small, `E_PAR` for
    /// bad priorities, counts or periods.
    pub fn new(config: &Config<'_>, now: Ticks) -> Result<Self, ErrorCode> {
        let mut kernel = Kernel {
            tasks: Vec::new(),
            links: [Link::default(); MAX_TASKS],
            ready: ReadyQueue::new(),
            running: None,
            timers: TimerQueue::new(),
            semaphores: Vec::new(),
            flags: Vec::new(),
            data_queues: Vec::new(),
            cyclics: Vec::new(),
            interrupts: Vec::new(),
            interrupt_nesting: 0,
        };
        for task in config.tasks {
            if !valid_task_priority(task.priority) {
                return Err(ErrorCode::Parameter);
            }
            let control = TaskControl {
                config: *task,
                priority: task.priority,
                state: State::Dormant,
                activations: 0,
                wakeups: 0,
                deadline: None,
                result: None,
                fresh: false,
            };
            kernel
                .tasks
                .push(control)
                .map_err(|_| ErrorCode::NoMemory)?;
        }
        for semaphore in config.semaphores {
            if semaphore.max == 0 || semaphore.initial > semaphore.max {
                return Err(ErrorCode::Parameter);
            }
            let control = SemaphoreControl {
                count: semaphore.initial,
                max: semaphore.max,
                order: semaphore.order,
                waiters: TaskList::EMPTY,
            };
            kernel
                .semaphores
                .push(control)
                .map_err(|_| ErrorCode::NoMemory)?;
        }
        for flag in config.flags {
            let control = FlagControl {
                pattern: flag.initial,
                multiple_waiters: flag.multiple_waiters,
                order: flag.order,
                waiters: TaskList::EMPTY,
            };
            kernel
                .flags
                .push(control)
                .map_err(|_| ErrorCode::NoMemory)?;
        }
        for queue in config.data_queues {
            if queue.capacity > DATA_QUEUE_CAPACITY {
                return Err(ErrorCode::NoMemory);
            }
            let control = DataQueueControl {
                buffer: Deque::new(),
                capacity: queue.capacity,
                order: queue.order,
                senders: TaskList::EMPTY,
                receivers: TaskList::EMPTY,
            };
            kernel
                .data_queues
                .push(control)
                .map_err(|_| ErrorCode::NoMemory)?;
        }
        for cyclic in config.cyclics {
            if cyclic.period == 0 {
                return Err(ErrorCode::Parameter);
            }
            let control = CyclicControl {
                config: *cyclic,
                active: false,
                next: 0,
                last_fired: None,
                overruns: 0,
            };
            kernel
                .cyclics
                .push(control)
                .map_err(|_| ErrorCode::NoMemory)?;
        }
        for task in 0..kernel.tasks.len() {
            if kernel.tasks[task].config.activate {
                kernel.start_fresh(task);
            }
        }
        for cyclic in 0..kernel.cyclics.len() {
            let config = kernel.cyclics[cyclic].config;
            if config.start {
                kernel.arm_cyclic(cyclic, now.saturating_add(config.phase))?;
            }
        }
        Ok(kernel)
    }

    // ---- context ----

    /// The arch calls this on entry to an interrupt handler (nests).
    pub fn enter_interrupt(&mut self) {
        self.interrupt_nesting = self.interrupt_nesting.saturating_add(1);
    }

    /// The arch calls this when leaving an interrupt handler; once back at
    /// task level it calls [`Kernel::dispatch`].
    pub fn exit_interrupt(&mut self) {
        self.interrupt_nesting = self.interrupt_nesting.saturating_sub(1);
    }

    pub fn in_interrupt(&self) -> bool {
        self.interrupt_nesting > 0
    }

    pub(super) fn require_task_context(&self) -> Result<(), ErrorCode> {
        if self.in_interrupt() {
            Err(ErrorCode::Context)
        } else {
            Ok(())
        }
    }

    /// The calling task: only in task context, and only while it is ready
    /// (a task that has just blocked or exited cannot call again).
    pub(super) fn current(&self) -> Result<usize, ErrorCode> {
        self.require_task_context()?;
        match self.running {
            Some(task) if self.tasks[task].state == State::Ready => Ok(task),
            _ => Err(ErrorCode::Context),
        }
    }

    pub(super) fn task_index(&self, id: TaskId) -> Result<usize, ErrorCode> {
        id.index()
            .filter(|&task| task < self.tasks.len())
            .ok_or(ErrorCode::Id)
    }

    /// Like `task_index`, with `TaskId::SELF` meaning the running task.
    pub(super) fn resolve_task(&self, id: TaskId) -> Result<usize, ErrorCode> {
        if id == TaskId::SELF {
            if self.in_interrupt() {
                return Err(ErrorCode::Id);
            }
            return self.running.ok_or(ErrorCode::Id);
        }
        self.task_index(id)
    }

    // ---- scheduling ----

    /// The task that should be running now (highest priority, then FIFO).
    pub fn schedule(&self) -> Option<TaskId> {
        self.ready.highest().map(TaskId::from_index)
    }

    /// The task the arch has on the CPU.
    pub fn running(&self) -> Option<TaskId> {
        self.running.map(TaskId::from_index)
    }

    /// Whether [`Kernel::dispatch`] would change anything.
    pub fn needs_dispatch(&self) -> bool {
        let next = self.ready.highest();
        next != self.running
            || next.is_some_and(|task| self.tasks[task].fresh || self.tasks[task].result.is_some())
    }

    /// Picks the task to run and records it as running. The arch calls it
    /// after every service call from a task and when the outermost
    /// interrupt handler returns, then switches if `from != to` or resumes
    /// as `resume` says. `E_CTX` inside an interrupt handler.
    pub fn dispatch(&mut self) -> Result<Dispatch, ErrorCode> {
        self.require_task_context()?;
        let from = self.running.map(TaskId::from_index);
        let next = self.ready.highest();
        self.running = next;
        let resume = match next {
            None => Resume::Idle,
            Some(task) => {
                let control = &mut self.tasks[task];
                if control.fresh {
                    control.fresh = false;
                    control.result = None;
                    Resume::Start {
                        entry: control.config.entry,
                        arg: control.config.arg,
                    }
                } else if let Some(result) = control.result.take() {
                    Resume::Released(result)
                } else {
                    Resume::Continue
                }
            }
        };
        Ok(Dispatch {
            from,
            to: next.map(TaskId::from_index),
            resume,
        })
    }

    /// The earliest pending deadline: program the one-shot timer to fire at
    /// it (or not at all when `None`), then call [`Kernel::on_timer`].
    pub fn next_deadline(&self) -> Option<Ticks> {
        self.timers.next_deadline()
    }

    // ---- internal state transitions ----

    pub(super) fn make_ready(&mut self, task: usize) {
        self.tasks[task].state = State::Ready;
        let priority = self.tasks[task].priority;
        self.ready.push_back(&mut self.links, task, priority);
    }

    /// Dormant to ready, as a fresh start from the entry point.
    pub(super) fn start_fresh(&mut self, task: usize) {
        let control = &mut self.tasks[task];
        control.priority = control.config.priority;
        control.wakeups = 0;
        control.deadline = None;
        control.result = None;
        control.fresh = true;
        self.make_ready(task);
    }

    /// Takes `task` out of whatever queue it is in; it ends up dormant, or
    /// restarted if an activation was queued.
    pub(super) fn terminate(&mut self, task: usize) {
        match self.tasks[task].state {
            State::Dormant => return,
            State::Ready => {
                let priority = self.tasks[task].priority;
                self.ready.remove(&mut self.links, task, priority);
            }
            State::Waiting(wait) => self.leave_wait(task, wait),
        }
        let control = &mut self.tasks[task];
        control.state = State::Dormant;
        control.result = None;
        control.fresh = false;
        if control.activations > 0 {
            control.activations -= 1;
            self.start_fresh(task);
        }
    }

    /// Moves the running task `task` from ready to waiting.
    pub(super) fn block<T>(
        &mut self,
        task: usize,
        wait: Wait,
        deadline: Option<Ticks>,
    ) -> Result<Outcome<T>, ErrorCode> {
        if let Some(deadline) = deadline {
            // First, so a failure leaves everything as it was.
            self.timers
                .insert(deadline, TimerEvent::Task(task as u8))
                .map_err(|_| ErrorCode::System)?;
        }
        let priority = self.tasks[task].priority;
        self.ready.remove(&mut self.links, task, priority);
        let control = &mut self.tasks[task];
        control.state = State::Waiting(wait);
        control.deadline = deadline;
        control.result = None;
        let (queue, links, tasks) = self.wait_queue_parts(wait);
        if let Some((queue, order)) = queue {
            insert_waiter(queue, links, tasks, task, order);
        }
        Ok(Outcome::Blocked)
    }

    /// Ends the wait of `task` with `result` and makes it ready.
    pub(super) fn release(&mut self, task: usize, result: WaitResult) {
        let State::Waiting(wait) = self.tasks[task].state else {
            return;
        };
        self.leave_wait(task, wait);
        self.tasks[task].result = Some(result);
        self.make_ready(task);
    }

    /// Drops a waiting task's wait-queue membership and timeout.
    fn leave_wait(&mut self, task: usize, wait: Wait) {
        let (queue, links, _) = self.wait_queue_parts(wait);
        if let Some((queue, _)) = queue {
            queue.remove(links, task);
        }
        if self.tasks[task].deadline.take().is_some() {
            self.timers.remove(TimerEvent::Task(task as u8));
        }
    }

    /// Puts a waiting task back at its place after a priority change.
    pub(super) fn reorder_waiter(&mut self, task: usize, wait: Wait) {
        let (queue, links, tasks) = self.wait_queue_parts(wait);
        if let Some((queue, WaitOrder::Priority)) = queue {
            queue.remove(links, task);
            insert_waiter(queue, links, tasks, task, WaitOrder::Priority);
        }
    }

    /// The wait queue a `wait` lives in, split from the links and tasks so
    /// all three can be borrowed at once.
    #[allow(clippy::type_complexity)]
    pub(super) fn wait_queue_parts(
        &mut self,
        wait: Wait,
    ) -> (
        Option<(&mut TaskList, WaitOrder)>,
        &mut Links,
        &[TaskControl],
    ) {
        let queue = match wait {
            Wait::Sleep | Wait::Delay => None,
            Wait::Semaphore(s) => {
                let semaphore = &mut self.semaphores[s];
                Some((&mut semaphore.waiters, semaphore.order))
            }
            Wait::Flag { flag, .. } => {
                let flag = &mut self.flags[flag];
                Some((&mut flag.waiters, flag.order))
            }
            Wait::Send { queue, .. } => {
                let queue = &mut self.data_queues[queue];
                Some((&mut queue.senders, queue.order))
            }
            Wait::Receive(queue) => Some((&mut self.data_queues[queue].receivers, WaitOrder::Fifo)),
        };
        (queue, &mut self.links, &self.tasks)
    }
}

fn insert_waiter(
    queue: &mut TaskList,
    links: &mut Links,
    tasks: &[TaskControl],
    task: usize,
    order: WaitOrder,
) {
    let before = match order {
        WaitOrder::Fifo => None,
        WaitOrder::Priority => {
            let priority = tasks[task].priority;
            queue
                .iter(links)
                .find(|&other| tasks[other].priority > priority)
        }
    };
    queue.insert_before(links, task, before);
}
