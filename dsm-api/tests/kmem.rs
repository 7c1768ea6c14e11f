//! Reading kernel objects from outside: the task list with thread rings, and pointers that
//! must be refused.

use dsm_api::kmem::{KernelMemory, ListFault, ListShape, TaskLists};
use dsm_api::test_objects::Objects;
use dsm_api::{Guest, GuestError, SysReg};
use dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64 as L;

const LISTS: TaskLists = TaskLists::new(L.task_struct.tasks, L.task_struct.thread_group, 0, 8);

#[test]
fn the_task_walk_sees_processes_and_threads() {
    let mut o = Objects::new();
    let a = o.spawn(1, "init", 0);
    let t = o.thread(a, 2);
    let b = o.spawn(3, "sh", 1000);
    let mem = KernelMemory::new(&o.g).unwrap();
    let mut seen = Vec::new();
    let n = mem
        .walk_tasks(&o.g, o.init_task, LISTS, 16, |task| {
            seen.push(task);
            Ok::<(), ListFault>(())
        })
        .unwrap();
    assert_eq!(seen, [o.init_task, a, t, b]);
    assert_eq!(n, 4);
    // The limit counts threads too.
    let r = mem.walk_tasks(&o.g, o.init_task, LISTS, 3, |_| Ok::<(), ListFault>(()));
    assert!(matches!(r, Err(ListFault::TooLong { .. })), "{r:?}");
}

#[test]
fn user_unmapped_and_outside_ram_pointers_are_refused() {
    let mut o = Objects::new();
    let mem = KernelMemory::new(&o.g).unwrap();
    assert!(matches!(
        mem.u64(&o.g, 0x4820_0000),
        Err(GuestError::Walk(_))
    ));
    assert!(matches!(
        mem.u64(&o.g, 0xffff_7000_0000_0000),
        Err(GuestError::Walk(_))
    ));
    // A list whose head points at a linear-map address past the end of RAM.
    let (_, head) = o.g.alloc_object(16);
    o.g.write_u64_kva(head, head + (1 << 30));
    let shape = ListShape { next: 0, prev: 8 };
    let r = mem.walk_list(&o.g, head, shape, 8, |_| Ok::<(), ListFault>(()));
    assert_eq!(
        r,
        Err(ListFault::Unreadable {
            at: head + (1 << 30)
        })
    );
    // No vCPU at EL1: the kernel's tables cannot be told apart from the trampoline's.
    for v in 0..o.g.vcpus() {
        o.g.set_sysreg(v, SysReg::Pstate, 0);
    }
    assert_eq!(
        KernelMemory::new(&o.g).err(),
        Some(GuestError::RegisterUnavailable(SysReg::Pstate))
    );
}
