//! Bulk copy out of guest RAM for the DSM.
//!
//! EL2 is built soft-float, so the compiler's `memcpy` moves one 8-byte word per loop step;
//! a text-hash pass copies 22 MiB a page at a time, and that loop was a fifth of the pass.
//! This one moves 64 bytes a step with four `ldp`/`stp` pairs of general registers.

/// Copies `dst.len()` bytes from physical (identity-mapped) address `src`.
///
/// # Safety
/// `[src, src + dst.len())` must be mapped readable at EL2 and must not overlap `dst`.
pub unsafe fn copy_from(src: usize, dst: &mut [u8]) {
    let len = dst.len();
    let dst_ptr = dst.as_mut_ptr();
    let bulk = if (src | dst_ptr as usize).is_multiple_of(8) {
        len & !63
    } else {
        0
    };
    if bulk > 0 {
        // SAFETY: both ranges hold `bulk` bytes (the caller's contract for `src`, the slice
        // for `dst`), both are 8-byte aligned, and the loop touches no other memory.
        unsafe {
            core::arch::asm!(
                "1:",
                "ldp {a}, {b}, [{s}]",
                "ldp {c}, {d}, [{s}, #16]",
                "stp {a}, {b}, [{t}]",
                "stp {c}, {d}, [{t}, #16]",
                "ldp {a}, {b}, [{s}, #32]",
                "ldp {c}, {d}, [{s}, #48]",
                "stp {a}, {b}, [{t}, #32]",
                "stp {c}, {d}, [{t}, #48]",
                "add {s}, {s}, #64",
                "add {t}, {t}, #64",
                "subs {n}, {n}, #64",
                "b.ne 1b",
                s = inout(reg) src => _,
                t = inout(reg) dst_ptr => _,
                n = inout(reg) bulk => _,
                a = out(reg) _,
                b = out(reg) _,
                c = out(reg) _,
                d = out(reg) _,
                options(nostack),
            );
        }
    }
    if bulk < len {
        // SAFETY: the tail lies in the same ranges as above.
        unsafe {
            core::ptr::copy_nonoverlapping((src + bulk) as *const u8, dst_ptr.add(bulk), len - bulk)
        };
    }
}
