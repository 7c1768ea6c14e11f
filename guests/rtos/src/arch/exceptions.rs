//! The EL1 vector table (all 16 entries) and the Rust handler behind it.
//!
//! Every entry saves the general registers, ELR and SPSR on the current stack and calls
//! [`rtos_trap`] with the entry number, then restores them (ELR possibly moved on) and
//! returns. FP/SIMD registers are not saved: code that expects to fault (the probes)
//! declares them clobbered, and every other exception is fatal.

use super::{power, probe, sysreg};
use crate::esr::{judge, ContainedReport, Syndrome, UnexpectedReport, VectorSlot, Verdict};
use crate::println;
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// What the vector code saves; the layout matches the assembly below.
#[repr(C)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 272);

global_asm!(
    r#"
    .section .text.vectors, "ax"
    .balign 0x800
    .global rtos_vectors
rtos_vectors:
    .irp index, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .balign 0x80
    sub     sp, sp, #272
    stp     x0, x1, [sp, #0]
    mov     x0, #\index
    b       .Ltrap_common
    .endr

.Ltrap_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x9, elr_el1
    mrs     x10, spsr_el1
    stp     x30, x9, [sp, #240]
    str     x10, [sp, #256]

    mov     x1, sp
    bl      rtos_trap

    ldp     x30, x9, [sp, #240]
    ldr     x10, [sp, #256]
    msr     elr_el1, x9
    msr     spsr_el1, x10
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #272
    eret
"#
);

/// Set while reporting a fatal exception, so a fault inside the report cannot loop.
static DYING: AtomicBool = AtomicBool::new(false);

#[no_mangle]
extern "C" fn rtos_trap(index: u64, frame: &mut TrapFrame) {
    let slot = VectorSlot::from_index(index);
    let esr = Syndrome(sysreg::esr_el1());
    let far = sysreg::far_el1();
    match judge(slot, esr, probe::armed()) {
        Verdict::Contained(access) => {
            probe::note_fault();
            println!("{}", ContainedReport { access, far, esr });
            // A64 instructions are 4 bytes: resume after the faulting access.
            frame.elr += 4;
        }
        Verdict::Unexpected => {
            if DYING.swap(true, Ordering::SeqCst) {
                power::halt()
            }
            let elr = frame.elr;
            println!(
                "{}",
                UnexpectedReport {
                    slot,
                    esr,
                    far,
                    elr
                }
            );
            println!("rtos: FAILED, stopping");
            power::finish(false)
        }
    }
}
