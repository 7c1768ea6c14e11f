//! The service-call ABI: a task runs `SVC #0` with the service number in `x8` and arguments
//! in `x0..x3`; it gets the μITRON code back in `x0` and a value in `x1`. This module
//! decodes the registers and runs the service on the kernel; the arch only moves registers.
//!
//! Timeouts travel as a signed register, μITRON style: `-1` forever, `0` poll, else ticks.

use crate::kernel::*;

/// Service numbers (`x8`).
pub mod number {
    pub const ACTIVATE_TASK: u64 = 1;
    pub const EXIT_TASK: u64 = 2;
    pub const SLEEP_TASK: u64 = 3;
    pub const WAKEUP_TASK: u64 = 4;
    pub const DELAY_TASK: u64 = 5;
    pub const RELEASE_WAIT: u64 = 6;
    pub const SIGNAL_SEMAPHORE: u64 = 7;
    pub const WAIT_SEMAPHORE: u64 = 8;
    pub const SET_FLAG: u64 = 9;
    pub const CLEAR_FLAG: u64 = 10;
    pub const WAIT_FLAG: u64 = 11;
    pub const SEND_DATA_QUEUE: u64 = 12;
    pub const RECEIVE_DATA_QUEUE: u64 = 13;
    pub const START_CYCLIC: u64 = 14;
    pub const STOP_CYCLIC: u64 = 15;
    pub const TASK_STATE: u64 = 16;
    pub const CHANGE_PRIORITY: u64 = 17;
    /// Boot only: leave the boot code for the first dispatch (handled by the arch).
    pub const START_KERNEL: u64 = 0x100;
}

/// `TMO_FEVR` in a register.
pub const TMO_FEVR: i64 = -1;
/// `TMO_POL` in a register.
pub const TMO_POL: i64 = 0;

/// Flag wait mode bits (`x2` of `WAIT_FLAG`).
pub const FLAG_OR: u64 = 1 << 0;
pub const FLAG_CLEAR: u64 = 1 << 1;

/// `TASK_STATE` values.
pub const STATE_DORMANT: u64 = 0;
pub const STATE_READY: u64 = 1;
pub const STATE_RUNNING: u64 = 2;
pub const STATE_WAITING: u64 = 3;

/// A decoded service call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    ActivateTask(TaskId),
    ExitTask,
    SleepTask(Timeout),
    WakeupTask(TaskId),
    DelayTask(Ticks),
    ReleaseWait(TaskId),
    SignalSemaphore(SemaphoreId),
    WaitSemaphore(SemaphoreId, Timeout),
    SetFlag(FlagId, u32),
    ClearFlag(FlagId, u32),
    WaitFlag(FlagId, FlagCondition, Timeout),
    SendDataQueue(DataQueueId, usize, Timeout),
    ReceiveDataQueue(DataQueueId, Timeout),
    StartCyclic(CyclicId),
    StopCyclic(CyclicId),
    TaskState(TaskId),
    ChangePriority(TaskId, u8),
}

/// A register as an object id: anything past 255 cannot name an object.
fn id(reg: u64) -> Result<u8, ErrorCode> {
    u8::try_from(reg).map_err(|_| E_ID)
}

pub fn timeout(reg: u64) -> Result<Timeout, ErrorCode> {
    match reg as i64 {
        TMO_FEVR => Ok(Timeout::Forever),
        TMO_POL => Ok(Timeout::Poll),
        ticks if ticks > 0 => Ok(Timeout::After(ticks as u64)),
        _ => Err(E_PAR),
    }
}

/// The register form of a timeout, for the task-side wrappers.
pub fn timeout_register(timeout: Timeout) -> u64 {
    match timeout {
        Timeout::Forever => TMO_FEVR as u64,
        Timeout::Poll | Timeout::After(0) => TMO_POL as u64,
        Timeout::After(ticks) => ticks.min(i64::MAX as u64),
    }
}

fn u32_arg(reg: u64) -> Result<u32, ErrorCode> {
    u32::try_from(reg).map_err(|_| E_PAR)
}

/// Decodes `x8` and `x0..x3`. `E_RSFN` for an unknown number.
pub fn decode(number: u64, a: [u64; 4]) -> Result<Call, ErrorCode> {
    use number::*;
    Ok(match number {
        ACTIVATE_TASK => Call::ActivateTask(TaskId(id(a[0])?)),
        EXIT_TASK => Call::ExitTask,
        SLEEP_TASK => Call::SleepTask(timeout(a[0])?),
        WAKEUP_TASK => Call::WakeupTask(TaskId(id(a[0])?)),
        DELAY_TASK => Call::DelayTask(a[0]),
        RELEASE_WAIT => Call::ReleaseWait(TaskId(id(a[0])?)),
        SIGNAL_SEMAPHORE => Call::SignalSemaphore(SemaphoreId(id(a[0])?)),
        WAIT_SEMAPHORE => Call::WaitSemaphore(SemaphoreId(id(a[0])?), timeout(a[1])?),
        SET_FLAG => Call::SetFlag(FlagId(id(a[0])?), u32_arg(a[1])?),
        CLEAR_FLAG => Call::ClearFlag(FlagId(id(a[0])?), u32_arg(a[1])?),
        WAIT_FLAG => {
            let condition = FlagCondition {
                pattern: u32_arg(a[1])?,
                mode: if a[2] & FLAG_OR != 0 {
                    FlagMode::Or
                } else {
                    FlagMode::And
                },
                clear: a[2] & FLAG_CLEAR != 0,
            };
            Call::WaitFlag(FlagId(id(a[0])?), condition, timeout(a[3])?)
        }
        SEND_DATA_QUEUE => {
            Call::SendDataQueue(DataQueueId(id(a[0])?), a[1] as usize, timeout(a[2])?)
        }
        RECEIVE_DATA_QUEUE => Call::ReceiveDataQueue(DataQueueId(id(a[0])?), timeout(a[1])?),
        START_CYCLIC => Call::StartCyclic(CyclicId(id(a[0])?)),
        STOP_CYCLIC => Call::StopCyclic(CyclicId(id(a[0])?)),
        TASK_STATE => Call::TaskState(TaskId(id(a[0])?)),
        CHANGE_PRIORITY => {
            Call::ChangePriority(TaskId(id(a[0])?), u8::try_from(a[1]).map_err(|_| E_PAR)?)
        }
        _ => return Err(E_RSFN),
    })
}

fn done(result: Result<(), ErrorCode>) -> Result<Outcome<u64>, ErrorCode> {
    result.map(|()| Outcome::Done(0))
}

fn unit(outcome: Outcome<()>) -> Outcome<u64> {
    match outcome {
        Outcome::Done(()) => Outcome::Done(0),
        Outcome::Blocked => Outcome::Blocked,
    }
}

/// Runs a task's service call at time `now`. `Done(v)` returns `(E_OK, v)` at once;
/// `Blocked` returns when the wait ends, through [`Resume::Released`].
pub fn perform(kernel: &mut Kernel, call: Call, now: Ticks) -> Result<Outcome<u64>, ErrorCode> {
    match call {
        Call::ActivateTask(task) => done(kernel.activate_task(task)),
        Call::ExitTask => done(kernel.exit_task()),
        Call::SleepTask(t) => kernel.sleep_task(t, now).map(unit),
        Call::WakeupTask(task) => done(kernel.wakeup_task(task)),
        Call::DelayTask(ticks) => kernel.delay_task(ticks, now).map(unit),
        Call::ReleaseWait(task) => done(kernel.release_wait(task)),
        Call::SignalSemaphore(s) => done(kernel.signal_semaphore(s)),
        Call::WaitSemaphore(s, t) => kernel.wait_semaphore(s, t, now).map(unit),
        Call::SetFlag(f, bits) => done(kernel.set_flag(f, bits)),
        Call::ClearFlag(f, keep) => done(kernel.clear_flag(f, keep)),
        Call::WaitFlag(f, condition, t) => {
            kernel.wait_flag(f, condition, t, now).map(|o| match o {
                Outcome::Done(pattern) => Outcome::Done(u64::from(pattern)),
                Outcome::Blocked => Outcome::Blocked,
            })
        }
        Call::SendDataQueue(q, data, t) => kernel.send_data_queue(q, data, t, now).map(unit),
        Call::ReceiveDataQueue(q, t) => kernel.receive_data_queue(q, t, now).map(|o| match o {
            Outcome::Done(data) => Outcome::Done(data as u64),
            Outcome::Blocked => Outcome::Blocked,
        }),
        Call::StartCyclic(c) => done(kernel.start_cyclic(c, now)),
        Call::StopCyclic(c) => done(kernel.stop_cyclic(c)),
        Call::TaskState(task) => kernel.task_state(task).map(|state| {
            Outcome::Done(match state {
                TaskState::Dormant => STATE_DORMANT,
                TaskState::Ready => STATE_READY,
                TaskState::Running => STATE_RUNNING,
                TaskState::Waiting { .. } => STATE_WAITING,
            })
        }),
        Call::ChangePriority(task, priority) => done(kernel.change_priority(task, priority)),
    }
}

#[cfg(test)]
mod tests {
    use super::number::*;
    use super::*;

    #[test]
    fn decode_ids_timeouts_and_conditions() {
        assert_eq!(
            decode(ACTIVATE_TASK, [99, 0, 0, 0]),
            Ok(Call::ActivateTask(TaskId(99)))
        );
        assert_eq!(decode(ACTIVATE_TASK, [256, 0, 0, 0]), Err(E_ID));
        assert_eq!(
            decode(WAIT_SEMAPHORE, [1, u64::MAX, 0, 0]),
            Ok(Call::WaitSemaphore(SemaphoreId(1), Timeout::Forever))
        );
        assert_eq!(
            decode(SLEEP_TASK, [500, 0, 0, 0]),
            Ok(Call::SleepTask(Timeout::After(500)))
        );
        assert_eq!(decode(SLEEP_TASK, [-2i64 as u64, 0, 0, 0]), Err(E_PAR));
        assert_eq!(
            decode(WAIT_FLAG, [2, 0b11, FLAG_OR | FLAG_CLEAR, 0]),
            Ok(Call::WaitFlag(
                FlagId(2),
                FlagCondition {
                    pattern: 3,
                    mode: FlagMode::Or,
                    clear: true
                },
                Timeout::Poll
            ))
        );
        assert_eq!(decode(SET_FLAG, [1, 1 << 32, 0, 0]), Err(E_PAR));
        assert_eq!(decode(999, [0; 4]), Err(E_RSFN));
    }

    #[test]
    fn timeouts_round_trip_through_registers() {
        for t in [Timeout::Forever, Timeout::Poll, Timeout::After(12_345)] {
            assert_eq!(timeout(timeout_register(t)), Ok(t));
        }
        assert_eq!(
            timeout(timeout_register(Timeout::After(0))),
            Ok(Timeout::Poll)
        );
    }

    fn kernel() -> Kernel {
        let tasks = [
            TaskConfig {
                priority: 8,
                entry: 1,
                arg: 0,
                activate: true,
            },
            TaskConfig {
                priority: 2,
                entry: 2,
                arg: 0,
                activate: false,
            },
        ];
        let semaphores = [SemaphoreConfig {
            initial: 0,
            max: 1,
            order: WaitOrder::Fifo,
        }];
        let config = Config {
            tasks: &tasks,
            semaphores: &semaphores,
            ..Config::default()
        };
        let mut kernel = Kernel::new(&config, 0).unwrap();
        kernel.dispatch().unwrap();
        kernel
    }

    #[test]
    fn perform_runs_services_and_reports_errors() {
        let mut k = kernel();
        assert_eq!(
            perform(&mut k, Call::ActivateTask(TaskId(99)), 0),
            Err(E_ID)
        );
        assert_eq!(
            perform(&mut k, Call::TaskState(TaskId(2)), 0),
            Ok(Outcome::Done(STATE_DORMANT))
        );
        assert_eq!(
            perform(&mut k, Call::ActivateTask(TaskId(2)), 0),
            Ok(Outcome::Done(0))
        );
        let next = k.dispatch().unwrap();
        assert_eq!(next.to, Some(TaskId(2)), "the higher priority preempts");
        assert_eq!(
            perform(
                &mut k,
                Call::WaitSemaphore(SemaphoreId(1), Timeout::Forever),
                0
            ),
            Ok(Outcome::Blocked)
        );
        let back = k.dispatch().unwrap();
        assert_eq!((back.to, back.resume), (Some(TaskId(1)), Resume::Continue));
        assert_eq!(
            perform(&mut k, Call::SignalSemaphore(SemaphoreId(1)), 0),
            Ok(Outcome::Done(0))
        );
        let woken = k.dispatch().unwrap();
        assert_eq!(woken.to, Some(TaskId(2)));
        assert_eq!(woken.resume, Resume::Released(Ok(WaitValue::None)));
    }
}
