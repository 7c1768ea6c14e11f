//! The image entry point: check the EL, set up a stack, clear .bss, install the vectors,
//! enable FP/SIMD (the guest target uses it), then call `rtos_main(x0, x1, x2)`.

use core::arch::global_asm;

use smccc::psci::PSCI_SYSTEM_OFF;

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    msr     daifset, #0xf
    mrs     x9, CurrentEL
    ubfx    x9, x9, #2, #2
    cmp     x9, #1
    b.ne    .Lwrong_el

    msr     spsel, #1
    adrp    x9, __stack_top
    add     x9, x9, :lo12:__stack_top
    mov     sp, x9

    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
.Lzero_bss:
    cmp     x9, x10
    b.hs    .Lbss_done
    stp     xzr, xzr, [x9], #16
    b       .Lzero_bss
.Lbss_done:

    adrp    x9, rtos_vectors
    add     x9, x9, :lo12:rtos_vectors
    msr     vbar_el1, x9
    mov     x9, #(3 << 20)
    msr     cpacr_el1, x9
    isb

    // x0..x2 still hold the boot registers.
    bl      rtos_main
    b       .Lhalt

.Lwrong_el:
    // Only a bare boot can land here (spumone always enters at EL1), so the PL011 is ours.
    mov     x11, x9
    adrp    x9, .Lwrong_el_msg
    add     x9, x9, :lo12:.Lwrong_el_msg
    movz    x10, #0x0900, lsl #16
.Lnext_char:
    ldrb    w12, [x9], #1
    cbz     w12, .Lmsg_done
.Ltx_full:
    ldr     w13, [x10, #0x18]
    tbnz    w13, #5, .Ltx_full
    str     w12, [x10]
    b       .Lnext_char
.Lmsg_done:
    // At EL2 with no EL3, QEMU serves PSCI on SMC: power off instead of hanging.
    cmp     x11, #2
    b.ne    .Lhalt
    movz    x0, #{system_off_lo}
    movk    x0, #{system_off_hi}, lsl #16
    smc     #0
.Lhalt:
    wfe
    b       .Lhalt

    .section .rodata.boot, "a"
.Lwrong_el_msg:
    .asciz  "rtos: not entered at EL1, stopping\r\n"
"#,
    system_off_lo = const PSCI_SYSTEM_OFF & 0xffff,
    system_off_hi = const PSCI_SYSTEM_OFF >> 16,
);
