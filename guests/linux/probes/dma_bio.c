// SPDX-License-Identifier: GPL-2.0
/*
 * dma_bio: DMA aimed outside Linux through Linux's own block driver. A bio's page is forged:
 * its bio_vec names the struct page of a physical frame outside Linux's RAM (no such page
 * exists; only its address is computed, never dereferenced), so virtio-blk hands the device
 * that frame's physical address. Per target page T:
 *   read T:  a WRITE bio from T to a disk sector that held a marker; the sector is read back
 *            into Linux's RAM: marker gone = T's bytes reached the disk;
 *   write T: a READ bio from that sector into T (T's own bytes, if they were read).
 * A refused DMA may leave the disk unusable (QEMU marks the device broken and never
 * completes the request); then the rest are reported as not tried. With QEMU's SMMU a
 * refused request may instead complete with zeros in place of the data: a read that brings
 * only zeros is counted as refused (every target page holds code or a magic number). A
 * completed write is judged outside Linux: spumone's fault lines and integrity digest.
 *
 *   insmod dma_bio.ko disk=/dev/vda targets=0x44000000,0x40200000
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/completion.h>
#include <linux/module.h>
#include <linux/slab.h>

#define MAX_TARGETS 16

static char *disk = "/dev/vda";
module_param(disk, charp, 0444);
static ulong targets[MAX_TARGETS];
static int ntargets;
module_param_array(targets, ulong, &ntargets, 0444);
static int timeout_ms = 3000;
module_param(timeout_ms, int, 0444);

static struct block_device *bdev;
static struct page *own_page;
static bool broken;
static int leaks, contained, untried;

struct waiter {
	struct completion done;
	blk_status_t status;
};

static void end_io(struct bio *bio)
{
	struct waiter *w = bio->bi_private;

	w->status = bio->bi_status;
	complete(&w->done);
	bio_put(bio);
}

/* One page-sized bio at `sector` on `page`; 0 on success, -ETIMEDOUT if it never ends. */
static int transfer(bool write, sector_t sector, struct page *page, bool forged)
{
	/* Never freed: a request that does not complete may still end later. */
	struct waiter *w = kzalloc(sizeof(*w), GFP_KERNEL);
	struct bio *bio;

	if (!w)
		return -ENOMEM;
	init_completion(&w->done);
	bio = bio_alloc(bdev, 1, (write ? REQ_OP_WRITE : REQ_OP_READ) | REQ_SYNC, GFP_KERNEL);
	bio->bi_iter.bi_sector = sector;
	bio->bi_end_io = end_io;
	bio->bi_private = w;
	if (forged) {
		/* The forgery: a bio_vec for a frame Linux has no struct page for. */
		bio->bi_io_vec[0].bv_page = page;
		bio->bi_io_vec[0].bv_len = PAGE_SIZE;
		bio->bi_io_vec[0].bv_offset = 0;
		bio->bi_vcnt = 1;
		bio->bi_iter.bi_size = PAGE_SIZE;
	} else {
		bio_add_page(bio, page, PAGE_SIZE, 0);
	}
	submit_bio(bio);
	if (!wait_for_completion_timeout(&w->done, msecs_to_jiffies(timeout_ms))) {
		broken = true;
		return -ETIMEDOUT;
	}
	return blk_status_to_errno(w->status);
}

static void fill(u8 byte)
{
	memset(page_address(own_page), byte, PAGE_SIZE);
}

static bool own_is(u8 byte)
{
	u8 *p = page_address(own_page);
	int i;

	for (i = 0; i < PAGE_SIZE; i++)
		if (p[i] != byte)
			return false;
	return true;
}

static void verdict(u64 target, const char *dir, bool leaked, const char *how, int err)
{
	if (leaked)
		leaks++;
	else
		contained++;
	pr_info("dma_bio: 0x%llx %s: %s (%s, error %d)\n", target, dir,
		leaked ? "LEAK" : "contained", how, err);
}

static void probe_target(u64 target, sector_t sector)
{
	struct page *forged = pfn_to_page(PHYS_PFN(target));
	int err;

	if (broken) {
		untried++;
		pr_info("dma_bio: 0x%llx: not tried: the disk no longer answers\n", target);
		return;
	}
	fill(0xa5);
	if (transfer(true, sector, own_page, false)) {
		pr_info("dma_bio: ERROR: Linux's own write failed\n");
		broken = true;
		return;
	}
	err = transfer(true, sector, forged, true);
	if (err == -ETIMEDOUT) {
		verdict(target, "read", false, "the request never completed", err);
		return;
	}
	fill(0);
	if (transfer(false, sector, own_page, false)) {
		pr_info("dma_bio: ERROR: Linux's own read failed\n");
		broken = true;
		return;
	}
	if (own_is(0)) {
		/* QEMU completes a request whose DMA the IOMMU refused, with zeros for the data. */
		verdict(target, "read", false, "the disk got zeros: the device's read was refused",
			err);
	} else if (!own_is(0xa5)) {
		verdict(target, "read", true, "the target's bytes reached the disk", err);
		pr_info("dma_bio: 0x%llx: first bytes %*ph\n", target, 16,
			(u8 *)page_address(own_page));
	} else {
		verdict(target, "read", false, "the disk still holds the marker", err);
	}
	err = transfer(false, sector, forged, true);
	if (err)
		verdict(target, "write", false, "the request failed", err);
	else
		pr_info("dma_bio: 0x%llx write: the request completed; whether it landed is judged "
			"outside Linux\n", target);
}

static int __init dma_bio_init(void)
{
	int i;

	bdev = blkdev_get_by_path(disk, FMODE_READ | FMODE_WRITE, NULL);
	if (IS_ERR(bdev)) {
		pr_info("dma_bio: cannot open %s (%ld)\n", disk, PTR_ERR(bdev));
		return PTR_ERR(bdev);
	}
	own_page = alloc_page(GFP_KERNEL);
	if (!own_page) {
		blkdev_put(bdev, FMODE_READ | FMODE_WRITE);
		return -ENOMEM;
	}
	fill(0x5a);
	if (transfer(true, 0, own_page, false) || (fill(0), transfer(false, 0, own_page, false)) ||
	    !own_is(0x5a)) {
		pr_info("dma_bio: ERROR: %s does not move Linux's own data\n", disk);
		return -EIO;
	}
	pr_info("dma_bio: %s: Linux's own page round-trips\n", disk);
	for (i = 0; i < ntargets; i++)
		probe_target(targets[i], 8 * (i + 1));
	pr_info("dma_bio: done: %d contained, %d leaks, %d not tried\n", contained, leaks,
		untried);
	/* The disk stays open: a request still in flight holds it. */
	return 0;
}

static void __exit dma_bio_exit(void)
{
}

module_init(dma_bio_init);
module_exit(dma_bio_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone probe: DMA through a forged bio");
