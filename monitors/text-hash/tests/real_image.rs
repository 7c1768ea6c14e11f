//! The checker on the real Debian kernel: clean text and legitimate patching raise nothing,
//! patched text or rodata and illegitimate writes are reported.

use dsm_api::test_support::MemGuest;
use dsm_api::{Access, Budget, CheckError, Checker, Guest, Progress, WatchEvent, WatchId};
use monitor_text_hash::{TextHashChecker, CHUNK, KPROBE_BRK, MOV_X9_X30, NAME, NOP};

fn word(g: &MemGuest, pa: u64) -> u32 {
    let mut b = [0u8; 4];
    g.read_phys(pa, &mut b).unwrap();
    u32::from_le_bytes(b)
}

fn put(g: &mut MemGuest, pa: u64, w: u32) {
    g.write_phys(pa, &w.to_le_bytes()).unwrap();
}

fn branch(op: u32, from: u64, to: u64) -> u32 {
    op | (((to as i64 - from as i64) / 4) as u32 & 0x03ff_ffff)
}

fn full_pass(c: &mut TextHashChecker, g: &mut MemGuest) {
    assert_eq!(c.check(g, &mut Budget::new(u64::MAX)), Ok(Progress::Done));
}

/// A checker (boxed: it holds its tables inline) with a baseline on a fresh guest.
fn ready(prepare: impl FnOnce(&mut MemGuest)) -> (Box<TextHashChecker>, MemGuest) {
    let mut g = MemGuest::linux();
    prepare(&mut g);
    let mut c = Box::new(TextHashChecker::new());
    assert_eq!(
        c.check(&mut g, &mut Budget::new(CHUNK)),
        Err(CheckError::NoBaseline)
    );
    c.baseline(&mut g).unwrap();
    (c, g)
}

/// The first jump-label site in text that holds a nop: (PA, PA of its target).
fn jump_site(g: &MemGuest) -> (u64, u64) {
    let j = g.symbols().jump_table.unwrap();
    let pa0 = g.config.text_pa;
    (0..j.count as u64)
        .find_map(|i| {
            let e = pa0 + j.offset + 16 * i;
            let code = (e as i64 + word(g, e) as i32 as i64) as u64;
            let target = (e as i64 + 4 + word(g, e + 4) as i32 as i64) as u64;
            let in_text = code - pa0 < g.symbols().layout.etext;
            (in_text && word(g, code) == NOP).then_some((code, target))
        })
        .unwrap()
}

fn write_event(pa: u64, value: u32) -> WatchEvent {
    WatchEvent {
        id: WatchId(0),
        pa,
        access: Access::Write,
        vcpu: 1,
        pc: 0,
        value: value as u64,
        len: 4,
    }
}

#[test]
fn clean_kernel_raises_nothing_in_any_budget() {
    let (mut c, mut g) = ready(|_| {});
    full_pass(&mut c, &mut g);
    let mut calls = 0;
    loop {
        calls += 1;
        match c.check(&mut g, &mut Budget::new(4 * CHUNK + 100)).unwrap() {
            Progress::More => {}
            Progress::Done => break,
        }
    }
    let chunks = g.symbols().layout.rodata_end.div_ceil(CHUNK);
    assert_eq!(calls, chunks.div_ceil(4));
    assert!(g.findings.is_empty(), "{:?}", g.findings);
    assert_eq!(g.heartbeats, [NAME, NAME]);
    assert_eq!(
        c.check(&mut g, &mut Budget::new(CHUNK - 1)),
        Err(CheckError::BudgetTooSmall)
    );
    // Text and rodata (from `_stext`) are write-protected through the runtime.
    let l = g.symbols().layout;
    assert_eq!(g.watches.len(), 1);
    assert_eq!(g.watches[0].1.start, g.config.text_pa + l.stext);
    assert_eq!(g.watches[0].1.len, l.rodata_end - l.stext);
}

#[test]
fn a_jump_table_entry_pointing_between_words_is_harmless() {
    // A corrupted `__jump_table` entry whose site is 2 bytes before a page boundary in text.
    let (mut c, mut g) = ready(|g| {
        let j = g.symbols().jump_table.unwrap();
        let pa0 = g.config.text_pa;
        let entry = pa0 + j.offset;
        let site = pa0 + g.symbols().layout.stext + 0x3000 - 2;
        put(g, entry, (site as i64 - entry as i64) as i32 as u32);
    });
    full_pass(&mut c, &mut g);
    assert!(g.findings.is_empty(), "{:?}", g.findings);
}

#[test]
fn a_refused_watch_is_asked_for_again() {
    let (mut c, mut g) = ready(|g| g.refuse_watches = 1);
    assert!(g.watches.is_empty());
    assert_eq!(c.check(&mut g, &mut Budget::new(CHUNK)), Ok(Progress::More));
    assert_eq!(g.watches.len(), 1);
    full_pass(&mut c, &mut g);
    assert_eq!(g.watches.len(), 1, "watched once, not once per call");
    assert!(g.findings.is_empty(), "{:?}", g.findings);
}

#[test]
fn a_patched_text_word_is_reported_once() {
    let (mut c, mut g) = ready(|_| {});
    let kill = g.symbol_pa("__arm64_sys_kill").unwrap();
    // An inline hook: the function starts with a branch elsewhere.
    put(
        &mut g,
        kill + 8,
        branch(0x1400_0000, kill + 8, kill + 0x1000),
    );
    full_pass(&mut c, &mut g);
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1, "{:?}", g.findings);
    let f = g.findings[0];
    assert_eq!(f.what, "kernel text changed");
    let k = g.kernel().unwrap();
    let chunk_va = k.text_va + (kill - k.text_pa) / CHUNK * CHUNK;
    assert_eq!(f.at, chunk_va);
    assert_ne!(f.expected, f.found);
}

#[test]
fn patched_rodata_is_reported() {
    let (mut c, mut g) = ready(|_| {});
    let table = g.config.text_pa + g.symbols().sys_call_table.unwrap().offset;
    g.write_u64_phys(table + 61 * 8, 0xffff_8000_dead_beef)
        .unwrap();
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1);
    assert_eq!(g.findings[0].what, "kernel rodata changed");
}

#[test]
fn jump_labels_may_flip_only_to_their_target() {
    let (mut c, mut g) = ready(|_| {});
    let (site, target) = jump_site(&g);
    put(&mut g, site, branch(0x1400_0000, site, target));
    full_pass(&mut c, &mut g);
    put(&mut g, site, NOP);
    full_pass(&mut c, &mut g);
    assert!(g.findings.is_empty(), "{:?}", g.findings);
    put(&mut g, site, branch(0x1400_0000, site, target + 4));
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1);
}

#[test]
fn ftrace_may_call_its_trampolines_from_function_entries_only() {
    let mut entry = 0;
    let (mut c, mut g) = ready(|g| {
        // What ftrace_init does at boot to each patchable entry: the first nop becomes
        // `mov x9, x30`.
        entry = g.symbol_pa("__arm64_sys_read").unwrap();
        assert_eq!((word(g, entry), word(g, entry + 4)), (NOP, NOP));
        put(g, entry, MOV_X9_X30);
    });
    let caller = g.symbol_pa("ftrace_caller").unwrap();
    let regs_caller = g.symbol_pa("ftrace_regs_caller").unwrap();
    for to in [caller, regs_caller] {
        put(&mut g, entry + 4, branch(0x9400_0000, entry + 4, to));
        full_pass(&mut c, &mut g);
    }
    put(&mut g, entry + 4, NOP);
    full_pass(&mut c, &mut g);
    assert!(g.findings.is_empty(), "{:?}", g.findings);
    // A call to the tracer from anywhere else is not ftrace's doing.
    let other = g.symbol_pa("__arm64_sys_write").unwrap();
    assert_eq!(word(&g, other + 4), NOP);
    put(&mut g, other + 4, branch(0x9400_0000, other + 4, caller));
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1);
    // Nor is an entry made to look patchable after the baseline: the entries are the ones
    // `ftrace_init` prepared before it.
    let (mut c, mut g) = ready(|_| {});
    put(&mut g, other, MOV_X9_X30);
    put(&mut g, other + 4, branch(0x9400_0000, other + 4, caller));
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1, "{:?}", g.findings);
    assert_eq!(g.findings[0].what, "kernel text changed");
}

#[test]
fn the_head_before_stext_is_not_hashed_but_stext_is() {
    // Linux hands `_text` .. `_stext` to the page allocator after boot.
    let (mut c, mut g) = ready(|_| {});
    let text = g.config.text_pa;
    let stext = text + g.symbols().layout.stext;
    for off in [0, 0x40, stext - text - 4] {
        put(&mut g, text + off, 0xdead_beef);
    }
    full_pass(&mut c, &mut g);
    assert!(g.findings.is_empty(), "{:?}", g.findings);
    put(&mut g, stext, 0xdead_beef);
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1, "{:?}", g.findings);
}

#[test]
fn ftrace_may_point_its_trampoline_at_any_tracer_in_text() {
    let (mut c, mut g) = ready(|_| {});
    let call = g.symbol_pa("ftrace_call").unwrap();
    // Enabling the function tracer: `bl ftrace_stub` becomes `bl function_trace_call`.
    let tracer = g.symbol_pa("function_trace_call").unwrap();
    put(&mut g, call, branch(0x9400_0000, call, tracer));
    full_pass(&mut c, &mut g);
    assert!(g.findings.is_empty(), "{:?}", g.findings);
    // A call out of kernel text (a module's hook) is reported.
    let outside = g.config.text_pa + g.symbols().layout.rodata_end + 0x1000;
    put(&mut g, call, branch(0x9400_0000, call, outside));
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1, "{:?}", g.findings);
}

#[test]
fn a_kprobe_armed_without_a_trapped_write_is_recognised_and_nothing_more() {
    let (mut c, mut g) = ready(|_| {});
    let openat = g.symbol_pa("do_sys_openat2").unwrap() + 8;
    let orig = word(&g, openat);
    // Armed and disarmed behind the checker's back (no stage-2 watch): still legitimate.
    put(&mut g, openat, KPROBE_BRK);
    full_pass(&mut c, &mut g);
    put(&mut g, openat, orig);
    full_pass(&mut c, &mut g);
    put(&mut g, openat, KPROBE_BRK);
    full_pass(&mut c, &mut g);
    assert!(g.findings.is_empty(), "{:?}", g.findings);
    // A kprobe next to another change in the same chunk is not a kprobe alone.
    let kill = g.symbol_pa("__arm64_sys_kill").unwrap() + 8;
    let near = if (kill - g.config.text_pa) / CHUNK == (openat - g.config.text_pa) / CHUNK {
        kill
    } else {
        openat + 4
    };
    put(&mut g, openat, orig);
    full_pass(&mut c, &mut g);
    let fresh = openat - 4;
    put(&mut g, fresh, KPROBE_BRK);
    put(&mut g, near, 0xd65f_03c0); // ret
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1, "{:?}", g.findings);
    // A `brk` where a patch changed more than that word is not recognised either.
    let (mut c, mut g) = ready(|_| {});
    put(&mut g, openat, KPROBE_BRK);
    put(&mut g, openat + 4, 0xd65f_03c0);
    full_pass(&mut c, &mut g);
    assert_eq!(g.findings.len(), 1, "{:?}", g.findings);
}

#[test]
fn trapped_patches_are_judged_before_they_land() {
    let (mut c, mut g) = ready(|_| {});
    let kill = g.symbol_pa("__arm64_sys_kill").unwrap() + 12;
    let orig = word(&g, kill);
    // A kprobe arms (brk #4), the runtime performs the write, the kprobe disarms.
    c.on_watch(&mut g, &write_event(kill, KPROBE_BRK)).unwrap();
    put(&mut g, kill, KPROBE_BRK);
    full_pass(&mut c, &mut g);
    c.on_watch(&mut g, &write_event(kill, orig)).unwrap();
    put(&mut g, kill, orig);
    full_pass(&mut c, &mut g);
    // A jump label through the event path.
    let (site, target) = jump_site(&g);
    let b = branch(0x1400_0000, site, target);
    c.on_watch(&mut g, &write_event(site, b)).unwrap();
    put(&mut g, site, b);
    full_pass(&mut c, &mut g);
    assert!(g.findings.is_empty(), "{:?}", g.findings);

    // Anything else is reported at once: an inline patch, a 8-byte store, a rodata write.
    c.on_watch(&mut g, &write_event(kill, 0xd65f_03c0)).unwrap(); // ret
    let mut wide = write_event(site, NOP);
    wide.len = 8;
    c.on_watch(&mut g, &wide).unwrap();
    let rodata = g.config.text_pa + g.symbols().layout.etext + 0x100;
    c.on_watch(&mut g, &write_event(rodata, 0)).unwrap();
    let what: Vec<_> = g.findings.iter().map(|f| f.what).collect();
    assert_eq!(
        what,
        [
            "illegitimate write to kernel text",
            "illegitimate write to kernel text",
            "write to kernel rodata"
        ]
    );
    // Writes outside the range are not this checker's business.
    let below = g.config.text_pa - 8;
    c.on_watch(&mut g, &write_event(below, 0)).unwrap();
    assert_eq!(g.findings.len(), 3);
}
