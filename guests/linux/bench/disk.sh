# The disk bench's workload, run by xtask through `--cmd` with a raw disk of @MIB@ MiB as
# /dev/vda (a snapshot: the writes go to QEMU's temporary overlay). `p NAME K DD-ARGS` times K
# dd runs of @MIB@ MiB, the page cache dropped before each, between marker lines with guest
# time in seconds (the monotonic clock of /proc/timer_list, or /proc/uptime where that file is
# missing), then prints the idle time of all CPUs across them (idle + iowait of /proc/stat,
# in 1/100 s) and the CPU count, from which xtask computes the busy time; dd's report
# follows. Last, the virtio interrupt lines say whether the disk uses MSI-X or INTx.
t() { x=$(awk '/^now at/{printf "%.9f",$3/1e9;exit}' /proc/timer_list 2>/dev/null); echo "${x:-$(cut -d" " -f1 /proc/uptime)}"; }
c() { awk '/^cpu /{print $5+$6;exit}' /proc/stat; }
p() {
n=$1; k=$2; shift 2; i=$(c); echo "disk: $n begin uptime=$(t)"; s=0
while [ $k -gt 0 ] && [ $s = 0 ]; do
echo 3 >/proc/sys/vm/drop_caches; o=$(dd "$@" bs=1M count=@MIB@ 2>&1); s=$?; k=$((k-1))
done
e=$(t); j=$(c)
echo "disk: $n end uptime=$e status=$s"
echo "disk: $n idle=$((j-i)) cpus=$(nproc)"
echo "$o"; [ $s = 0 ]
}
p read @READS@ if=/dev/vda of=/dev/null && p write @WRITES@ if=/dev/zero of=/dev/vda conv=fsync
s=$?
grep virtio /proc/interrupts
exit $s
