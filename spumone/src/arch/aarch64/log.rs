//! spumone's output on the shared UART.
//!
//! - Default: `defmt` records in raw encoding, one record per frame on [`chan::HV_LOG`];
//!   guest consoles on their own channels; events on [`chan::HV_EVENT`].
//! - `plain-log`: `[hv] ...` text lines, guest consoles as `[<name>] ...` lines.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use spumone_abi::chan;
use spumone_abi::frame::{self, MAX_ENCODED, MAX_PAYLOAD};

use super::config::CONFIG;
use super::{cpu, timer, uart};
use crate::hvcore::loglimit::{Class, Limits, LogLimiter, Verdict};
use crate::hvcore::MAX_CORES;

/// Per core: the limiter of guest-caused lines; only its own core takes the lock, so it never
/// waits (and no line a guest causes on one core delays another).
static LIMITERS: [cpu::Lock<LogLimiter>; MAX_CORES] =
    [const { cpu::Lock::new(LogLimiter::new(Limits::for_counter(0))) }; MAX_CORES];
/// Per core: its limiter owes a summary (checked lock-free on every slow-path trap).
static OWED: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];

/// Whether a line of `class` that partition `source` caused may be printed now (the
/// `guest_warn!`/`guest_info!` macros ask); prints first how many such lines were dropped.
pub fn allow(source: usize, class: Class) -> bool {
    let core = cpu::core_index() % MAX_CORES;
    let verdict = {
        let mut limiter = LIMITERS[core].lock();
        limiter.set_limits(Limits::for_counter(timer::frequency_hz()));
        let verdict = limiter.hit(source, class, timer::counter());
        OWED[core].store(limiter.owes(), Ordering::Relaxed);
        verdict
    };
    match verdict {
        Verdict::Print { suppressed } => {
            if suppressed != 0 {
                summary(source, class, suppressed);
            }
            true
        }
        Verdict::Drop => false,
    }
}

/// Prints the counts of sources that went quiet on this core; one relaxed load when none is
/// owed.
pub fn flush_suppressed() {
    flush_at(timer::counter());
}

/// Prints every count this core owes, quiet or not (its vCPU leaves it).
pub fn flush_all_suppressed() {
    flush_at(u64::MAX);
}

fn flush_at(now: u64) {
    let core = cpu::core_index() % MAX_CORES;
    if !OWED[core].load(Ordering::Relaxed) {
        return;
    }
    let owed = {
        let mut limiter = LIMITERS[core].lock();
        let owed = limiter.flush(now);
        OWED[core].store(limiter.owes(), Ordering::Relaxed);
        owed
    };
    for s in owed {
        summary(s.source, s.class, s.suppressed);
    }
}

fn summary(source: usize, class: Class, suppressed: u32) {
    let name = CONFIG.partitions.get(source).map_or("?", |p| p.name);
    warn!(
        "{} similar lines suppressed ({}, {})",
        suppressed,
        class.name(),
        name
    );
}

/// Sends `payload` on `channel`, split into as many frames as it needs.
pub fn send_frames(channel: u8, payload: &[u8]) {
    let mut guard = uart::lock();
    send_frames_locked(&mut guard, channel, payload);
}

fn send_frames_locked(guard: &mut uart::UartGuard, channel: u8, payload: &[u8]) {
    let mut encoded = [0u8; MAX_ENCODED];
    let mut chunks = payload.chunks(MAX_PAYLOAD);
    // An empty payload is still one (empty) frame.
    let first = chunks.next().unwrap_or(&[]);
    for chunk in core::iter::once(first).chain(chunks) {
        if let Ok(len) = frame::encode(channel, chunk, &mut encoded) {
            guard.write(&encoded[..len]);
        }
    }
}

/// Fixed-capacity text buffer for one message; text beyond it is cut.
struct TextBuf<const N: usize>(heapless::Vec<u8, N>);

impl<const N: usize> Write for TextBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.0.push(b).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// Sends a plain-text message on `HV_TEXT` (framed builds) or prints it as a `[hv]` line.
pub fn text(args: fmt::Arguments) {
    #[cfg(feature = "plain-log")]
    plain_line("", args);
    #[cfg(not(feature = "plain-log"))]
    {
        let mut buf = TextBuf::<512>(heapless::Vec::new());
        let _ = buf.write_fmt(args);
        send_frames(chan::HV_TEXT, &buf.0);
    }
}

/// Emits a machine-readable event (`partition-stopped name=.. code=..`, `shutdown code=..`).
pub fn event(args: fmt::Arguments) {
    one_frame(chan::HV_EVENT, b"[hv] event: ", args);
}

/// Sends one frame of a management answer ([`spumone_abi::mgmt`]): `head`, then `args`.
pub fn answer(head: spumone_abi::mgmt::Head, args: fmt::Arguments) {
    one_frame(chan::HV_MGMT, b"[hv] mgmt: ", format_args!("{head}{args}"));
}

/// One record of at most a frame (cut beyond) on `channel`; in `plain-log`, a line that
/// starts with `plain_prefix`.
fn one_frame(channel: u8, plain_prefix: &[u8], args: fmt::Arguments) {
    let mut buf = TextBuf::<MAX_PAYLOAD>(heapless::Vec::new());
    let _ = buf.write_fmt(args);
    if cfg!(feature = "plain-log") {
        let mut guard = uart::lock();
        guard.write(plain_prefix);
        guard.write(&buf.0);
        guard.write(b"\n");
    } else {
        send_frames(channel, &buf.0);
    }
}

/// One `[hv]` text line (the `plain-log` logging macros expand to this).
pub fn plain_line(level: &str, args: fmt::Arguments) {
    let mut guard = uart::lock();
    let _ = writeln!(guard, "[hv] {}{}", level, args);
}

/// Console output of partition number `index` (config order), named `name`.
pub fn guest_console(index: usize, name: &str, bytes: &[u8]) {
    #[cfg(feature = "plain-log")]
    plain_console::write(index, name, bytes);
    #[cfg(not(feature = "plain-log"))]
    {
        let _ = name;
        if let Some(channel) = chan::guest(index) {
            send_frames(channel, bytes);
        }
    }
}

#[cfg(feature = "plain-log")]
mod plain_console {
    use crate::hvcore::console::LineBuffer;
    use crate::hvcore::MAX_PARTITIONS;

    static LINES: [crate::arch::cpu::Lock<LineBuffer>; MAX_PARTITIONS] =
        [const { crate::arch::cpu::Lock::new(LineBuffer::new()) }; MAX_PARTITIONS];

    /// Prints whole lines as `[<name>] line`; a partial line waits for its end.
    pub fn write(index: usize, name: &str, bytes: &[u8]) {
        let Some(lines) = LINES.get(index) else {
            return;
        };
        let mut lines = lines.lock();
        for &b in bytes {
            if let Some(line) = lines.push(b) {
                let mut guard = super::uart::lock();
                guard.write(b"[");
                guard.write(name.as_bytes());
                guard.write(b"] ");
                guard.write(line);
                guard.write(b"\n");
            }
        }
    }
}

#[cfg(not(feature = "plain-log"))]
mod framed {
    use spumone_abi::chan;
    use spumone_abi::frame::MAX_PAYLOAD;

    use crate::hvcore::MAX_CORES;

    /// One record being built by one core; a core only ever touches its own slot.
    struct Record {
        bytes: heapless::Vec<u8, MAX_PAYLOAD>,
    }

    static RECORDS: [crate::arch::cpu::Lock<Record>; MAX_CORES] = [const {
        crate::arch::cpu::Lock::new(Record {
            bytes: heapless::Vec::new(),
        })
    }; MAX_CORES];

    fn my_record() -> &'static crate::arch::cpu::Lock<Record> {
        &RECORDS[super::super::cpu::core_index() % MAX_CORES]
    }

    #[defmt::global_logger]
    struct Logger;

    // SAFETY: EL2 runs with interrupts masked, so a record is never interleaved with another
    // on the same core; each core writes only its own slot, and the UART lock serialises
    // whole frames between cores.
    unsafe impl defmt::Logger for Logger {
        fn acquire() {
            my_record().lock().bytes.clear();
        }

        unsafe fn flush() {}

        unsafe fn release() {
            let record = my_record().lock();
            super::send_frames(chan::HV_LOG, &record.bytes);
        }

        unsafe fn write(bytes: &[u8]) {
            let mut record = my_record().lock();
            // A record longer than one frame is cut; the decoder reports it as malformed.
            for &b in bytes {
                if record.bytes.push(b).is_err() {
                    break;
                }
            }
        }
    }

    defmt::timestamp!("{=u64:us}", super::super::timer::uptime_us());
}
