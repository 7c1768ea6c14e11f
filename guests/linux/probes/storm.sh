#!/bin/sh
# An adversarial load beside the RTOS: storm.ko's MODE on one CPU for SECONDS (as root).
#
#   storm.sh MODE SECONDS [CPU] [PARAM=VALUE...]
#   storm.sh --list
#
# MODE is one of the names --list prints; CPU defaults to the CPU insmod runs on; PARAMs go
# to the module (hold_ms=, gap_us= for irqoff). Prints the module's start and end lines,
# then `storm: MODE: N iterations` and exits 0, or `storm: MODE: FAILED (why)` and exits 1:
# a storm that made no iteration, or did not end within 30 s of SECONDS, failed.

D=/lib/spumone
P=/sys/module/storm/parameters
MODES="wfi wfe sgi mmio sysreg irqoff"

if [ "$1" = --list ]; then
	echo "$MODES"
	exit 0
fi
mode=$1
secs=$2
if [ -z "$mode" ] || [ -z "$secs" ]; then
	echo "usage: storm.sh MODE SECONDS [CPU] [PARAM=VALUE...]"
	exit 2
fi
shift 2
cpu=-1
if [ $# -gt 0 ]; then
	cpu=$1
	shift
fi

# The module's own lines from the kernel log (quiet keeps them off the console).
klog() { dmesg -c | sed -n 's/^\[[^]]*\] *\(storm: .*\)/\1/p'; }
fail() {
	echo "storm: $mode: FAILED ($*)"
	exit 1
}

dmesg -c >/dev/null
if ! insmod $D/storm.ko mode="$mode" seconds="$secs" cpu="$cpu" "$@"; then
	klog
	fail "insmod refused it"
fi
klog
limit=$((secs + 30))
waited=0
while [ "$(cat $P/done)" != 1 ] && [ $waited -lt $limit ]; do
	sleep 1
	waited=$((waited + 1))
done
ended=$(cat $P/done)
n=$(cat $P/iterations)
rmmod storm || fail "rmmod refused"
klog
[ "$ended" = 1 ] || fail "it did not end within $limit s"
[ "$n" -gt 0 ] || fail "0 iterations"
echo "storm: $mode: $n iterations"
