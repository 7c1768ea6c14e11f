// SPDX-License-Identifier: GPL-2.0
/*
 * dma_rodata: asks a disk to DMA one block into a page of kernel rodata, the way an attacker
 * would plant a hook without a CPU store. A raw bio reads sector `sector` of `dev` into the
 * page that holds kernel address `addr` (a rodata address: the script passes `_etext` from
 * /proc/kallsyms and an offset= into rodata). The module keeps a copy of the page, waits for the bio up
 * to 5 s, and logs the bio's status and whether the page changed:
 *
 *   dma_rodata: read of <dev> sector S into PA P: status E, page unchanged|CHANGED
 *
 * Under spumone with the DSM's write watches, the SMMU refuses the device's write to the
 * watched page: spumone logs a dma fault at P and the page stays unchanged. The bio's own
 * status depends on how the device model completes a refused access.
 *
 *   insmod dma_rodata.ko addr=0x<_etext> offset=0x100000 dev=/dev/vda sector=0
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/completion.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <asm/memory.h>

static unsigned long addr;
module_param(addr, ulong, 0444);
MODULE_PARM_DESC(addr, "kernel virtual address inside the target page (rodata)");

static unsigned long offset;
module_param(offset, ulong, 0444);
MODULE_PARM_DESC(offset, "added to addr (shell arithmetic cannot add to kernel addresses)");

static char *dev = "/dev/vda";
module_param(dev, charp, 0444);
MODULE_PARM_DESC(dev, "block device to read from");

static unsigned long sector;
module_param(sector, ulong, 0444);
MODULE_PARM_DESC(sector, "first 512-byte sector to read");

/* Static: a bio still in flight after the timeout must not complete into freed memory. */
static DECLARE_COMPLETION(done);
static blk_status_t status;

static void read_done(struct bio *bio)
{
	status = bio->bi_status;
	complete(&done);
}

static int __init dma_rodata_init(void)
{
	struct block_device *bdev;
	struct page *page;
	struct bio *bio;
	void *before;
	bool same;

	if (!addr) {
		pr_err("dma_rodata: addr= is required\n");
		return -EINVAL;
	}
	addr += offset;
	/* A kernel-image address, not a linear-map one: virt_to_page() does not apply. */
	page = phys_to_page(__pa_symbol(addr & PAGE_MASK));
	before = kmalloc(PAGE_SIZE, GFP_KERNEL);
	if (!before)
		return -ENOMEM;
	memcpy(before, (void *)(addr & PAGE_MASK), PAGE_SIZE);

	bdev = blkdev_get_by_path(dev, FMODE_READ, NULL);
	if (IS_ERR(bdev)) {
		pr_err("dma_rodata: cannot open %s: %ld\n", dev, PTR_ERR(bdev));
		kfree(before);
		return PTR_ERR(bdev);
	}
	bio = bio_alloc(bdev, 1, REQ_OP_READ, GFP_KERNEL);
	bio->bi_iter.bi_sector = sector;
	bio->bi_end_io = read_done;
	if (bio_add_page(bio, page, PAGE_SIZE, 0) != PAGE_SIZE) {
		pr_err("dma_rodata: cannot add the page to the bio\n");
		bio_put(bio);
		blkdev_put(bdev, FMODE_READ);
		kfree(before);
		return -EIO;
	}
	submit_bio(bio);
	if (!wait_for_completion_timeout(&done, 5 * HZ)) {
		same = !memcmp(before, (void *)(addr & PAGE_MASK), PAGE_SIZE);
		pr_info("dma_rodata: read of %s sector %lu into PA %pa: no completion in 5 s, page %s\n",
			dev, sector, &(phys_addr_t){ page_to_phys(page) },
			same ? "unchanged" : "CHANGED");
		/* The bio may still complete: stay loaded, keep the device open. */
		kfree(before);
		return 0;
	}
	same = !memcmp(before, (void *)(addr & PAGE_MASK), PAGE_SIZE);
	pr_info("dma_rodata: read of %s sector %lu into PA %pa: status %d, page %s\n", dev,
		sector, &(phys_addr_t){ page_to_phys(page) },
		blk_status_to_errno(status), same ? "unchanged" : "CHANGED");
	bio_put(bio);
	blkdev_put(bdev, FMODE_READ);
	kfree(before);
	return 0;
}

static void __exit dma_rodata_exit(void)
{
}

module_init(dma_rodata_init);
module_exit(dma_rodata_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("DMA a disk block into a kernel rodata page");
