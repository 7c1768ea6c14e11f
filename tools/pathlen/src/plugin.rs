//! The thin glue between QEMU and the [`Tracker`]: instrumentation at translation time, the
//! execution callbacks, and the report's file. All of the crate's `unsafe` is here.
//!
//! Locking: under `-icount` QEMU runs every vCPU on one thread, so the lock is never
//! contended; without `-icount` QEMU runs a thread per vCPU (MTTCG) and the callbacks of
//! different vCPUs really do race, so the state sits behind one `Mutex` either way.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::args::Config;
use crate::ffi::{self, Info, Insn, PluginId, Tb, CB_NO_REGS};
use crate::tracker::Tracker;

struct State {
    tracker: Tracker,
    events: u64,
    last_write: Instant,
}

struct Plugin {
    state: Mutex<State>,
    out: PathBuf,
    flush: Option<Duration>,
}

static PLUGIN: OnceLock<Plugin> = OnceLock::new();

/// Events between two looks at the clock for the periodic rewrite.
const EVENTS_PER_CLOCK_CHECK: u64 = 1 << 16;

/// The plugin API version this plugin is written against (QEMU 7.2 supports only 1).
#[no_mangle]
pub static qemu_plugin_version: c_int = 1;

fn plugin() -> Option<&'static Plugin> {
    PLUGIN.get()
}

impl Plugin {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic cannot unwind out of a callback (it aborts), so poisoning is moot.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Prints `message` through QEMU's log (shown with `-d plugin`).
fn outs(message: &str) {
    let text = CString::new(message.replace('\0', " ")).expect("NULs were replaced");
    // SAFETY: `text` is a NUL-terminated string that outlives the call; QEMU copies it.
    unsafe { ffi::qemu_plugin_outs(text.as_ptr()) }
}

/// Writes the report next to `out` and renames it over `out`, so a run killed meanwhile
/// leaves the previous report whole.
fn write_report(out: &Path, tracker: &Tracker) -> std::io::Result<()> {
    let mut temporary = out.as_os_str().to_owned();
    temporary.push(".partial");
    std::fs::write(&temporary, tracker.report().to_json())?;
    std::fs::rename(&temporary, out)
}

/// Runs `f` on the tracker, and now and then rewrites the report.
fn with_tracker(f: impl FnOnce(&mut Tracker)) {
    let Some(plugin) = plugin() else {
        return;
    };
    let mut state = plugin.lock();
    f(&mut state.tracker);
    state.events += 1;
    let Some(every) = plugin.flush else {
        return;
    };
    if state.events % EVENTS_PER_CLOCK_CHECK == 0 && state.last_write.elapsed() >= every {
        state.last_write = Instant::now();
        // A failed rewrite is retried at the next; the one at exit reports its error.
        let _ = write_report(&plugin.out, &state.tracker);
    }
}

/// A block counted ahead: the user data is its instruction count.
extern "C" fn on_tb(vcpu: c_uint, n: *mut c_void) {
    with_tracker(|t| t.tb(vcpu, n as u64));
}

/// Flags in the low bits of an exact instruction's address (A64 instructions are 4-aligned).
const MARKER_BIT: u64 = 1;
const SPAN_BIT: u64 = 2;

/// An exactly counted instruction: the user data is its address and flags.
extern "C" fn on_exact_insn(vcpu: c_uint, data: *mut c_void) {
    let data = data as u64;
    let addr = data & !(MARKER_BIT | SPAN_BIT);
    with_tracker(|t| t.insn_classified(vcpu, addr, data & MARKER_BIT != 0, data & SPAN_BIT != 0));
}

/// Bits of a counted-ahead marker's user data that hold how many of the block's
/// instructions are at or after it (a TCG block has at most 512).
const AHEAD_BITS: u32 = 16;

/// A marker in a block counted ahead: the user data is its marker index and how far ahead.
extern "C" fn on_marker_ahead(vcpu: c_uint, data: *mut c_void) {
    let data = data as u64;
    let ahead = data & ((1 << AHEAD_BITS) - 1);
    with_tracker(|t| {
        if let Some(addr) = t.marker_addr((data >> AHEAD_BITS) as usize) {
            t.marker_ahead(vcpu, addr, ahead);
        }
    });
}

extern "C" fn on_translate(_id: PluginId, tb: *mut Tb) {
    let Some(plugin) = plugin() else {
        return;
    };
    // SAFETY: `tb` is the handle QEMU passed to this translation callback, valid during it.
    let n = unsafe { ffi::qemu_plugin_tb_n_insns(tb) };
    let insns: Vec<(*mut Insn, u64)> = (0..n)
        .map(|i| {
            // SAFETY: `i` is below the block's instruction count; the handles are used only
            // within this callback.
            unsafe {
                let insn = ffi::qemu_plugin_tb_get_insn(tb, i);
                (insn, ffi::qemu_plugin_insn_vaddr(insn))
            }
        })
        .collect();
    let state = plugin.lock();
    let tracker = &state.tracker;
    let classes: Vec<_> = insns.iter().map(|&(_, a)| tracker.instrument(a)).collect();
    if classes.iter().any(|c| c.exact) {
        for (&(insn, addr), class) in insns.iter().zip(&classes) {
            let flags = if addr & (MARKER_BIT | SPAN_BIT) != 0 {
                0 // not an A64 address: counted, never a marker
            } else {
                (u64::from(class.marker) * MARKER_BIT) | (u64::from(class.span) * SPAN_BIT)
            };
            // SAFETY: `insn` belongs to the block being translated; the user data is a
            // plain number, never dereferenced.
            unsafe {
                ffi::qemu_plugin_register_vcpu_insn_exec_cb(
                    insn,
                    on_exact_insn,
                    CB_NO_REGS,
                    (addr | flags) as *mut c_void,
                );
            }
        }
        return;
    }
    // SAFETY: as above, for the block itself.
    unsafe {
        ffi::qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb, CB_NO_REGS, n as *mut c_void);
    }
    for (i, (&(insn, addr), class)) in insns.iter().zip(&classes).enumerate() {
        let Some(index) = class.marker.then(|| tracker.marker_index(addr)).flatten() else {
            continue;
        };
        let data = ((index as u64) << AHEAD_BITS) | (n - i) as u64;
        // SAFETY: as above.
        unsafe {
            ffi::qemu_plugin_register_vcpu_insn_exec_cb(
                insn,
                on_marker_ahead,
                CB_NO_REGS,
                data as *mut c_void,
            );
        }
    }
}

extern "C" fn on_exit(_id: PluginId, _data: *mut c_void) {
    let Some(plugin) = plugin() else {
        return;
    };
    let state = plugin.lock();
    let report = state.tracker.report();
    let closed: u64 = report.windows.iter().map(|w| w.windows).sum();
    let distorted: u64 = report.windows.iter().map(|w| w.distorted).sum();
    let out = plugin.out.display();
    match write_report(&plugin.out, &state.tracker) {
        Ok(()) => outs(&format!(
            "spumone-pathlen: {closed} windows closed ({distorted} distorted), report in {out}\n"
        )),
        Err(e) => outs(&format!("spumone-pathlen: writing {out} failed: {e}\n")),
    }
}

/// Parses the arguments and registers the callbacks; QEMU calls it once, at load.
///
/// # Safety
///
/// QEMU passes `argc` valid NUL-terminated strings in `argv`, and `info` valid for the call.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: PluginId,
    info: *const Info,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let args: Vec<String> = (0..usize::try_from(argc).unwrap_or(0))
        // SAFETY: QEMU's contract above: `argv` holds `argc` valid C strings.
        .map(|i| unsafe { CStr::from_ptr(*argv.add(i)) })
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    // SAFETY: `info` is valid for this call (or null, which `as_ref` turns into `None`).
    let system = unsafe { info.as_ref() }.is_some_and(|i| i.system_emulation);
    match install(id, system, &args) {
        Ok(()) => 0,
        Err(message) => {
            outs(&format!("{message}\n"));
            -1
        }
    }
}

fn install(id: PluginId, system: bool, args: &[String]) -> Result<(), String> {
    if !system {
        return Err("spumone-pathlen: needs system emulation (qemu-system-*)".into());
    }
    let config = Config::parse(args).map_err(|e| e.to_string())?;
    let tracker = Tracker::new(&config);
    let out = PathBuf::from(&config.out);
    // An empty report at once: a path that cannot be written fails the start, not the end.
    write_report(&out, &tracker)
        .map_err(|e| format!("spumone-pathlen: cannot write {}: {e}", out.display()))?;
    let plugin = Plugin {
        state: Mutex::new(State {
            tracker,
            events: 0,
            last_write: Instant::now(),
        }),
        out,
        flush: (config.flush_secs > 0).then(|| Duration::from_secs(config.flush_secs)),
    };
    PLUGIN
        .set(plugin)
        .map_err(|_| "spumone-pathlen: loaded twice in one QEMU".to_string())?;
    // SAFETY: `id` is the id QEMU gave this plugin; the callbacks are `extern "C"` functions
    // with the signatures the API declares, living as long as the library.
    unsafe {
        ffi::qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
        ffi::qemu_plugin_register_atexit_cb(id, on_exit, std::ptr::null_mut());
    }
    Ok(())
}
