use super::*;

#[test]
fn timer_queue_sorts_and_keeps_ties_in_insertion_order() {
    let mut q = TimerQueue::new();
    assert_eq!(q.next_deadline(), None);
    q.insert(30, TimerEvent::Task(0)).unwrap();
    q.insert(10, TimerEvent::Task(1)).unwrap();
    q.insert(20, TimerEvent::Cyclic(0)).unwrap();
    q.insert(10, TimerEvent::Task(2)).unwrap();
    q.insert(10, TimerEvent::Cyclic(1)).unwrap();
    assert_eq!(q.next_deadline(), Some(10));
    let order: std::vec::Vec<_> = q.entries().iter().map(|e| (e.deadline, e.event)).collect();
    assert_eq!(
        order,
        [
            (10, TimerEvent::Task(1)),
            (10, TimerEvent::Task(2)),
            (10, TimerEvent::Cyclic(1)),
            (20, TimerEvent::Cyclic(0)),
            (30, TimerEvent::Task(0)),
        ]
    );
    assert_eq!(q.remove(TimerEvent::Task(2)), Some(10));
    assert_eq!(q.remove(TimerEvent::Task(2)), None);
    assert_eq!(q.pop_expired(9), None);
    assert_eq!(
        q.pop_expired(15).map(|e| e.event),
        Some(TimerEvent::Task(1))
    );
    assert_eq!(
        q.pop_expired(15).map(|e| e.event),
        Some(TimerEvent::Cyclic(1))
    );
    assert_eq!(q.pop_expired(15), None);
    assert_eq!(q.next_deadline(), Some(20));
    assert_eq!(q.len(), 2);
}

#[test]
fn timer_queue_reports_overflow() {
    let mut q = TimerQueue::new();
    for n in 0..TIMER_CAPACITY {
        q.insert(n as u64, TimerEvent::Task(n as u8)).unwrap();
    }
    assert_eq!(q.insert(0, TimerEvent::Task(0)), Err(E_QOVR));
    assert_eq!(q.len(), TIMER_CAPACITY);
}

#[test]
fn sleep_times_out_with_tmout_at_its_deadline() {
    let tasks = [active(2), active(9)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    run(&mut k);
    assert_eq!(k.sleep_task(Timeout::After(100), 50), Ok(Outcome::Blocked));
    assert_eq!(k.next_deadline(), Some(150));
    assert_eq!(
        k.task_state(tid(1)),
        Ok(TaskState::Waiting {
            reason: WaitReason::Sleep,
            deadline: Some(150)
        })
    );
    assert_eq!(run(&mut k), Some(tid(2)));
    k.enter_interrupt();
    assert_eq!(k.on_timer(149).timeouts, 0);
    assert!(!k.needs_dispatch());
    let report = k.on_timer(150);
    k.exit_interrupt();
    assert_eq!(report.timeouts, 1);
    assert!(report.fired.is_empty());
    assert_eq!(k.next_deadline(), None);
    let d = dispatch(&mut k);
    assert_eq!(d.to, Some(tid(1)));
    assert_eq!(d.resume, Resume::Released(Err(E_TMOUT)));
}

#[test]
fn earlier_timeouts_fire_first_and_ties_in_order() {
    let tasks = [active(1), active(2), active(2), active(9)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    assert_eq!(run(&mut k), Some(tid(1)));
    k.sleep_task(Timeout::After(300), 0).unwrap();
    assert_eq!(run(&mut k), Some(tid(2)));
    k.rotate_ready_queue(TPRI_SELF).unwrap();
    // Task 3 queues its timeout first, task 2 second, both for 200.
    assert_eq!(run(&mut k), Some(tid(3)));
    k.sleep_task(Timeout::After(190), 10).unwrap();
    assert_eq!(run(&mut k), Some(tid(2)));
    k.sleep_task(Timeout::After(180), 20).unwrap();
    assert_eq!(run(&mut k), Some(tid(4)));
    assert_eq!(k.next_deadline(), Some(200));
    assert_eq!(k.on_timer(250).timeouts, 2);
    assert_eq!(k.next_deadline(), Some(300));
    assert_eq!(run(&mut k), Some(tid(3)));
    k.exit_task().unwrap();
    assert_eq!(run(&mut k), Some(tid(2)));
    k.exit_task().unwrap();
    assert_eq!(run(&mut k), Some(tid(4)));
    assert_eq!(k.on_timer(300).timeouts, 1);
    assert_eq!(run(&mut k), Some(tid(1)));
}

#[test]
fn delay_ends_with_ok() {
    let tasks = [active(2), active(9)];
    let mut k = boot(&Config {
        tasks: &tasks,
        ..Config::default()
    });
    run(&mut k);
    assert_eq!(k.delay_task(40, 1000), Ok(Outcome::Blocked));
    run(&mut k);
    k.on_timer(1040);
    assert_eq!(
        dispatch(&mut k).resume,
        Resume::Released(Ok(WaitValue::None))
    );
}

#[test]
fn signal_before_the_timeout_cancels_it() {
    let tasks = [active(2), active(9)];
    let sems = [SemaphoreConfig {
        initial: 0,
        max: 2,
        order: WaitOrder::Priority,
    }];
    let mut k = boot(&Config {
        tasks: &tasks,
        semaphores: &sems,
        ..Config::default()
    });
    run(&mut k);
    k.wait_semaphore(SemaphoreId(1), Timeout::After(500), 0)
        .unwrap();
    run(&mut k);
    k.signal_semaphore(SemaphoreId(1)).unwrap();
    assert_eq!(k.next_deadline(), None);
    assert_eq!(k.on_timer(10_000).timeouts, 0);
    assert_eq!(
        dispatch(&mut k).resume,
        Resume::Released(Ok(WaitValue::None))
    );
}

fn cyclic(period: Ticks, phase: Ticks, start: bool) -> CyclicConfig {
    CyclicConfig {
        handler: 0xc0,
        period,
        phase,
        start,
    }
}

#[test]
fn cyclic_rearms_on_its_grid_without_drift() {
    let cyclics = [cyclic(1000, 500, true)];
    let mut k = boot(&Config {
        cyclics: &cyclics,
        ..Config::default()
    });
    let c = CyclicId(1);
    assert_eq!(k.next_deadline(), Some(500));
    assert!(k.on_timer(499).fired.is_empty());
    let report = k.on_timer(500);
    assert_eq!(
        report.fired.as_slice(),
        [CyclicFiring {
            id: c,
            handler: 0xc0,
            deadline: 500,
            missed: 0
        }]
    );
    assert_eq!(k.next_deadline(), Some(1500));
    // Serviced 200 ticks late: the next deadline stays on the grid.
    let report = k.on_timer(1700);
    assert_eq!(report.fired[0].deadline, 1500);
    assert_eq!(k.cyclic_next_deadline(c), Ok(Some(2500)));
    assert_eq!(k.cyclic_last_deadline(c), Ok(Some(1500)));
    assert_eq!(k.cyclic_overruns(c), Ok(0));
    k.check_invariants().unwrap();
}

#[test]
fn cyclic_counts_overruns_and_skips_missed_periods() {
    let cyclics = [cyclic(1000, 500, true)];
    let mut k = boot(&Config {
        cyclics: &cyclics,
        ..Config::default()
    });
    let c = CyclicId(1);
    k.on_timer(500);
    // Deadlines 1500, 2500 and 3500 have all passed by 3600.
    let report = k.on_timer(3600);
    assert_eq!(report.fired.len(), 1);
    assert_eq!(report.fired[0].deadline, 1500);
    assert_eq!(report.fired[0].missed, 2);
    assert_eq!(k.cyclic_overruns(c), Ok(2));
    assert_eq!(k.next_deadline(), Some(4500));
    k.on_timer(4500);
    assert_eq!(k.cyclic_overruns(c), Ok(2));
    assert_eq!(k.next_deadline(), Some(5500));
}

#[test]
fn cyclic_start_and_stop() {
    let cyclics = [cyclic(100, 30, false), cyclic(70, 0, false)];
    let tasks = [active(1)];
    let mut k = boot(&Config {
        tasks: &tasks,
        cyclics: &cyclics,
        ..Config::default()
    });
    run(&mut k);
    assert_eq!(k.next_deadline(), None);
    k.start_cyclic(CyclicId(1), 1000).unwrap();
    k.start_cyclic(CyclicId(2), 1000).unwrap();
    assert_eq!(k.next_deadline(), Some(1000));
    let fired: std::vec::Vec<_> = k.on_timer(1030).fired.iter().map(|f| f.id).collect();
    assert_eq!(fired, [CyclicId(2), CyclicId(1)]);
    // Restarting re-bases the phase on the new start time.
    k.start_cyclic(CyclicId(1), 2000).unwrap();
    assert_eq!(k.cyclic_next_deadline(CyclicId(1)), Ok(Some(2030)));
    k.stop_cyclic(CyclicId(2)).unwrap();
    assert_eq!(k.cyclic_next_deadline(CyclicId(2)), Ok(None));
    assert_eq!(k.next_deadline(), Some(2030));
    k.stop_cyclic(CyclicId(1)).unwrap();
    assert_eq!(k.next_deadline(), None);
    k.check_invariants().unwrap();
}

/// The dispatch-latency probe: a cyclic handler wakes the most urgent task;
/// the arch subtracts the reported deadline from the counter at task start.
#[test]
fn cyclic_wakeup_exposes_the_programmed_deadline() {
    const PERIOD: Ticks = 62_500;
    let tasks = [active(1), active(16)];
    let cyclics = [cyclic(PERIOD, PERIOD, true)];
    let mut k = boot(&Config {
        tasks: &tasks,
        cyclics: &cyclics,
        ..Config::default()
    });
    assert_eq!(run(&mut k), Some(tid(1)));
    k.sleep_task(Timeout::Forever, 0).unwrap();
    assert_eq!(run(&mut k), Some(tid(2)));
    for n in 1..=3 {
        let programmed = k.next_deadline().unwrap();
        assert_eq!(programmed, n * PERIOD);
        let now = programmed + 17;
        k.enter_interrupt();
        let report = k.on_timer(now);
        for firing in &report.fired {
            assert_eq!(firing.handler, 0xc0);
            k.wakeup_task(tid(1)).unwrap();
        }
        k.exit_interrupt();
        assert_eq!(report.fired[0].deadline, programmed);
        let d = dispatch(&mut k);
        assert_eq!(d.to, Some(tid(1)));
        assert_eq!(d.resume, Resume::Released(Ok(WaitValue::None)));
        assert_eq!(k.cyclic_last_deadline(CyclicId(1)), Ok(Some(programmed)));
        k.sleep_task(Timeout::Forever, now + 5).unwrap();
        assert_eq!(run(&mut k), Some(tid(2)));
    }
}

#[test]
fn micros_convert_to_ticks_rounding_up() {
    assert_eq!(ticks_from_micros(1000, 62_500_000), 62_500);
    assert_eq!(ticks_from_micros(1, 1_000_000), 1);
    assert_eq!(ticks_from_micros(1, 62_500_001), 63);
    assert_eq!(ticks_from_micros(u64::MAX, u64::MAX), u64::MAX);
}
