#!/bin/sh
# Runs isolation probes inside the Linux guest (as root), in the order given. Each prints
#   probe: NAME: begin
#   ... what it did and saw ...
#   probe: NAME: end: contained | LEAK (...) | error (...)
# The end line is Linux's own view; the host judges the rest (spumone alive, the RTOS's
# rounds throughout, spumone's DMA fault lines and integrity digest).
#
#   probe.sh [-s SEED] cpumap|gic|fuzz|dma-bio|dma-vq|psci ...
#   probe.sh --list
#
# psci ends Linux: SYSTEM_RESET, then on the boot spumone restarts (spumone.resets=1 on the
# command line) SYSTEM_OFF. So it comes last, and a restarted boot runs only its second half.
# A boot restarted for another reason reports each probe asked as restarted and stops.

D=/lib/spumone
PROBES="cpumap gic fuzz dma-bio dma-vq psci"
# Physical layout of qemu-virt (board/boards/qemu-virt.toml, board/configs/demo.toml).
RTOS=0x44000000
SPUMONE=0x40200000
BOOTINFO=0x43fff000
RESET_COPY=0xb8000000
# The probe disks (the host attaches them): one for Linux's driver, one to drive by hand.
BIO_DEV=0000:00:04.0
VQ_DEV=0000:00:05.0
seed=1

if [ "$1" = --list ]; then
	echo "$PROBES"
	exit 0
fi
if [ "$1" = -s ]; then
	seed=$2
	shift 2
fi

name=
begin() { name=$1; echo "probe: $name: begin"; dmesg -c >/dev/null; }
end() { echo "probe: $name: end: $*"; }
# The module's own lines from the kernel log (quiet keeps them off the console).
klog() { dmesg -c | sed -n "s/^\[[^]]*\] *\($1: .*\)/\1/p"; }

physmap() { [ -e /dev/physmap ] || insmod $D/physmap.ko || echo "probe: $name: no physmap"; }

# The vCPU count Linux has: its redistributor frames.
cpus=$(ls -d /sys/devices/system/cpu/cpu[0-9]* | wc -l)

cpumap() {
	begin cpumap
	physmap
	gicr_beyond=$(printf '0x%x' $((0x080a0000 + cpus * 0x20000)))
	$D/cpumap \
		rtos=$RTOS rtos-stacks=0x46000000 rtos-top=0x47fff000,w \
		spumone-dtb=0x40000000 spumone-image=$SPUMONE spumone-8m=0x40800000 \
		spumone-16m=0x41000000 spumone-32m=0x42000000 spumone-48m=0x43000000 \
		spumone-bootinfo=$BOOTINFO \
		reset-copy=$RESET_COPY reset-copy-end=0xbffff000,w \
		virtio-mmio=0x0a000000,w virtio-mmio-4=0x0a000800 smmu=0x09050000 gic-its=0x08080000 \
		rtc=0x09010000 fw-cfg=0x09020000 gpio=0x09030000 \
		gicd=0x08000000@0x8=0x53000000 gicr-vcpu0=0x080a0000@0x4=0x53000000 \
		gicr-past-linux=$gicr_beyond
	status=$?
	# The kernel's own mappings: ioremap (device) and memremap (cacheable). A refused
	# read kills the reading kernel thread with an oops; the module reports no value.
	insmod $D/memprobe.ko phys=$RTOS,$SPUMONE,$RESET_COPY cached=$RTOS,$SPUMONE,$RESET_COPY
	klog memprobe | tee /tmp/memprobe.out
	grep -q ' = 0x' /tmp/memprobe.out && status=1
	if [ $status = 0 ]; then end contained; else end "LEAK (see the lines above)"; fi
}

gic() {
	begin gic
	physmap
	# The storm threads spin as SCHED_FIFO with Linux's interrupts off: RT throttling would
	# park them for good (its timer may be the one disabled), so it is off meanwhile.
	# The SGI storm first: the GIC storm masks Linux's own timer for long enough that
	# spumone's watchdog may call Linux hung and restart it (the restarted boot reports it).
	insmod $D/sgistorm.ko secs=3 seed="$seed"
	s2=$?
	klog sgistorm
	rt=$(cat /proc/sys/kernel/sched_rt_runtime_us)
	echo -1 >/proc/sys/kernel/sched_rt_runtime_us
	$D/gicstorm -s "$seed" -w 3 -t 4 -h 14
	s1=$?
	echo "$rt" >/proc/sys/kernel/sched_rt_runtime_us
	# Linux itself still takes interrupts: a timer-driven sleep ends.
	sleep 1
	if [ $s1 = 0 ] && [ $s2 = 0 ]; then end "contained (judged outside Linux)"; else
		end "error (gicstorm $s1, sgistorm $s2)"; fi
}

fuzz() {
	begin fuzz
	insmod $D/hvcfuzz.ko seed="$seed" calls=200000
	s=$?
	klog hvcfuzz
	if [ $s = 0 ]; then end "contained (judged outside Linux)"; else end "error (insmod $s)"; fi
}

# The block device of the virtio disk at PCI address $1.
disk_of() { ls /sys/bus/pci/devices/$1/virtio*/block 2>/dev/null | head -n 1; }

dma_targets="$RTOS,$SPUMONE,$BOOTINFO"

dma_bio() {
	begin dma-bio
	d=$(disk_of $BIO_DEV)
	if [ -z "$d" ]; then end "error (no virtio disk at $BIO_DEV)"; return; fi
	insmod $D/dma_bio.ko disk=/dev/$d targets=$dma_targets,$RESET_COPY
	klog dma_bio | tee /tmp/dma.out
	verdict_of dma_bio
}

dma_vq() {
	begin dma-vq
	if [ -e /sys/bus/pci/devices/$VQ_DEV/driver ]; then
		echo $VQ_DEV >/sys/bus/pci/devices/$VQ_DEV/driver/unbind
	fi
	insmod $D/dma_vq.ko dev=$VQ_DEV targets=$dma_targets pattern_target=$RESET_COPY
	klog dma_vq | tee /tmp/dma.out
	verdict_of dma_vq
}

verdict_of() {
	if grep -q "LEAK" /tmp/dma.out; then end "LEAK (see the lines above)"
	elif grep -q "$1: done: " /tmp/dma.out; then end contained
	else end "error (the module did not finish)"; fi
}

psci() {
	if grep -q 'spumone.resets=' /proc/cmdline; then
		name=psci
		echo "probe: psci: Linux restarted after SYSTEM_RESET; now SYSTEM_OFF"
		insmod $D/psci_abuse.ko phase=off
		end "error (SYSTEM_OFF returned)"
		return
	fi
	begin psci
	last=$((cpus - 1))
	echo 0 >/sys/devices/system/cpu/cpu$last/online && echo "psci: cpu $last offline"
	insmod $D/psci_abuse.ko phase=calls off_cpu=$last
	klog psci_abuse | tee /tmp/psci.out
	rmmod psci_abuse
	echo 1 >/sys/devices/system/cpu/cpu$last/online && echo "psci: cpu $last online again"
	if grep -q VIOLATION /tmp/psci.out || ! grep -q "calls: .* 0 violations" /tmp/psci.out; then
		end "LEAK (see the lines above)"
		return
	fi
	echo "probe: psci: calls contained; CPU_OFF storm, then SYSTEM_RESET"
	insmod $D/psci_abuse.ko phase=offstorm
	end "error (SYSTEM_RESET returned)"
}

# A restarted Linux runs only the second half of psci. Any other probe it was running
# ended with the restart (spumone's watchdog, say): that is reported, never run again.
if grep -q 'spumone.resets=' /proc/cmdline; then
	case " $* " in *" psci "*) psci; exit 0 ;; esac
	resets=$(sed -n 's/.*spumone\.resets=\([0-9]*\).*/\1/p' /proc/cmdline)
	for name in "$@"; do end "restarted by spumone (spumone.resets=$resets)"; done
	exit 0
fi
for p in "$@"; do
	case "$p" in
	cpumap) cpumap ;;
	gic) gic ;;
	fuzz) fuzz ;;
	dma-bio) dma_bio ;;
	dma-vq) dma_vq ;;
	psci) psci ;;
	*) echo "probe: $p: unknown (probes: $PROBES)"; exit 2 ;;
	esac
done
echo "probe: all done"
