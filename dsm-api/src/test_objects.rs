//! Kernel objects built inside a [`MemGuest`] at the BTF offsets of the pinned kernel (feature
//! `test-support`): tasks on the kernel's own `init_task.tasks`, their pids in
//! `init_pid_ns`'s IDR, credentials, and per-CPU run queues, so the cross-view checkers are
//! tested on the real `Image`'s data symbols and layouts.

use std::vec::Vec;

use dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64 as L;

use crate::guest::Guest;
use crate::test_support::MemGuest;
use crate::xref::data_symbol;

/// Slots of one `xa_node`; the test IDR is a single leaf node, so pids are below this.
pub const IDR_SLOTS: u64 = 64;

/// A Linux system under construction in a [`MemGuest`].
pub struct Objects {
    pub g: MemGuest,
    pub init_task: u64,
    /// The IDR's leaf node (`xa_node`, shift 0).
    pub idr_node: u64,
    /// VA of `init_pid_ns.idr.idr_rt.xa_head`.
    pub xa_head: u64,
    /// Each CPU's `rq` (set up by [`Objects::new`] for every vCPU), and its idle task.
    pub rqs: Vec<(u64, u64)>,
    /// The `user_struct` made for each uid (as `alloc_uid` shares one per uid).
    users: Vec<(u32, u64)>,
}

impl Objects {
    /// The real kernel with an empty pid IDR and idle run queues on every vCPU.
    pub fn new() -> Self {
        let mut g = MemGuest::linux();
        let init_task = data_symbol(&g, "init_task").unwrap();
        let ns = data_symbol(&g, "init_pid_ns").unwrap();
        let p = L.pid_idr;
        let (_, node) = g.alloc_object(p.node_slots + 8 * p.node_slots_len);
        let xa_head = ns + p.ns_idr + p.idr_rt + p.xa_head;
        // An internal entry: the node's address with tag 2.
        g.write_u64_kva(xa_head, node | 2);
        let runqueues = data_symbol(&g, "runqueues").unwrap();
        let offsets = data_symbol(&g, "__per_cpu_offset").unwrap();
        let mut o = Objects {
            g,
            init_task,
            idr_node: node,
            xa_head,
            rqs: Vec::new(),
            users: Vec::new(),
        };
        for cpu in 0..o.g.vcpus() as u64 {
            let (_, rq) = o.g.alloc_object(L.rq.size);
            o.g.write_u64_kva(offsets + 8 * cpu, rq.wrapping_sub(runqueues));
            let idle = o.bare_task(0, "swapper");
            o.g.write_u64_kva(rq + L.rq.idle, idle);
            o.g.write_u64_kva(rq + L.rq.curr, idle);
            for prio in 0..L.rq.rt_queue_len {
                o.g.list_init(rq + L.rq.rt + L.rq.rt_active + L.rq.rt_queue + 16 * prio);
            }
            o.rqs.push((rq, idle));
        }
        o
    }

    /// A `cred` with every uid and gid set to `uid`, `usage` references, and the
    /// `user_struct` of `uid`.
    pub fn cred(&mut self, uid: u32, usage: u64) -> u64 {
        let c = L.cred;
        let (_, cred) = self.g.alloc_object(c.size);
        for off in [
            c.uid, c.gid, c.suid, c.sgid, c.euid, c.egid, c.fsuid, c.fsgid,
        ] {
            self.g.write_kva(cred + off, &uid.to_le_bytes());
        }
        self.g.write_u64_kva(cred + c.usage, usage);
        let user = self.user_struct(uid);
        self.g.write_u64_kva(cred + c.user, user);
        cred
    }

    /// The one `user_struct` of `uid` (made at first use).
    pub fn user_struct(&mut self, uid: u32) -> u64 {
        if let Some(&(_, user)) = self.users.iter().find(|(u, _)| *u == uid) {
            return user;
        }
        let (_, user) = self.g.alloc_object(L.cred.user_uid + 8);
        self.g.write_kva(user + L.cred.user_uid, &uid.to_le_bytes());
        self.users.push((uid, user));
        user
    }

    /// Writes one 32-bit id field of a `cred`.
    pub fn set_id(&mut self, cred: u64, field: u64, v: u32) {
        self.g.write_kva(cred + field, &v.to_le_bytes());
    }

    /// A `task_struct` on no list: its own leader, an empty thread ring, parent `init_task`.
    pub fn bare_task(&mut self, pid: u32, comm: &str) -> u64 {
        let t = L.task_struct;
        let (_, task) = self.g.alloc_object(t.size);
        self.g.write_kva(task + t.pid, &pid.to_le_bytes());
        self.g.write_kva(task + t.tgid, &pid.to_le_bytes());
        self.g.write_kva(task + t.comm, comm.as_bytes());
        self.g.write_u64_kva(task + t.group_leader, task);
        self.g.write_u64_kva(task + t.real_parent, self.init_task);
        self.g.list_init(task + t.tasks);
        self.g.list_init(task + t.thread_group);
        self.g.list_init(task + t.children);
        self.g.list_init(task + t.sibling);
        task
    }

    /// A process as `fork` leaves it: on the task list, its pid in the IDR, with a fresh
    /// `cred` of `uid` shared by `cred` and `real_cred` (two references).
    pub fn spawn(&mut self, pid: u32, comm: &str, uid: u32) -> u64 {
        let task = self.bare_task(pid, comm);
        self.g.list_add_tail(
            self.init_task + L.task_struct.tasks,
            task + L.task_struct.tasks,
        );
        self.g.list_add_tail(
            self.init_task + L.task_struct.children,
            task + L.task_struct.sibling,
        );
        self.attach_pid(task, pid);
        let cred = self.cred(uid, 2);
        self.set_creds(task, cred, cred);
        task
    }

    /// Makes `parent` the `real_parent` of the process `task` (moves it to its `children`).
    pub fn reparent(&mut self, task: u64, parent: u64) {
        let t = L.task_struct;
        self.g.list_del(task + t.sibling);
        self.g.list_add_tail(parent + t.children, task + t.sibling);
        self.g.write_u64_kva(task + t.real_parent, parent);
    }

    /// Unlinks `task` from its `struct pid` (the pid stays allocated in the IDR).
    pub fn unlink_pid(&mut self, task: u64) {
        let pid = self.g.read_u64_kva(task + L.task_struct.thread_pid);
        let head = pid + L.pid.tasks + 8 * L.pid.type_pid;
        self.g.write_u64_kva(head, 0);
    }

    /// A thread of `leader`: on its `thread_group` ring, not on the task list; shares the
    /// leader's `cred`.
    pub fn thread(&mut self, leader: u64, pid: u32) -> u64 {
        let t = L.task_struct;
        let task = self.bare_task(pid, "worker");
        self.g.write_u64_kva(task + t.group_leader, leader);
        self.g
            .list_add_tail(leader + t.thread_group, task + t.thread_group);
        self.attach_pid(task, pid);
        let cred = self.g.read_u64_kva(leader + t.cred);
        let usage = self.g.read_u64_kva(cred + L.cred.usage);
        self.g.write_u64_kva(cred + L.cred.usage, usage + 2);
        self.set_creds(task, cred, cred);
        task
    }

    pub fn set_creds(&mut self, task: u64, real_cred: u64, cred: u64) {
        self.g
            .write_u64_kva(task + L.task_struct.real_cred, real_cred);
        self.g.write_u64_kva(task + L.task_struct.cred, cred);
    }

    /// A `struct pid` for `nr` whose PIDTYPE_PID chain holds `task`, in the IDR slot `nr`.
    pub fn attach_pid(&mut self, task: u64, nr: u32) {
        assert!(u64::from(nr) < IDR_SLOTS, "test IDR holds pids below 64");
        let p = L.pid;
        let (_, pid) = self.g.alloc_object(p.size + p.upid_size);
        self.g
            .write_kva(pid + p.numbers + p.upid_nr, &nr.to_le_bytes());
        let head = pid + p.tasks + 8 * p.type_pid;
        let link = task + L.task_struct.pid_links + L.hlist_node.size * p.type_pid;
        self.g.write_u64_kva(head, link);
        self.g.write_u64_kva(link + L.hlist_node.pprev, head);
        self.g.write_u64_kva(task + L.task_struct.thread_pid, pid);
        let slot = self.idr_node + L.pid_idr.node_slots + 8 * u64::from(nr);
        self.g.write_u64_kva(slot, pid);
    }

    /// Empties IDR slot `nr` (what `free_pid` does).
    pub fn detach_pid(&mut self, nr: u32) {
        let slot = self.idr_node + L.pid_idr.node_slots + 8 * u64::from(nr);
        self.g.write_u64_kva(slot, 0);
    }

    /// Makes `task` the one running on `cpu`.
    pub fn run(&mut self, cpu: usize, task: u64) {
        let rq = self.rqs[cpu].0;
        self.g.write_u64_kva(rq + L.rq.curr, task);
    }

    /// Queues the entity `se` (its `run_node`) in the CFS tree of `cfs_rq`: as the root, or
    /// as the left child of the leftmost node (the tree needs no balance for a reader).
    fn cfs_insert(&mut self, cfs_rq: u64, se: u64) {
        let rb = L.rb;
        let node = se + L.sched_entity.run_node;
        let mut link = cfs_rq + L.rq.cfs_tasks_timeline + rb.root;
        loop {
            let at = self.g.read_u64_kva(link);
            if at == 0 {
                break;
            }
            link = at + rb.left;
        }
        self.g.write_u64_kva(link, node);
        self.g
            .write_u64_kva(cfs_rq + L.rq.cfs_tasks_timeline + rb.leftmost, node);
    }

    /// Makes `task` runnable on `cpu`'s CFS queue (not running).
    pub fn enqueue(&mut self, cpu: usize, task: u64) {
        let cfs_rq = self.rqs[cpu].0 + L.rq.cfs;
        self.cfs_insert(cfs_rq, task + L.task_struct.se);
    }

    /// Makes `task` runnable inside a task group on `cpu`: a group entity on the root
    /// queue whose own `cfs_rq` (`my_q`) holds the task.
    pub fn enqueue_in_group(&mut self, cpu: usize, task: u64) {
        let (_, group_se) = self.g.alloc_object(L.sched_entity.my_q + 8);
        let (_, group_rq) = self.g.alloc_object(L.rq.cfs_tasks_timeline + 16);
        self.g
            .write_u64_kva(group_se + L.sched_entity.my_q, group_rq);
        let cfs_rq = self.rqs[cpu].0 + L.rq.cfs;
        self.cfs_insert(cfs_rq, group_se);
        self.cfs_insert(group_rq, task + L.task_struct.se);
    }

    /// Makes `task` runnable on `cpu`'s RT queue at `prio`.
    pub fn enqueue_rt(&mut self, cpu: usize, task: u64, prio: u64) {
        let q = &L.rq;
        let head = self.rqs[cpu].0 + q.rt + q.rt_active + q.rt_queue + 16 * prio;
        let node = task + L.task_struct.rt + L.sched_entity.rt_run_list;
        self.g.list_add_tail(head, node);
    }

    /// Unlinks a process from the task list (DKOM task hiding).
    pub fn hide(&mut self, task: u64) {
        self.g.list_del(task + L.task_struct.tasks);
    }
}

impl Default for Objects {
    fn default() -> Self {
        Self::new()
    }
}
