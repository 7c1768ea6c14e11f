//! Data symbols decoded from text, checked against what the `Image` holds at each address
//! (static initializers that only the right object has).

use dsm_api::test_support::{real_image, MemGuest};
use dsm_api::xref::{self, data_symbol, RefKind, DATA_REFS};
use dsm_api::{CheckError, Guest, KIMAGE_VADDR};
use dsm_btf::layouts::DEBIAN_6_1_0_56_ARM64 as L;

/// Offset from `_text` of a derived data symbol.
fn offset(g: &MemGuest, name: &'static str) -> u64 {
    data_symbol(g, name).unwrap() - g.kernel().unwrap().text_va
}

fn link(off: u64) -> u64 {
    let img = real_image();
    img.parsed.link_value(&img.bytes, off).unwrap()
}

#[test]
fn every_recipe_resolves_inside_the_image_data() {
    let g = MemGuest::linux();
    let l = g.symbols().layout;
    let mut seen = Vec::new();
    for r in DATA_REFS {
        let off = offset(&g, r.symbol);
        // Data, not text or rodata, and distinct.
        assert!(
            off >= l.rodata_end && off < l.image_size,
            "{} at {off:#x}",
            r.symbol
        );
        assert!(!seen.contains(&off), "{} repeats {off:#x}", r.symbol);
        seen.push(off);
    }
}

#[test]
fn init_task_is_the_swapper_with_a_self_linked_task_list() {
    let g = MemGuest::linux();
    let t = offset(&g, "init_task");
    let img = real_image();
    let comm = &img.bytes[(t + L.task_struct.comm) as usize..][..8];
    assert_eq!(comm, b"swapper\0");
    let tasks = t + L.task_struct.tasks;
    assert_eq!(link(tasks), KIMAGE_VADDR + tasks);
    assert_eq!(link(t + L.task_struct.group_leader), KIMAGE_VADDR + t);
}

#[test]
fn modules_is_an_empty_static_list_and_module_kset_a_null_pointer() {
    let g = MemGuest::linux();
    let m = offset(&g, "modules");
    assert_eq!(link(m), KIMAGE_VADDR + m);
    assert_eq!(link(m + 8), KIMAGE_VADDR + m);
    let k = offset(&g, "module_kset");
    // Allocated at boot: in BSS (past the file) or NULL.
    let img = real_image();
    let in_bss = k >= img.bytes.len() as u64;
    assert!(in_bss || link(k) == 0, "module_kset at {k:#x}");
}

#[test]
fn init_pid_ns_names_init_task_as_its_reaper() {
    let g = MemGuest::linux();
    let ns = offset(&g, "init_pid_ns");
    let init = KIMAGE_VADDR + offset(&g, "init_task");
    assert!(
        (0..0x100).step_by(8).any(|o| link(ns + o) == init),
        "no pointer to init_task in init_pid_ns"
    );
}

#[test]
fn runqueues_is_per_cpu_template_data() {
    // The per-CPU template lies in the init region, __per_cpu_offset in ordinary data.
    let g = MemGuest::linux();
    let l = g.symbols().layout;
    assert!(offset(&g, "runqueues") >= l.init_begin);
    let pco = offset(&g, "__per_cpu_offset");
    assert_eq!(pco % 8, 0);
}

#[test]
fn panic_cpu_starts_invalid_and_jiffies_at_initial_jiffies() {
    let g = MemGuest::linux();
    let img = real_image();
    let p = offset(&g, "panic_cpu") as usize;
    assert_eq!(p % 4, 0);
    // `atomic_t panic_cpu = ATOMIC_INIT(PANIC_CPU_INVALID)`.
    assert_eq!(img.bytes[p..p + 4], (-1i32).to_le_bytes());
    let j = offset(&g, "jiffies") as usize;
    assert_eq!(j % 8, 0);
    // `INITIAL_JIFFIES`: -300 s worth of ticks (HZ 250) as an unsigned int.
    let initial = u64::from((-300i32 * 250) as u32);
    assert_eq!(img.bytes[j..j + 8], initial.to_le_bytes());
}

#[test]
fn unknown_names_and_missing_functions_are_errors() {
    let g = MemGuest::linux();
    assert_eq!(
        data_symbol(&g, "no_such_object"),
        Err(CheckError::MissingSymbol("no_such_object"))
    );
    // A recipe is only as good as its function: decoding garbage finds nothing.
    let mut hits = 0;
    xref::refs(0, &[0xd503_201f; 16], |_| {
        hits += 1;
        true
    });
    assert_eq!(hits, 0);
    assert!(DATA_REFS.iter().any(|r| r.kind == RefKind::Load64));
}
