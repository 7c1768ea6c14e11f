//! The checker on the real Debian kernel, with tasks, pids and run queues built at the BTF
//! offsets around the kernel's own `init_task`, `init_pid_ns` and `runqueues`.

use dsm_api::test_objects::Objects;
use dsm_api::{Budget, CheckError, Checker, Progress};
use dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64 as L;
use monitor_hidden_tasks::{HiddenTasksChecker, NAME, PASS_COST, PF_EXITING};

/// init (1), a daemon with two threads (10, 11, 12), a shell (20), a workload running on
/// CPU 1 (30).
fn system() -> (Objects, Vec<u64>) {
    let mut o = Objects::new();
    let init = o.spawn(1, "init", 0);
    let daemon = o.spawn(10, "daemon", 0);
    o.thread(daemon, 11);
    o.thread(daemon, 12);
    let sh = o.spawn(20, "sh", 1000);
    let work = o.spawn(30, "work", 1000);
    o.run(1, work);
    (o, vec![init, daemon, sh, work])
}

fn baseline(o: &mut Objects) -> HiddenTasksChecker {
    let mut c = HiddenTasksChecker::new(L);
    c.baseline(&mut o.g).unwrap();
    c
}

/// Two checks: a finding is raised once two passes in a row see it.
fn pass(c: &mut HiddenTasksChecker, o: &mut Objects) {
    for _ in 0..2 {
        let mut b = Budget::new(PASS_COST);
        assert_eq!(c.check(&mut o.g, &mut b), Ok(Progress::Done));
    }
}

fn whats(o: &Objects) -> Vec<&'static str> {
    o.g.findings.iter().map(|f| f.what).collect()
}

#[test]
fn a_clean_system_raises_nothing() {
    let (mut o, _) = system();
    let mut c = baseline(&mut o);
    pass(&mut c, &mut o);
    assert!(o.g.findings.is_empty(), "{:?}", o.g.findings);
    assert_eq!(o.g.heartbeats, [NAME; 2]);
    assert!(!o.g.paused);
}

#[test]
fn a_task_unlinked_from_the_list_is_found_through_its_pid() {
    let (mut o, t) = system();
    let mut c = baseline(&mut o);
    let sh = t[2];
    o.hide(sh);
    pass(&mut c, &mut o);
    assert_eq!(whats(&o), ["task in the pid IDR hidden from the task list"]);
    let f = o.g.findings[0];
    assert_eq!(f.checker, NAME);
    assert_eq!((f.at, f.found), (sh, 20));
    assert_eq!(f.expected, o.init_task + L.task_struct.tasks);
    pass(&mut c, &mut o);
    assert_eq!(o.g.findings.len(), 1, "raised once while it lasts");
}

#[test]
fn a_running_task_hidden_from_list_and_idr_is_found_on_its_cpu() {
    let (mut o, t) = system();
    let mut c = baseline(&mut o);
    let work = t[3];
    o.hide(work);
    o.detach_pid(30);
    pass(&mut c, &mut o);
    assert_eq!(whats(&o), ["running task hidden from the task list"]);
    assert_eq!(o.g.findings[0].at, work);
}

#[test]
fn a_sleeping_task_unlinked_from_list_and_pid_is_found_on_its_parents_children() {
    // What the hide_task module does: `tasks` and the pid links go, the task sleeps.
    let (mut o, t) = system();
    let sleeper = o.spawn(40, "sleep", 1000);
    o.reparent(sleeper, t[2]);
    let mut c = baseline(&mut o);
    o.hide(sleeper);
    o.unlink_pid(sleeper);
    pass(&mut c, &mut o);
    assert_eq!(whats(&o), ["child task hidden from the task list"]);
    let f = o.g.findings[0];
    assert_eq!((f.at, f.found), (sleeper, 40));
    pass(&mut c, &mut o);
    assert_eq!(o.g.findings.len(), 1, "raised once while it lasts");
}

#[test]
fn a_runnable_task_hidden_everywhere_else_is_found_on_its_run_queue() {
    // Unlinked from the list, its pid and its parent's children; waiting to run.
    for queue in ["cfs", "group", "rt"] {
        let (mut o, t) = system();
        let mut c = baseline(&mut o);
        let sh = t[2];
        o.hide(sh);
        o.unlink_pid(sh);
        o.g.list_del(sh + L.task_struct.sibling);
        pass(&mut c, &mut o);
        assert!(o.g.findings.is_empty(), "asleep: nowhere to be seen");
        match queue {
            "cfs" => o.enqueue(0, sh),
            "group" => o.enqueue_in_group(1, sh),
            _ => o.enqueue_rt(2, sh, 10),
        }
        pass(&mut c, &mut o);
        assert_eq!(
            whats(&o),
            ["queued task hidden from the task list"],
            "{queue}"
        );
        assert_eq!(o.g.findings[0].at, sh);
    }
}

#[test]
fn visible_queued_tasks_raise_nothing() {
    let (mut o, t) = system();
    o.enqueue(0, t[0]);
    o.enqueue(0, t[1]);
    o.enqueue_in_group(1, t[2]);
    o.enqueue_rt(2, t[3], 99);
    let mut c = baseline(&mut o);
    pass(&mut c, &mut o);
    assert!(o.g.findings.is_empty(), "{:?}", o.g.findings);
}

#[test]
fn a_broken_children_list_is_a_finding() {
    let (mut o, t) = system();
    let mut c = baseline(&mut o);
    // The shell's `sibling.prev` no longer points back at init's children head.
    let sh = t[2];
    o.g.write_u64_kva(sh + L.task_struct.sibling + L.list_head.prev, 0x1234);
    pass(&mut c, &mut o);
    assert!(
        whats(&o).contains(&"children list malformed"),
        "{:?}",
        whats(&o)
    );
}

#[test]
fn hiding_a_leader_hides_its_threads_too() {
    let (mut o, t) = system();
    let mut c = baseline(&mut o);
    o.hide(t[1]);
    pass(&mut c, &mut o);
    let mut pids: Vec<u64> = o.g.findings.iter().map(|f| f.found).collect();
    pids.sort();
    assert_eq!(pids, [10, 11, 12]);
}

#[test]
fn idle_and_exiting_tasks_on_a_cpu_are_not_hidden_tasks() {
    let (mut o, _) = system();
    let mut c = baseline(&mut o);
    // A task that reaped itself runs on briefly, off every list, with PF_EXITING.
    let dying = o.bare_task(40, "dying");
    o.g.write_kva(dying + L.task_struct.flags, &PF_EXITING.to_le_bytes());
    o.run(0, dying);
    pass(&mut c, &mut o);
    assert!(o.g.findings.is_empty(), "{:?}", o.g.findings);
    o.g.write_kva(dying + L.task_struct.flags, &0u32.to_le_bytes());
    pass(&mut c, &mut o);
    assert_eq!(whats(&o), ["running task hidden from the task list"]);
}

#[test]
fn a_task_list_out_of_ram_is_a_finding_without_cross_view_noise() {
    let (mut o, t) = system();
    let mut c = baseline(&mut o);
    o.g.write_u64_kva(t[1] + L.task_struct.tasks, 0xffff_7000_0000_0000);
    pass(&mut c, &mut o);
    assert_eq!(whats(&o), ["list link unreadable"]);
}

#[test]
fn malformed_idr_nodes_are_bounded_findings() {
    let (mut o, _) = system();
    let mut c = baseline(&mut o);
    // A leaf (shift 0) whose slot points back at itself as a node.
    let slot = o.idr_node + L.pid_idr.node_slots + 8 * 50;
    o.g.write_u64_kva(slot, o.idr_node | 2);
    pass(&mut c, &mut o);
    assert_eq!(whats(&o), ["pid IDR malformed"]);
    assert_eq!(o.g.findings[0].at, o.idr_node);
    // An interior node (shift 6) pointing at itself: its child's shift is not 0.
    let (mut o, _) = system();
    let mut c = baseline(&mut o);
    o.g.write_kva(o.idr_node + L.pid_idr.node_shift, &[6]);
    o.g.write_u64_kva(o.idr_node + L.pid_idr.node_slots, o.idr_node | 2);
    pass(&mut c, &mut o);
    assert_eq!(whats(&o), ["pid IDR malformed"]);
    // A root shift that no tree has.
    let (mut o, _) = system();
    let mut c = baseline(&mut o);
    o.g.write_kva(o.idr_node + L.pid_idr.node_shift, &[7]);
    pass(&mut c, &mut o);
    assert_eq!(whats(&o), ["pid IDR malformed"]);
}

#[test]
fn an_idr_too_big_to_be_real_is_a_finding() {
    let (mut o, _) = system();
    let mut c = baseline(&mut o);
    // A root of shift 6 whose 64 slots all hold the same valid-looking leaf: the walk visits
    // it 64 times, and a chain of such roots multiplies that past the node limit.
    let leaf = o.idr_node;
    let mut child = leaf;
    for shift in [6u8, 12] {
        let (_, node) = o.g.alloc_object(L.pid_idr.node_slots + 8 * 64);
        o.g.write_kva(node + L.pid_idr.node_shift, &[shift]);
        for s in 0..64 {
            o.g.write_u64_kva(node + L.pid_idr.node_slots + 8 * s, child | 2);
        }
        child = node;
    }
    o.g.write_u64_kva(o.xa_head, child | 2);
    pass(&mut c, &mut o);
    assert_eq!(whats(&o), ["pid IDR malformed"]);
}

#[test]
fn budget_and_baseline_errors() {
    let (mut o, _) = system();
    let mut c = HiddenTasksChecker::new(L);
    assert_eq!(
        c.check(&mut o.g, &mut Budget::new(PASS_COST)),
        Err(CheckError::NoBaseline)
    );
    c.baseline(&mut o.g).unwrap();
    assert_eq!(
        c.check(&mut o.g, &mut Budget::new(3)),
        Err(CheckError::BudgetTooSmall)
    );
    assert!(!o.g.paused);
}
