// SPDX-License-Identifier: GPL-2.0
/*
 * hvcfuzz: `calls` HVC and SMC calls with random function IDs and arguments from a seeded
 * generator, in a tight loop in a kernel thread (a user program would need a syscall per
 * call). A quarter of the IDs are fully random, a quarter random in the SMCCC fast-call
 * space (any owner, any function number), half drawn from the IDs spumone knows (PSCI,
 * SMCCC architecture calls, spumone's own), all with random x1-x7.
 *
 * Left out, because they legitimately stop or silence the caller: PSCI CPU_OFF,
 * SYSTEM_OFF, SYSTEM_RESET, SYSTEM_RESET2, and spumone's EXIT and CONSOLE_WRITE (whose
 * random bytes would land on Linux's console). CPU_ON with random arguments stays in: all
 * of Linux's vCPUs are on, so it can only be refused.
 *
 *   insmod hvcfuzz.ko seed=N calls=200000     (calls made; excluded IDs are skipped on top)
 *
 * Prints the seed, the count of each result class per conduit, and the time taken.
 */
#include <linux/arm-smccc.h>
#include <linux/completion.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/sched.h>

#include "rng.h"

static ulong seed = 1;
module_param(seed, ulong, 0444);
static ulong calls = 100000;
module_param(calls, ulong, 0444);

static const u32 known[] = {
	0x80000000, 0x80000001, 0x80008000, 0x80003fff, 0x80007fff, 0x8000ff00,
	0x84000000, 0x84000003, 0xc4000003, 0x84000004,
	0xc4000004, 0x84000005, 0xc4000005, 0x84000006, 0x84000007, 0xc4000007,
	0x8400000a, 0x8400000b, 0x8400000c, 0xc400000c, 0x8400000d, 0xc400000d,
	0x8400000e, 0xc400000e, 0x8400000f, 0x84000010, 0xc4000010, 0x84000011,
	0xc4000011, 0x84000013, 0xc4000013, 0x84000014, 0xc4000014, 0x84000015,
	0xc4000015, 0x8600ff00, 0x8600ff01, 0xc6000000, 0xc6000002, 0xc6000004,
	0xc6000005, 0xc600ffff, 0x8600ff03, 0x86000000,
};

static bool excluded(u32 id)
{
	switch (id) {
	case 0x84000002: /* CPU_OFF */
	case 0x84000008: /* SYSTEM_OFF */
	case 0x84000009: /* SYSTEM_RESET */
	case 0x84000012: /* SYSTEM_RESET2 */
	case 0xc4000012:
	case 0xc6000001: /* spumone CONSOLE_WRITE */
	case 0xc6000003: /* spumone EXIT */
		return true;
	}
	return false;
}


/* Result classes: 0, -1 (NOT_SUPPORTED), -2 (INVALID_PARAMETERS), other negative, positive. */
#define CLASSES 5
static const char *const class_names[CLASSES] = { "0", "-1", "-2", "other<0", ">0" };
static u64 counts[2][CLASSES];
static u64 skipped;
static DECLARE_COMPLETION(done);

static int class_of(long r)
{
	if (r == 0)
		return 0;
	if (r == -1)
		return 1;
	if (r == -2)
		return 2;
	return r < 0 ? 3 : 4;
}

static int fuzz_thread(void *unused)
{
	u64 s = probe_stream(seed, 0), made = 0;
	struct arm_smccc_res res;

	while (made < calls) {
		u64 r = probe_next(&s);
		u64 a[7];
		u32 id;
		int hvc = r & 1, k;

		switch ((r >> 1) & 3) {
		case 0:
			id = probe_next(&s);
			break;
		case 1:
			id = 0x80000000 | ((probe_next(&s) & 1) << 30) | ((probe_next(&s) % 64) << 24) |
			     (probe_next(&s) & 0x1f);
			break;
		default:
			id = known[probe_next(&s) % ARRAY_SIZE(known)];
			break;
		}
		if (excluded(id)) {
			skipped++;
			continue;
		}
		for (k = 0; k < 7; k++) {
			a[k] = probe_next(&s);
			/* Small values and values near Linux's, the RTOS's and spumone's RAM too. */
			switch (a[k] & 7) {
			case 0:
				a[k] = (a[k] >> 3) & 0xf;
				break;
			case 1:
				a[k] = 0x40000000 + ((a[k] >> 3) & 0x7ffffff8);
				break;
			}
		}
		if (hvc)
			arm_smccc_hvc(id, a[0], a[1], a[2], a[3], a[4], a[5], a[6], &res);
		else
			arm_smccc_smc(id, a[0], a[1], a[2], a[3], a[4], a[5], a[6], &res);
		counts[hvc][class_of((long)res.a0)]++;
		if ((++made & 1023) == 0)
			cond_resched();
	}
	complete(&done);
	return 0;
}

static int __init hvcfuzz_init(void)
{
	ktime_t start = ktime_get();
	struct task_struct *t;
	int c, k;
	u64 total = 0;

	pr_info("hvcfuzz: seed %lu, %lu calls\n", seed, calls);
	t = kthread_run(fuzz_thread, NULL, "hvcfuzz");
	if (IS_ERR(t))
		return PTR_ERR(t);
	wait_for_completion(&done);
	for (c = 0; c < 2; c++) {
		for (k = 0; k < CLASSES; k++)
			total += counts[c][k];
		pr_info("hvcfuzz: %s: %llu calls: %s=%llu %s=%llu %s=%llu %s=%llu %s=%llu\n",
			c ? "hvc" : "smc", counts[c][0] + counts[c][1] + counts[c][2] +
			counts[c][3] + counts[c][4], class_names[0], counts[c][0], class_names[1],
			counts[c][1], class_names[2], counts[c][2], class_names[3], counts[c][3],
			class_names[4], counts[c][4]);
	}
	pr_info("hvcfuzz: done: seed %lu, %llu calls made, %llu excluded IDs skipped, %lld ms\n",
		seed, total, skipped, ktime_ms_delta(ktime_get(), start));
	return 0;
}

static void __exit hvcfuzz_exit(void)
{
}

module_init(hvcfuzz_init);
module_exit(hvcfuzz_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone probe: HVC and SMC fuzzer");
