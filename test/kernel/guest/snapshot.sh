# Scenario 7: a snapshot of a mounted ext4 filesystem. Write a tree of files, freeze the
# filesystem (fsfreeze -f: everything on disk, the journal flushed and marked clean), have the host
# take a snapshot and clone it through iomapd's control channel (host step "frozen"), thaw and keep
# writing: new files, an overwritten file, a deleted one. Then attach the clone as a second
# device while the origin stays mounted: e2fsck -fn clean, and it holds exactly the files and
# bytes of the moment of the freeze. Write to the clone, check it again; finally the origin must
# be clean, hold everything written after the thaw and nothing written to the clone.
#
# NBD_OPTS: extra nbd-client options for the origin ("-C 2").

DEV=/dev/nbd0
CLONE_DEV=/dev/nbd1
MNT=/mnt/fs
CLONE_MNT=/mnt/clone
CLONE=${CLONE:-clone}

check_ext4() {
  $E2FSCK -f -n "$1" >/tmp/check.out 2>&1 || {
    cat /tmp/check.out
    fail "e2fsck $1 reported problems ($2)"
  }
  tail -n 1 /tmp/check.out
}

mkdir -p $MNT $CLONE_MNT
# shellcheck disable=SC2086 # NBD_OPTS is a list of options
attach $DEV "$RIG_PORT" -b 4096 ${NBD_OPTS:-}
step "mkfs.ext4, mount"
$MKFS_EXT4 -q -F $DEV || fail "mkfs.ext4 failed"
mount -t ext4 -o noinit_itable $DEV $MNT || fail "mount failed"

step "write tree before the snapshot"
make_tree $MNT
manifest $MNT >/tmp/before
echo "$(wc -l </tmp/before) files before the snapshot"

step "fsfreeze -f"
$FSFREEZE -f $MNT || fail "fsfreeze -f failed"
host_step frozen
step "fsfreeze -u"
$FSFREEZE -u $MNT || fail "fsfreeze -u failed"

step "write after the snapshot"
mkdir $MNT/after
_i=0
while [ "$_i" -lt 40 ]; do
  echo "after $_i $RANDOM $RANDOM" >"$MNT/after/small-$_i"
  _i=$((_i + 1))
done
$DD if=/dev/urandom of=$MNT/after/big bs=1M count=4 iflag=fullblock conv=fsync status=none
# An overwrite in place and a deletion of files the snapshot holds: copy-on-write on the origin.
$DD if=/dev/urandom of=$MNT/a/b/f65536 bs=64k count=1 conv=notrunc,fsync status=none
rm $MNT/e/f/f1000000
sync
manifest $MNT >/tmp/after
cmp -s /tmp/before /tmp/after && fail "the writes after the snapshot changed nothing"

step "attach the clone"
attach_export $CLONE_DEV "$RIG_PORT" "$CLONE" -b 4096
check_ext4 $CLONE_DEV "the clone"
mount -t ext4 -o ro $CLONE_DEV $CLONE_MNT || fail "mount of the clone failed"
step "verify the clone"
# The same list of files with the same checksums as at the freeze: nothing written after it.
manifest $CLONE_MNT >/tmp/clone
cmp /tmp/before /tmp/clone || {
  diff /tmp/before /tmp/clone | head -20
  fail "the clone's files differ from those at the snapshot"
}
[ ! -e $CLONE_MNT/after ] || fail "the clone has files written after the snapshot"
[ "$(readlink $CLONE_MNT/d/symlink)" = ../a/b/f65536 ] || fail "symlink lost in the clone"
[ "$(stat -c %h $CLONE_MNT/a/f4096)" = 2 ] || fail "hard link lost in the clone"
umount $CLONE_MNT

step "write to the clone"
mount -t ext4 -o noinit_itable $CLONE_DEV $CLONE_MNT || fail "read-write mount of the clone failed"
$DD if=/dev/urandom of=$CLONE_MNT/clone-only bs=64k count=16 iflag=fullblock conv=fsync status=none
echo "clone" >$CLONE_MNT/a/f511
umount $CLONE_MNT || fail "umount of the clone failed"
check_ext4 $CLONE_DEV "the clone after writing to it"
detach $CLONE_DEV

step "check the origin"
umount $MNT || fail "umount failed"
check_ext4 $DEV "the origin"
mount -t ext4 -o ro $DEV $MNT || fail "mount -o ro failed"
manifest $MNT >/tmp/origin
cmp /tmp/after /tmp/origin || fail "the origin's files differ from those written after the snapshot"
[ ! -e $MNT/clone-only ] || fail "a file written to the clone is in the origin"
umount $MNT
detach $DEV
step done
