# Scenario 9: an incremental backup of a mounted ext4 filesystem (issue 15). Write a tree of
# files, freeze, have the host snapshot the volume as s1 (host step "s1"), thaw; write more files,
# remove some, overwrite some; freeze, host snapshot s2 (host step "s2"), thaw. The host then makes
# the backup: a full copy of s1 plus only the ranges `qemu:dirty-bitmap:s1` marks on s2, and puts
# the result into a new volume "restored" (host step "restore"). Attached here, the backup must pass
# e2fsck -fn and hold exactly s2's files with s2's checksums.

DEV=/dev/nbd0
RESTORED_DEV=/dev/nbd1
MNT=/mnt/fs
RESTORED_MNT=/mnt/restored

check_ext4() {
  $E2FSCK -f -n "$1" >/tmp/check.out 2>&1 || {
    cat /tmp/check.out
    fail "e2fsck $1 reported problems ($2)"
  }
  tail -n 1 /tmp/check.out
}

mkdir -p $MNT $RESTORED_MNT
attach $DEV "$RIG_PORT" -b 4096
step "mkfs.ext4, mount"
$MKFS_EXT4 -q -F $DEV || fail "mkfs.ext4 failed"
mount -t ext4 -o noinit_itable $DEV $MNT || fail "mount failed"

step "write tree before s1"
make_tree $MNT
manifest $MNT >/tmp/s1
$FSFREEZE -f $MNT || fail "fsfreeze -f failed"
host_step s1
$FSFREEZE -u $MNT || fail "fsfreeze -u failed"

step "write, remove and overwrite before s2"
mkdir $MNT/later
_i=0
while [ "$_i" -lt 60 ]; do
  echo "later $_i $RANDOM $RANDOM" >"$MNT/later/small-$_i"
  _i=$((_i + 1))
done
$DD if=/dev/urandom of=$MNT/later/big bs=1M count=6 iflag=fullblock conv=fsync status=none
# Overwrites in place (copy-on-write of blocks s1 shares) and removals of files s1 holds.
$DD if=/dev/urandom of=$MNT/a/b/f65536 bs=64k count=1 conv=notrunc,fsync status=none
$DD if=/dev/urandom of=$MNT/d/f3145728 bs=64k count=8 seek=10 conv=notrunc,fsync status=none
echo "rewritten" >$MNT/many/entry-7
rm $MNT/e/f/f1000000 $MNT/a/b/c/f3145728 $MNT/many/entry-100
sync
manifest $MNT >/tmp/s2
cmp -s /tmp/s1 /tmp/s2 && fail "the writes between s1 and s2 changed nothing"
$FSFREEZE -f $MNT || fail "fsfreeze -f failed"
host_step s2
$FSFREEZE -u $MNT || fail "fsfreeze -u failed"

# Written after s2: must not be in the backup.
echo "after s2" >$MNT/after-s2
sync

host_step restore
step "attach the backup"
attach_export $RESTORED_DEV "$RIG_PORT" restored -b 4096
check_ext4 $RESTORED_DEV "the backup of s2"
mount -t ext4 -o ro $RESTORED_DEV $RESTORED_MNT || fail "mount of the backup failed"
step "verify the backup"
manifest $RESTORED_MNT >/tmp/restored
cmp /tmp/s2 /tmp/restored || {
  diff /tmp/s2 /tmp/restored | head -20
  fail "the backup's files differ from s2's"
}
[ ! -e $RESTORED_MNT/after-s2 ] || fail "the backup has a file written after s2"
[ "$(readlink $RESTORED_MNT/d/symlink)" = ../a/b/f65536 ] || fail "symlink lost in the backup"
[ "$(stat -c %h $RESTORED_MNT/a/f4096)" = 2 ] || fail "hard link lost in the backup"
echo "$(wc -l </tmp/restored) files in the backup, as in s2"
umount $RESTORED_MNT
detach $RESTORED_DEV

umount $MNT || fail "umount failed"
check_ext4 $DEV "the origin"
detach $DEV
step done
