// SPDX-License-Identifier: GPL-2.0
/*
 * exec_data: runs code from the kernel image's data. Writes `mov w0, #0x5a; ret` into the
 * last bytes of empty_zero_page (bss), clears PXN in the kernel-image mapping of that page
 * (a stage-1 page-table write any kernel write primitive can make), and calls it. Afterwards
 * the mapping and the page are put back; for that moment the zero page is not all zeros.
 *
 *   insmod exec_data.ko
 */
#include <linux/mm.h>
#include <linux/module.h>
#include <asm/cacheflush.h>
#include <asm/pgtable.h>
#include <asm/sysreg.h>
#include <asm/tlbflush.h>

#define DESC_ADDR 0x0000fffffffff000UL
#define DESC_PXN (1UL << 53)

/* The leaf descriptor mapping `va` in the kernel's table (TTBR1), or NULL. */
static u64 *leaf_of(unsigned long va)
{
	u64 *table = __va(read_sysreg(ttbr1_el1) & DESC_ADDR);
	int level;

	for (level = 0; level < 4; level++) {
		u64 *slot = &table[(va >> (39 - 9 * level)) & 0x1ff];
		u64 d = READ_ONCE(*slot);

		if (level == 3)
			return (d & 3) == 3 ? slot : NULL;
		if ((d & 3) == 1)
			return level > 0 ? slot : NULL; /* a block */
		if ((d & 3) != 3)
			return NULL;
		table = __va(d & DESC_ADDR);
	}
	return NULL;
}

static int __init exec_data_init(void)
{
	unsigned long page = (unsigned long)empty_zero_page;
	u32 *code = (u32 *)(page + PAGE_SIZE - 16);
	int (*fn)(void) = (int (*)(void))code;
	u64 *leaf = leaf_of(page);
	u64 old;
	int ret;

	if (!leaf) {
		pr_info("exec_data: no mapping found for %px\n", (void *)page);
		return -ENOENT;
	}
	old = READ_ONCE(*leaf);
	code[0] = 0x52800b40; /* mov w0, #0x5a */
	code[1] = 0xd65f03c0; /* ret */
	caches_clean_inval_pou((unsigned long)code, (unsigned long)(code + 2));
	WRITE_ONCE(*leaf, old & ~DESC_PXN);
	dsb(ishst);
	flush_tlb_kernel_range(page, page + PAGE_SIZE);
	pr_info("exec_data: calling code in kernel bss at %px (descriptor %llx -> %llx)\n",
		code, old, old & ~DESC_PXN);
	ret = fn();
	WRITE_ONCE(*leaf, old);
	dsb(ishst);
	flush_tlb_kernel_range(page, page + PAGE_SIZE);
	code[0] = 0;
	code[1] = 0;
	pr_info("exec_data: ran code from kernel data: it returned %#x\n", ret);
	return 0;
}

static void __exit exec_data_exit(void)
{
}

module_init(exec_data_init);
module_exit(exec_data_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone test attack: execute code from the kernel's bss");
