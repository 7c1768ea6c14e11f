//! A long seeded random walk through the services, checking after every
//! step that the state is consistent and the most urgent task runs.

use super::*;

/// xorshift64*: small, deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn small(&mut self, n: u8) -> u8 {
        self.below(u64::from(n)) as u8
    }

    fn timeout(&mut self) -> Timeout {
        match self.below(4) {
            0 => Timeout::Poll,
            1 => Timeout::Forever,
            _ => Timeout::After(1 + self.below(300)),
        }
    }
}

const TASK_COUNT: u8 = 10;

fn random_config_tasks(rng: &mut Rng) -> [TaskConfig; TASK_COUNT as usize] {
    core::array::from_fn(|n| TaskConfig {
        // Few levels, so ties and FIFO order matter.
        priority: 1 + rng.small(4) * 5,
        entry: n,
        arg: 0,
        activate: rng.below(2) == 0,
    })
}

/// The running task is never less urgent than any ready task.
fn check_schedule(k: &Kernel) {
    let Some(running) = k.running() else {
        for n in 1..=TASK_COUNT {
            assert_ne!(k.task_state(tid(n)), Ok(TaskState::Ready));
        }
        return;
    };
    let top = k.task_priority(running).unwrap();
    for n in 1..=TASK_COUNT {
        if k.task_state(tid(n)) == Ok(TaskState::Ready) {
            assert!(k.task_priority(tid(n)).unwrap() >= top);
        }
    }
}

fn walk(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let tasks = random_config_tasks(&mut rng);
    let semaphores = [
        SemaphoreConfig {
            initial: 1,
            max: 3,
            order: WaitOrder::Priority,
        },
        SemaphoreConfig {
            initial: 0,
            max: 1,
            order: WaitOrder::Fifo,
        },
    ];
    let flags = [
        FlagConfig {
            initial: 0,
            multiple_waiters: true,
            order: WaitOrder::Priority,
        },
        FlagConfig {
            initial: 0,
            multiple_waiters: false,
            order: WaitOrder::Fifo,
        },
    ];
    let data_queues = [
        DataQueueConfig {
            capacity: 2,
            order: WaitOrder::Priority,
        },
        DataQueueConfig {
            capacity: 0,
            order: WaitOrder::Fifo,
        },
    ];
    let cyclics = [CyclicConfig {
        handler: 0,
        period: 97,
        phase: 13,
        start: true,
    }];
    let mut k = boot(&Config {
        tasks: &tasks,
        semaphores: &semaphores,
        flags: &flags,
        data_queues: &data_queues,
        cyclics: &cyclics,
    });
    let mut now: Ticks = 0;
    let mut blocked = 0usize;
    let mut released = 0usize;
    for step in 0..steps {
        // Ids one past the end exercise the error paths too.
        let t = tid(rng.small(TASK_COUNT + 1));
        let s = SemaphoreId(1 + rng.small(3));
        let f = FlagId(1 + rng.small(3));
        let q = DataQueueId(1 + rng.small(3));
        let interrupt = rng.below(4) == 0;
        if interrupt {
            k.enter_interrupt();
        }
        let before = snapshot(&k);
        let caller = k.running();
        let result: Result<Option<bool>, ErrorCode> = match rng.below(22) {
            0 => k.activate_task(t).map(|_| None),
            1 => k.terminate_task(t).map(|_| None),
            2 => k.exit_task().map(|_| None),
            3 => k
                .sleep_task(rng.timeout(), now)
                .map(|o| Some(o == Outcome::Blocked)),
            4 => k.wakeup_task(t).map(|_| None),
            5 => k.release_wait(t).map(|_| None),
            6 => k
                .delay_task(rng.below(200), now)
                .map(|o| Some(o == Outcome::Blocked)),
            7 => k.change_priority(t, rng.small(TMAX_TPRI + 2)).map(|_| None),
            8 => k.rotate_ready_queue(rng.small(TMAX_TPRI + 2)).map(|_| None),
            9 => k.signal_semaphore(s).map(|_| None),
            10 => k
                .wait_semaphore(s, rng.timeout(), now)
                .map(|o| Some(o == Outcome::Blocked)),
            11 => k.set_flag(f, 1 << rng.small(4)).map(|_| None),
            12 => k.clear_flag(f, rng.next() as u32).map(|_| None),
            13 => {
                let condition = FlagCondition {
                    pattern: rng.small(16).into(),
                    mode: if rng.below(2) == 0 {
                        FlagMode::And
                    } else {
                        FlagMode::Or
                    },
                    clear: rng.below(2) == 0,
                };
                k.wait_flag(f, condition, rng.timeout(), now)
                    .map(|o| Some(o == Outcome::Blocked))
            }
            14 => k
                .send_data_queue(q, step, rng.timeout(), now)
                .map(|o| Some(o == Outcome::Blocked)),
            15 => k.poll_send_data_queue(q, step).map(|_| None),
            16 => k
                .receive_data_queue(q, rng.timeout(), now)
                .map(|o| Some(o == Outcome::Blocked)),
            17 => k.cancel_wakeup(t).map(|_| None),
            18 => k
                .start_cyclic(CyclicId(1 + rng.small(2)), now)
                .map(|_| None),
            19 => k.stop_cyclic(CyclicId(1 + rng.small(2))).map(|_| None),
            _ => {
                now += rng.below(120);
                let report = k.on_timer(now);
                // Everything due has been processed.
                if let Some(deadline) = k.next_deadline() {
                    assert!(deadline > now);
                }
                for firing in &report.fired {
                    assert!(firing.deadline <= now);
                    let _ = k.wakeup_task(tid(1 + rng.small(TASK_COUNT)));
                }
                Ok(None)
            }
        };
        if let Err(error) = result {
            assert_eq!(
                snapshot(&k),
                before,
                "step {step}: failed {error:?} changed state"
            );
        }
        if result == Ok(Some(true)) {
            blocked += 1;
            let caller = caller.expect("only a running task blocks");
            assert!(matches!(
                k.task_state(caller),
                Ok(TaskState::Waiting { .. })
            ));
        }
        if let Err(problem) = k.check_invariants() {
            panic!("step {step}: {problem}");
        }
        if interrupt {
            k.exit_interrupt();
        }
        if rng.below(8) != 0 {
            let d = dispatch(&mut k);
            if matches!(d.resume, Resume::Released(_)) {
                released += 1;
            }
            check_schedule(&k);
        }
    }
    // The walk must actually have exercised blocking and releasing.
    assert!(blocked > steps / 100, "only {blocked} blocks");
    assert!(released > steps / 200, "only {released} releases");
    std::println!("seed {seed:#x}: {blocked} blocks, {released} releases");
}

#[test]
fn random_operations_keep_the_kernel_consistent() {
    for seed in [1, 0x5eed, 0xdead_beef, 42, 7_777_777] {
        walk(seed, 6_000);
    }
}
