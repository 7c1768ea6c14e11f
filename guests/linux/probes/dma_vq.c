// SPDX-License-Identifier: GPL-2.0
/*
 * dma_vq: DMA aimed outside Linux by a virtio-blk-pci device that Linux's driver no longer
 * owns (the script unbinds it from virtio-pci first) and that this module drives by hand:
 * its BAR mapped, the modern virtio-pci common configuration, one split virtqueue whose data
 * descriptor holds a physical address outside Linux's RAM.
 *
 * For each target page T it asks the device to
 *   read T:  an OUT request (T -> disk sector), then reads that sector back into Linux's
 *            RAM; if the marker written there first is gone, T's bytes reached the disk;
 *   write T: an IN request (disk sector -> T) of the bytes just read from T, so a write
 *            that goes through changes nothing (and one that is refused does not matter).
 * With `pattern_target` (a page whose contents may change for a moment: Linux's own reset
 * copy) it also writes a pattern there, reads it back through the device, and puts the
 * original back: the proof that a device write lands.
 *
 * A refused DMA shows as a request that fails, never completes, a device that asks for a
 * reset (QEMU marks it broken; the module then resets and sets the device up again), or,
 * with QEMU's SMMU, a request that completes with zeros in place of the refused data: a
 * read that brings only zeros to the disk is counted as refused (every target page holds
 * code or a magic number, never only zeros). Whether a completed write landed is seen from
 * outside: spumone's `dma fault` lines and its integrity digest.
 *
 *   insmod dma_vq.ko dev=0000:00:05.0 targets=0x44000000,0x40200000 pattern_target=0xb8000000
 *
 * Prints "dma_vq: <target> read|write: contained (...)" or "... LEAK ..." per target, and a
 * summary line with the number of leaks.
 */
#include <linux/delay.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <uapi/linux/virtio_config.h>
#include <uapi/linux/virtio_pci.h>

#define MAX_TARGETS 16
#define QSIZE 8
#define SECTOR_BYTES 512
/* Sectors used on the scratch disk: one slot of 8 sectors (a page) per use. */
#define SLOT(n) ((n) * 8ULL)

static char *dev = "0000:00:05.0";
module_param(dev, charp, 0444);
static ulong targets[MAX_TARGETS];
static int ntargets;
module_param_array(targets, ulong, &ntargets, 0444);
static ulong pattern_target;
module_param(pattern_target, ulong, 0444);
static int timeout_ms = 2000;
module_param(timeout_ms, int, 0444);

struct vring_desc_le {
	__le64 addr;
	__le32 len;
	__le16 flags;
	__le16 next;
};

struct blk_req_hdr {
	__le32 type;
	__le32 reserved;
	__le64 sector;
};

static struct pci_dev *pdev;
static void __iomem *common, *notify, *isr;
static u32 notify_mult;
static u8 *ring;	/* one page: descriptors, then the available ring, the used ring at 2 KiB */
static u8 *bufs;	/* one page: the request header at 0, the status byte at 64 */
static u8 *data;	/* one page: Linux's own data buffer */
static u16 avail_idx, used_seen;
static int leaks, contained;

#define CFG(field) (common + offsetof(struct virtio_pci_common_cfg, field))

static int find_caps(void)
{
	int pos;

	for (pos = pci_find_capability(pdev, PCI_CAP_ID_VNDR); pos;
	     pos = pci_find_next_capability(pdev, pos, PCI_CAP_ID_VNDR)) {
		u8 type, bar;
		u32 off, len;
		void __iomem *p;

		pci_read_config_byte(pdev, pos + 3, &type);
		pci_read_config_byte(pdev, pos + 4, &bar);
		pci_read_config_dword(pdev, pos + 8, &off);
		pci_read_config_dword(pdev, pos + 12, &len);
		if (type != VIRTIO_PCI_CAP_COMMON_CFG && type != VIRTIO_PCI_CAP_NOTIFY_CFG &&
		    type != VIRTIO_PCI_CAP_ISR_CFG)
			continue;
		if ((type == VIRTIO_PCI_CAP_COMMON_CFG && common) ||
		    (type == VIRTIO_PCI_CAP_NOTIFY_CFG && notify) ||
		    (type == VIRTIO_PCI_CAP_ISR_CFG && isr))
			continue;
		p = pci_iomap_range(pdev, bar, off, len);
		if (!p)
			return -ENOMEM;
		if (type == VIRTIO_PCI_CAP_COMMON_CFG) {
			common = p;
		} else if (type == VIRTIO_PCI_CAP_ISR_CFG) {
			isr = p;
		} else {
			notify = p;
			pci_read_config_dword(pdev, pos + 16, &notify_mult);
		}
	}
	return common && notify && isr ? 0 : -ENODEV;
}

/* Reset and bring the device up with one queue of QSIZE entries in `ring`. */
static int setup(void)
{
	u64 base = virt_to_phys(ring);
	unsigned long end = jiffies + HZ;
	u32 high;

	iowrite8(0, CFG(device_status));
	while (ioread8(CFG(device_status)) && time_before(jiffies, end))
		msleep(1);
	iowrite8(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, CFG(device_status));
	iowrite32(1, CFG(device_feature_select));
	high = ioread32(CFG(device_feature));
	if (!(high & 1))
		return -ENODEV; /* no VIRTIO_F_VERSION_1 */
	/*
	 * VIRTIO_F_ACCESS_PLATFORM (bit 33), if offered, must be taken: the device then sends
	 * its DMA through the platform's IOMMU, as Linux's own driver has it do.
	 */
	iowrite32(1, CFG(guest_feature_select));
	iowrite32(1 | (high & 2), CFG(guest_feature));
	iowrite32(0, CFG(guest_feature_select));
	iowrite32(0, CFG(guest_feature));
	iowrite8(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
		 CFG(device_status));
	if (!(ioread8(CFG(device_status)) & VIRTIO_CONFIG_S_FEATURES_OK))
		return -ENODEV;
	memset(ring, 0, PAGE_SIZE);
	avail_idx = used_seen = 0;
	iowrite16(0, CFG(queue_select));
	if (ioread16(CFG(queue_size)) < QSIZE)
		return -ENODEV;
	iowrite16(QSIZE, CFG(queue_size));
	iowrite16(VIRTIO_MSI_NO_VECTOR, CFG(queue_msix_vector));
	iowrite32(lower_32_bits(base), CFG(queue_desc_lo));
	iowrite32(upper_32_bits(base), CFG(queue_desc_hi));
	iowrite32(lower_32_bits(base + 1024), CFG(queue_avail_lo));
	iowrite32(upper_32_bits(base + 1024), CFG(queue_avail_hi));
	iowrite32(lower_32_bits(base + 2048), CFG(queue_used_lo));
	iowrite32(upper_32_bits(base + 2048), CFG(queue_used_hi));
	iowrite16(1, CFG(queue_enable));
	iowrite8(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		 VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK, CFG(device_status));
	return 0;
}

/*
 * One request: `out` = device reads `phys` and writes the disk; otherwise it reads the disk
 * into `phys`. 0 if it completed with status OK; otherwise why not, as text in `why`.
 */
static int request(bool out, u64 sector, u64 phys, const char **why)
{
	struct vring_desc_le *desc = (void *)ring;
	__le16 *avail = (void *)(ring + 1024);
	__le16 *used_idx = (void *)(ring + 2048 + 2);
	struct blk_req_hdr *hdr = (void *)bufs;
	u8 *status = bufs + 64;
	unsigned long end = jiffies + msecs_to_jiffies(timeout_ms);
	u16 slot = avail_idx % QSIZE;

	hdr->type = cpu_to_le32(out ? 1 : 0);
	hdr->reserved = 0;
	hdr->sector = cpu_to_le64(sector);
	*status = 0xff;
	desc[0].addr = cpu_to_le64(virt_to_phys(hdr));
	desc[0].len = cpu_to_le32(sizeof(*hdr));
	desc[0].flags = cpu_to_le16(1); /* NEXT */
	desc[0].next = cpu_to_le16(1);
	desc[1].addr = cpu_to_le64(phys);
	desc[1].len = cpu_to_le32(PAGE_SIZE);
	desc[1].flags = cpu_to_le16(out ? 1 : 1 | 2); /* NEXT, WRITE for IN */
	desc[1].next = cpu_to_le16(2);
	desc[2].addr = cpu_to_le64(virt_to_phys(status));
	desc[2].len = cpu_to_le32(1);
	desc[2].flags = cpu_to_le16(2); /* WRITE */
	desc[2].next = 0;
	avail[2 + slot] = cpu_to_le16(0);
	wmb();
	avail_idx++;
	avail[1] = cpu_to_le16(avail_idx);
	wmb();
	iowrite16(0, notify + ioread16(CFG(queue_notify_off)) * notify_mult);
	while (le16_to_cpu(READ_ONCE(*used_idx)) == used_seen) {
		if (ioread8(CFG(device_status)) & VIRTIO_CONFIG_S_NEEDS_RESET) {
			*why = "the device refused the descriptor and needs a reset";
			goto broken;
		}
		if (time_after(jiffies, end)) {
			*why = "no completion";
			goto broken;
		}
		usleep_range(200, 1000);
	}
	rmb();
	used_seen++;
	ioread8(isr);
	if (*status != 0) {
		*why = "the device failed the request";
		return -EIO;
	}
	return 0;
broken:
	ioread8(isr);
	if (setup())
		pr_info("dma_vq: the device did not come back after a reset\n");
	return -EIO;
}

/* Linux's own transfer of a slot (must work, or the probe says nothing). */
static int own(bool out, u64 sector)
{
	const char *why = "";

	if (request(out, sector, virt_to_phys(data), &why)) {
		pr_info("dma_vq: ERROR: a request into Linux's own RAM failed (%s)\n", why);
		return -EIO;
	}
	return 0;
}

static void verdict(u64 target, const char *dir, bool leaked, const char *how)
{
	if (leaked)
		leaks++;
	else
		contained++;
	pr_info("dma_vq: 0x%llx %s: %s (%s)\n", target, dir, leaked ? "LEAK" : "contained", how);
}

static void fill(u8 byte)
{
	memset(data, byte, PAGE_SIZE);
}

static bool data_is(u8 byte)
{
	int i;

	for (i = 0; i < PAGE_SIZE; i++)
		if (data[i] != byte)
			return false;
	return true;
}

/* Device reads `target` into slot `n`; returns whether its bytes reached the disk. */
static bool device_read(u64 target, int n)
{
	const char *why = "";
	int err;

	fill(0xa5);
	if (own(true, SLOT(n)))
		return false;
	err = request(true, SLOT(n), target, &why);
	if (own(false, SLOT(n)))
		return false;
	if (data_is(0)) {
		/* QEMU completes a request whose DMA the IOMMU refused, with zeros for the data. */
		verdict(target, "read", false, "the disk got zeros: the device's read was refused");
		return false;
	}
	if (!data_is(0xa5)) {
		verdict(target, "read", true,
			err ? "the request failed, but the disk holds the target's bytes" :
			      "the target's bytes reached the disk");
		pr_info("dma_vq: 0x%llx: first bytes %*ph\n", target, 16, data);
		return true;
	}
	verdict(target, "read", false, err ? why : "completed, but nothing reached the disk");
	return false;
}

/*
 * Device writes slot `n` into `target`; returns whether the request completed. A completed
 * request does not prove the write landed (QEMU completes one whose DMA the IOMMU refused):
 * that is for the pattern read back, spumone's fault lines and its integrity digest.
 */
static bool device_write(u64 target, int n, const char *what)
{
	const char *why = "";
	int err = request(false, SLOT(n), target, &why);

	if (err)
		verdict(target, "write", false, why);
	else
		pr_info("dma_vq: 0x%llx write: the request (%s) completed; whether it landed is "
			"judged outside Linux\n", target, what);
	return !err;
}

static void probe_target(u64 target, int n)
{
	if (device_read(target, n))
		device_write(target, n, "the target's own bytes back");
	else
		device_write(target, n, "the marker");
}

/* The proof that a device write lands: pattern in, read back, original back. */
static void probe_pattern(u64 target, int n)
{
	bool saved = device_read(target, n);

	fill(0x3c);
	if (own(true, SLOT(n + 1)))
		return;
	if (!device_write(target, n + 1, "a pattern"))
		return;
	fill(0);
	if (own(true, SLOT(n + 2)))
		return;
	request(true, SLOT(n + 2), target, &(const char *){ "" });
	if (!own(false, SLOT(n + 2)) && data_is(0x3c))
		verdict(target, "write", true, "the pattern written by the device reads back");
	else
		verdict(target, "write", false, "the pattern does not read back");
	if (saved)
		device_write(target, n, "the original bytes");
}

static int __init dma_vq_init(void)
{
	unsigned int domain, bus, slot, fn;
	int err, i;

	if (sscanf(dev, "%x:%x:%x.%x", &domain, &bus, &slot, &fn) != 4)
		return -EINVAL;
	pdev = pci_get_domain_bus_and_slot(domain, bus, PCI_DEVFN(slot, fn));
	if (!pdev) {
		pr_info("dma_vq: no PCI device %s\n", dev);
		return -ENODEV;
	}
	if (pdev->driver) {
		pr_info("dma_vq: %s is still bound to %s\n", dev, pdev->driver->name);
		err = -EBUSY;
		goto put;
	}
	err = pci_enable_device(pdev);
	if (err)
		goto put;
	pci_set_master(pdev);
	ring = (u8 *)get_zeroed_page(GFP_KERNEL);
	bufs = (u8 *)get_zeroed_page(GFP_KERNEL);
	data = (u8 *)get_zeroed_page(GFP_KERNEL);
	err = -ENOMEM;
	if (!ring || !bufs || !data)
		goto free;
	err = find_caps();
	if (err) {
		pr_info("dma_vq: %s has no modern virtio-pci capabilities\n", dev);
		goto free;
	}
	err = setup();
	if (err) {
		pr_info("dma_vq: %s did not take the driver's features\n", dev);
		goto unmap;
	}
	/* The device works for Linux's own RAM: otherwise a refusal would prove nothing. */
	fill(0x5a);
	if (own(true, SLOT(0)) || (fill(0), own(false, SLOT(0))) || !data_is(0x5a)) {
		pr_info("dma_vq: ERROR: the device does not move Linux's own data\n");
		err = -EIO;
		goto reset;
	}
	pr_info("dma_vq: %s driven by hand; Linux's own page round-trips\n", dev);
	for (i = 0; i < ntargets; i++)
		probe_target(targets[i], 4 + 4 * i);
	if (pattern_target)
		probe_pattern(pattern_target, 4 + 4 * MAX_TARGETS);
	pr_info("dma_vq: done: %d contained, %d leaks\n", contained, leaks);
	err = 0;
reset:
	iowrite8(0, CFG(device_status));
unmap:
	if (common)
		pci_iounmap(pdev, common);
	if (notify)
		pci_iounmap(pdev, notify);
	if (isr)
		pci_iounmap(pdev, isr);
free:
	/* A refused request may leave the device holding these addresses: keep them. */
	if (err) {
		free_page((unsigned long)ring);
		free_page((unsigned long)bufs);
		free_page((unsigned long)data);
	}
	pci_disable_device(pdev);
put:
	pci_dev_put(pdev);
	return err;
}

static void __exit dma_vq_exit(void)
{
}

module_init(dma_vq_init);
module_exit(dma_vq_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone probe: DMA through a hand-driven virtqueue");
