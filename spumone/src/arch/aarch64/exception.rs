//! The EL2 vector table and the trap frame.
//!
//! Every vector saves the interrupted context's general registers, `ELR_EL2` and `SPSR_EL2`
//! in a [`TrapFrame`] on the EL2 stack and calls [`trap_entry`] with the vector's
//! [`VectorKind`]. Returning from `trap_entry` restores the (possibly edited) frame and
//! `eret`s. While one vCPU owns a core, that frame *is* the guest's register state. The
//! exception is a guest's IRQ: it saves only the caller-saved registers and calls
//! [`irq_entry`], which never looks at the frame.

use core::arch::global_asm;

/// Saved general registers plus the exception return state.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 34 * 8);

/// Which of the 16 vectors was taken: `group * 4 + type`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VectorKind(pub u64);

impl VectorKind {
    pub const LOWER_A64_SYNC: u64 = 8;
    pub const LOWER_A64_IRQ: u64 = 9;
    pub const LOWER_A64_SERROR: u64 = 11;

    pub fn type_name(self) -> &'static str {
        ["sync", "IRQ", "FIQ", "SError"][(self.0 % 4) as usize]
    }

    pub fn group_name(self) -> &'static str {
        const GROUPS: [&str; 4] = ["EL2t", "EL2h", "lower EL AArch64", "lower EL AArch32"];
        GROUPS.get((self.0 / 4) as usize).copied().unwrap_or("?")
    }

    pub fn from_current_el(self) -> bool {
        self.0 < 8
    }
}

impl TrapFrame {
    /// A fresh frame that `eret`s to `entry` with `spsr`.
    pub fn new(entry: u64, spsr: u64) -> Self {
        TrapFrame {
            elr: entry,
            spsr,
            ..Default::default()
        }
    }
}

macro_rules! vector_table {
    () => {
        concat!(
            ".section .text.vectors, \"ax\"\n",
            ".balign 2048\n",
            ".global spumone_vectors\n",
            "spumone_vectors:\n",
            vector_entry!(0),
            vector_entry!(1),
            vector_entry!(2),
            vector_entry!(3),
            vector_entry!(4),
            vector_entry!(5),
            vector_entry!(6),
            vector_entry!(7),
            vector_entry!(8),
            irq_vector_entry!(),
            vector_entry!(10),
            vector_entry!(11),
            vector_entry!(12),
            vector_entry!(13),
            vector_entry!(14),
            vector_entry!(15),
        )
    };
}

macro_rules! vector_entry {
    ($kind:literal) => {
        concat!(
            ".balign 128\n",
            "sub sp, sp, #",
            272,
            "\n",
            "stp x0, x1, [sp, #0]\n",
            "mov x0, #",
            $kind,
            "\n",
            "b spumone_trap_common\n",
        )
    };
}

// A guest's IRQ saves only what the AAPCS lets Rust clobber (x0-x18, x30) plus the return
// state: `irq_entry` preserves x19-x29 itself and never reads the frame's other slots.
macro_rules! irq_vector_entry {
    () => {
        concat!(
            ".balign 128\n",
            "sub sp, sp, #272\n",
            "stp x0, x1, [sp, #0]\n",
            "stp x2, x3, [sp, #16]\n",
            "stp x4, x5, [sp, #32]\n",
            "stp x6, x7, [sp, #48]\n",
            "stp x8, x9, [sp, #64]\n",
            "stp x10, x11, [sp, #80]\n",
            "stp x12, x13, [sp, #96]\n",
            "stp x14, x15, [sp, #112]\n",
            "stp x16, x17, [sp, #128]\n",
            "str x18, [sp, #144]\n",
            "mrs x9, elr_el2\n",
            "stp x30, x9, [sp, #240]\n",
            "mrs x10, spsr_el2\n",
            "str x10, [sp, #256]\n",
            "bl {irq_entry}\n",
            "cbnz x0, spumone_irq_switch\n",
            "b spumone_irq_return\n",
        )
    };
}

global_asm!(
    vector_table!(),
    r#"
spumone_trap_common:
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
    mrs     x9, elr_el2
    stp     x30, x9, [sp, #240]
    mrs     x10, spsr_el2
    str     x10, [sp, #256]
    mov     x1, x0
    mov     x0, sp
    bl      {trap_entry}
    // The handler may have written any register (an MMIO load into x19-x29).
    b       spumone_trap_return

.global spumone_trap_return
spumone_trap_return:
    // A sync trap's handler may have written x19-x29 (an emulated load); the IRQ path below
    // restores only the caller-saved registers the vector saved.
    ldr     x19, [sp, #152]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
spumone_irq_return:
    ldr     x10, [sp, #256]
    msr     spsr_el2, x10
    ldp     x30, x9, [sp, #240]
    msr     elr_el2, x9
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldr     x18, [sp, #144]
    add     sp, sp, #{frame_size}
    eret

// A shared core's IRQ that needs a scheduling decision: complete the frame with x19-x29
// (still the guest's: Rust preserved them), let the scheduler rewrite it, return through it.
spumone_irq_switch:
    str     x19, [sp, #152]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mov     x0, sp
    bl      {irq_switch}
    b       spumone_trap_return

// x0 = a TrapFrame to start from, x1 = this core's stack top. Copies the frame to just below
// the top (backwards: the source may overlap the destination only from below) and returns
// through it, so every guest entry starts from an empty EL2 stack.
.global spumone_enter_frame
spumone_enter_frame:
    sub     x4, x1, #{frame_size}
    mov     x2, #{frame_size}
5:  sub     x2, x2, #8
    ldr     x3, [x0, x2]
    str     x3, [x4, x2]
    cbnz    x2, 5b
    mov     sp, x4
    b       spumone_trap_return
"#,
    trap_entry = sym trap_entry,
    irq_entry = sym irq_entry,
    irq_switch = sym super::switch::irq_switch,
    frame_size = const FRAME_SIZE,
);

unsafe extern "C" {
    fn spumone_enter_frame(frame: *const TrapFrame, stack_top: u64) -> !;
}

/// Leaves EL2 through `frame` (to a guest, usually) with this core's EL2 stack emptied, so
/// repeated entries (a vCPU stopped and started again) never pile up abandoned frames.
pub fn enter(frame: &TrapFrame) -> ! {
    let top = super::boot::stack_top(super::cpu::core_index());
    // SAFETY: interrupts are masked; the frame is copied (overlap-safe) before the stack is
    // reset, and the callee never returns, so no Rust frame on this stack is used again.
    unsafe { spumone_enter_frame(frame, top) }
}

/// A physical IRQ taken from a guest (the frame holds only caller-saved registers); non-zero
/// asks for `switch::irq_switch` with the full frame.
extern "C" fn irq_entry() -> u64 {
    u64::from(super::guest::handle_irq())
}

extern "C" fn trap_entry(frame: &mut TrapFrame, kind: u64) {
    let kind = VectorKind(kind);
    match kind.0 {
        VectorKind::LOWER_A64_SYNC => super::guest::handle_sync(frame),
        VectorKind::LOWER_A64_IRQ => {
            if super::guest::handle_irq() {
                super::switch::irq_switch(frame);
            }
        }
        _ if kind.from_current_el() => super::fatal::unexpected_el2_exception(frame, kind),
        _ => super::guest::handle_unexpected(frame, kind),
    }
}
