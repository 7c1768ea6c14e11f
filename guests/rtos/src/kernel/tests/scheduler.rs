use super::*;

#[test]
fn fifo_within_one_priority() {
    let tasks = [task(5), task(5), task(5)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    for n in [2, 3, 1] {
        k.activate_task(tid(n)).unwrap();
    }
    k.check_invariants().unwrap();
    let mut order = std::vec::Vec::new();
    while let Some(running) = run(&mut k) {
        order.push(running.0);
        assert!(order.len() <= tasks.len(), "a task ran twice: {order:?}");
        k.exit_task().unwrap();
    }
    assert_eq!(order, [2, 3, 1]);
}

#[test]
fn most_urgent_priority_runs_first() {
    let tasks = [active(9), active(3), active(12), active(3)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    assert_eq!(k.schedule(), Some(tid(2)));
    let mut order = std::vec::Vec::new();
    while let Some(running) = run(&mut k) {
        order.push(running.0);
        assert!(order.len() <= tasks.len(), "a task ran twice: {order:?}");
        k.exit_task().unwrap();
    }
    assert_eq!(order, [2, 4, 1, 3]);
}

#[test]
fn first_dispatch_starts_task_at_its_entry() {
    let tasks = [active(4)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    let d = dispatch(&mut k);
    assert_eq!(d.from, None);
    assert_eq!(d.to, Some(tid(1)));
    assert_eq!(
        d.resume,
        Resume::Start {
            entry: tasks[0].entry,
            arg: tasks[0].arg
        }
    );
    assert_eq!(k.task_state(tid(1)), Ok(TaskState::Running));
    // Nothing changed: the same task continues untouched.
    assert_eq!(dispatch(&mut k).resume, Resume::Continue);
}

#[test]
fn activating_a_more_urgent_task_preempts() {
    let tasks = [active(8), task(2)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    assert_eq!(run(&mut k), Some(tid(1)));
    k.activate_task(tid(2)).unwrap();
    assert!(k.needs_dispatch());
    let d = dispatch(&mut k);
    assert_eq!((d.from, d.to), (Some(tid(1)), Some(tid(2))));
    assert!(matches!(d.resume, Resume::Start { .. }));
    assert_eq!(k.task_state(tid(1)), Ok(TaskState::Ready));
    k.exit_task().unwrap();
    let d = dispatch(&mut k);
    assert_eq!(d.to, Some(tid(1)));
    assert_eq!(d.resume, Resume::Continue);
}

#[test]
fn activating_a_less_urgent_task_does_not_preempt() {
    let tasks = [active(2), task(8), task(2)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    assert_eq!(run(&mut k), Some(tid(1)));
    k.activate_task(tid(2)).unwrap();
    k.activate_task(tid(3)).unwrap();
    assert!(!k.needs_dispatch());
    assert_eq!(run(&mut k), Some(tid(1)));
}

#[test]
fn preempted_task_resumes_before_its_equal_priority_peers() {
    let tasks = [active(5), active(5), task(1)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    assert_eq!(run(&mut k), Some(tid(1)));
    k.activate_task(tid(3)).unwrap();
    assert_eq!(run(&mut k), Some(tid(3)));
    k.exit_task().unwrap();
    assert_eq!(run(&mut k), Some(tid(1)));
}

#[test]
fn wakeup_preempts_and_delivers_ok() {
    let tasks = [active(2), active(6)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    assert_eq!(run(&mut k), Some(tid(1)));
    assert_eq!(k.sleep_task(Timeout::Forever, 0), Ok(Outcome::Blocked));
    assert_eq!(
        k.task_state(tid(1)),
        Ok(TaskState::Waiting {
            reason: WaitReason::Sleep,
            deadline: None
        })
    );
    assert_eq!(run(&mut k), Some(tid(2)));
    k.wakeup_task(tid(1)).unwrap();
    let d = dispatch(&mut k);
    assert_eq!((d.from, d.to), (Some(tid(2)), Some(tid(1))));
    assert_eq!(d.resume, Resume::Released(Ok(WaitValue::None)));
}

#[test]
fn wakeup_from_an_interrupt_switches_only_after_it_returns() {
    let tasks = [active(2), active(6)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    run(&mut k);
    k.sleep_task(Timeout::Forever, 0).unwrap();
    assert_eq!(run(&mut k), Some(tid(2)));
    k.enter_interrupt();
    k.wakeup_task(tid(1)).unwrap();
    assert_eq!(k.dispatch(), Err(E_CTX));
    assert_eq!(k.running(), Some(tid(2)));
    k.exit_interrupt();
    assert_eq!(run(&mut k), Some(tid(1)));
}

#[test]
fn queued_wakeups_are_consumed_by_sleep() {
    let tasks = [active(3)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    run(&mut k);
    k.wakeup_task(TaskId::SELF).unwrap();
    k.wakeup_task(tid(1)).unwrap();
    assert_eq!(k.sleep_task(Timeout::Forever, 0), Ok(Outcome::Done(())));
    assert_eq!(k.sleep_task(Timeout::Poll, 0), Ok(Outcome::Done(())));
    assert_eq!(k.sleep_task(Timeout::Poll, 0), Err(E_TMOUT));
    for _ in 0..MAX_WAKEUPS {
        k.wakeup_task(tid(1)).unwrap();
    }
    assert_eq!(k.wakeup_task(tid(1)), Err(E_QOVR));
    assert_eq!(k.cancel_wakeup(TaskId::SELF), Ok(MAX_WAKEUPS));
    assert_eq!(k.sleep_task(Timeout::Poll, 0), Err(E_TMOUT));
}

#[test]
fn round_robin_rotation() {
    let tasks = [active(7), active(7), active(7), active(3)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    assert_eq!(run(&mut k), Some(tid(4)));
    k.sleep_task(Timeout::Forever, 0).unwrap();
    assert_eq!(run(&mut k), Some(tid(1)));
    k.rotate_ready_queue(7).unwrap();
    assert_eq!(run(&mut k), Some(tid(2)));
    k.rotate_ready_queue(TPRI_SELF).unwrap();
    assert_eq!(run(&mut k), Some(tid(3)));
    // From a tick interrupt, as a time slice would.
    k.enter_interrupt();
    k.rotate_ready_queue(TPRI_SELF).unwrap();
    k.exit_interrupt();
    assert_eq!(run(&mut k), Some(tid(1)));
    // Rotating another level leaves the running one alone.
    k.rotate_ready_queue(3).unwrap();
    assert_eq!(run(&mut k), Some(tid(1)));
}

#[test]
fn change_priority_moves_to_the_tail_and_can_preempt() {
    let tasks = [active(5), active(5), active(9)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    assert_eq!(run(&mut k), Some(tid(1)));
    k.change_priority(tid(3), 5).unwrap();
    // Task 3 now follows task 2 at priority 5.
    k.change_priority(TaskId::SELF, 6).unwrap();
    assert_eq!(k.task_priority(tid(1)), Ok(6));
    assert_eq!(run(&mut k), Some(tid(2)));
    k.exit_task().unwrap();
    assert_eq!(run(&mut k), Some(tid(3)));
    k.change_priority(tid(1), 1).unwrap();
    assert_eq!(run(&mut k), Some(tid(1)));
    k.change_priority(TaskId::SELF, TPRI_INI).unwrap();
    assert_eq!(k.task_priority(TaskId::SELF), Ok(5));
    assert_eq!(run(&mut k), Some(tid(3)));
}

#[test]
fn queued_activation_restarts_after_exit() {
    let tasks = [active(4), task(6)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    run(&mut k);
    k.change_priority(TaskId::SELF, 2).unwrap();
    k.activate_task(TaskId::SELF).unwrap();
    assert_eq!(k.activate_task(tid(1)), Err(E_QOVR));
    k.exit_task().unwrap();
    let d = dispatch(&mut k);
    assert_eq!(d.to, Some(tid(1)));
    assert!(matches!(d.resume, Resume::Start { .. }));
    // A restart is back at the initial priority.
    assert_eq!(k.task_priority(tid(1)), Ok(4));
    k.exit_task().unwrap();
    assert_eq!(run(&mut k), None);
    assert_eq!(k.task_state(tid(1)), Ok(TaskState::Dormant));
}

#[test]
fn terminate_removes_a_waiting_task_everywhere() {
    let tasks = [active(2), active(5)];
    let sems = [SemaphoreConfig {
        initial: 0,
        max: 1,
        order: WaitOrder::Fifo,
    }];
    let mut k = boot(&Config {
        tasks: &tasks,
        semaphores: &sems,
        ..Config::default()
    });
    run(&mut k);
    k.wait_semaphore(SemaphoreId(1), Timeout::After(100), 0)
        .unwrap();
    assert_eq!(k.next_deadline(), Some(100));
    assert_eq!(run(&mut k), Some(tid(2)));
    k.terminate_task(tid(1)).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.task_state(tid(1)), Ok(TaskState::Dormant));
    assert_eq!(k.next_deadline(), None);
    // The signal is no longer consumed by the terminated task.
    k.signal_semaphore(SemaphoreId(1)).unwrap();
    assert_eq!(k.semaphore_count(SemaphoreId(1)), Ok(1));
    assert_eq!(k.terminate_task(tid(1)), Err(E_OBJ));
    assert_eq!(k.terminate_task(TaskId::SELF), Err(E_ILUSE));
}

#[test]
fn release_wait_delivers_rlwai() {
    let tasks = [active(2), active(5)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    run(&mut k);
    k.delay_task(1_000, 0).unwrap();
    run(&mut k);
    assert_eq!(k.wakeup_task(tid(1)), Ok(()), "a delay is not a sleep");
    assert!(!k.needs_dispatch());
    k.release_wait(tid(1)).unwrap();
    assert_eq!(dispatch(&mut k).resume, Resume::Released(Err(E_RLWAI)));
    assert_eq!(k.next_deadline(), None);
    assert_eq!(k.release_wait(tid(2)), Err(E_OBJ));
    assert_eq!(
        wait_result_registers(Err(E_RLWAI)),
        (-49, 0),
        "the code a task sees"
    );
}

#[test]
fn result_reaches_a_task_that_never_left_the_cpu() {
    let tasks = [active(2)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    run(&mut k);
    k.sleep_task(Timeout::Forever, 0).unwrap();
    // Woken by an interrupt before the arch got to switch away.
    k.enter_interrupt();
    k.wakeup_task(tid(1)).unwrap();
    k.exit_interrupt();
    let d = dispatch(&mut k);
    assert_eq!((d.from, d.to), (Some(tid(1)), Some(tid(1))));
    assert_eq!(d.resume, Resume::Released(Ok(WaitValue::None)));
}
