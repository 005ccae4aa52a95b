# Shell helpers for the kernel rig's guest scenarios. test/kernel/rig.ts puts this file in front
# of each scenario script; the guest runs the result with busybox sh (scripts/rig/init).
#
# busybox sh runs its own applets before $PATH, so util-linux, coreutils and the filesystem tools
# are called by full path. Its variables are dynamically scoped: a helper's variables start with
# "_<helper>_" so that they never overwrite a caller's.
#
# Lines for the host (test/kernel/rig.ts reads the console):
#   RIG-STEP <guest uptime> <what>        progress, for timings
#   RIG-PATTERN <name> <offset> <length> <sha256>   a region the host checks in the image file
#   RIG-RANGE <kind> <offset> <length>    a device range the host looks up in `iomapd map`
#   RIG-HOST <name>                       a request for host step <name> (see host_step)
#   RIG-FAIL: <why>                       the reason for a non-zero exit
set -eu

NBD_CLIENT=/usr/sbin/nbd-client
BLOCKDEV=/usr/sbin/blockdev
DD=/usr/bin/dd
SHA256SUM=/usr/bin/sha256sum
FIO=/usr/bin/fio
E2FSCK=/usr/sbin/e2fsck
MKFS_EXT4=/usr/sbin/mkfs.ext4
FSFREEZE=/usr/sbin/fsfreeze
FSTRIM=/usr/sbin/fstrim
BLKDISCARD=/usr/sbin/blkdiscard
FILEFRAG=/usr/sbin/filefrag

step() {
  echo "RIG-STEP $(cut -d' ' -f1 /proc/uptime) $*"
}

fail() {
  echo "RIG-FAIL: $*"
  exit 1
}

# attach DEV PORT [nbd-client options...]: connects DEV to iomapd's default export.
attach() {
  _attach_dev=$1
  _attach_port=$2
  shift 2
  attach_export "$_attach_dev" "$_attach_port" "" "$@"
}

# attach_export DEV PORT EXPORT [nbd-client options...]: connects DEV to the export EXPORT.
attach_export() {
  _attach_dev=$1
  _attach_port=$2
  _attach_export=$3
  shift 3
  $NBD_CLIENT "$RIG_HOST" "$_attach_port" "$_attach_dev" -N "$_attach_export" "$@" ||
    fail "nbd-client $_attach_dev -N '$_attach_export' $* failed"
  _attach_size=$($BLOCKDEV --getsize64 "$_attach_dev")
  [ "$_attach_size" -gt 0 ] || fail "$_attach_dev has size $_attach_size after nbd-client"
}

# detach DEV: disconnects (the kernel sends DISC on each connection) and waits until the device is
# free again, so that it can be attached at once.
detach() {
  $NBD_CLIENT -d "$1" || fail "nbd-client -d $1 failed"
  _detach_sys=/sys/block/${1#/dev/}
  _detach_i=0
  while [ -e "$_detach_sys/pid" ] || [ "$(cat "$_detach_sys/size")" != 0 ]; do
    _detach_i=$((_detach_i + 1))
    [ "$_detach_i" -le 100 ] || fail "$1 still connected 10 s after nbd-client -d"
    sleep 0.1
  done
}

# flush_dev DEV: an fsync of the block device, which the kernel sends as FLUSH (whether or not
# anything is dirty): iomapd commits, and only then counts the space of trimmed blocks as free.
flush_dev() {
  $DD if=/dev/null of="$1" conv=fsync,notrunc status=none || fail "fsync of $1 failed"
}

# host_step NAME: asks the host test to do step NAME (snapshot, look at the map, ...) and waits
# for its answer. The guest reaches nothing on the host but the NBD port, so the request is a
# console line, "RIG-HOST NAME", which the harness watches for, and the answer is a volume the
# host then creates, "ack-NAME" (or "abort-NAME" if its step failed), which appears at once in
# the export list that this polls with `nbd-client -l` (a listing is not a data connection).
host_step() {
  echo "RIG-HOST $1"
  _host_step_i=0
  while :; do
    $NBD_CLIENT -l "$RIG_HOST" "$RIG_PORT" >/tmp/exports 2>&1 || true
    if grep -qx "ack-$1" /tmp/exports; then break; fi
    grep -qx "abort-$1" /tmp/exports && fail "the host failed its step $1 (see the test's message)"
    _host_step_i=$((_host_step_i + 1))
    [ "$_host_step_i" -le "${HOST_STEP_POLLS:-240}" ] || fail "no answer from the host to step $1 within $((${HOST_STEP_POLLS:-240} / 2)) s"
    sleep 0.5
  done
}

# range KIND OFFSET LENGTH: names a device range for the host (RIG-RANGE).
range() {
  echo "RIG-RANGE $1 $2 $3"
}

# Forget cached file and block data, so that what is read next comes from the server.
drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

sha256() {
  $SHA256SUM "$1" | cut -d' ' -f1
}

# make_tree DIR: a tree of files of awkward sizes (empty, sub-sector, block +- 1, multi-MiB), a
# directory with many entries, a hard link and a symlink; some files are written with fsync so
# that the filesystem commits its journal while the tree grows.
make_tree() {
  for _make_tree_d in a a/b a/b/c d e/f; do
    mkdir -p "$1/$_make_tree_d"
    for _make_tree_n in 0 1 511 512 4095 4096 4097 65536 131073 1000000 3145728; do
      head -c "$_make_tree_n" /dev/urandom >"$1/$_make_tree_d/f$_make_tree_n"
    done
    $DD if=/dev/urandom of="$1/$_make_tree_d/synced" bs=64k count=5 conv=fsync status=none
  done
  mkdir -p "$1/many"
  _make_tree_i=0
  while [ "$_make_tree_i" -lt 300 ]; do
    # Shell builtins only: a fork and exec costs tens of milliseconds under TCG.
    echo "file $_make_tree_i $RANDOM $RANDOM $RANDOM" >"$1/many/entry-$_make_tree_i"
    _make_tree_i=$((_make_tree_i + 1))
  done
  ln "$1/a/f4096" "$1/d/hardlink"
  ln -s ../a/b/f65536 "$1/d/symlink"
}

# manifest DIR: "sha256  ./path" for every regular file under DIR, sorted by path.
manifest() {
  (cd "$1" && find . -type f | sort | xargs $SHA256SUM)
}
