// SPDX-License-Identifier: GPL-2.0
/*
 * vbar_swap: points VBAR_EL1 of one CPU at a vector table the kernel does not own (by
 * default this module's own table), holds it there for hold_ms, then puts the kernel's back.
 *
 * Why only for a while: with KPTI (on whenever KASLR is) the kernel rewrites VBAR_EL1 itself
 * on every entry from and return to user space, so a swap from a module cannot outlive the
 * next return to user; and a foreign table cannot forward kernel-mode exceptions without
 * clobbering a live register. The CPU keeps interrupts masked while the swap is in place, so
 * no exception reaches the foreign table; a checker reading VBAR_EL1 in that window sees an
 * address outside the kernel's allowed set.
 *
 *   insmod vbar_swap.ko [hold_ms=2000] [target=0x...]
 */
#include <linux/delay.h>
#include <linux/module.h>
#include <asm/sysreg.h>

static unsigned long target;
module_param(target, ulong, 0444);
MODULE_PARM_DESC(target, "VBAR_EL1 value to install (default: this module's table; 2 KiB aligned)");

static uint hold_ms = 2000;
module_param(hold_ms, uint, 0444);
MODULE_PARM_DESC(hold_ms, "how long the swapped table stays installed (at most 10000 ms)");

/* 16 entries of 128 bytes, each parking the CPU: nothing should ever arrive here. */
asm(".pushsection .text, \"ax\"\n"
    ".balign 2048\n"
    "vbar_swap_vectors:\n"
    ".rept 16\n"
    ".balign 128\n"
    "1:	wfe\n"
    "	b	1b\n"
    ".endr\n"
    ".popsection\n");
extern const char vbar_swap_vectors[];

static int __init vbar_swap_init(void)
{
	unsigned long flags, old, new = target ? target : (unsigned long)vbar_swap_vectors;
	int cpu;

	if (new & 0x7ff || hold_ms > 10000) {
		pr_info("vbar_swap: target must be 2 KiB aligned and hold_ms <= 10000\n");
		return -EINVAL;
	}
	cpu = get_cpu();
	local_irq_save(flags);
	old = read_sysreg(vbar_el1);
	write_sysreg(new, vbar_el1);
	isb();
	mdelay(hold_ms);
	write_sysreg(old, vbar_el1);
	isb();
	local_irq_restore(flags);
	put_cpu();
	pr_info("vbar_swap: cpu %d VBAR_EL1 %lx -> %lx for %u ms, then restored\n", cpu, old, new,
		hold_ms);
	return 0;
}

static void __exit vbar_swap_exit(void)
{
}

module_init(vbar_swap_init);
module_exit(vbar_swap_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone test attack: install a foreign exception vector table");
