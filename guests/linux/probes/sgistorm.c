// SPDX-License-Identifier: GPL-2.0
/*
 * sgistorm: SGIs at every target a Linux vCPU can name, through ICC_SGI1R_EL1,
 * ICC_ASGI1R_EL1 and ICC_SGI0R_EL1, from one kernel thread pinned to each online CPU for
 * `secs` seconds: every affinity (Aff3..Aff1 random, Aff0 through RS and the whole target
 * list) and IRM = 1 (all but self). The RTOS's physical core must never see one.
 *
 * Linux itself must live to report: SGIs 0-7 are Linux's own IPIs (a stray CPU_STOP would
 * park a CPU), so those are only sent to targets that are not Linux's vCPUs; SGIs 8-15,
 * unused by Linux, go everywhere, Linux's own vCPUs and broadcasts included.
 *
 * A register spumone does not emulate may be refused with an undefined instruction, which
 * kills the writing kernel thread (an oops). So each register is first written once from a
 * throwaway thread; only those that survive are stormed, the others are reported refused.
 *
 *   insmod sgistorm.ko secs=3 seed=N
 */
#include <linux/completion.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <asm/sysreg.h>

#include "rng.h"

static int secs = 3;
module_param(secs, int, 0444);
static ulong seed = 1;
module_param(seed, ulong, 0444);

struct storm {
	int cpu;
	u64 sent[3];
	struct completion done;
};

static struct storm storms[NR_CPUS];


/* An SGI register value: INTID [27:24], IRM [40], Aff3 [55:48], RS [47:44], Aff2 [39:32],
 * Aff1 [23:16], target list [15:0]. */
static u64 sgi_value(u64 *s)
{
	u64 r = probe_next(s);
	u64 intid = r & 15;
	u64 irm = (r >> 4) & 1;
	u64 rs = (r >> 5) & 15;
	u64 aff1 = (r >> 9) & 0xff, aff2 = (r >> 17) & 0xff, aff3 = (r >> 25) & 0xff;
	u64 list = (r >> 33) & 0xffff;
	unsigned int linux_cpus = num_possible_cpus();

	/* Rare small affinities make the "nearby" targets common. */
	if ((r >> 49) & 1)
		aff1 = aff2 = aff3 = 0;
	if ((r >> 50) & 1)
		rs = 0;
	if (intid < 8) {
		/* Never Linux's own vCPUs: Aff0 = RS * 16 + bit, Aff3..1 = 0 for all of them. */
		irm = 0;
		if (!rs && !aff1 && !aff2 && !aff3)
			list &= ~((1ULL << linux_cpus) - 1);
	}
	return intid << 24 | irm << 40 | aff3 << 48 | rs << 44 | aff2 << 32 | aff1 << 16 | list;
}

/* Which registers took a trial write (a thread killed by an undefined instruction never
 * gets to say so). */
static bool usable[3];
static const char *const names[3] = { "ICC_SGI1R_EL1", "ICC_ASGI1R_EL1", "ICC_SGI0R_EL1" };

static void write_sgi(int reg, u64 v)
{
	switch (reg) {
	case 0:
		write_sysreg_s(v, SYS_ICC_SGI1R_EL1);
		break;
	case 1:
		write_sysreg_s(v, SYS_ICC_ASGI1R_EL1);
		break;
	default:
		write_sysreg_s(v, SYS_ICC_SGI0R_EL1);
		break;
	}
	isb();
}

struct trial {
	int reg;
	struct completion done;
};

static struct trial trials[3];

static int trial_thread(void *data)
{
	struct trial *t = data;

	/* SGI 15 to a vCPU no partition has (Aff3 = 0xff): harmless if it is taken. */
	write_sgi(t->reg, 15ULL << 24 | 0xffULL << 48 | 1);
	complete(&t->done);
	return 0;
}

static int storm_thread(void *data)
{
	struct storm *st = data;
	u64 s = probe_stream(seed, st->cpu);
	unsigned long end = jiffies + secs * HZ;

	while (time_before(jiffies, end)) {
		int k;

		for (k = 0; k < 255; k++) {
			if (!usable[k % 3])
				continue;
			write_sgi(k % 3, sgi_value(&s));
			st->sent[k % 3]++;
		}
		cond_resched();
	}
	complete(&st->done);
	return 0;
}

static int __init sgistorm_init(void)
{
	int cpu;
	u64 total[3] = { 0 };

	for (cpu = 0; cpu < 3; cpu++) {
		struct task_struct *t;

		trials[cpu].reg = cpu;
		init_completion(&trials[cpu].done);
		t = kthread_run(trial_thread, &trials[cpu], "sgitrial");
		if (IS_ERR(t))
			return PTR_ERR(t);
		usable[cpu] = wait_for_completion_timeout(&trials[cpu].done, HZ);
		pr_info("sgistorm: %s: %s\n", names[cpu],
			usable[cpu] ? "written" :
				      "refused (undefined instruction: the trial thread died)");
	}
	pr_info("sgistorm: seed %lu, %d s from each of %u CPUs\n", seed, secs, num_online_cpus());
	for_each_online_cpu(cpu) {
		struct task_struct *t;

		storms[cpu].cpu = cpu;
		init_completion(&storms[cpu].done);
		t = kthread_create_on_cpu(storm_thread, &storms[cpu], cpu, "sgistorm/%u");
		if (IS_ERR(t))
			return PTR_ERR(t);
		wake_up_process(t);
	}
	for_each_online_cpu(cpu) {
		wait_for_completion(&storms[cpu].done);
		pr_info("sgistorm: cpu %d: %llu SGI1R, %llu ASGI1R, %llu SGI0R writes\n", cpu,
			storms[cpu].sent[0], storms[cpu].sent[1], storms[cpu].sent[2]);
		total[0] += storms[cpu].sent[0];
		total[1] += storms[cpu].sent[1];
		total[2] += storms[cpu].sent[2];
	}
	pr_info("sgistorm: done: %llu SGI1R, %llu ASGI1R, %llu SGI0R writes\n", total[0], total[1],
		total[2]);
	return 0;
}

static void __exit sgistorm_exit(void)
{
}

module_init(sgistorm_init);
module_exit(sgistorm_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone probe: SGI storms through the ICC SGI registers");
