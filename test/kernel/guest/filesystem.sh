# Scenarios 2 and 3: a filesystem on the nbd device. mkfs, mount, write a tree of files, sync,
# umount, check the filesystem, disconnect; then connect again with cold caches, check again,
# mount and verify every checksum.
#
# FS: ext4, xfs or btrfs. NBD_OPTS: extra nbd-client options (e.g. "-C 2").

DEV=/dev/nbd0
MNT=/mnt/fs

case "$FS" in
  ext4)
    MKFS="/usr/sbin/mkfs.ext4 -q -F"
    CHECK="/usr/sbin/e2fsck -f -n"
    ;;
  xfs)
    modprobe xfs
    MKFS="/usr/sbin/mkfs.xfs -q -f"
    CHECK="/usr/sbin/xfs_repair -n"
    ;;
  btrfs)
    modprobe btrfs
    MKFS="/usr/sbin/mkfs.btrfs -q -f"
    CHECK="/usr/bin/btrfs check"
    ;;
  *) fail "unknown FS '$FS'" ;;
esac

check_fs() {
  step "$FS: check ($1)"
  $CHECK $DEV >/tmp/check.out 2>&1 || {
    cat /tmp/check.out
    fail "$CHECK reported problems ($1)"
  }
  tail -n 3 /tmp/check.out
}

mkdir -p $MNT
# shellcheck disable=SC2086 # NBD_OPTS is a list of options
attach $DEV "$RIG_PORT" -b 4096 ${NBD_OPTS:-}
step "$FS: mkfs"
$MKFS $DEV || fail "mkfs ($FS) failed"
mount -t "$FS" $DEV $MNT || fail "mount ($FS) failed"
step "$FS: write tree"
make_tree $MNT
manifest $MNT >/tmp/manifest
echo "$(wc -l </tmp/manifest) files, $(du -sk $MNT | cut -f1) KiB"
step "$FS: sync, umount"
sync
umount $MNT || fail "umount failed"
check_fs "after umount"
detach $DEV

step "$FS: attach again, cold caches"
drop_caches
# shellcheck disable=SC2086
attach $DEV "$RIG_PORT" -b 4096 ${NBD_OPTS:-}
check_fs "after reconnecting"
mount -t "$FS" -o ro $DEV $MNT || fail "mount ($FS) after reconnecting failed"
step "$FS: verify checksums"
(cd $MNT && $SHA256SUM -c --quiet /tmp/manifest) || fail "checksums differ after reconnecting"
[ "$(readlink $MNT/d/symlink)" = ../a/b/f65536 ] || fail "symlink lost"
[ "$(stat -c %h $MNT/a/f4096)" = 2 ] || fail "hard link lost"
umount $MNT
detach $DEV
step done
