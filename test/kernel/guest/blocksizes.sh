# Scenario 1 (the patterns never overlap: each is checked at the end): attach with -b 512 and with -b 4096; write patterns with O_DIRECT (some with
# O_SYNC, so the kernel sends FUA; one with fsync, so it sends FLUSH), read each back with
# O_DIRECT and compare checksums. Then attach again with the other block size and read every
# pattern once more. The host compares the same checksums with the image file.

DEV=/dev/nbd0
SIZE=0

# write_pattern NAME OFFSET LENGTH [extra oflag]: LENGTH random bytes at OFFSET in one write call.
write_pattern() {
  head -c "$3" /dev/urandom >"/tmp/pattern.$1"
  _wp_flag=direct,seek_bytes${4:+,$4}
  $DD if="/tmp/pattern.$1" of=$DEV bs="$3" count=1 oflag="$_wp_flag" seek="$2" status=none ||
    fail "pattern $1: O_DIRECT write of $3 bytes at $2 failed"
  echo "$1 $2 $3" >>/tmp/patterns
  echo "RIG-PATTERN $1 $2 $3 $(sha256 "/tmp/pattern.$1")"
}

# check_pattern NAME OFFSET LENGTH BLOCK: reads the pattern back with O_DIRECT (the enclosing
# BLOCK-aligned range, cut down afterwards) and compares it with what was written.
check_pattern() {
  _cp_start=$(($2 / $4 * $4))
  _cp_end=$((($2 + $3 + $4 - 1) / $4 * $4))
  $DD if=$DEV of=/tmp/readback bs=$((_cp_end - _cp_start)) count=1 iflag=direct,skip_bytes skip=$_cp_start status=none ||
    fail "pattern $1: O_DIRECT read failed"
  $DD if=/tmp/readback of=/tmp/readback.cut bs=$3 count=1 iflag=skip_bytes skip=$(($2 - _cp_start)) status=none
  [ "$(sha256 /tmp/readback.cut)" = "$(sha256 "/tmp/pattern.$1")" ] ||
    fail "pattern $1 ($3 bytes at $2) read back with block size $4 differs from what was written"
}

check_all() {
  while read -r _ca_name _ca_off _ca_len; do
    check_pattern "$_ca_name" "$_ca_off" "$_ca_len" "$1"
  done </tmp/patterns
}

: >/tmp/patterns

step "attach -b 512"
attach $DEV "$RIG_PORT" -b 512
[ "$($BLOCKDEV --getss $DEV)" = 512 ] || fail "logical block size is not 512"
SIZE=$($BLOCKDEV --getsize64 $DEV)
echo "device size $SIZE, max_sectors_kb $(cat /sys/block/nbd0/queue/max_sectors_kb)"
# 2047 sectors at sector 7: neither end 4 KiB-aligned.
write_pattern b512-odd 3584 1048064
# One sector, and the last sector of the device.
write_pattern b512-one 1536000 512
write_pattern b512-tail $((SIZE - 512)) 512
# 4 MiB at a sector-aligned offset, with O_SYNC: WRITE+FUA.
write_pattern b512-sync $((64 * 1048576 + 512)) 4194304 sync
check_all 512
step "detach -b 512"
detach $DEV

step "attach -b 4096"
attach $DEV "$RIG_PORT" -b 4096
[ "$($BLOCKDEV --getss $DEV)" = 4096 ] || fail "logical block size is not 4096"
# The 512-byte patterns, read now in 4 KiB blocks.
check_all 4096
# A 512-byte O_DIRECT write must be refused by the kernel with 4 KiB blocks.
if $DD if=/dev/zero of=$DEV bs=512 count=1 oflag=direct,seek_bytes seek=1048576 status=none 2>/dev/null; then
  fail "a 512-byte O_DIRECT write was accepted with a 4096-byte block size"
fi
write_pattern b4096-big $((200 * 1048576)) 16777216
write_pattern b4096-three $((2 * 1048576 + 12 * 4096)) 12288
write_pattern b4096-tail $((SIZE - 131072)) 65536 sync
head -c 2097152 /dev/urandom >/tmp/pattern.b4096-fsync
$DD if=/tmp/pattern.b4096-fsync of=$DEV bs=1M oflag=direct seek=300 conv=fsync status=none || fail "fsync write failed"
echo "b4096-fsync $((300 * 1048576)) 2097152" >>/tmp/patterns
echo "RIG-PATTERN b4096-fsync $((300 * 1048576)) 2097152 $(sha256 /tmp/pattern.b4096-fsync)"
check_all 4096
step "detach -b 4096"
detach $DEV

step "attach -b 512 again"
attach $DEV "$RIG_PORT" -b 512
check_all 512
detach $DEV
step done
