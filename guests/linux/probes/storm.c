// SPDX-License-Identifier: GPL-2.0
/*
 * storm: an adversarial load for the RTOS latency rows. One kernel thread, bound to one CPU,
 * makes that CPU exit to the hypervisor as often as it can (or, for irqoff, holds it with
 * interrupts masked) for `seconds`, then prints how many iterations it made:
 *
 *   wfi     the virtual timer armed 1 us ahead with interrupts masked, then WFI: the WFI
 *           waits (trapped where HCR_EL2.TWI is set), the timer interrupt wakes it (an
 *           exit of its own), and unmasking lets Linux's timer handler take it and put its
 *           own next deadline back. A timer already pending would make the WFI return at
 *           once without trapping (a WFI traps only when it would wait), hence the delay.
 *   wfe     a bare WFE: where HCR_EL2.TWE is set each one traps (it would wait); a SEV
 *           before it would make it complete at once, untrapped. Where WFE is not trapped
 *           it waits for Linux's timer event stream (100 us). QEMU 7.2 never traps WFE: it
 *           only ends the vCPU's round-robin slice.
 *   sgi     SGIs to its own CPU through ICC_SGI1R_EL1 with interrupts enabled: each is an
 *           irq_work queued here (Linux sends its IRQ_WORK IPI), so the count is of SGIs
 *           taken, not just sent.
 *   mmio    GICD_TYPER read, GICD_CTLR read and written back unchanged, through an ioremap
 *           of the distributor named by the device tree: three emulated MMIO exits.
 *   sysreg  ICC_SGI1R_EL1 written with an empty target list: a trapped system-register
 *           write that sends nothing. The SGI generation registers are the only EL1 system
 *           registers spumone traps, and it refuses the other two (ICC_ASGI1R_EL1,
 *           ICC_SGI0R_EL1) with an undefined instruction.
 *   irqoff  interrupts masked for `hold_ms` (a pure spin on the counter: no WFE, no YIELD),
 *           then `gap_us` with them enabled.
 *
 *   insmod storm.ko mode=sgi seconds=10 [cpu=N] [hold_ms=10] [gap_us=100] [relax=1]
 *
 * relax=1 adds a YIELD hint after every iteration (and to irqoff's spin): the guest does the
 * same work, but QEMU's round robin ends the vCPU's slice at each YIELD. It is the control
 * that tells QEMU's scheduling of busy vCPUs from the hypervisor's own cost.
 *
 * `cpu` defaults to the CPU that loads the module. `iterations` and `done` are read-only
 * parameters; rmmod stops a storm early.
 */
#include <linux/completion.h>
#include <linux/irq_work.h>
#include <linux/irqchip/arm-gic-v3.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/of_address.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <clocksource/arm_arch_timer.h>
#include <asm/barrier.h>
#include <asm/cputype.h>
#include <asm/sysreg.h>

static char *mode = "sgi";
module_param(mode, charp, 0444);
static int seconds = 2;
module_param(seconds, int, 0444);
static int cpu = -1;
module_param(cpu, int, 0444);
static int hold_ms = 10;
module_param(hold_ms, int, 0444);
static int gap_us = 100;
module_param(gap_us, int, 0444);
static int relax;
module_param(relax, int, 0444);
static ulong iterations;
module_param(iterations, ulong, 0444);
static int done;
module_param(done, int, 0444);

enum storm_mode { WFI, WFE, SGI, MMIO, SYSREG, IRQOFF };
static const char *const mode_names[] = { "wfi", "wfe", "sgi", "mmio", "sysreg", "irqoff" };

static enum storm_mode chosen;
static struct task_struct *thread;
static void __iomem *gicd;
static atomic_long_t sgis_taken;
static struct irq_work sgi_work;

static u64 counter(void)
{
	isb();
	return read_sysreg(cntvct_el0);
}

static u64 ticks_of_us(u64 us)
{
	return read_sysreg(cntfrq_el0) * us / USEC_PER_SEC;
}

static void relax_hint(void)
{
	if (relax)
		asm volatile("yield" ::: "memory");
}

/* Spins on the counter only: cpu_relax() is a YIELD and udelay() may WFE, and either can
 * hand the CPU away (in QEMU, to another vCPU); relax=1 asks for exactly that. */
static void spin_ticks(u64 ticks)
{
	u64 start = counter();

	while (counter() - start < ticks)
		relax_hint();
}

static void wfi_once(void)
{
	unsigned long flags;

	local_irq_save(flags);
	write_sysreg(counter() + ticks_of_us(1), cntv_cval_el0);
	write_sysreg(ARCH_TIMER_CTRL_ENABLE, cntv_ctl_el0);
	isb();
	wfi();
	local_irq_restore(flags);
}

static void sgi_taken(struct irq_work *work)
{
	atomic_long_inc(&sgis_taken);
}

/* ICC_SGI1R_EL1 for this CPU's own cluster: Aff3..Aff1 and the range of Aff0. */
static u64 own_cluster_sgi1r(void)
{
	u64 mpidr = read_cpuid_mpidr();
	u64 aff0 = MPIDR_AFFINITY_LEVEL(mpidr, 0);

	return (u64)MPIDR_AFFINITY_LEVEL(mpidr, 3) << ICC_SGI1R_AFFINITY_3_SHIFT |
	       (u64)MPIDR_AFFINITY_LEVEL(mpidr, 2) << ICC_SGI1R_AFFINITY_2_SHIFT |
	       (u64)MPIDR_AFFINITY_LEVEL(mpidr, 1) << ICC_SGI1R_AFFINITY_1_SHIFT |
	       (aff0 / 16) << ICC_SGI1R_RS_SHIFT;
}

/* One unit of the storm; returns how many iterations it counts (sgi counts on taking). */
static ulong storm_once(u64 empty_sgi1r)
{
	u32 ctlr;

	switch (chosen) {
	case WFI:
		wfi_once();
		return 1;
	case WFE:
		wfe();
		return 1;
	case SGI:
		irq_work_queue(&sgi_work);
		return 0;
	case MMIO:
		readl_relaxed(gicd + GICD_TYPER);
		ctlr = readl_relaxed(gicd + GICD_CTLR);
		writel_relaxed(ctlr & ~GICD_CTLR_RWP, gicd + GICD_CTLR);
		return 1;
	case SYSREG:
		write_sysreg_s(empty_sgi1r, SYS_ICC_SGI1R_EL1);
		isb();
		return 1;
	case IRQOFF:
		local_irq_disable();
		spin_ticks(ticks_of_us((u64)hold_ms * USEC_PER_MSEC));
		local_irq_enable();
		spin_ticks(ticks_of_us(gap_us));
		return 1;
	}
	return 0;
}

static int storm_thread(void *data)
{
	u64 start = counter();
	u64 length = read_sysreg(cntfrq_el0) * seconds;
	u64 slice = ticks_of_us(1000);
	u64 empty_sgi1r = own_cluster_sgi1r();
	ulong count = 0;
	u64 elapsed;

	pr_info("storm: %s on cpu %d for %d s: start\n", mode_names[chosen], smp_processor_id(),
		seconds);
	while (!kthread_should_stop() && counter() - start < length) {
		u64 resched = counter() + slice;

		/* A millisecond at a time, then give Linux the CPU if it wants it. */
		do {
			count += storm_once(empty_sgi1r);
			relax_hint();
		} while (counter() < resched);
		cond_resched();
	}
	if (chosen == SGI)
		count = atomic_long_read(&sgis_taken);
	elapsed = counter() - start;
	WRITE_ONCE(iterations, count);
	pr_info("storm: %s on cpu %d: end: %lu iterations in %llu ms\n", mode_names[chosen],
		smp_processor_id(), count, elapsed * 1000 / read_sysreg(cntfrq_el0));
	WRITE_ONCE(done, 1);
	/* Stay until rmmod stops the thread, so the stop never finds it gone. */
	while (!kthread_should_stop()) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (!kthread_should_stop())
			schedule();
		__set_current_state(TASK_RUNNING);
	}
	return 0;
}

static int __init storm_init(void)
{
	int target = cpu;
	int m;

	for (m = 0; m < ARRAY_SIZE(mode_names); m++)
		if (!strcmp(mode, mode_names[m]))
			break;
	if (m == ARRAY_SIZE(mode_names)) {
		pr_err("storm: unknown mode %s\n", mode);
		return -EINVAL;
	}
	chosen = m;
	if (seconds <= 0 || hold_ms <= 0 || gap_us < 0) {
		pr_err("storm: seconds and hold_ms must be positive, gap_us not negative\n");
		return -EINVAL;
	}
	if (target < 0)
		target = raw_smp_processor_id();
	if (target >= nr_cpu_ids || !cpu_online(target)) {
		pr_err("storm: cpu %d is not online\n", target);
		return -EINVAL;
	}
	if (chosen == MMIO) {
		struct device_node *node = of_find_compatible_node(NULL, NULL, "arm,gic-v3");

		/* Entry 0 of the GICv3 node's reg is the distributor. */
		gicd = node ? of_iomap(node, 0) : NULL;
		of_node_put(node);
		if (!gicd) {
			pr_err("storm: no arm,gic-v3 distributor in the device tree\n");
			return -ENODEV;
		}
	}
	init_irq_work(&sgi_work, sgi_taken);
	thread = kthread_create_on_cpu(storm_thread, NULL, target, "storm/%u");
	if (IS_ERR(thread)) {
		if (gicd)
			iounmap(gicd);
		return PTR_ERR(thread);
	}
	wake_up_process(thread);
	return 0;
}

static void __exit storm_exit(void)
{
	kthread_stop(thread);
	irq_work_sync(&sgi_work);
	if (gicd)
		iounmap(gicd);
}

module_init(storm_init);
module_exit(storm_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone load: a CPU that exits to the hypervisor as often as it can");
