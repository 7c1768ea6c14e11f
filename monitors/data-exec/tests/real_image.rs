//! The checker on the real Debian kernel: the data range found from the page tables after
//! the init sections are unmapped, the execute watch asked for, and fetches judged.

use dsm_api::test_support::MemGuest;
use dsm_api::walk::PAGE_SIZE;
use dsm_api::{Access, Budget, CheckError, Checker, Guest, Progress, WatchEvent, WatchId};
use monitor_data_exec::{find_data, DataExecChecker, NAME, TAIL};

/// What `free_initmem` leaves: the init sections up to `init_pages` pages unmapped from the
/// kernel image.
fn booted(init_pages: u64) -> MemGuest {
    let mut g = MemGuest::linux();
    let k = g.kernel().unwrap();
    let init = g.symbols().layout.init_begin;
    g.unmap_kernel_pages(k.text_va + init, init_pages * PAGE_SIZE);
    g
}

fn fetch(pa: u64, pc: u64) -> WatchEvent {
    WatchEvent {
        id: WatchId(0),
        pa,
        access: Access::Execute,
        vcpu: 0,
        pc,
        value: 0,
        len: 0,
    }
}

#[test]
fn the_data_starts_after_the_unmapped_init_pages_and_is_watched_for_execution() {
    let mut g = booted(5);
    let k = g.kernel().unwrap();
    let layout = g.symbols().layout;
    let mut c = DataExecChecker::new();
    c.baseline(&mut g).unwrap();
    let r = c.range().unwrap();
    let sdata = layout.init_begin + 5 * PAGE_SIZE;
    assert_eq!(r.pa, k.text_pa + sdata);
    assert_eq!(r.va, k.text_va + sdata);
    // The boot page tables at the end, freed after boot, are left out.
    assert_eq!(
        r.pa + r.len,
        k.text_pa + layout.image_size.next_multiple_of(PAGE_SIZE) - TAIL
    );
    assert_eq!(g.watches.len(), 1);
    assert_eq!(g.watches[0].1.start, r.pa);
    assert_eq!(g.watches[0].1.len, r.len);
    assert_eq!(g.watches[0].2, Access::Execute);
    let mut b = Budget::new(1);
    assert_eq!(c.check(&mut g, &mut b), Ok(Progress::Done));
    assert!(g.findings.is_empty(), "{:?}", g.findings);
    assert_eq!(g.heartbeats, [NAME]);
}

#[test]
fn init_pages_still_mapped_are_refused_not_guessed() {
    let g = booted(0);
    assert_eq!(
        find_data(&g),
        Err(CheckError::Unexpected("init memory still mapped"))
    );
}

#[test]
fn a_fetch_from_kernel_data_is_reported_once_per_page() {
    let mut g = booted(3);
    let mut c = DataExecChecker::new();
    c.baseline(&mut g).unwrap();
    let r = c.range().unwrap();
    let pc = r.va + 0x2010;
    c.on_watch(&mut g, &fetch(r.pa + 0x2010, pc)).unwrap();
    assert_eq!(g.findings.len(), 1);
    let f = g.findings[0];
    assert_eq!(
        (f.checker, f.what, f.at, f.expected, f.found),
        (NAME, "kernel data executed", pc, r.pa, r.pa + 0x2010)
    );
    // The same page again (a pause resumed): nothing new; another page: reported.
    c.on_watch(&mut g, &fetch(r.pa + 0x2ff0, pc + 0xfe0))
        .unwrap();
    assert_eq!(g.findings.len(), 1);
    c.on_watch(&mut g, &fetch(r.pa + 0x5000, r.va + 0x5000))
        .unwrap();
    assert_eq!(g.findings.len(), 2);
    // Not ours: a fetch next to the range, one from the freed boot page tables after it
    // (user code may live there), and a write event.
    c.on_watch(&mut g, &fetch(r.pa - 8, r.va - 8)).unwrap();
    let tail = r.pa + r.len + 0x1274;
    c.on_watch(&mut g, &fetch(tail, 0xaaaa_c4ad_4274)).unwrap();
    let write = WatchEvent {
        access: Access::Write,
        ..fetch(r.pa + 0x9000, 0)
    };
    c.on_watch(&mut g, &write).unwrap();
    assert_eq!(g.findings.len(), 2);
}

#[test]
fn a_refused_watch_is_asked_for_again() {
    let mut g = booted(2);
    g.refuse_watches = 1;
    let mut c = DataExecChecker::new();
    c.baseline(&mut g).unwrap();
    assert!(g.watches.is_empty());
    for _ in 0..3 {
        assert_eq!(c.check(&mut g, &mut Budget::new(1)), Ok(Progress::Done));
    }
    assert_eq!(g.watches.len(), 1, "asked again once, then kept");
}
