//! The EL1 vector table (all 16 entries) and the Rust handler behind it.
//!
//! Every entry saves the whole interrupted state (general and FP/SIMD registers, ELR, SPSR,
//! SP_EL0) as a [`Frame`] on the kernel stack (SP_EL1), calls [`rtos_trap`] with the entry
//! number, and restores the frame, which the kernel may have replaced by another task's.

use super::{power, probe, rtos, sysreg};
use crate::context::Frame;
use crate::esr::{
    judge, route, ContainedReport, OverflowReport, Route, Syndrome, UnexpectedReport, VectorSlot,
    Verdict,
};
use crate::layout::{guard_slot, IDLE_SLOT};
use crate::println;
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

global_asm!(
    r#"
    .section .text.vectors, "ax"
    .balign 0x800
    .global rtos_vectors
rtos_vectors:
    .irp index, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .balign 0x80
    sub     sp, sp, #{frame}
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
    stp     x30, x9, [sp, #240]
    mrs     x10, spsr_el1
    mrs     x11, sp_el0
    stp     x10, x11, [sp, #256]
    mrs     x9, fpsr
    mrs     x10, fpcr
    stp     x9, x10, [sp, #272]
    add     x9, sp, #288
    stp     q0, q1, [x9, #0]
    stp     q2, q3, [x9, #32]
    stp     q4, q5, [x9, #64]
    stp     q6, q7, [x9, #96]
    stp     q8, q9, [x9, #128]
    stp     q10, q11, [x9, #160]
    stp     q12, q13, [x9, #192]
    stp     q14, q15, [x9, #224]
    stp     q16, q17, [x9, #256]
    stp     q18, q19, [x9, #288]
    stp     q20, q21, [x9, #320]
    stp     q22, q23, [x9, #352]
    stp     q24, q25, [x9, #384]
    stp     q26, q27, [x9, #416]
    stp     q28, q29, [x9, #448]
    stp     q30, q31, [x9, #480]

    mov     x1, sp
    bl      rtos_trap

    add     x9, sp, #288
    ldp     q0, q1, [x9, #0]
    ldp     q2, q3, [x9, #32]
    ldp     q4, q5, [x9, #64]
    ldp     q6, q7, [x9, #96]
    ldp     q8, q9, [x9, #128]
    ldp     q10, q11, [x9, #160]
    ldp     q12, q13, [x9, #192]
    ldp     q14, q15, [x9, #224]
    ldp     q16, q17, [x9, #256]
    ldp     q18, q19, [x9, #288]
    ldp     q20, q21, [x9, #320]
    ldp     q22, q23, [x9, #352]
    ldp     q24, q25, [x9, #384]
    ldp     q26, q27, [x9, #416]
    ldp     q28, q29, [x9, #448]
    ldp     q30, q31, [x9, #480]
    ldp     x9, x10, [sp, #272]
    msr     fpsr, x9
    msr     fpcr, x10
    ldp     x10, x11, [sp, #256]
    msr     spsr_el1, x10
    msr     sp_el0, x11
    ldp     x30, x9, [sp, #240]
    msr     elr_el1, x9
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
    add     sp, sp, #{frame}
    eret
"#,
    frame = const crate::context::FRAME_SIZE,
);

/// Set while reporting a fatal exception, so a fault inside the report cannot loop.
static DYING: AtomicBool = AtomicBool::new(false);

#[no_mangle]
extern "C" fn rtos_trap(index: u64, frame: &mut Frame) {
    let slot = VectorSlot::from_index(index);
    let esr = Syndrome(sysreg::esr_el1());
    let far = sysreg::far_el1();
    match route(slot, esr, far, guard_slot) {
        Route::Service => return rtos::service(frame),
        Route::Interrupt => return rtos::interrupt(frame),
        Route::StackOverflow { slot } => {
            let task = (slot != IDLE_SLOT).then_some(slot + 1);
            let elr = frame.elr;
            die(format_args!("{}", OverflowReport { task, far, elr }));
        }
        Route::Other => {}
    }
    match judge(slot, esr, probe::armed()) {
        Verdict::Contained(access) => {
            probe::note_fault();
            println!("{}", ContainedReport { access, far, esr });
            // A64 instructions are 4 bytes: resume after the faulting access.
            frame.elr += 4;
        }
        Verdict::Unexpected => {
            let elr = frame.elr;
            die(format_args!(
                "{}",
                UnexpectedReport {
                    slot,
                    esr,
                    far,
                    elr
                }
            ))
        }
    }
}

/// Reports a fatal exception and fails the run.
fn die(report: core::fmt::Arguments<'_>) -> ! {
    if DYING.swap(true, Ordering::SeqCst) {
        power::halt()
    }
    println!("{report}");
    println!("rtos: FAILED, stopping");
    power::finish(false)
}
