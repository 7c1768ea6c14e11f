// SPDX-License-Identifier: GPL-2.0
/*
 * memprobe: reads one 64-bit word at each given physical address from inside the kernel and
 * reports what happened. Used to show that Linux cannot read memory it was not given (the
 * RTOS at 0x44000000, spumone below it): under spumone such a read ends in a synchronous
 * external abort, which Linux reports as an oops of the reading thread, never in a value.
 *
 * Each read runs in its own kernel thread, so a faulting read kills only that thread: the
 * insmod returns, the next address is still probed, and the shell goes on. A thread that
 * faulted keeps its module reference, so the module stays loaded after a fault.
 *
 *   insmod memprobe.ko phys=0x44000000,0x40200000 [cached=0x44000000]
 *
 * Addresses in phys= that are not Linux's RAM are mapped with ioremap (device memory);
 * those in cached= with memremap (cacheable, as for RAM), RAM or not.
 */
#include <linux/completion.h>
#include <linux/io.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/module.h>

#define MAX_PROBES 8

static unsigned long phys[MAX_PROBES];
static int nphys;
module_param_array(phys, ulong, &nphys, 0444);
MODULE_PARM_DESC(phys, "physical addresses to read (8-byte aligned, up to 8)");
static unsigned long cached[MAX_PROBES];
static int ncached;
module_param_array(cached, ulong, &ncached, 0444);
MODULE_PARM_DESC(cached, "physical addresses to read through memremap (cacheable), RAM or not");

/* Static, not allocated: a late thread may still write its slot after init gave up. */
static struct probe {
	unsigned long addr;
	bool cached;
	u64 value;
	int err;
	struct completion done;
} probes[2 * MAX_PROBES];

static int probe_thread(void *data)
{
	struct probe *p = data;
	void __iomem *io;
	void *mem;

	if (p->cached || page_is_ram(PHYS_PFN(p->addr))) {
		/* Linux's own RAM: the linear map alias (or for cached=, what memremap gives). */
		mem = memremap(p->addr, sizeof(u64), MEMREMAP_WB);
		if (mem) {
			p->value = READ_ONCE(*(u64 *)mem);
			memunmap(mem);
		} else {
			p->err = -ENOMEM;
		}
	} else {
		/* Not Linux's memory: map it as a device, as a driver would. */
		io = ioremap(p->addr, sizeof(u64));
		if (io) {
			p->value = readq(io);
			iounmap(io);
		} else {
			p->err = -ENOMEM;
		}
	}
	complete(&p->done);
	module_put_and_kthread_exit(0);
}

static void probe_one(struct probe *p)
{
	struct task_struct *t;

	pr_info("memprobe: reading 0x%lx (%s to Linux%s)\n", p->addr,
		page_is_ram(PHYS_PFN(p->addr)) ? "RAM" : "not RAM",
		p->cached ? ", through memremap" : "");
	init_completion(&p->done);
	__module_get(THIS_MODULE);
	t = kthread_run(probe_thread, p, "memprobe");
	if (IS_ERR(t)) {
		module_put(THIS_MODULE);
		pr_info("memprobe: 0x%lx: no thread (%ld)\n", p->addr, PTR_ERR(t));
		return;
	}
	if (!wait_for_completion_timeout(&p->done, 2 * HZ))
		pr_info("memprobe: 0x%lx: no value, the read faulted\n", p->addr);
	else if (p->err)
		pr_info("memprobe: 0x%lx: cannot map it (%d)\n", p->addr, p->err);
	else
		pr_info("memprobe: 0x%lx = 0x%016llx\n", p->addr, p->value);
}

static int __init memprobe_init(void)
{
	int i;

	for (i = 0; i < nphys + ncached; i++) {
		unsigned long addr = i < nphys ? phys[i] : cached[i - nphys];

		if (addr & 7) {
			pr_info("memprobe: 0x%lx is not 8-byte aligned\n", addr);
			return -EINVAL;
		}
	}
	for (i = 0; i < nphys + ncached; i++) {
		probes[i].cached = i >= nphys;
		probes[i].addr = probes[i].cached ? cached[i - nphys] : phys[i];
		probe_one(&probes[i]);
	}
	return 0;
}

static void __exit memprobe_exit(void)
{
}

module_init(memprobe_init);
module_exit(memprobe_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone test: read physical addresses from the kernel");
