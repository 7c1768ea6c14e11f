# Run once by xtask through `--cmd`, with the disk writable: configures and prepares the
# kernel tree so the workload only compiles. @JOBS@ is replaced by xtask.
set -e
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt
for d in proc sys dev; do mount --bind /$d /mnt/$d; done
chroot /mnt /bin/sh -c 'ldconfig && cd /usr/src/linux-source-6.1 &&
make tinyconfig >/tmp/prepare.log 2>&1 && make -j@JOBS@ prepare >>/tmp/prepare.log 2>&1 ||
{ tail -n 30 /tmp/prepare.log; exit 1; }'
for d in dev sys proc; do umount /mnt/$d; done
umount /mnt
echo "kbuild: prepared"
