# Scenario 6: fstrim and blkdiscard give space back. An ext4 filesystem on the first 768 MiB of the
# device holds files to keep and files to delete; two raw regions lie past its end. The host
# looks at `iomapd map` and `iomapd info` once everything is written (host step "written"), and
# again after the files were deleted and trimmed, part of the first region was discarded with 4
# KiB blocks and a ragged range of the second with 512-byte blocks, and a FLUSH committed it all
# (host step "discarded"). Then the guest checks what it reads: zeros where it discarded, the old
# bytes around, a clean filesystem with every kept file intact.
#
# RIG-RANGE lines for the host: "written" (raw regions, mapped at the first look), "doomed" (the
# deleted files' blocks: mapped at the first look, holes at the second), "discarded" (blkdiscard
# ranges, whole 4 KiB blocks: holes at the second look), "kept" (stay mapped).

DEV=/dev/nbd0
MNT=/mnt/fs
M=1048576
FS_MIB=768
# Region 1: 32 MiB written, the middle 16 MiB discarded with -b 4096.
R1=$((832 * M))
D1=$((836 * M))
D1_LEN=$((16 * M))
# Region 2: 4 MiB written; 2 MiB discarded with -b 512 from 1536 bytes into its first block, so
# that both ends cut a 4 KiB block (iomapd zeroes the covered part of an edge block and punches
# the whole blocks between).
R2=$((896 * M))
D2=$((R2 + 1536))
D2_LEN=$((2 * M))

# read_region OFFSET LENGTH FILE: O_DIRECT read of whole MiBs (offsets are MiB-aligned).
read_region() {
  $DD if=$DEV of="$3" bs=1M count=$(($2 / M)) skip=$(($1 / M)) iflag=direct status=none || fail "O_DIRECT read at $1 failed"
}

mkdir -p $MNT
attach $DEV "$RIG_PORT" -b 4096
step "mkfs.ext4 on ${FS_MIB} MiB"
$MKFS_EXT4 -q -F -b 4096 $DEV "${FS_MIB}M" || fail "mkfs.ext4 failed"
# noinit_itable: no background zeroing of inode tables, which would allocate space between the
# host's two looks.
mount -t ext4 -o noinit_itable $DEV $MNT || fail "mount failed"

step "write files and raw regions"
mkdir $MNT/keep $MNT/doomed
for _i in 1 2 3 4; do
  $DD if=/dev/urandom of=$MNT/doomed/d$_i bs=1M count=8 iflag=fullblock status=none
  $DD if=/dev/urandom of=$MNT/keep/k$_i bs=64k count=$((_i * 4)) iflag=fullblock status=none
done
$DD if=/dev/urandom of=/tmp/r1 bs=1M count=32 iflag=fullblock status=none
$DD if=/tmp/r1 of=$DEV bs=1M seek=$((R1 / M)) oflag=direct conv=notrunc status=none || fail "region 1 write failed"
$DD if=/dev/urandom of=/tmp/r2 bs=1M count=4 iflag=fullblock status=none
$DD if=/tmp/r2 of=$DEV bs=1M seek=$((R2 / M)) oflag=direct conv=notrunc status=none || fail "region 2 write failed"
sync
flush_dev $DEV
manifest $MNT/keep >/tmp/manifest
range written "$R1" $((32 * M))
range written "$R2" $((4 * M))

# The deleted files' blocks, from FIEMAP ("N: lstart.. lend: pstart.. pend: len: ..." in 4 KiB
# filesystem blocks, which here are device blocks: the filesystem starts at offset 0).
for _i in 1 2 3 4; do
  $FILEFRAG -e $MNT/doomed/d$_i >/tmp/frag || fail "filefrag failed"
  grep -q 'blocks of 4096 bytes' /tmp/frag || fail "unexpected filefrag output: $(cat /tmp/frag)"
  awk '{ gsub(/\.\./, " "); gsub(/:/, " ") } $1 ~ /^[0-9]+$/ && NF >= 6 { print "RIG-RANGE doomed", $4 * 4096, $6 * 4096 }' /tmp/frag
done
range kept "$R1" $((D1 - R1))
range kept $((D1 + D1_LEN)) $((R1 + 32 * M - D1 - D1_LEN))
host_step written

step "rm, sync, fstrim"
rm -r $MNT/doomed
sync
$FSTRIM -v $MNT || fail "fstrim failed"

umount $MNT || fail "umount failed"

# blkdiscard opens the device exclusively: not while the filesystem is mounted.
step "blkdiscard with 4 KiB blocks"
$BLKDISCARD -o "$D1" -l "$D1_LEN" $DEV || fail "blkdiscard -o $D1 -l $D1_LEN failed"
range discarded "$D1" "$D1_LEN"
detach $DEV

step "blkdiscard with 512-byte blocks, ragged ends"
attach $DEV "$RIG_PORT" -b 512
$BLKDISCARD -o "$D2" -l "$D2_LEN" $DEV || fail "blkdiscard -o $D2 -l $D2_LEN failed"
# Whole blocks strictly inside become holes; the two edge blocks stay mapped.
range discarded $((R2 + 4096)) $((D2_LEN - 4096))
range kept "$R2" 4096
range kept $((D2 + D2_LEN - 1536)) 4096
flush_dev $DEV
host_step discarded

step "read back"
# Region 1: the discarded middle reads as zeros, the rest as written.
read_region "$R1" $((32 * M)) /tmp/r1.back
head -c "$D1_LEN" /dev/zero >/tmp/zeros
$DD if=/tmp/r1 of=/tmp/r1.want bs=1M count=$(((D1 - R1) / M)) status=none
cat /tmp/zeros >>/tmp/r1.want
$DD if=/tmp/r1 bs=1M skip=$(((D1 + D1_LEN - R1) / M)) status=none >>/tmp/r1.want
cmp /tmp/r1.back /tmp/r1.want || fail "region 1 after blkdiscard differs from the written bytes with zeros in the discarded range"
# Region 2: zeros exactly from 1536 for 2 MiB, byte for byte.
read_region "$R2" $((4 * M)) /tmp/r2.back
head -c 1536 /tmp/r2 >/tmp/r2.want
head -c "$D2_LEN" /dev/zero >>/tmp/r2.want
$DD if=/tmp/r2 bs=512 skip=$(((1536 + D2_LEN) / 512)) status=none >>/tmp/r2.want
cmp /tmp/r2.back /tmp/r2.want || fail "region 2 after the 512-byte blkdiscard differs from the written bytes with zeros in the discarded range"

step "e2fsck, verify the kept files"
$E2FSCK -f -n $DEV >/tmp/check.out 2>&1 || {
  cat /tmp/check.out
  fail "e2fsck reported problems after fstrim"
}
tail -n 1 /tmp/check.out
mount -t ext4 -o ro $DEV $MNT || fail "mount -o ro failed"
(cd $MNT/keep && $SHA256SUM -c --quiet /tmp/manifest) || fail "kept files differ after fstrim"
[ ! -e $MNT/doomed ] || fail "the deleted directory is back"
umount $MNT
detach $DEV
step done
