use super::*;

#[test]
fn error_codes_have_the_uitron_values() {
    let expected = [
        (E_OK, 0),
        (E_SYS, -5),
        (E_NOSPT, -9),
        (E_RSFN, -10),
        (E_RSATR, -11),
        (E_PAR, -17),
        (E_ID, -18),
        (E_CTX, -25),
        (E_MACV, -26),
        (E_OACV, -27),
        (E_ILUSE, -28),
        (E_NOMEM, -33),
        (E_NOID, -34),
        (E_OBJ, -41),
        (E_NOEXS, -42),
        (E_QOVR, -43),
        (E_RLWAI, -49),
        (E_TMOUT, -50),
        (E_DLT, -51),
        (E_CLS, -52),
        (E_WBLK, -57),
        (E_BOVR, -58),
    ];
    assert_eq!(expected.len(), ErrorCode::ALL.len());
    for (error, value) in expected {
        assert_eq!(error.code(), value, "{error:?}");
        assert_eq!(ErrorCode::from_code(value), Some(error));
    }
    assert_eq!(ErrorCode::from_code(-1), None);
}

const TASKS: [TaskConfig; 3] = [
    TaskConfig {
        priority: 2,
        entry: 1,
        arg: 0,
        activate: true,
    },
    TaskConfig {
        priority: 8,
        entry: 2,
        arg: 0,
        activate: true,
    },
    TaskConfig {
        priority: 8,
        entry: 3,
        arg: 0,
        activate: false,
    },
];
const SEMAPHORES: [SemaphoreConfig; 1] = [SemaphoreConfig {
    initial: 0,
    max: 1,
    order: WaitOrder::Priority,
}];
const FLAGS: [FlagConfig; 1] = [FlagConfig {
    initial: 0,
    multiple_waiters: true,
    order: WaitOrder::Fifo,
}];
const DATA_QUEUES: [DataQueueConfig; 1] = [DataQueueConfig {
    capacity: 1,
    order: WaitOrder::Fifo,
}];
const CYCLICS: [CyclicConfig; 1] = [CyclicConfig {
    handler: 9,
    period: 100,
    phase: 0,
    start: false,
}];

/// One of each object, with task 1 running.
fn system() -> Kernel {
    let mut k = boot(&Config {
        tasks: &TASKS,
        semaphores: &SEMAPHORES,
        flags: &FLAGS,
        data_queues: &DATA_QUEUES,
        cyclics: &CYCLICS,
    });
    assert_eq!(run(&mut k), Some(tid(1)));
    k
}

/// Runs `call`, expects `error`, and checks nothing changed.
fn rejects<T: core::fmt::Debug>(
    k: &mut Kernel,
    error: ErrorCode,
    call: impl FnOnce(&mut Kernel) -> Result<T, ErrorCode>,
) {
    let before = snapshot(k);
    let result = call(k);
    assert!(
        matches!(&result, Err(e) if *e == error),
        "expected {error:?}, got {result:?}"
    );
    assert_eq!(snapshot(k), before, "a rejected call changed the state");
}

const ANY_FLAG: FlagCondition = FlagCondition {
    pattern: 1,
    mode: FlagMode::Or,
    clear: false,
};

#[test]
fn every_service_rejects_unknown_ids() {
    let mut k = system();
    let t = tid(4);
    let (s, f, q, c) = (SemaphoreId(2), FlagId(2), DataQueueId(2), CyclicId(2));
    rejects(&mut k, E_ID, |k| k.activate_task(t));
    rejects(&mut k, E_ID, |k| k.terminate_task(t));
    rejects(&mut k, E_ID, |k| k.wakeup_task(t));
    rejects(&mut k, E_ID, |k| k.cancel_wakeup(t));
    rejects(&mut k, E_ID, |k| k.release_wait(t));
    rejects(&mut k, E_ID, |k| k.change_priority(t, 3));
    rejects(&mut k, E_ID, |k| k.task_state(t));
    rejects(&mut k, E_ID, |k| k.task_priority(t));
    for s in [SemaphoreId(0), s] {
        rejects(&mut k, E_ID, |k| k.signal_semaphore(s));
        rejects(&mut k, E_ID, |k| k.wait_semaphore(s, Timeout::Forever, 0));
        rejects(&mut k, E_ID, |k| k.poll_semaphore(s));
        rejects(&mut k, E_ID, |k| k.semaphore_count(s));
    }
    for f in [FlagId(0), f] {
        rejects(&mut k, E_ID, |k| k.set_flag(f, 1));
        rejects(&mut k, E_ID, |k| k.clear_flag(f, 0));
        rejects(&mut k, E_ID, |k| {
            k.wait_flag(f, ANY_FLAG, Timeout::Forever, 0)
        });
        rejects(&mut k, E_ID, |k| k.poll_flag(f, ANY_FLAG));
        rejects(&mut k, E_ID, |k| k.flag_pattern(f));
    }
    for q in [DataQueueId(0), q] {
        rejects(&mut k, E_ID, |k| {
            k.send_data_queue(q, 1, Timeout::Forever, 0)
        });
        rejects(&mut k, E_ID, |k| k.poll_send_data_queue(q, 1));
        rejects(&mut k, E_ID, |k| {
            k.receive_data_queue(q, Timeout::Forever, 0)
        });
        rejects(&mut k, E_ID, |k| k.poll_receive_data_queue(q));
        rejects(&mut k, E_ID, |k| k.data_queue_len(q));
    }
    for c in [CyclicId(0), c] {
        rejects(&mut k, E_ID, |k| k.start_cyclic(c, 0));
        rejects(&mut k, E_ID, |k| k.stop_cyclic(c));
        rejects(&mut k, E_ID, |k| k.cyclic_overruns(c));
        rejects(&mut k, E_ID, |k| k.cyclic_next_deadline(c));
        rejects(&mut k, E_ID, |k| k.cyclic_last_deadline(c));
    }
    // There is no running task to stand for TSK_SELF in an interrupt.
    k.enter_interrupt();
    rejects(&mut k, E_ID, |k| k.activate_task(TaskId::SELF));
    rejects(&mut k, E_ID, |k| k.wakeup_task(TaskId::SELF));
    rejects(&mut k, E_ID, |k| k.release_wait(TaskId::SELF));
}

#[test]
fn bad_priorities_are_rejected() {
    let mut k = system();
    for priority in [TMAX_TPRI + 1, 200] {
        rejects(&mut k, E_PAR, |k| k.change_priority(tid(2), priority));
        rejects(&mut k, E_PAR, |k| k.rotate_ready_queue(priority));
    }
    for priority in [0, TMAX_INTPRI + 1] {
        rejects(&mut k, E_PAR, |k| k.define_interrupt(27, priority, 1));
    }
    rejects(&mut k, E_PAR, |k| k.define_interrupt(MAX_INTID + 1, 1, 1));
    rejects(&mut k, E_PAR, |k| k.enable_interrupt(MAX_INTID + 1));
    rejects(&mut k, E_PAR, |k| k.disable_interrupt(u32::MAX));
    rejects(&mut k, E_OBJ, |k| k.change_priority(tid(3), 3));
    rejects(&mut k, E_OBJ, |k| k.task_priority(tid(3)));
    for priority in [0, TMAX_TPRI + 1] {
        let tasks = [task(priority)];
        let config = Config {
            tasks: &tasks,
            ..Config::default()
        };
        assert_eq!(Kernel::new(&config, 0).err(), Some(E_PAR));
    }
}

#[test]
fn bad_configurations_are_rejected() {
    let cases: [(Config<'_>, ErrorCode); 4] = [
        (
            Config {
                semaphores: &[SemaphoreConfig {
                    initial: 2,
                    max: 1,
                    order: WaitOrder::Fifo,
                }],
                ..Config::default()
            },
            E_PAR,
        ),
        (
            Config {
                cyclics: &[CyclicConfig {
                    period: 0,
                    ..CYCLICS[0]
                }],
                ..Config::default()
            },
            E_PAR,
        ),
        (
            Config {
                data_queues: &[DataQueueConfig {
                    capacity: DATA_QUEUE_CAPACITY + 1,
                    order: WaitOrder::Fifo,
                }],
                ..Config::default()
            },
            E_NOMEM,
        ),
        (
            Config {
                tasks: &[TASKS[0]; MAX_TASKS + 1],
                ..Config::default()
            },
            E_NOMEM,
        ),
    ];
    for (config, error) in cases {
        assert_eq!(Kernel::new(&config, 0).err(), Some(error), "{config:?}");
    }
}

#[test]
fn overflows_are_rejected() {
    let mut k = system();
    k.activate_task(tid(2)).unwrap();
    rejects(&mut k, E_QOVR, |k| k.activate_task(tid(2)));
    k.signal_semaphore(SemaphoreId(1)).unwrap();
    rejects(&mut k, E_QOVR, |k| k.signal_semaphore(SemaphoreId(1)));
    for _ in 0..MAX_WAKEUPS {
        k.wakeup_task(tid(2)).unwrap();
    }
    rejects(&mut k, E_QOVR, |k| k.wakeup_task(tid(2)));
    k.poll_send_data_queue(DataQueueId(1), 5).unwrap();
    rejects(&mut k, E_TMOUT, |k| {
        k.poll_send_data_queue(DataQueueId(1), 6)
    });
    rejects(&mut k, E_OBJ, |k| k.wakeup_task(tid(3)));
}

#[test]
fn task_only_services_fail_in_interrupts() {
    let mut k = system();
    k.define_interrupt(33, 4, 7).unwrap();
    k.enter_interrupt();
    let (t, s, f, q, c) = (
        tid(2),
        SemaphoreId(1),
        FlagId(1),
        DataQueueId(1),
        CyclicId(1),
    );
    rejects(&mut k, E_CTX, |k| k.dispatch());
    rejects(&mut k, E_CTX, |k| k.terminate_task(t));
    rejects(&mut k, E_CTX, |k| k.exit_task());
    rejects(&mut k, E_CTX, |k| k.sleep_task(Timeout::Forever, 0));
    rejects(&mut k, E_CTX, |k| k.delay_task(10, 0));
    rejects(&mut k, E_CTX, |k| k.cancel_wakeup(t));
    rejects(&mut k, E_CTX, |k| k.change_priority(t, 3));
    rejects(&mut k, E_CTX, |k| k.wait_semaphore(s, Timeout::Forever, 0));
    rejects(&mut k, E_CTX, |k| k.poll_semaphore(s));
    rejects(&mut k, E_CTX, |k| k.clear_flag(f, 0));
    rejects(&mut k, E_CTX, |k| {
        k.wait_flag(f, ANY_FLAG, Timeout::Forever, 0)
    });
    rejects(&mut k, E_CTX, |k| k.poll_flag(f, ANY_FLAG));
    rejects(&mut k, E_CTX, |k| {
        k.send_data_queue(q, 1, Timeout::Forever, 0)
    });
    rejects(&mut k, E_CTX, |k| {
        k.receive_data_queue(q, Timeout::Forever, 0)
    });
    rejects(&mut k, E_CTX, |k| k.poll_receive_data_queue(q));
    rejects(&mut k, E_CTX, |k| k.start_cyclic(c, 0));
    rejects(&mut k, E_CTX, |k| k.stop_cyclic(c));
    rejects(&mut k, E_CTX, |k| k.define_interrupt(34, 4, 7));
    // Nested interrupts are still interrupt context.
    k.enter_interrupt();
    k.exit_interrupt();
    rejects(&mut k, E_CTX, |k| k.exit_task());
    // The interrupt-safe ones work.
    k.activate_task(tid(3)).unwrap();
    k.wakeup_task(t).unwrap();
    k.signal_semaphore(s).unwrap();
    k.set_flag(f, 1).unwrap();
    k.poll_send_data_queue(q, 1).unwrap();
    k.rotate_ready_queue(8).unwrap();
    assert!(k.disable_interrupt(33).is_ok());
    assert!(k.enable_interrupt(33).is_ok());
    k.exit_interrupt();
    k.check_invariants().unwrap();
    assert_eq!(k.exit_task(), Ok(()));
}

#[test]
fn task_only_services_need_a_running_task() {
    let tasks = [task(3)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    assert_eq!(run(&mut k), None);
    rejects(&mut k, E_CTX, |k| k.exit_task());
    rejects(&mut k, E_CTX, |k| k.sleep_task(Timeout::Forever, 0));
    rejects(&mut k, E_PAR, |k| k.rotate_ready_queue(TPRI_SELF));
    // A task that has just blocked cannot call again before a dispatch.
    k.activate_task(tid(1)).unwrap();
    run(&mut k);
    k.sleep_task(Timeout::Forever, 0).unwrap();
    rejects(&mut k, E_CTX, |k| k.delay_task(1, 0));
}

#[test]
fn interrupt_table() {
    let mut k = system();
    let line = k.define_interrupt(27, 2, 0xabc).unwrap();
    assert_eq!(
        line,
        InterruptLine {
            intid: 27,
            priority: 2,
            handler: 0xabc,
            enabled: false
        }
    );
    assert_eq!(line.gic_priority(), 0x20);
    assert!(k.enable_interrupt(27).unwrap().enabled);
    // Redefinition keeps the enable state and changes the rest.
    let line = k.define_interrupt(27, 3, 0xdef).unwrap();
    assert_eq!(
        (line.priority, line.handler, line.enabled),
        (3, 0xdef, true)
    );
    assert_eq!(k.interrupt_line(27), Some(line));
    assert!(!k.disable_interrupt(27).unwrap().enabled);
    rejects(&mut k, E_OBJ, |k| k.enable_interrupt(28));
    assert_eq!(k.interrupt_line(28), None);
    for intid in 100..100 + MAX_INTERRUPTS as u32 - 1 {
        k.define_interrupt(intid, 1, 0).unwrap();
    }
    assert_eq!(k.interrupt_lines().len(), MAX_INTERRUPTS);
    rejects(&mut k, E_NOID, |k| k.define_interrupt(999, 1, 0));
}
