#!/bin/sh
# The benign workload: things a healthy system does that change kernel code or load code
# into the kernel legitimately. An integrity checker must stay quiet through all of it.
# Prints "benign: <step> ok" per step and "benign: done"; exits non-zero on the first failure.
#
#   benign.sh

set -e
D=/lib/spumone
T=/sys/kernel/tracing

step() { echo "benign: $* ok"; }

# 1. A module load and unload (alternatives and relocations applied to new module text).
ram=$(awk -F'[- ]' '/System RAM/ { print $1; exit }' /proc/iomem)
insmod $D/memprobe.ko phys=0x$ram
rmmod memprobe
step "module load and unload (memprobe of 0x$ram)"

grep -q " $T " /proc/mounts || mount -t tracefs tracefs $T

# 2. The function tracer on and off: ftrace rewrites every patchable function entry twice.
echo function >$T/current_tracer
sleep 1
echo nop >$T/current_tracer
step "ftrace function tracer on and off"

# 3. A kprobe: a BRK written into kernel text, then removed.
echo 'p:spumone_benign do_sys_openat2' >>$T/kprobe_events
echo 1 >$T/events/kprobes/spumone_benign/enable
cat /proc/version >/dev/null
echo 0 >$T/events/kprobes/spumone_benign/enable
hits=$(grep -c spumone_benign $T/trace || true)
echo '-:spumone_benign' >>$T/kprobe_events
echo >$T/trace
[ "$hits" -gt 0 ] || { echo "benign: the kprobe never fired"; exit 1; }
step "kprobe on do_sys_openat2 ($hits hits) added and removed"

# 4. A BPF socket filter, JIT-compiled outside kernel text.
$D/bpf_filter
step "bpf socket filter"

# 5. Credential changes: a root shell drops to uid 1000 (setgid and setuid, then exec), and
# the unprivileged task lives through a few DSM passes.
out=$($D/runas 1000 1000 sh -c 'sleep 2; id -u')
[ "$out" = 1000 ] || { echo "benign: runas gave uid $out, not 1000"; exit 1; }
step "setuid drop to uid 1000 and back to the root shell"

echo "benign: done"
