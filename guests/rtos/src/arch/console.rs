//! Console backends: the `CONSOLE_WRITE` hypercall under spumone, the PL011 when bare.

use super::on_spumone;
use crate::console::{ChunkWriter, ConsoleSink};
use crate::layout::PL011_BASE;
use core::arch::asm;
use core::fmt::{self, Write};
use spumone_abi::hvc::{pack_console_bytes, CONSOLE_WRITE};

const UART_DR: u64 = 0x00;
const UART_FR: u64 = 0x18;
const UART_FR_TXFF: u32 = 1 << 5;

/// Sends each chunk where the platform wants it; drops output before the platform is known.
struct ActiveSink;

impl ConsoleSink for ActiveSink {
    fn write_chunk(&mut self, bytes: &[u8]) {
        match on_spumone() {
            Some(true) => hvc_console_write(bytes),
            Some(false) => bytes.iter().for_each(|&b| pl011_put(b)),
            None => {}
        }
    }
}

/// The target of `print!`: one buffer per call, so an exception handler may print too.
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let mut writer = ChunkWriter::new(ActiveSink);
    // The sinks never fail; a formatting error only truncates the line.
    let _ = writer.write_fmt(args);
}

fn hvc_console_write(bytes: &[u8]) {
    let regs = pack_console_bytes(bytes);
    // SAFETY: CONSOLE_WRITE only reads its argument registers; the hypervisor may clobber
    // what SMCCC allows, which clobber_abi("C") covers.
    unsafe {
        asm!(
            "hvc #0",
            in("x0") CONSOLE_WRITE,
            in("x1") bytes.len(),
            in("x2") regs[0],
            in("x3") regs[1],
            in("x4") regs[2],
            in("x5") regs[3],
            in("x6") regs[4],
            in("x7") regs[5],
            clobber_abi("C"),
            options(nostack),
        );
    }
}

/// Polled transmit; a bare terminal wants CR before LF.
fn pl011_put(byte: u8) {
    if byte == b'\n' {
        pl011_put_raw(b'\r');
    }
    pl011_put_raw(byte);
}

fn pl011_put_raw(byte: u8) {
    let fr = (PL011_BASE + UART_FR) as *const u32;
    let dr = (PL011_BASE + UART_DR) as *mut u32;
    // SAFETY: only called bare, where the PL011 at this address is ours and mapped as
    // device memory (or the MMU is still off); MMIO needs volatile accesses.
    unsafe {
        while fr.read_volatile() & UART_FR_TXFF != 0 {}
        dr.write_volatile(u32::from(byte));
    }
}
