// SPDX-License-Identifier: GPL-2.0
/*
 * physmap: what a root attacker gets first, a way around Linux's own /dev/mem policy.
 * /dev/physmap maps any physical page into user space as device memory, /dev/physmap_wb as
 * normal cacheable memory (the attribute memremap() gives RAM). The file offset is the
 * physical address. Linux's STRICT_DEVMEM and IO_STRICT_DEVMEM checks are not applied, so
 * whatever the probes reach through it is reached or refused by spumone alone.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>

static int physmap_mmap_as(struct vm_area_struct *vma, pgprot_t prot)
{
	unsigned long size = vma->vm_end - vma->vm_start;

	vma->vm_flags |= VM_IO | VM_DONTEXPAND | VM_DONTDUMP;
	return remap_pfn_range(vma, vma->vm_start, vma->vm_pgoff, size, prot);
}

static int physmap_mmap_dev(struct file *file, struct vm_area_struct *vma)
{
	return physmap_mmap_as(vma, pgprot_device(vma->vm_page_prot));
}

static int physmap_mmap_wb(struct file *file, struct vm_area_struct *vma)
{
	return physmap_mmap_as(vma, vma->vm_page_prot);
}

static const struct file_operations physmap_dev_fops = {
	.owner = THIS_MODULE,
	.mmap = physmap_mmap_dev,
};

static const struct file_operations physmap_wb_fops = {
	.owner = THIS_MODULE,
	.mmap = physmap_mmap_wb,
};

static struct miscdevice physmap_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "physmap",
	.fops = &physmap_dev_fops,
	.mode = 0600,
};

static struct miscdevice physmap_wb = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "physmap_wb",
	.fops = &physmap_wb_fops,
	.mode = 0600,
};

static int __init physmap_init(void)
{
	int err = misc_register(&physmap_dev);

	if (err)
		return err;
	err = misc_register(&physmap_wb);
	if (err)
		misc_deregister(&physmap_dev);
	return err;
}

static void __exit physmap_exit(void)
{
	misc_deregister(&physmap_wb);
	misc_deregister(&physmap_dev);
}

module_init(physmap_init);
module_exit(physmap_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone probe: map any physical page into user space");
