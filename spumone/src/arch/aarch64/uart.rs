//! The physical PL011, owned by spumone and shared by all cores under one lock.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::registers::{ReadOnly, ReadWrite};

/// The board's UART until the DTB says otherwise (used for the earliest messages).
pub const DEFAULT_BASE: usize = 0x0900_0000;

static BASE: AtomicUsize = AtomicUsize::new(DEFAULT_BASE);

register_bitfields! {u32,
    FR [
        TXFF OFFSET(5) NUMBITS(1) [],
        BUSY OFFSET(3) NUMBITS(1) [],
    ]
}

#[repr(C)]
struct Pl011 {
    dr: ReadWrite<u32>,
    _reserved: [u32; 5],
    fr: ReadOnly<u32, FR::Register>,
}

/// Sets the UART base found in the DTB.
pub fn set_base(base: usize) {
    BASE.store(base, Ordering::Relaxed);
}

fn regs() -> &'static Pl011 {
    // SAFETY: BASE is the PL011's MMIO address (from the board or the DTB), identity mapped
    // as device memory (or the MMU is off); the registers are only used through volatile
    // accessors.
    unsafe { &*(BASE.load(Ordering::Relaxed) as *const Pl011) }
}

fn put_byte(byte: u8) {
    let uart = regs();
    while uart.fr.is_set(FR::TXFF) {
        core::hint::spin_loop();
    }
    uart.dr.set(u32::from(byte));
}

/// Ticket lock over the UART so frames and lines from different cores never interleave and
/// no core starves. It records its owner so a fatal report raised while the same core holds
/// it can still print.
struct UartLock {
    next_ticket: AtomicUsize,
    now_serving: AtomicUsize,
    owner: AtomicUsize,
}

const NO_OWNER: usize = usize::MAX;

static LOCK: UartLock = UartLock {
    next_ticket: AtomicUsize::new(0),
    now_serving: AtomicUsize::new(0),
    owner: AtomicUsize::new(NO_OWNER),
};

/// Access to the UART while the lock is held; dropped to release.
pub struct UartGuard {
    reentered: bool,
}

impl UartGuard {
    pub fn write(&mut self, bytes: &[u8]) {
        bytes.iter().copied().for_each(put_byte);
    }
}

impl fmt::Write for UartGuard {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

impl Drop for UartGuard {
    fn drop(&mut self) {
        if !self.reentered {
            LOCK.owner.store(NO_OWNER, Ordering::Relaxed);
            LOCK.now_serving.fetch_add(1, Ordering::Release);
        }
    }
}

/// Takes the UART lock. EL2 runs with interrupts masked, so the holder cannot be preempted
/// on its own core; a core that already holds it (a fault while printing) gets it again.
pub fn lock() -> UartGuard {
    let me = super::cpu::core_index();
    if LOCK.owner.load(Ordering::Relaxed) == me {
        return UartGuard { reentered: true };
    }
    let ticket = LOCK.next_ticket.fetch_add(1, Ordering::Relaxed);
    while LOCK.now_serving.load(Ordering::Acquire) != ticket {
        core::hint::spin_loop();
    }
    LOCK.owner.store(me, Ordering::Relaxed);
    UartGuard { reentered: false }
}

/// Prints text without the lock, for a core that is not (or may not be) at EL2 yet and so
/// cannot even read its core number.
pub fn early_text(args: fmt::Arguments) {
    struct Raw;
    impl fmt::Write for Raw {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            s.bytes().for_each(put_byte);
            Ok(())
        }
    }
    let _ = fmt::Write::write_fmt(&mut Raw, args);
}

/// PL011 register offsets and bits used for input.
const FR_OFFSET: usize = 0x18;
const FR_RXFE: u32 = 1 << 4;
const IMSC_OFFSET: usize = 0x38;
const ICR_OFFSET: usize = 0x44;
/// RX and RX timeout interrupts.
const RX_INTERRUPTS: u32 = (1 << 4) | (1 << 6);

fn reg(offset: usize) -> *mut u32 {
    (BASE.load(Ordering::Relaxed) + offset) as *mut u32
}

/// Lets received bytes raise the UART's interrupt.
pub fn enable_rx_interrupt() {
    // SAFETY: IMSC of the PL011 (see `regs`); only the RX bits are set.
    unsafe { reg(IMSC_OFFSET).write_volatile(RX_INTERRUPTS) };
}

/// Clears the RX interrupts, then hands every byte waiting in the receive FIFO to `f`.
///
/// In that order: a byte that arrives after the last read finds the FIFO empty and raises
/// the interrupt again. Cleared after the reads, the interrupt of a byte that came between
/// the last read and the clear was lost, and QEMU's PL011 raises it only when the FIFO goes
/// from empty to one byte: console input then stopped for good. The second byte of an
/// operator command often came just then (a resume that never came, or a pause).
pub fn drain_rx(mut f: impl FnMut(u8)) {
    // SAFETY: FR, DR and ICR of the PL011 (see `regs`); reading DR pops the RX FIFO, which
    // nothing else in spumone reads.
    unsafe {
        reg(ICR_OFFSET).write_volatile(RX_INTERRUPTS);
        while reg(FR_OFFSET).read_volatile() & FR_RXFE == 0 {
            f(reg(0).read_volatile() as u8);
        }
    }
}
