//! Entry points: the boot core (`_start`, from the loader) and secondaries (`secondary_entry`,
//! from PSCI `CPU_ON`).
//!
//! Each core gets a stack in `.bss`, indexed by its logical core number: 0 for the boot core,
//! and for a secondary the number the boot core passed as the `CPU_ON` context id (it arrives
//! in `x0`). Indexing by logical number rather than by MPIDR fields keeps the stack array
//! dense on boards whose affinity values are sparse; the MPIDR itself is validated in Rust
//! against the DTB's CPU list.

use crate::hvcore::MAX_CORES;

/// Bytes of EL2 stack per core.
pub const STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    mov     x19, x0                 // possibly the DTB
    mov     x20, #0                 // logical core 0
    bl      spumone_set_stack
    bl      spumone_check_el2
    // Zero .bss once, before any Rust runs. The stack lives in .bss but is not used yet.
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
2:  bl      spumone_set_el2_regs
    mov     x0, x19
    bl      {boot_main}
    b       spumone_park

.global secondary_entry
secondary_entry:
    mov     x20, x0                 // logical core number (CPU_ON context id)
    cmp     x20, #{max_cores}
    b.hs    spumone_park
    bl      spumone_set_stack
    bl      spumone_check_el2
    bl      spumone_set_el2_regs
    mov     x0, x20
    bl      {secondary_main}
    b       spumone_park

// x20 = logical core number. Points SP at the top of that core's stack. Clobbers x9, x10.
spumone_set_stack:
    adrp    x9, spumone_stacks
    add     x9, x9, :lo12:spumone_stacks
    ldr     x10, ={stack_size}
    madd    x9, x20, x10, x9
    add     x9, x9, x10
    mov     sp, x9
    ret

// x20 = logical core number; only valid at EL2. Uses SP_EL2, and sets TPIDR_EL2 to the
// number and VBAR_EL2 to the vector table. Clobbers x9.
spumone_set_el2_regs:
    mov     x9, sp
    msr     spsel, #1
    mov     sp, x9
    msr     tpidr_el2, x20
    adrp    x9, spumone_vectors
    add     x9, x9, :lo12:spumone_vectors
    msr     vbar_el2, x9
    isb
    ret

// Calls the Rust reporter (which does not return) unless CurrentEL is EL2.
spumone_check_el2:
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.ne    3f
    ret
3:  lsr     x0, x9, #2
    bl      {wrong_el}
    b       spumone_park

.global spumone_park
spumone_park:
    msr     daifset, #0xf
4:  wfe
    b       4b

.section .bss.stacks, "aw", %nobits
.balign 16
.global spumone_stacks
spumone_stacks:
    .space {stacks_bytes}
"#,
    boot_main = sym super::boot_main,
    secondary_main = sym super::secondary_main,
    wrong_el = sym wrong_el,
    max_cores = const MAX_CORES,
    stack_size = const STACK_SIZE,
    stacks_bytes = const STACK_SIZE * MAX_CORES,
);

/// Called from the entry code when a core did not start at EL2: says so on the UART at the
/// board's default address (nothing is parsed yet) and stops that core.
extern "C" fn wrong_el(el: u64) -> ! {
    super::uart::early_text(format_args!(
        "spumone: entered at EL{} but needs EL2; stopping\n",
        el
    ));
    super::park()
}

unsafe extern "C" {
    static spumone_stacks: u8;
}

/// The initial (highest) stack pointer of logical core `core`.
pub fn stack_top(core: usize) -> u64 {
    let base = core::ptr::addr_of!(spumone_stacks) as u64;
    base + ((core % MAX_CORES) as u64 + 1) * STACK_SIZE as u64
}
