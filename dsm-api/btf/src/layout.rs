//! [`KernelLayout`]: the offsets and sizes the cross-view checkers (module list vs kobjects,
//! task list vs pid IDR and run queues, credentials) read kernel objects with, built from BTF
//! and rendered as Rust `const` source for the firmware.
//!
//! One table below defines the struct, how each number is derived, and how it renders, so the
//! three cannot drift apart.

use crate::format::Btf;
use crate::Error;
use core::fmt::{self, Write};

/// A number that could not be derived: which query, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutError {
    pub query: &'static str,
    pub error: Error,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.query, self.error)
    }
}

// The ways a number is derived; each takes the BTF and the table's string.
fn size(btf: &Btf<'_>, name: &str) -> Result<u64, Error> {
    btf.struct_size(name)
}
fn off(btf: &Btf<'_>, path: &str) -> Result<u64, Error> {
    btf.offset_of(path)
}
fn len(btf: &Btf<'_>, path: &str) -> Result<u64, Error> {
    btf.array_len(path)
}
fn fsize(btf: &Btf<'_>, path: &str) -> Result<u64, Error> {
    btf.field_size(path)
}
fn value(btf: &Btf<'_>, name: &str) -> Result<u64, Error> {
    u64::try_from(btf.enumerator(name)?).map_err(|_| Error::Overflow)
}

macro_rules! kernel_layout {
    ($(
        $(#[$group_doc:meta])*
        $Group:ident $group:ident {
            $( $(#[$doc:meta])* $field:ident = $how:ident($query:literal), )*
        }
    )*) => {
        $(
            $(#[$group_doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $Group {
                $( $(#[$doc])* pub $field: u64, )*
            }
        )*

        /// Offsets and sizes in bytes (lengths in elements, enumerators as values) of the
        /// kernel objects the cross-view checkers read.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct KernelLayout {
            $( pub $group: $Group, )*
        }

        impl KernelLayout {
            /// Derives every number from `btf`; the first one missing is the error.
            pub fn from_btf(btf: &Btf<'_>) -> Result<KernelLayout, LayoutError> {
                Ok(KernelLayout { $(
                    $group: $Group { $(
                        $field: $how(btf, $query).map_err(|error| LayoutError {
                            query: $query,
                            error,
                        })?,
                    )* },
                )* })
            }

            /// Calls `f(group, field, query, value)` for every number, in declaration order.
            pub fn for_each(&self, mut f: impl FnMut(&'static str, &'static str, &'static str, u64)) {
                $( $( f(stringify!($group), stringify!($field), $query, self.$group.$field); )* )*
            }

            /// Mutable access to every number, in declaration order (for tests and tools).
            pub fn for_each_mut(&mut self, mut f: impl FnMut(&'static str, &'static str, &mut u64)) {
                $( $( f(stringify!($group), stringify!($field), &mut self.$group.$field); )* )*
            }

            /// A layout with every number zero.
            pub const fn zeroed() -> KernelLayout {
                KernelLayout { $( $group: $Group { $( $field: 0, )* }, )* }
            }

            /// Writes `pub const <name>: KernelLayout = ...;` as Rust source. The text needs
            /// this module's types in scope.
            pub fn write_rust(&self, name: &str, w: &mut impl Write) -> fmt::Result {
                writeln!(w, "pub const {name}: KernelLayout = KernelLayout {{")?;
                $(
                    writeln!(w, "    {}: {} {{", stringify!($group), stringify!($Group))?;
                    $( writeln!(
                        w,
                        "        {}: {}, // {}({})",
                        stringify!($field),
                        self.$group.$field,
                        stringify!($how),
                        $query,
                    )?; )*
                    writeln!(w, "    }},")?;
                )*
                writeln!(w, "}};")
            }
        }
    };
}

kernel_layout! {
    /// `struct list_head`: the doubly linked lists of tasks, modules and kobjects.
    ListHead list_head {
        size = size("list_head"),
        next = off("list_head.next"),
        prev = off("list_head.prev"),
    }
    /// `struct hlist_node`: a pid's task chains.
    HlistNode hlist_node {
        size = size("hlist_node"),
        next = off("hlist_node.next"),
        pprev = off("hlist_node.pprev"),
    }
    /// `struct rb_node` and `struct rb_root_cached`: the CFS run-queue tree.
    RbTree rb {
        left = off("rb_node.rb_left"),
        right = off("rb_node.rb_right"),
        root = off("rb_root_cached.rb_root"),
        leftmost = off("rb_root_cached.rb_leftmost"),
    }
    /// `struct task_struct`.
    Task task_struct {
        size = size("task_struct"),
        state = off("task_struct.__state"),
        flags = off("task_struct.flags"),
        on_rq = off("task_struct.on_rq"),
        se = off("task_struct.se"),
        rt = off("task_struct.rt"),
        tasks = off("task_struct.tasks"),
        pid = off("task_struct.pid"),
        tgid = off("task_struct.tgid"),
        /// The parent that forked it (credential checks compare a new task with it).
        real_parent = off("task_struct.real_parent"),
        children = off("task_struct.children"),
        sibling = off("task_struct.sibling"),
        group_leader = off("task_struct.group_leader"),
        thread_group = off("task_struct.thread_group"),
        thread_pid = off("task_struct.thread_pid"),
        /// `hlist_node pid_links[PIDTYPE_MAX]`.
        pid_links = off("task_struct.pid_links"),
        real_cred = off("task_struct.real_cred"),
        cred = off("task_struct.cred"),
        comm = off("task_struct.comm"),
        comm_len = len("task_struct.comm"),
        /// Bumped by every exec: tells from outside whether a task exec'd since a snapshot.
        self_exec_id = off("task_struct.self_exec_id"),
        self_exec_id_size = fsize("task_struct.self_exec_id"),
    }
    /// `struct sched_entity` and `struct sched_rt_entity` inside a task.
    SchedEntity sched_entity {
        run_node = off("sched_entity.run_node"),
        on_rq = off("sched_entity.on_rq"),
        my_q = off("sched_entity.my_q"),
        rt_run_list = off("sched_rt_entity.run_list"),
    }
    /// `struct rq` (per-CPU `runqueues`) with its CFS and RT parts.
    RunQueue rq {
        size = size("rq"),
        nr_running = off("rq.nr_running"),
        curr = off("rq.curr"),
        idle = off("rq.idle"),
        cfs = off("rq.cfs"),
        rt = off("rq.rt"),
        cfs_tasks_timeline = off("cfs_rq.tasks_timeline"),
        cfs_nr_running = off("cfs_rq.nr_running"),
        rt_active = off("rt_rq.active"),
        /// `list_head queue[MAX_RT_PRIO + 1]` in `rt_prio_array`.
        rt_queue = off("rt_prio_array.queue"),
        rt_queue_len = len("rt_prio_array.queue"),
    }
    /// `struct cred`: who a task acts as.
    Cred cred {
        size = size("cred"),
        usage = off("cred.usage"),
        usage_size = fsize("cred.usage"),
        uid = off("cred.uid"),
        gid = off("cred.gid"),
        suid = off("cred.suid"),
        sgid = off("cred.sgid"),
        euid = off("cred.euid"),
        egid = off("cred.egid"),
        fsuid = off("cred.fsuid"),
        fsgid = off("cred.fsgid"),
        cap_effective = off("cred.cap_effective"),
        /// The `user_struct` of the real uid: set with `uid` by every uid change.
        user = off("cred.user"),
        user_ns = off("cred.user_ns"),
        /// `user_struct.uid`: whose user_struct it is.
        user_uid = off("user_struct.uid"),
    }
    /// `struct pid` and `struct upid`: a pid number per namespace level.
    Pid pid {
        size = size("pid"),
        level = off("pid.level"),
        /// `hlist_head tasks[PIDTYPE_MAX]`: the tasks using this pid, by type.
        tasks = off("pid.tasks"),
        tasks_len = len("pid.tasks"),
        numbers = off("pid.numbers"),
        upid_size = size("upid"),
        upid_nr = off("upid.nr"),
        upid_ns = off("upid.ns"),
        type_pid = value("PIDTYPE_PID"),
        type_tgid = value("PIDTYPE_TGID"),
    }
    /// The pid IDR of a namespace: `pid_namespace.idr`, an `xarray` of `xa_node`s.
    PidIdr pid_idr {
        ns_idr = off("pid_namespace.idr"),
        idr_rt = off("idr.idr_rt"),
        xa_head = off("xarray.xa_head"),
        node_shift = off("xa_node.shift"),
        node_slots = off("xa_node.slots"),
        node_slots_len = len("xa_node.slots"),
    }
    /// `struct module`.
    Module module {
        size = size("module"),
        state = off("module.state"),
        state_size = fsize("module.state"),
        list = off("module.list"),
        name = off("module.name"),
        name_len = len("module.name"),
        mkobj = off("module.mkobj"),
        mkobj_kobj = off("module.mkobj.kobj"),
        core_base = off("module.core_layout.base"),
        core_size = off("module.core_layout.size"),
        state_live = value("MODULE_STATE_LIVE"),
        state_coming = value("MODULE_STATE_COMING"),
        state_going = value("MODULE_STATE_GOING"),
        state_unformed = value("MODULE_STATE_UNFORMED"),
    }
    /// `struct module_kobject`: a module's sysfs object, with a pointer back to the module.
    ModuleKobject module_kobject {
        size = size("module_kobject"),
        kobj = off("module_kobject.kobj"),
        module = off("module_kobject.mod"),
    }
    /// `struct kobject`.
    Kobject kobject {
        size = size("kobject"),
        name = off("kobject.name"),
        entry = off("kobject.entry"),
        parent = off("kobject.parent"),
        kset = off("kobject.kset"),
    }
    /// `struct kset` (`module_kset` lists every module's kobject).
    Kset kset {
        size = size("kset"),
        list = off("kset.list"),
        list_lock = off("kset.list_lock"),
        kobj = off("kset.kobj"),
    }
}

/// Renders `layout` as a self-contained source file: a header line and the `const`.
pub fn render(layout: &KernelLayout, name: &str, source: &str, w: &mut impl Write) -> fmt::Result {
    writeln!(w, "// Generated by dsm-btf-gen from {source}; do not edit.")?;
    writeln!(
        w,
        "// Each number is followed by the query that derived it (see layout.rs)."
    )?;
    layout.write_rust(name, w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testblob::kitchen_sink;
    use std::string::String;
    use std::vec::Vec;

    /// Reads the numbers back out of rendered source, in order.
    fn numbers_in(text: &str) -> Vec<(String, u64)> {
        text.lines()
            .filter_map(|l| {
                let (field, rest) = l.trim().split_once(": ")?;
                let (n, _) = rest.split_once(',')?;
                Some((field.into(), n.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn rendered_source_round_trips() {
        let mut layout = KernelLayout::zeroed();
        let mut next = 3u64;
        layout.for_each_mut(|_, _, v| {
            *v = next;
            next = next * 7 % 100_003;
        });
        let mut text = String::new();
        render(&layout, "SAMPLE", "a test", &mut text).unwrap();
        assert!(text.contains("pub const SAMPLE: KernelLayout = KernelLayout {"));
        assert!(text.contains("    cred: Cred {"));
        assert!(text.trim_end().ends_with("};"));
        let mut want = Vec::new();
        layout.for_each(|_, field, _, v| want.push((String::from(field), v)));
        assert!(want.len() > 80, "only {} numbers", want.len());
        assert_eq!(numbers_in(&text), want);
    }

    #[test]
    fn the_first_missing_query_is_reported() {
        let blob = kitchen_sink();
        let btf = Btf::parse(&blob).unwrap();
        // The sample has `list_head` but no `hlist_node`.
        assert_eq!(
            KernelLayout::from_btf(&btf).unwrap_err(),
            LayoutError {
                query: "hlist_node",
                error: Error::NotFound
            }
        );
    }
}
