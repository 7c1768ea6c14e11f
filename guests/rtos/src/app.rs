//! The boot-time application: service self-tests, then the dispatch-latency probe.
//!
//! Task `MAIN` (priority 8) runs the tests one after the other, printing one line each,
//! then starts `LATENCY` (priority 1, the highest) and waits for it to report.

use crate::arch::rtos::api::*;
use crate::arch::rtos::{self, CyclicHandler, Handlers};
use crate::arch::{power, timer};
use crate::boot::BootInfo;
use crate::kernel::*;
use crate::latency::{summarize, ticks_to_ns, Histogram, LatencyConfig};
use crate::println;
use crate::svc::{STATE_WAITING, TMO_FEVR};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Task ids, in configuration order (`MAIN` = 1 runs the tests).
const LATENCY: u64 = 2;
const HIGH: u64 = 3;
const SEM_WAITER: u64 = 4;
const FLAG_WAITER: u64 = 5;
const RECEIVER: u64 = 6;
const OVERFLOW: u64 = 7;

const SEM_TEST: u64 = 1;
const SEM_DONE: u64 = 2;
const FLAG_TEST: u64 = 1;
const DTQ_TEST: u64 = 1;
const DTQ_LATENCY: u64 = 2;
const CYC_LATENCY: u64 = 1;

const FOREVER: Timeout = Timeout::Forever;
const _: () = assert!(TMO_FEVR == -1);

static SAMPLES: AtomicU32 = AtomicU32::new(0);
static PERIOD_US: AtomicU32 = AtomicU32::new(0);
static OVERFLOW_TEST: AtomicBool = AtomicBool::new(false);
/// Probe round after round, never powering off (boot argument bit 2).
static CONTINUOUS: AtomicBool = AtomicBool::new(false);
/// Firings that produced no sample: skipped periods and full hand-over queues.
static LOST: AtomicU64 = AtomicU64::new(0);
static FLAG_SEEN: AtomicU32 = AtomicU32::new(0);

/// Who ran when, as letters; tests compare it with the order they expect.
struct Trace {
    marks: [AtomicU8; 16],
    len: AtomicUsize,
}

static TRACE: Trace = Trace {
    marks: [const { AtomicU8::new(0) }; 16],
    len: AtomicUsize::new(0),
};

impl Trace {
    fn clear(&self) {
        self.len.store(0, Ordering::SeqCst);
    }

    fn mark(&self, mark: u8) {
        let at = self.len.fetch_add(1, Ordering::SeqCst);
        if let Some(slot) = self.marks.get(at) {
            slot.store(mark, Ordering::SeqCst);
        }
    }

    /// `H,L` style.
    fn render(&self) -> heapless::String<40> {
        let mut out = heapless::String::new();
        let len = self.len.load(Ordering::SeqCst).min(self.marks.len());
        for (i, mark) in self.marks[..len].iter().enumerate() {
            if i > 0 {
                let _ = out.push(',');
            }
            let _ = out.push(char::from(mark.load(Ordering::SeqCst)));
        }
        out
    }
}

fn ticks_us(micros: u64) -> Ticks {
    ticks_from_micros(micros, timer::frequency())
}

/// Prints `test <name>: <detail> ok`, or `... FAILED`.
fn report(name: &str, ok: bool, detail: core::fmt::Arguments<'_>) -> bool {
    let verdict = if ok { "ok" } else { "FAILED" };
    println!("test {name}: {detail} {verdict}");
    ok
}

extern "C" fn main_task(_: usize) {
    let mut ok = true;
    ok &= test_preempt();
    ok &= test_semaphore();
    ok &= test_bad_id();
    ok &= test_event_flag();
    ok &= test_data_queue();
    ok &= test_delay();
    ok &= test_timeout();
    if OVERFLOW_TEST.load(Ordering::SeqCst) {
        println!("test stack overflow: starting a task that overflows its stack");
        let _ = act_tsk(OVERFLOW);
    }
    let probe = act_tsk(LATENCY).and_then(|()| twai_sem(SEM_DONE, FOREVER));
    if let Err(error) = probe {
        println!("latency probe failed: {error:?}");
        ok = false;
    }
    if ok {
        println!("rtos: done, powering off");
    } else {
        println!("rtos: FAILED, stopping");
    }
    power::finish(ok)
}

fn test_preempt() -> bool {
    TRACE.clear();
    let result = act_tsk(HIGH);
    TRACE.mark(b'L');
    let order = TRACE.render();
    report(
        "preempt",
        result.is_ok() && order == "H,L",
        format_args!("order {order}"),
    )
}

extern "C" fn high_task(_: usize) {
    TRACE.mark(b'H');
}

fn test_semaphore() -> bool {
    TRACE.clear();
    let started = act_tsk(SEM_WAITER);
    let waiting = ref_tsk_state(SEM_WAITER) == Ok(STATE_WAITING);
    TRACE.mark(b's');
    let signalled = sig_sem(SEM_TEST);
    TRACE.mark(b'm');
    let order = TRACE.render();
    let ok = started.is_ok() && waiting && signalled.is_ok() && order == "b,s,w,m";
    if ok {
        report("semaphore", true, format_args!("blocked and woken"))
    } else {
        report(
            "semaphore",
            false,
            format_args!("order {order}, waiting {waiting}, signal {signalled:?}"),
        )
    }
}

extern "C" fn sem_waiter_task(_: usize) {
    TRACE.mark(b'b');
    let woken = twai_sem(SEM_TEST, FOREVER);
    TRACE.mark(if woken.is_ok() { b'w' } else { b'x' });
}

fn test_bad_id() -> bool {
    let result = act_tsk(99);
    let shown = match result {
        Err(E_ID) => "E_ID",
        Ok(()) => "E_OK",
        Err(_) => "another error",
    };
    report(
        "bad id",
        result == Err(E_ID),
        format_args!("activate_task(99) = {shown}"),
    )
}

fn test_event_flag() -> bool {
    FLAG_SEEN.store(0, Ordering::SeqCst);
    let started = act_tsk(FLAG_WAITER);
    let half = set_flg(FLAG_TEST, 0b01);
    let still_waiting = ref_tsk_state(FLAG_WAITER) == Ok(STATE_WAITING);
    let full = set_flg(FLAG_TEST, 0b10);
    let seen = FLAG_SEEN.load(Ordering::SeqCst);
    let _ = clr_flg(FLAG_TEST, 0);
    report(
        "event flag",
        started.is_ok() && half.is_ok() && full.is_ok() && still_waiting && seen == 0b11,
        format_args!("AND wait released with {seen:#x}"),
    )
}

extern "C" fn flag_waiter_task(_: usize) {
    if let Ok(pattern) = twai_flg(FLAG_TEST, 0b11, 0, FOREVER) {
        FLAG_SEEN.store(pattern, Ordering::SeqCst);
    }
}

fn test_data_queue() -> bool {
    TRACE.clear();
    let mut sent = (1..=3).all(|n| tsnd_dtq(DTQ_TEST, n, Timeout::Poll).is_ok());
    // The receiver takes 1..3 at once and blocks on the empty queue for the fourth.
    let started = act_tsk(RECEIVER);
    let waiting = ref_tsk_state(RECEIVER) == Ok(STATE_WAITING);
    sent &= tsnd_dtq(DTQ_TEST, 4, Timeout::Poll).is_ok();
    let order = TRACE.render();
    report(
        "data queue",
        sent && started.is_ok() && waiting && order == "1,2,3,4",
        format_args!("received {order} in order"),
    )
}

extern "C" fn receiver_task(_: usize) {
    for _ in 0..4 {
        match trcv_dtq(DTQ_TEST, FOREVER) {
            Ok(data) if data < 10 => TRACE.mark(b'0' + data as u8),
            _ => TRACE.mark(b'?'),
        }
    }
}

fn test_delay() -> bool {
    let asked = ticks_us(1_000);
    let before = timer::now();
    let result = dly_tsk(asked);
    let slept = timer::now() - before;
    report(
        "delay",
        result.is_ok() && slept >= asked,
        format_args!("dly_tsk(1000 us) slept at least 1000 us"),
    )
}

fn test_timeout() -> bool {
    let asked = ticks_us(500);
    let before = timer::now();
    let result = tslp_tsk(Timeout::After(asked));
    let slept = timer::now() - before;
    report(
        "timeout",
        result == Err(E_TMOUT) && slept >= asked,
        format_args!("sleep_task(500 us) = E_TMOUT"),
    )
}

/// Recurses until the guard page below its stack stops it.
extern "C" fn overflow_task(depth: usize) {
    let frame = [depth; 64];
    core::hint::black_box(&frame);
    if depth < usize::MAX {
        overflow_task(depth + 1);
    }
}

extern "C" fn latency_task(_: usize) {
    let samples = SAMPLES.load(Ordering::SeqCst) as usize;
    let period_us = PERIOD_US.load(Ordering::SeqCst);
    let Some(buffer) = rtos::take_sample_buffer() else {
        println!("latency probe: sample buffer already taken");
        return;
    };
    let buffer = &mut buffer[..samples];
    let period_ns = u64::from(period_us) * 1_000;
    if let Err(error) = sta_cyc(CYC_LATENCY) {
        println!("latency probe: sta_cyc failed: {error:?}");
        return;
    }
    loop {
        if !probe_round(buffer, period_ns) {
            return;
        }
        if !CONTINUOUS.load(Ordering::SeqCst) {
            break;
        }
    }
    let _ = stp_cyc(CYC_LATENCY);
    let _ = sig_sem(SEM_DONE);
}

/// Fills `buffer` with one latency sample per firing and prints their summary; `false` if
/// the probe broke down (already reported).
fn probe_round(buffer: &mut [u32], period_ns: u64) -> bool {
    let freq = timer::frequency();
    // The cyclic handler keeps firing between rounds (printing takes a while): drop what it
    // handed over meanwhile, so each round measures only its own firings.
    while trcv_dtq(DTQ_LATENCY, Timeout::Poll).is_ok() {}
    LOST.store(0, Ordering::SeqCst);
    for slot in buffer.iter_mut() {
        match trcv_dtq(DTQ_LATENCY, FOREVER) {
            Ok(deadline) => {
                let now = timer::latency_timestamp();
                *slot = ticks_to_ns(now.saturating_sub(deadline), freq);
            }
            Err(error) => {
                println!("latency probe: receive failed: {error:?}");
                return false;
            }
        }
    }
    let summary = summarize(buffer, period_ns, LOST.load(Ordering::SeqCst));
    // The distribution first: the host may end a run at a `latency` line, and must not cut
    // off a line still being sent. At most 128 buckets of up to 20 characters each.
    let mut hist = heapless::String::<2600>::new();
    let _ = write!(hist, "{}", Histogram::of(buffer));
    println!("{hist}");
    let mut line = heapless::String::<128>::new();
    let _ = write!(line, "{summary}");
    println!("{line}");
    true
}

/// The cyclic handler: hands the firing's deadline to the latency task.
fn latency_tick(kernel: &mut Kernel, firing: &CyclicFiring) {
    let mut lost = firing.missed;
    if kernel
        .poll_send_data_queue(DataQueueId(DTQ_LATENCY as u8), firing.deadline as usize)
        .is_err()
    {
        lost += 1;
    }
    if lost > 0 {
        LOST.fetch_add(lost, Ordering::SeqCst);
    }
}

static CYCLIC_HANDLERS: [CyclicHandler; 1] = [latency_tick];
static HANDLERS: Handlers = Handlers {
    cyclic: &CYCLIC_HANDLERS,
    interrupt: &[],
};

fn task(priority: u8, entry: extern "C" fn(usize), activate: bool) -> TaskConfig {
    TaskConfig {
        priority,
        entry: entry as *const () as usize,
        arg: 0,
        activate,
    }
}

/// Configures the kernel and starts it; never returns.
pub fn run(info: &BootInfo) -> ! {
    let latency = LatencyConfig::from_boot_arg(LatencyConfig::BUILD, info.boot_arg);
    SAMPLES.store(latency.samples, Ordering::SeqCst);
    PERIOD_US.store(latency.period_us, Ordering::SeqCst);
    OVERFLOW_TEST.store(info.stack_overflow_requested(), Ordering::SeqCst);
    CONTINUOUS.store(info.continuous_requested(), Ordering::SeqCst);
    println!(
        "rtos: latency probe: {} samples, period {} us{}",
        latency.samples,
        latency.period_us,
        if info.continuous_requested() {
            ", round after round"
        } else {
            ""
        }
    );

    let tasks = [
        task(8, main_task, true),
        task(1, latency_task, false),
        task(2, high_task, false),
        task(4, sem_waiter_task, false),
        task(4, flag_waiter_task, false),
        task(4, receiver_task, false),
        task(3, overflow_task, false),
    ];
    let binary = SemaphoreConfig {
        initial: 0,
        max: 1,
        order: WaitOrder::Priority,
    };
    let semaphores = [binary, binary];
    let flags = [FlagConfig {
        initial: 0,
        multiple_waiters: false,
        order: WaitOrder::Fifo,
    }];
    let queue = DataQueueConfig {
        capacity: 4,
        order: WaitOrder::Fifo,
    };
    let data_queues = [queue, queue];
    let period = ticks_from_micros(u64::from(latency.period_us), timer::frequency());
    let cyclics = [CyclicConfig {
        handler: 0,
        period,
        phase: period,
        start: false,
    }];
    let config = Config {
        tasks: &tasks,
        semaphores: &semaphores,
        flags: &flags,
        data_queues: &data_queues,
        cyclics: &cyclics,
    };
    rtos::start(&config, &HANDLERS, info.platform.is_bare())
}
