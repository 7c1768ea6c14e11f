//! The parser and queries on the real pinned Debian kernel `Image`. Every expectation comes
//! from the C declarations of Linux 6.1 (member order, types) or from an independent source in
//! the same BTF (an enumerator, another struct's size), not from a recorded run.

mod common;

use common::{btf, off, size};
use dsm_btf::{Btf, Kind, Type, INT_SIGNED, POINTER_SIZE};

/// The type a member path has, with typedefs and qualifiers resolved.
fn resolved<'a>(btf: &Btf<'a>, path: &str) -> Type<'a> {
    let f = btf.field(path).unwrap();
    btf.resolve(f.type_id).unwrap().expect("not void")
}

/// The struct a pointer member points to (through `const` and the like).
fn pointee_name(btf: &Btf<'_>, path: &str) -> String {
    let ptr = resolved(btf, path);
    assert_eq!(ptr.kind(), Kind::Ptr, "{path} is not a pointer");
    let target = btf.resolve(ptr.referenced().unwrap()).unwrap().unwrap();
    btf.name(target.name_off()).unwrap().to_string()
}

fn direct_member_names(btf: &Btf<'_>, name: &str) -> Vec<String> {
    let t = btf.find_composite(name).unwrap();
    t.members()
        .map(|m| btf.name(m.name_off).unwrap().to_string())
        .collect()
}

#[test]
fn the_image_carries_a_complete_btf_blob() {
    let (at, btf) = dsm_btf::find_in_image(common::image()).unwrap();
    assert!(at > 0 && at < common::image().len());
    // vmlinux BTF describes on the order of 10^5 types.
    assert!(btf.count() > 50_000, "only {} types", btf.count());
    assert!(btf.types().all(|t| btf.name(t.name_off()).is_ok()));
    // The header alone, without the rest of the Image, is a complete blob.
    let blob = &common::image()[at..at + btf.header().total_len()];
    assert_eq!(Btf::parse(blob).unwrap().count(), btf.count());
}

#[test]
fn list_nodes_are_two_pointers() {
    let btf = btf();
    assert_eq!(size(&btf, "list_head"), 2 * POINTER_SIZE);
    assert_eq!(off(&btf, "list_head.next"), 0);
    assert_eq!(off(&btf, "list_head.prev"), POINTER_SIZE);
    assert_eq!(size(&btf, "hlist_node"), 2 * POINTER_SIZE);
    assert_eq!(off(&btf, "hlist_node.pprev"), POINTER_SIZE);
    assert_eq!(size(&btf, "hlist_head"), POINTER_SIZE);
    assert_eq!(pointee_name(&btf, "list_head.next"), "list_head");
}

#[test]
fn task_struct_fields() {
    let btf = btf();
    let task = size(&btf, "task_struct");
    // `char comm[TASK_COMM_LEN]`, and TASK_COMM_LEN is an enumerator in 6.1.
    let comm = resolved(&btf, "task_struct.comm");
    let elem = btf.resolve(comm.array().unwrap().elem).unwrap().unwrap();
    assert_eq!(elem.size(), Some(1));
    // pahole leaves the CHAR encoding bit clear (char is unsigned on arm64): go by name.
    assert_eq!(btf.name(elem.name_off()), Ok("char"));
    assert_eq!(elem.int().unwrap().encoding & INT_SIGNED, 0);
    assert_eq!(btf.array_len("task_struct.comm"), Ok(16));
    assert_eq!(btf.enumerator("TASK_COMM_LEN"), Ok(16));
    assert_eq!(btf.field_size("task_struct.comm"), Ok(16));
    // `pid_t pid; pid_t tgid;` side by side.
    assert_eq!(btf.field_size("task_struct.pid"), Ok(4));
    assert_eq!(
        off(&btf, "task_struct.tgid"),
        off(&btf, "task_struct.pid") + 4
    );
    // `real_cred` then `cred`: adjacent pointers to `struct cred`.
    assert_eq!(
        off(&btf, "task_struct.cred"),
        off(&btf, "task_struct.real_cred") + POINTER_SIZE
    );
    assert_eq!(pointee_name(&btf, "task_struct.cred"), "cred");
    assert_eq!(pointee_name(&btf, "task_struct.real_cred"), "cred");
    assert_eq!(pointee_name(&btf, "task_struct.thread_pid"), "pid");
    // `tasks` is a list_head, `se` a whole sched_entity.
    let tasks = resolved(&btf, "task_struct.tasks");
    assert_eq!(btf.name(tasks.name_off()), Ok("list_head"));
    assert_eq!(
        btf.field_size("task_struct.se"),
        Ok(size(&btf, "sched_entity"))
    );
    assert_eq!(
        btf.array_len("task_struct.pid_links"),
        btf.array_len("pid.tasks")
    );
    for path in [
        "task_struct.tasks",
        "task_struct.cred",
        "task_struct.comm",
        "task_struct.thread_pid",
        "task_struct.se",
    ] {
        assert!(
            off(&btf, path) + btf.field_size(path).unwrap() <= task,
            "{path}"
        );
    }
}

#[test]
fn anonymous_unions_are_searched() {
    let btf = btf();
    // `union { refcount_t rcu_users; struct rcu_head rcu; }` has no name in task_struct.
    let direct = direct_member_names(&btf, "task_struct");
    assert!(!direct.iter().any(|n| n == "rcu_users" || n == "rcu"));
    assert_eq!(
        off(&btf, "task_struct.rcu_users"),
        off(&btf, "task_struct.rcu")
    );
    // Same pattern at the end of `struct cred`.
    let direct = direct_member_names(&btf, "cred");
    assert!(!direct.iter().any(|n| n == "non_rcu"));
    assert_eq!(off(&btf, "cred.non_rcu"), off(&btf, "cred.rcu"));
    assert!(off(&btf, "cred.rcu") > off(&btf, "cred.user_ns"));
}

#[test]
fn bitfields_keep_bit_offsets() {
    let btf = btf();
    // `unsigned int state_initialized:1; state_in_sysfs:1; ...` in `struct kobject`.
    let init = btf.field("kobject.state_initialized").unwrap();
    let sysfs = btf.field("kobject.state_in_sysfs").unwrap();
    assert_eq!((init.bitfield_size, sysfs.bitfield_size), (1, 1));
    assert_eq!(sysfs.bit_offset, init.bit_offset + 1);
    assert_eq!(init.byte_offset(), Err(dsm_btf::Error::Bitfield));
    // They follow `struct kref kref` (4 bytes) after the pointer-aligned members.
    let kref_end = off(&btf, "kobject.kref") + btf.field_size("kobject.kref").unwrap();
    assert!(init.bit_offset >= 8 * kref_end);
    assert!(init.bit_offset < 8 * size(&btf, "kobject"));
}

#[test]
fn cred_ids_follow_the_c_order() {
    let btf = btf();
    // kuid_t / kgid_t: a typedef'd struct around one 32-bit id.
    assert_eq!(off(&btf, "cred.uid.val"), off(&btf, "cred.uid"));
    let ids = [
        "uid", "gid", "suid", "sgid", "euid", "egid", "fsuid", "fsgid",
    ];
    let base = off(&btf, "cred.uid");
    for (i, id) in ids.iter().enumerate() {
        let path = format!("cred.{id}");
        assert_eq!(btf.field_size(&path), Ok(4), "{path}");
        assert_eq!(off(&btf, &path), base + 4 * i as u64, "{path}");
    }
    // `usage` comes first (an atomic_long_t in 6.1).
    assert_eq!(off(&btf, "cred.usage"), 0);
    assert_eq!(btf.field_size("cred.usage"), Ok(8));
}

#[test]
fn module_and_kobject_fields() {
    let btf = btf();
    // `enum module_state state; struct list_head list; char name[MODULE_NAME_LEN];`
    // with MODULE_NAME_LEN = 64 - sizeof(unsigned long).
    assert_eq!(off(&btf, "module.state"), 0);
    assert_eq!(off(&btf, "module.list"), 8);
    assert_eq!(off(&btf, "module.name"), 8 + size(&btf, "list_head"));
    assert_eq!(btf.array_len("module.name"), Ok(64 - 8));
    let name = resolved(&btf, "module.name");
    let elem = btf.resolve(name.array().unwrap().elem).unwrap().unwrap();
    assert_eq!(btf.name(elem.name_off()), Ok("char"));
    assert_eq!(btf.enumerator("MODULE_STATE_UNFORMED"), Ok(3));
    // `kobj` is the first member of `struct module_kobject`.
    assert_eq!(off(&btf, "module.mkobj.kobj"), off(&btf, "module.mkobj"));
    assert_eq!(
        btf.field_size("module.mkobj.kobj"),
        Ok(size(&btf, "kobject"))
    );
    assert_eq!(pointee_name(&btf, "module_kobject.mod"), "module");
    // `const char *name; struct list_head entry; struct kobject *parent; struct kset *kset;`
    assert_eq!(off(&btf, "kobject.name"), 0);
    assert_eq!(off(&btf, "kobject.entry"), POINTER_SIZE);
    assert_eq!(
        off(&btf, "kobject.kset"),
        off(&btf, "kobject.entry") + size(&btf, "list_head") + POINTER_SIZE
    );
    assert_eq!(pointee_name(&btf, "kobject.kset"), "kset");
    assert_eq!(off(&btf, "kset.list"), 0);
    assert!(off(&btf, "kset.kobj") + size(&btf, "kobject") <= size(&btf, "kset"));
}

#[test]
fn pid_numbers_are_a_trailing_upid_array() {
    let btf = btf();
    assert_eq!(off(&btf, "upid.nr"), 0);
    assert_eq!(btf.field_size("upid.nr"), Ok(4));
    // `struct upid numbers[]` is the flexible last member.
    assert_eq!(off(&btf, "pid.numbers"), size(&btf, "pid"));
    let numbers = resolved(&btf, "pid.numbers");
    let elem = btf.resolve(numbers.array().unwrap().elem).unwrap().unwrap();
    assert_eq!(btf.name(elem.name_off()), Ok("upid"));
    assert_eq!(btf.array_len("pid.numbers"), Ok(0));
    assert_eq!(btf.enumerator("PIDTYPE_MAX"), Ok(4));
    assert_eq!(btf.array_len("pid.tasks"), Ok(4));
}

#[test]
fn an_index_gives_the_same_answers_faster() {
    let btf = btf();
    let mut index = vec![0u32; btf.count() as usize];
    let fast = btf.with_index(&mut index).unwrap();
    for path in ["task_struct.comm", "module.mkobj.kobj", "rq.cfs"] {
        assert_eq!(fast.field(path), btf.field(path));
    }
    for id in [1, btf.count() / 2, btf.count()] {
        assert_eq!(
            fast.type_by_id(id).unwrap().name_off(),
            btf.type_by_id(id).unwrap().name_off()
        );
    }
}

#[test]
fn corrupting_the_real_blob_never_panics() {
    let (at, btf) = dsm_btf::find_in_image(common::image()).unwrap();
    let good = &common::image()[at..at + btf.header().total_len()];
    let mut seed = 0x0bad_c0de_u64;
    for round in 0..24 {
        let mut blob = good.to_vec();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Mostly the type section, where the structure lives.
            let span = if round % 2 == 0 {
                24 + btf.header().type_len as u64
            } else {
                blob.len() as u64
            };
            blob[(seed % span) as usize] ^= (seed >> 32) as u8 | 1;
        }
        if let Ok(b) = Btf::parse(&blob) {
            let _ = b.offset_of("task_struct.comm");
            let _ = b.field_size("module.mkobj.kobj");
            let _ = b.array_len("pid.numbers");
        }
        let cut = (seed % blob.len() as u64) as usize;
        assert!(Btf::parse(&blob[..cut]).is_err());
    }
}
