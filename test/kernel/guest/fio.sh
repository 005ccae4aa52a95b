# Scenarios 4 and 5: fio on the raw nbd device with direct=1. Random writes of 4-64 KiB with
# verify=crc32c (fio reads every block back and checks it), an fsync every 32 writes (FLUSH) and
# a job writing with O_SYNC (WRITE+FUA); then, after reconnecting, the same jobs with
# verify_only (random reads checked against the same checksums) and a plain random-read load.
#
# NBD_OPTS: extra nbd-client options ("-C 2" for scenario 5). JOBS: parallel writers, each in its
# own 48 MiB region.

DEV=/dev/nbd0
JOBS=${JOBS:-1}

cat >/tmp/write.fio <<EOF
[global]
filename=$DEV
direct=1
ioengine=libaio
iodepth=16
randrepeat=1
verify=crc32c
verify_fatal=1
verify_dump=0

[randwrite]
rw=randwrite
bsrange=4k-64k
offset=128m
offset_increment=64m
size=48m
numjobs=$JOBS
fsync=32

[osync]
rw=randwrite
bs=4k
offset=64m
size=4m
sync=1
iodepth=4
EOF

cat >/tmp/read.fio <<EOF
[randread]
filename=$DEV
direct=1
ioengine=libaio
iodepth=16
rw=randread
bsrange=4k-128k
offset=64m
size=$((64 + 64 * JOBS))m
io_size=32m
EOF

run_fio() {
  step "fio $*"
  $FIO --output-format=normal "$@" >/tmp/fio.out 2>&1 || {
    cat /tmp/fio.out
    fail "fio $* failed"
  }
  grep -E '^ *(READ|WRITE):|err=|verify' /tmp/fio.out || true
}

# shellcheck disable=SC2086 # NBD_OPTS is a list of options
attach $DEV "$RIG_PORT" -b 4096 ${NBD_OPTS:-}
run_fio /tmp/write.fio
detach $DEV

drop_caches
# shellcheck disable=SC2086
attach $DEV "$RIG_PORT" -b 4096 ${NBD_OPTS:-}
run_fio --verify_only /tmp/write.fio
run_fio /tmp/read.fio
detach $DEV
step done
