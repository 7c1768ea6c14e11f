// SPDX-License-Identifier: GPL-2.0
/*
 * text_patch: an inline patch of kernel text through the kernel's own instruction patcher,
 * aarch64_insn_patch_text_nosync(), which writes through the FIX_TEXT_POKE0 alias (kernel text
 * itself is read-only). The patcher is not exported to modules, so its address comes from
 * /proc/kallsyms as a parameter, like the function to patch.
 *
 * The patch makes the target return `retval` at once: `mov x0, #retval; ret` over the
 * function's first two instructions after its BTI landing pad (the ftrace patch site, so no
 * frame has been set up yet). With target = __arm64_sys_getppid every getppid() returns
 * `retval`.
 *
 *   insmod text_patch.ko target=0x... patcher=0x... [retval=4242]
 *   rmmod text_patch                    restores the original instructions
 */
#include <linux/module.h>

static unsigned long target;
module_param(target, ulong, 0444);
MODULE_PARM_DESC(target, "address of the kernel function to patch");

static unsigned long patcher;
module_param(patcher, ulong, 0444);
MODULE_PARM_DESC(patcher, "address of aarch64_insn_patch_text_nosync");

static ushort retval = 4242;
module_param(retval, ushort, 0444);
MODULE_PARM_DESC(retval, "value the patched function returns (16 bits)");

#define INSN_BTI_C 0xd503245fU
#define INSN_BTI_JC 0xd50324dfU
#define INSN_RET 0xd65f03c0U
/* MOVZ X0, #imm16 */
#define INSN_MOVZ_X0(imm) (0xd2800000U | ((u32)(imm) << 5))

static u32 *site;
static u32 saved[2];

static int patch(u32 *at, u32 insn)
{
	int (*poke)(void *, u32) = (void *)patcher;

	return poke(at, insn);
}

static int __init text_patch_init(void)
{
	int err;

	if (!target || !patcher || (target & 3)) {
		pr_info("text_patch: needs target= and patcher= (from /proc/kallsyms)\n");
		return -EINVAL;
	}
	site = (u32 *)target;
	if (site[0] == INSN_BTI_C || site[0] == INSN_BTI_JC)
		site++;
	saved[0] = site[0];
	saved[1] = site[1];
	/* Second word first: until the first is replaced the function runs as before. */
	err = patch(&site[1], INSN_RET);
	if (!err)
		err = patch(&site[0], INSN_MOVZ_X0(retval));
	if (err) {
		pr_info("text_patch: patcher failed: %d\n", err);
		return err;
	}
	pr_info("text_patch: %pS at %px: %08x %08x -> mov x0, #%u; ret\n", (void *)target, site,
		saved[0], saved[1], retval);
	return 0;
}

static void __exit text_patch_exit(void)
{
	patch(&site[0], saved[0]);
	patch(&site[1], saved[1]);
	pr_info("text_patch: %px restored\n", site);
}

module_init(text_patch_init);
module_exit(text_patch_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone test attack: inline kernel text patch");
