// SPDX-License-Identifier: GPL-2.0
/*
 * gicr_storm: from one CPU, toggles the enable of the virtual timer PPI (27) in another
 * CPU's redistributor frame as fast as it can for `ms`, then leaves it disabled for `hold_ms`
 * and enables it again. In `shared`, CPU 1 aimed at frame 0 (the CPU on the RTOS's core) must
 * change only that vCPU's virtual state and never reach the RTOS.
 *
 *   insmod gicr_storm.ko cpu=1 frame=0 ms=4000 hold_ms=1000
 *
 * The load returns when the storm is over; `writes` and `ran_on` (parameters) tell what it did.
 */
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/io.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/module.h>

#define FRAME_SIZE 0x20000UL
#define SGI_BASE 0x10000UL
#define ISENABLER0 0x100
#define ICENABLER0 0x180
#define VTIMER (1u << 27)

static int cpu = 1;
module_param(cpu, int, 0444);
static unsigned long frame;
module_param(frame, ulong, 0444);
static unsigned int ms = 4000;
module_param(ms, uint, 0444);
static unsigned int hold_ms = 1000;
module_param(hold_ms, uint, 0444);
static unsigned long gicr = 0x080A0000UL;
module_param(gicr, ulong, 0444);
static unsigned long writes;
module_param(writes, ulong, 0444);
static int ran_on = -1;
module_param(ran_on, int, 0444);

static DECLARE_COMPLETION(done);

static int storm(void *unused)
{
	void __iomem *sgi = ioremap(gicr + frame * FRAME_SIZE + SGI_BASE, 0x1000);
	ktime_t end = ktime_add_ms(ktime_get(), ms);

	if (sgi) {
		ran_on = raw_smp_processor_id();
		while (ktime_before(ktime_get(), end)) {
			writel_relaxed(VTIMER, sgi + ICENABLER0);
			writel_relaxed(VTIMER, sgi + ISENABLER0);
			writes += 2;
			if (!(writes & 0x3ff))
				cond_resched();
		}
		writel_relaxed(VTIMER, sgi + ICENABLER0);
		msleep(hold_ms);
		writel_relaxed(VTIMER, sgi + ISENABLER0);
		writes += 2;
		iounmap(sgi);
	}
	complete(&done);
	return 0;
}

static int __init gicr_storm_init(void)
{
	struct task_struct *t = kthread_create(storm, NULL, "gicr_storm");

	if (IS_ERR(t))
		return PTR_ERR(t);
	kthread_bind(t, cpu);
	wake_up_process(t);
	wait_for_completion(&done);
	return ran_on < 0 ? -ENOMEM : 0;
}

static void __exit gicr_storm_exit(void)
{
}

module_init(gicr_storm_init);
module_exit(gicr_storm_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Redistributor enable storm at another CPU's frame (isolation test)");
