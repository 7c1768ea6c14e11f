# The timed workload, run by xtask through `--cmd` on a snapshot of the prepared disk.
# @JOBS@, @TARGETS@ and @NOW@ (host time, s) are replaced by xtask. The marker lines carry
# guest uptime. The clock is set because a partition under spumone has no RTC: at 1970 every
# file of the prepared tree would be in the future for make.
date -s @@NOW@ >/dev/null
mkdir -p /mnt && mount -t ext4 /dev/vda /mnt || exit 1
for d in proc sys dev; do mount --bind /$d /mnt/$d; done
chroot /mnt /bin/sh -c 'cd /usr/src/linux-source-6.1 || exit 1
t="@TARGETS@"
# Warm the page cache first, so the timed window is CPU-bound. Under -icount QEMU warps idle
# time to the next timer deadline, and those deadlines differ between scenarios (the RTOS tick
# in demo), so time spent waiting for the disk would count differently in each.
find include arch/arm64 lib kernel scripts init -type f -exec cat {} + >/dev/null
echo "int warm;" | gcc -x c -c -o /tmp/warm.o - && rm -f /tmp/warm.o
make -n -j@JOBS@ $t >/dev/null 2>&1
echo "kbuild: begin uptime=$(cut -d" " -f1 /proc/uptime)"
make -j@JOBS@ $t >/tmp/kbuild.log 2>&1; s=$?
echo "kbuild: end uptime=$(cut -d" " -f1 /proc/uptime) status=$s"
echo "kbuild: $(grep -c "^  CC" /tmp/kbuild.log) objects compiled"
[ $s = 0 ] || tail -n 30 /tmp/kbuild.log
exit $s'
