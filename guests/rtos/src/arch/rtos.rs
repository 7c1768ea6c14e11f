//! The glue between the pure kernel and the CPU: kernel state, the service-call and IRQ
//! paths, idle, task exit, and the task-side service wrappers.
//!
//! The kernel state is touched only from exception handlers (IRQs masked by the exception,
//! one core) and, before the first dispatch, by the boot code.

use super::{gic, power, timer};
use crate::context::{switch, Frame, Starts};
use crate::gic::{iar_intid, is_spurious, INTID_VTIMER};
use crate::kernel::*;
use crate::latency::MAX_SAMPLES;
use crate::layout::{stack_top, IDLE_SLOT, STACK_STRIDE};
use crate::println;
use crate::svc::{self, number};
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, Ordering};

/// Called at a cyclic firing, in interrupt context.
pub type CyclicHandler = fn(&mut Kernel, &CyclicFiring);
/// Called for a device interrupt, in interrupt context.
pub type InterruptHandler = fn(&mut Kernel, u32);

/// Most tasks an application may configure: one stack slot each, the last slot is idle's.
pub const MAX_APP_TASKS: usize = IDLE_SLOT;
/// The kernel priority of the timer interrupt.
const TIMER_PRIORITY: u8 = 1;

/// The code a configuration's functions are found by: `TaskConfig::entry` is the address of
/// an `extern "C" fn(usize)`, `CyclicConfig::handler` and an interrupt's handler index these.
pub struct Handlers {
    pub cyclic: &'static [CyclicHandler],
    pub interrupt: &'static [InterruptHandler],
}

struct State {
    kernel: Kernel,
    saved: [Frame; MAX_APP_TASKS],
    starts: Starts,
    handlers: &'static Handlers,
}

static mut STATE: Option<State> = None;

/// # Safety
/// Only from exception context (or before the first dispatch), so nothing else holds it.
unsafe fn state() -> &'static mut State {
    let slot = &raw mut STATE;
    // SAFETY: per the contract above, on one core.
    match unsafe { &mut *slot } {
        Some(state) => state,
        None => panic!("kernel used before start"),
    }
}

global_asm!(
    r#"
    .section .text, "ax"
    .global rtos_task_exit
rtos_task_exit:
    mov     x8, #{exit}
    svc     #0
    b       rtos_task_exit
"#,
    exit = const number::EXIT_TASK,
);

extern "C" {
    fn rtos_task_exit();
}

/// The idle loop: sleep until an interrupt makes a task ready.
extern "C" fn idle(_: usize) {
    loop {
        // SAFETY: waiting for an interrupt has no effect on memory.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}

/// Builds the kernel, programs the GIC and the timer, and leaves the boot code for the
/// first dispatch. Never returns.
pub fn start(config: &Config<'_>, handlers: &'static Handlers, bare: bool) -> ! {
    if config.tasks.len() > MAX_APP_TASKS {
        println!(
            "rtos: {} tasks configured, at most {MAX_APP_TASKS}",
            config.tasks.len()
        );
        power::finish(false)
    }
    let mut kernel = match Kernel::new(config, timer::now()) {
        Ok(kernel) => kernel,
        Err(error) => {
            println!("rtos: bad kernel configuration: {error:?}");
            power::finish(false)
        }
    };
    let frame_index = match gic::init(bare) {
        Ok(index) => index,
        Err(error) => {
            println!("rtos: GIC setup failed: {error}");
            power::finish(false)
        }
    };
    let timer_line = kernel
        .define_interrupt(INTID_VTIMER, TIMER_PRIORITY, usize::MAX)
        .and_then(|_| kernel.enable_interrupt(INTID_VTIMER));
    match timer_line {
        Ok(line) => gic::configure_private(&line),
        Err(error) => {
            println!("rtos: timer interrupt setup failed: {error:?}");
            power::finish(false)
        }
    }
    println!(
        "rtos: kernel up: {} tasks, timer {} Hz on INTID {INTID_VTIMER}, GIC redistributor {frame_index}",
        config.tasks.len(),
        timer::frequency()
    );
    let starts = Starts {
        exit: rtos_task_exit as *const () as u64,
        idle_entry: idle as *const () as u64,
        idle_stack_top: stack_top(IDLE_SLOT),
        first_stack_top: stack_top(0),
        stack_stride: STACK_STRIDE,
    };
    let slot = &raw mut STATE;
    // SAFETY: boot code, IRQs masked, before any exception can use the state.
    unsafe {
        *slot = Some(State {
            kernel,
            saved: [Frame::ZERO; MAX_APP_TASKS],
            starts,
            handlers,
        });
    }
    // SAFETY: the handler never returns here: it replaces this boot frame by the first
    // task's (or idle's).
    unsafe { asm!("svc #0", in("x8") number::START_KERNEL, options(noreturn)) }
}

/// Re-arms the timer and switches `frame` to whatever the kernel now wants to run.
fn reschedule(state: &mut State, frame: &mut Frame) {
    timer::program(state.kernel.next_deadline());
    if state.kernel.needs_dispatch() {
        match state.kernel.dispatch() {
            Ok(dispatch) => switch(frame, &mut state.saved, &dispatch, &state.starts),
            Err(error) => panic!("dispatch failed: {error:?}"),
        }
    }
}

/// `SVC #0`: a service call from a task, or the boot code's start request.
pub fn service(frame: &mut Frame) {
    // SAFETY: exception context.
    let state = unsafe { state() };
    let number = frame.x[8];
    if number == number::START_KERNEL {
        *frame = state.starts.idle();
        return reschedule(state, frame);
    }
    let args = [frame.x[0], frame.x[1], frame.x[2], frame.x[3]];
    let result = svc::decode(number, args)
        .and_then(|call| svc::perform(&mut state.kernel, call, timer::now()));
    match result {
        Ok(Outcome::Done(value)) => frame.set_return(E_OK.code(), value),
        Ok(Outcome::Blocked) => {}
        Err(error) => frame.set_return(error.code(), 0),
    }
    reschedule(state, frame);
}

/// An IRQ: the timer runs the kernel's expiry and the due cyclic handlers; other lines
/// call their handler. No nesting: IRQs stay masked until the frame is restored.
pub fn interrupt(frame: &mut Frame) {
    // SAFETY: exception context.
    let state = unsafe { state() };
    let iar = gic::acknowledge();
    let intid = iar_intid(iar);
    if is_spurious(intid) {
        return;
    }
    let kernel = &mut state.kernel;
    kernel.enter_interrupt();
    if intid == INTID_VTIMER {
        let report = kernel.on_timer(timer::now());
        for firing in &report.fired {
            if let Some(handler) = state.handlers.cyclic.get(firing.handler) {
                handler(kernel, firing);
            }
        }
    } else if let Some(line) = kernel.interrupt_line(intid) {
        if let Some(handler) = state.handlers.interrupt.get(line.handler) {
            handler(kernel, intid);
        }
    }
    kernel.exit_interrupt();
    // Re-arm before EOI, so a level-triggered timer line is low again unless due.
    timer::program(kernel.next_deadline());
    gic::end_of_interrupt(iar);
    reschedule(state, frame);
}

static SAMPLES_TAKEN: AtomicBool = AtomicBool::new(false);
static mut SAMPLES: [u32; MAX_SAMPLES as usize] = [0; MAX_SAMPLES as usize];

/// The latency probe's sample buffer, handed out once.
pub fn take_sample_buffer() -> Option<&'static mut [u32]> {
    if SAMPLES_TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    let buffer = &raw mut SAMPLES;
    // SAFETY: the flag above hands the buffer out at most once.
    Some(unsafe { &mut *buffer })
}

/// Raw service call from a task: `(code, value)`.
fn call(number: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> Result<u64, ErrorCode> {
    let code: u64;
    let value: u64;
    // SAFETY: the exception saves and restores every register except the two results;
    // other tasks may run meanwhile, so memory is not declared untouched.
    unsafe {
        asm!(
            "svc #0",
            inout("x0") a0 => code,
            inout("x1") a1 => value,
            in("x2") a2,
            in("x3") a3,
            in("x8") number,
            options(nostack),
        );
    }
    match code as i64 as i32 {
        0 => Ok(value),
        code => Err(ErrorCode::from_code(code).unwrap_or(E_SYS)),
    }
}

/// Task-side services, named as in μITRON. Task context only.
pub mod api {
    use super::call;
    use crate::kernel::{ErrorCode, Ticks, Timeout};
    use crate::svc::{number::*, timeout_register};

    pub type Er<T = ()> = Result<T, ErrorCode>;

    fn unit(result: Er<u64>) -> Er {
        result.map(|_| ())
    }

    pub fn act_tsk(task: u64) -> Er {
        unit(call(ACTIVATE_TASK, task, 0, 0, 0))
    }
    pub fn ext_tsk() -> ! {
        let _ = call(EXIT_TASK, 0, 0, 0, 0);
        unreachable!("ext_tsk returned")
    }
    pub fn tslp_tsk(timeout: Timeout) -> Er {
        unit(call(SLEEP_TASK, timeout_register(timeout), 0, 0, 0))
    }
    pub fn wup_tsk(task: u64) -> Er {
        unit(call(WAKEUP_TASK, task, 0, 0, 0))
    }
    pub fn dly_tsk(ticks: Ticks) -> Er {
        unit(call(DELAY_TASK, ticks, 0, 0, 0))
    }
    pub fn sig_sem(sem: u64) -> Er {
        unit(call(SIGNAL_SEMAPHORE, sem, 0, 0, 0))
    }
    pub fn twai_sem(sem: u64, timeout: Timeout) -> Er {
        unit(call(WAIT_SEMAPHORE, sem, timeout_register(timeout), 0, 0))
    }
    pub fn set_flg(flag: u64, bits: u32) -> Er {
        unit(call(SET_FLAG, flag, u64::from(bits), 0, 0))
    }
    pub fn clr_flg(flag: u64, keep: u32) -> Er {
        unit(call(CLEAR_FLAG, flag, u64::from(keep), 0, 0))
    }
    /// `mode`: [`crate::svc::FLAG_OR`] and/or [`crate::svc::FLAG_CLEAR`]; returns the pattern.
    pub fn twai_flg(flag: u64, pattern: u32, mode: u64, timeout: Timeout) -> Er<u32> {
        let value = call(
            WAIT_FLAG,
            flag,
            u64::from(pattern),
            mode,
            timeout_register(timeout),
        )?;
        Ok(value as u32)
    }
    pub fn tsnd_dtq(queue: u64, data: u64, timeout: Timeout) -> Er {
        unit(call(
            SEND_DATA_QUEUE,
            queue,
            data,
            timeout_register(timeout),
            0,
        ))
    }
    pub fn trcv_dtq(queue: u64, timeout: Timeout) -> Er<u64> {
        call(RECEIVE_DATA_QUEUE, queue, timeout_register(timeout), 0, 0)
    }
    pub fn sta_cyc(cyclic: u64) -> Er {
        unit(call(START_CYCLIC, cyclic, 0, 0, 0))
    }
    pub fn stp_cyc(cyclic: u64) -> Er {
        unit(call(STOP_CYCLIC, cyclic, 0, 0, 0))
    }
    /// One of the `crate::svc::STATE_*` values.
    pub fn ref_tsk_state(task: u64) -> Er<u64> {
        call(TASK_STATE, task, 0, 0, 0)
    }
}
