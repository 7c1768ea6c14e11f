// SPDX-License-Identifier: GPL-2.0
/*
 * psci_abuse: PSCI calls a hostile Linux might make, through SMC and HVC, and what they
 * returned. Each phase is one insmod:
 *
 *   phase=calls     CPU_ON for every physical MPIDR 0-3 (the RTOS's core among them) and
 *                   out-of-range ones, with wild entry points (0, the RTOS's RAM, spumone's
 *                   RAM, the reset copy, unaligned, past the end of memory);
 *                   AFFINITY_INFO and MIGRATE oddities; CPU_SUSPEND and SYSTEM_SUSPEND
 *                   with wild entry points. off_cpu=N names a CPU the script took offline,
 *                   so CPU_ON meets a vCPU that is really off.
 *                   A violation is a CPU_ON that succeeded with a wild entry point or for a
 *                   vCPU Linux does not have; the module prints each and a count.
 *   phase=offstorm  every other online CPU calls CPU_OFF at once behind Linux's back while
 *                   this one hammers CPU_ON (wild entry points) and AFFINITY_INFO at them;
 *                   then SYSTEM_RESET (Linux is crippled by then: only a restart helps).
 *   phase=reset     SYSTEM_RESET.     phase=off    SYSTEM_OFF.
 */
#include <linux/arm-smccc.h>
#include <linux/completion.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/module.h>

static char *phase = "calls";
module_param(phase, charp, 0444);
static int off_cpu = -1;
module_param(off_cpu, int, 0444);
/* The ends of Linux's RAM (a valid entry would be inside). */
static ulong ram_start = 0x48000000, ram_end = 0xb8000000;
module_param(ram_start, ulong, 0444);
module_param(ram_end, ulong, 0444);

#define PSCI_VERSION 0x84000000
#define CPU_SUSPEND 0xc4000001
#define CPU_OFF 0x84000002
#define CPU_ON 0xc4000003
#define CPU_ON_32 0x84000003
#define AFFINITY_INFO 0xc4000004
#define MIGRATE 0xc4000005
#define MIGRATE_INFO_TYPE 0x84000006
#define MIGRATE_INFO_UP_CPU 0xc4000007
#define SYSTEM_OFF 0x84000008
#define SYSTEM_RESET 0x84000009
#define SYSTEM_SUSPEND 0xc400000e
#define PSCI_SUCCESS 0

static const char *const conduits[] = { "smc", "hvc" };

static long call(int hvc, u64 fn, u64 a1, u64 a2, u64 a3)
{
	struct arm_smccc_res res;

	if (hvc)
		arm_smccc_hvc(fn, a1, a2, a3, 0, 0, 0, 0, &res);
	else
		arm_smccc_smc(fn, a1, a2, a3, 0, 0, 0, 0, &res);
	return (long)res.a0;
}

static const u64 wild_entries[] = {
	0x0, 0x44000000, 0x46000000, 0x40000000, 0x40200000, 0x43fff000,
	0xb8000000, 0xbffff000, 0x48200002, 0xc0000000, 0xffffffffffff0000ULL,
};

static const u64 mpidrs[] = {
	0, 1, 2, 3, 4, 7, 8, 0xff, 0x100, 0x10000, 0x100000000ULL, 0x80000000,
	0x80000001, 0x81000000ULL, 0xffffffffffffffffULL,
};

static int calls, violations;

static void note(int hvc, const char *what, u64 a, u64 b, long ret, int bad)
{
	calls++;
	if (bad) {
		violations++;
		pr_err("psci_abuse: VIOLATION: %s %s(0x%llx, 0x%llx) returned %ld\n",
			conduits[hvc], what, a, b, ret);
	}
}

static int is_linux_vcpu(u64 mpidr)
{
	return mpidr < num_possible_cpus();
}

static void calls_phase(void)
{
	int hvc, i, j;
	long r;

	for (hvc = 0; hvc < 2; hvc++) {
		r = call(hvc, PSCI_VERSION, 0, 0, 0);
		pr_info("psci_abuse: %s PSCI_VERSION = 0x%lx\n", conduits[hvc], r);
		for (i = 0; i < ARRAY_SIZE(mpidrs); i++) {
			for (j = 0; j < ARRAY_SIZE(wild_entries); j++) {
				r = call(hvc, CPU_ON, mpidrs[i], wild_entries[j], 0);
				/* A wild entry point never starts anything, nor does a foreign MPIDR. */
				note(hvc, "CPU_ON", mpidrs[i], wild_entries[j], r, r == PSCI_SUCCESS);
				r = call(hvc, CPU_ON_32, mpidrs[i], wild_entries[j], 0);
				note(hvc, "CPU_ON_32", mpidrs[i], wild_entries[j], r, r == PSCI_SUCCESS);
			}
			/*
			 * A good entry point (the start of Linux's RAM): a vCPU Linux lacks, or one
			 * that runs, never starts. Not for the offline CPU: it would start there.
			 */
			if (mpidrs[i] != off_cpu) {
				r = call(hvc, CPU_ON, mpidrs[i], ram_start, 0);
				note(hvc, "CPU_ON", mpidrs[i], ram_start, r, r == PSCI_SUCCESS);
			}
			r = call(hvc, AFFINITY_INFO, mpidrs[i], 0, 0);
			note(hvc, "AFFINITY_INFO", mpidrs[i], 0, r,
			     r >= 0 && !is_linux_vcpu(mpidrs[i]));
			if (mpidrs[i] == off_cpu)
				pr_info("psci_abuse: %s AFFINITY_INFO of offline cpu %d = %ld\n",
					conduits[hvc], off_cpu, r);
			for (j = 1; j < 4; j++) {
				r = call(hvc, AFFINITY_INFO, mpidrs[i], j, 0);
				note(hvc, "AFFINITY_INFO level", mpidrs[i], j, r,
				     r >= 0 && !is_linux_vcpu(mpidrs[i]));
			}
			r = call(hvc, MIGRATE, mpidrs[i], 0, 0);
			note(hvc, "MIGRATE", mpidrs[i], 0, r, r == PSCI_SUCCESS);
		}
		r = call(hvc, MIGRATE_INFO_TYPE, 0, 0, 0);
		pr_info("psci_abuse: %s MIGRATE_INFO_TYPE = %ld\n", conduits[hvc], r);
		r = call(hvc, MIGRATE_INFO_UP_CPU, 0, 0, 0);
		pr_info("psci_abuse: %s MIGRATE_INFO_UP_CPU = %ld\n", conduits[hvc], r);
		for (j = 0; j < ARRAY_SIZE(wild_entries); j++) {
			/* Standby and power-down states: either returns here or fails. */
			r = call(hvc, CPU_SUSPEND, 0, wild_entries[j], 0);
			note(hvc, "CPU_SUSPEND standby", 0, wild_entries[j], r, 0);
			r = call(hvc, CPU_SUSPEND, 0x10000, wild_entries[j], 0);
			note(hvc, "CPU_SUSPEND power-down", 0x10000, wild_entries[j], r, 0);
			r = call(hvc, SYSTEM_SUSPEND, wild_entries[j], 0, 0);
			note(hvc, "SYSTEM_SUSPEND", wild_entries[j], 0, r, r == PSCI_SUCCESS);
		}
	}
	pr_info("psci_abuse: calls: %d calls, %d violations\n", calls, violations);
}

static struct completion offs;

static int off_thread(void *data)
{
	long r;

	complete(&offs);
	local_irq_disable();
	r = call(0, CPU_OFF, 0, 0, 0);
	/* Only reached if CPU_OFF was refused. */
	local_irq_enable();
	pr_info("psci_abuse: CPU_OFF on cpu %d returned %ld\n", smp_processor_id(), r);
	return 0;
}

static void offstorm_phase(void)
{
	int me = get_cpu(), cpu, n = 0, i, j;
	unsigned long end;
	long r;

	put_cpu();
	init_completion(&offs);
	for_each_online_cpu(cpu) {
		struct task_struct *t;

		if (cpu == me)
			continue;
		t = kthread_create_on_cpu(off_thread, NULL, cpu, "psci_off/%u");
		if (!IS_ERR(t)) {
			wake_up_process(t);
			n++;
		}
	}
	for (i = 0; i < n; i++)
		wait_for_completion(&offs);
	end = jiffies + HZ;
	while (time_before(jiffies, end)) {
		for (i = 0; i < ARRAY_SIZE(mpidrs); i++) {
			for (j = 0; j < ARRAY_SIZE(wild_entries); j++) {
				r = call(j & 1, CPU_ON, mpidrs[i], wild_entries[j], 0);
				note(j & 1, "CPU_ON during CPU_OFF", mpidrs[i], wild_entries[j], r,
				     r == PSCI_SUCCESS);
			}
			call(0, AFFINITY_INFO, mpidrs[i], 0, 0);
			calls++;
		}
	}
	/* Linux cannot read its log back after this: the console only (pr_err passes quiet). */
	for (i = 0; i < 4; i++)
		pr_err("psci_abuse: after the CPU_OFF storm, AFFINITY_INFO(%d) = %ld\n", i,
		       call(0, AFFINITY_INFO, i, 0, 0));
	pr_err("psci_abuse: offstorm: %d CPUs called CPU_OFF, %d calls, %d violations; "
		"SYSTEM_RESET\n", n, calls, violations);
	msleep(200);
	r = call(0, SYSTEM_RESET, 0, 0, 0);
	pr_err("psci_abuse: SYSTEM_RESET returned %ld\n", r);
}

static int __init psci_abuse_init(void)
{
	long r;

	if (!strcmp(phase, "calls")) {
		calls_phase();
	} else if (!strcmp(phase, "offstorm")) {
		offstorm_phase();
	} else if (!strcmp(phase, "reset") || !strcmp(phase, "off")) {
		int off = !strcmp(phase, "off");

		pr_err("psci_abuse: %s\n", off ? "SYSTEM_OFF" : "SYSTEM_RESET");
		msleep(100);
		r = call(0, off ? SYSTEM_OFF : SYSTEM_RESET, 0, 0, 0);
		pr_err("psci_abuse: it returned %ld\n", r);
	} else {
		return -EINVAL;
	}
	return 0;
}

static void __exit psci_abuse_exit(void)
{
}

module_init(psci_abuse_init);
module_exit(psci_abuse_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone probe: PSCI abuse");
