use super::*;

fn semaphore(initial: u32, max: u32, order: WaitOrder) -> SemaphoreConfig {
    SemaphoreConfig {
        initial,
        max,
        order,
    }
}

/// Makes each task of `order` the running one in turn and has it block.
fn block_in_turn(k: &mut Kernel, order: &[u8], mut block: impl FnMut(&mut Kernel) -> Outcome<()>) {
    for &n in order {
        // Make `n` the running task.
        let mut rotations = 0;
        while run(k) != Some(tid(n)) {
            rotations += 1;
            assert!(rotations < MAX_TASKS, "task {n} never reached the head");
            k.rotate_ready_queue(TPRI_SELF).unwrap();
        }
        assert_eq!(block(k), Outcome::Blocked);
    }
}

#[test]
fn semaphore_wakes_waiters_in_priority_then_fifo_order() {
    let tasks = [active(1), active(1), active(1), active(1), active(16)];
    let sems = [semaphore(0, 4, WaitOrder::Priority)];
    let mut k = boot(&Config {
        tasks: &tasks,
        semaphores: &sems,
        ..Config::default()
    });
    let s = SemaphoreId(1);
    // Give the waiters distinct priorities after they are queued.
    block_in_turn(&mut k, &[3, 1, 4, 2], |k| {
        k.wait_semaphore(s, Timeout::Forever, 0).unwrap()
    });
    k.change_priority(tid(1), 5).unwrap();
    k.change_priority(tid(2), 2).unwrap();
    k.change_priority(tid(3), 5).unwrap();
    k.change_priority(tid(4), 5).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(run(&mut k), Some(tid(5)));
    let mut woken = std::vec::Vec::new();
    for _ in 0..4 {
        k.signal_semaphore(s).unwrap();
        let d = dispatch(&mut k);
        assert_eq!(d.resume, Resume::Released(Ok(WaitValue::None)));
        woken.push(d.to.unwrap().0);
        k.exit_task().unwrap();
    }
    // Task 2 is most urgent; the rest share priority 5 and keep the order
    // in which their priorities were changed.
    assert_eq!(woken, [2, 1, 3, 4]);
    assert_eq!(k.semaphore_count(s), Ok(0));
}

#[test]
fn fifo_semaphore_ignores_priority() {
    let tasks = [active(3), active(3), active(16)];
    let sems = [semaphore(0, 1, WaitOrder::Fifo)];
    let mut k = boot(&Config {
        tasks: &tasks,
        semaphores: &sems,
        ..Config::default()
    });
    let s = SemaphoreId(1);
    block_in_turn(&mut k, &[2, 1], |k| {
        k.wait_semaphore(s, Timeout::Forever, 0).unwrap()
    });
    k.change_priority(tid(1), 1).unwrap();
    run(&mut k);
    k.signal_semaphore(s).unwrap();
    assert_eq!(run(&mut k), Some(tid(2)));
}

#[test]
fn semaphore_counts_up_to_its_maximum() {
    let tasks = [active(3)];
    let sems = [semaphore(1, 2, WaitOrder::Fifo)];
    let mut k = boot(&Config {
        tasks: &tasks,
        semaphores: &sems,
        ..Config::default()
    });
    let s = SemaphoreId(1);
    run(&mut k);
    k.signal_semaphore(s).unwrap();
    let before = snapshot(&k);
    assert_eq!(k.signal_semaphore(s), Err(E_QOVR));
    assert_eq!(snapshot(&k), before);
    assert_eq!(k.poll_semaphore(s), Ok(()));
    assert_eq!(
        k.wait_semaphore(s, Timeout::Forever, 0),
        Ok(Outcome::Done(()))
    );
    assert_eq!(k.poll_semaphore(s), Err(E_TMOUT));
    assert_eq!(k.wait_semaphore(s, Timeout::After(0), 0), Err(E_TMOUT));
    assert_eq!(k.semaphore_count(s), Ok(0));
}

fn flag(initial: u32, multiple_waiters: bool) -> FlagConfig {
    FlagConfig {
        initial,
        multiple_waiters,
        order: WaitOrder::Fifo,
    }
}

fn when(pattern: u32, mode: FlagMode, clear: bool) -> FlagCondition {
    FlagCondition {
        pattern,
        mode,
        clear,
    }
}

#[test]
fn flag_and_waits_for_every_bit() {
    let tasks = [active(1), active(9)];
    let flags = [flag(0, false)];
    let mut k = boot(&Config {
        tasks: &tasks,
        flags: &flags,
        ..Config::default()
    });
    let f = FlagId(1);
    run(&mut k);
    let condition = when(0b011, FlagMode::And, false);
    assert_eq!(
        k.wait_flag(f, condition, Timeout::Forever, 0),
        Ok(Outcome::Blocked)
    );
    run(&mut k);
    k.set_flag(f, 0b001).unwrap();
    assert_eq!(run(&mut k), Some(tid(2)));
    k.set_flag(f, 0b110).unwrap();
    let d = dispatch(&mut k);
    assert_eq!(d.to, Some(tid(1)));
    assert_eq!(d.resume, Resume::Released(Ok(WaitValue::Pattern(0b111))));
    assert_eq!(k.flag_pattern(f), Ok(0b111), "no clear requested");
}

#[test]
fn flag_or_waits_for_any_bit_and_clears_on_request() {
    let tasks = [active(1), active(9)];
    let flags = [flag(0, false)];
    let mut k = boot(&Config {
        tasks: &tasks,
        flags: &flags,
        ..Config::default()
    });
    let f = FlagId(1);
    run(&mut k);
    let condition = when(0b1100, FlagMode::Or, true);
    k.wait_flag(f, condition, Timeout::Forever, 0).unwrap();
    run(&mut k);
    k.set_flag(f, 0b0011).unwrap();
    assert!(!k.needs_dispatch());
    k.set_flag(f, 0b0100).unwrap();
    assert_eq!(
        dispatch(&mut k).resume,
        Resume::Released(Ok(WaitValue::Pattern(0b0111)))
    );
    assert_eq!(k.flag_pattern(f), Ok(0));
    // Already satisfied: no wait at all.
    k.set_flag(f, 0b1000).unwrap();
    assert_eq!(
        k.wait_flag(f, when(0b1100, FlagMode::Or, false), Timeout::Poll, 0),
        Ok(Outcome::Done(0b1000))
    );
    assert_eq!(
        k.poll_flag(f, when(0b0001, FlagMode::Or, false)),
        Err(E_TMOUT)
    );
}

#[test]
fn clearing_waiter_stops_later_releases() {
    let tasks = [active(1), active(1), active(1), active(9)];
    let flags = [flag(0, true)];
    let mut k = boot(&Config {
        tasks: &tasks,
        flags: &flags,
        ..Config::default()
    });
    let f = FlagId(1);
    let conditions = [
        when(0b01, FlagMode::Or, false),
        when(0b01, FlagMode::Or, true),
        when(0b01, FlagMode::Or, false),
    ];
    for condition in conditions {
        run(&mut k);
        k.wait_flag(f, condition, Timeout::Forever, 0).unwrap();
    }
    assert_eq!(run(&mut k), Some(tid(4)));
    k.set_flag(f, 0b01).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.flag_pattern(f), Ok(0));
    assert_eq!(k.task_state(tid(1)), Ok(TaskState::Ready));
    assert_eq!(k.task_state(tid(2)), Ok(TaskState::Ready));
    assert!(matches!(
        k.task_state(tid(3)),
        Ok(TaskState::Waiting { .. })
    ));
}

#[test]
fn flag_rules() {
    let tasks = [active(1), active(1), active(9)];
    let flags = [flag(0b1111, false)];
    let mut k = boot(&Config {
        tasks: &tasks,
        flags: &flags,
        ..Config::default()
    });
    let f = FlagId(1);
    run(&mut k);
    k.clear_flag(f, 0b0110).unwrap();
    assert_eq!(k.flag_pattern(f), Ok(0b0110));
    assert_eq!(
        k.wait_flag(f, when(0, FlagMode::Or, false), Timeout::Forever, 0),
        Err(E_PAR)
    );
    k.wait_flag(f, when(0b1, FlagMode::Or, false), Timeout::Forever, 0)
        .unwrap();
    run(&mut k);
    let before = snapshot(&k);
    assert_eq!(
        k.wait_flag(f, when(0b1, FlagMode::Or, false), Timeout::Forever, 0),
        Err(E_ILUSE),
        "single-waiter flag"
    );
    assert_eq!(snapshot(&k), before);
}

fn data_queue(capacity: usize) -> DataQueueConfig {
    DataQueueConfig {
        capacity,
        order: WaitOrder::Fifo,
    }
}

#[test]
fn data_queue_full_and_empty() {
    let tasks = [active(1), active(9)];
    let queues = [data_queue(2)];
    let mut k = boot(&Config {
        tasks: &tasks,
        data_queues: &queues,
        ..Config::default()
    });
    let q = DataQueueId(1);
    run(&mut k);
    assert_eq!(k.poll_receive_data_queue(q), Err(E_TMOUT));
    k.poll_send_data_queue(q, 10).unwrap();
    assert_eq!(
        k.send_data_queue(q, 11, Timeout::Forever, 0),
        Ok(Outcome::Done(()))
    );
    assert_eq!(k.poll_send_data_queue(q, 12), Err(E_TMOUT));
    assert_eq!(k.send_data_queue(q, 12, Timeout::Poll, 0), Err(E_TMOUT));
    assert_eq!(k.data_queue_len(q), Ok(2));
    // A blocked sender's data joins the queue once there is room.
    assert_eq!(
        k.send_data_queue(q, 12, Timeout::Forever, 0),
        Ok(Outcome::Blocked)
    );
    assert_eq!(run(&mut k), Some(tid(2)));
    assert_eq!(k.poll_receive_data_queue(q), Ok(10));
    assert_eq!(
        dispatch(&mut k).resume,
        Resume::Released(Ok(WaitValue::None))
    );
    assert_eq!(k.data_queue_len(q), Ok(2));
    assert_eq!(k.poll_receive_data_queue(q), Ok(11));
    assert_eq!(
        k.receive_data_queue(q, Timeout::Forever, 0),
        Ok(Outcome::Done(12))
    );
    assert_eq!(k.data_queue_len(q), Ok(0));
}

#[test]
fn data_queue_hands_data_to_a_waiting_receiver() {
    let tasks = [active(1), active(9)];
    let queues = [data_queue(4)];
    let mut k = boot(&Config {
        tasks: &tasks,
        data_queues: &queues,
        ..Config::default()
    });
    let q = DataQueueId(1);
    run(&mut k);
    assert_eq!(
        k.receive_data_queue(q, Timeout::After(50), 0),
        Ok(Outcome::Blocked)
    );
    assert_eq!(run(&mut k), Some(tid(2)));
    k.enter_interrupt();
    k.poll_send_data_queue(q, 0xdead).unwrap();
    k.exit_interrupt();
    assert_eq!(k.data_queue_len(q), Ok(0), "never buffered");
    assert_eq!(k.next_deadline(), None);
    let d = dispatch(&mut k);
    assert_eq!(d.to, Some(tid(1)));
    assert_eq!(d.resume, Resume::Released(Ok(WaitValue::Data(0xdead))));
    assert_eq!(
        wait_result_registers(Ok(WaitValue::Data(0xdead))),
        (0, 0xdead)
    );
}

#[test]
fn zero_capacity_queue_is_a_rendezvous() {
    let tasks = [active(1), active(9)];
    let queues = [data_queue(0)];
    let mut k = boot(&Config {
        tasks: &tasks,
        data_queues: &queues,
        ..Config::default()
    });
    let q = DataQueueId(1);
    run(&mut k);
    assert_eq!(k.poll_send_data_queue(q, 1), Err(E_TMOUT));
    k.send_data_queue(q, 7, Timeout::Forever, 0).unwrap();
    assert_eq!(run(&mut k), Some(tid(2)));
    assert_eq!(k.poll_receive_data_queue(q), Ok(7));
    assert_eq!(
        dispatch(&mut k).resume,
        Resume::Released(Ok(WaitValue::None))
    );
    assert_eq!(k.data_queue_len(q), Ok(0));
}

#[test]
fn timed_out_sender_does_not_deliver() {
    let tasks = [active(1), active(9)];
    let queues = [data_queue(0)];
    let mut k = boot(&Config {
        tasks: &tasks,
        data_queues: &queues,
        ..Config::default()
    });
    let q = DataQueueId(1);
    run(&mut k);
    k.send_data_queue(q, 7, Timeout::After(10), 0).unwrap();
    run(&mut k);
    k.on_timer(10);
    assert_eq!(dispatch(&mut k).resume, Resume::Released(Err(E_TMOUT)));
    assert_eq!(k.poll_receive_data_queue(q), Err(E_TMOUT));
}
