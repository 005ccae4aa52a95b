// The byte-granular client both --min-block-size tests run (byte-granular.test.ts on images, raw
// files and memory; s3-operations.test.ts on an image in a bucket), and the advertised minimum.
import { runOk } from './harness.ts';

// CONNS connections with up to DEPTH commands in flight each (libnbd's aio calls, one select
// loop) write, zero, trim and read random byte ranges inside 64-byte stripes. Commands in flight
// never share a stripe, so the model stays exact, but neighbouring stripes of one sector and one
// 4 KiB block are written by different connections at once: a read-modify-write that is not
// serialised loses a neighbour's bytes. Every read is checked against the model, and the whole
// disk at the end.
export const BYTE_RANGES = String.raw`
import random, select, sys, nbd
URI, CONNS, OPS, SEED = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
STRIPE, DEPTH = 64, 8
rnd = random.Random(SEED)
probe = nbd.NBD()
probe.connect_uri(URI)
SIZE = probe.get_size()
# The first 64 KiB only: 16 blocks of 4 KiB, so commands in flight often share one.
STRIPES = min(SIZE, 65536) // STRIPE
print('minimum', probe.get_block_size(nbd.SIZE_MINIMUM), flush=True)
model = bytearray(probe.pread(SIZE, 0))
handles = []
for k in range(CONNS):
    h = nbd.NBD()
    h.connect_uri(URI)
    handles.append(h)
failures = []
counts = {'write': 0, 'zero': 0, 'trim': 0, 'read': 0, 'flush': 0, 'most in flight': 0}
inflight = {}  # (connection, cookie) -> (stripe, kind, offset, length, buffer, expected)
busy = set()
issued = 0

def issue(k, h):
    global issued
    s = rnd.randrange(STRIPES)
    if s in busy:
        return False
    a = rnd.randrange(STRIPE)
    b = rnd.randrange(a + 1, STRIPE + 1)
    off, n = s * STRIPE + a, b - a
    op = rnd.random()
    buf, expected = None, None
    if op < 0.6:
        data = rnd.randbytes(n)
        kind = 'write'
        cookie = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), off, flags=nbd.CMD_FLAG_FUA if rnd.random() < 0.1 else 0)
        model[off:off + n] = data
    elif op < 0.7:
        kind = 'zero'
        cookie = h.aio_zero(n, off)
        model[off:off + n] = bytes(n)
    elif op < 0.75:
        kind = 'trim'
        cookie = h.aio_trim(n, off)
        model[off:off + n] = bytes(n)
    elif op < 0.98:
        kind = 'read'
        buf = nbd.Buffer(n)
        cookie = h.aio_pread(buf, off)
        expected = bytes(model[off:off + n])
    else:
        kind = 'flush'
        cookie = h.aio_flush()
    busy.add(s)
    inflight[(k, cookie)] = (s, kind, off, n, buf, expected)
    counts[kind] += 1
    issued += 1
    return True

while issued < OPS or inflight:
    for k, h in enumerate(handles):
        tries = 0
        while issued < OPS and h.aio_in_flight() < DEPTH and tries < 20:
            if not issue(k, h):
                tries += 1
    counts['most in flight'] = max(counts['most in flight'], len(inflight))
    want = {}
    for h in handles:
        d = h.aio_get_direction()
        if d & nbd.AIO_DIRECTION_READ or d & nbd.AIO_DIRECTION_WRITE:
            want[h.aio_get_fd()] = (h, d)
    r, w, _ = select.select([fd for fd, (h, d) in want.items() if d & nbd.AIO_DIRECTION_READ],
                            [fd for fd, (h, d) in want.items() if d & nbd.AIO_DIRECTION_WRITE], [], 5)
    if not r and not w and inflight:
        sys.exit('no progress in 5 s with %d commands in flight' % len(inflight))
    for fd in r:
        want[fd][0].aio_notify_read()
    for fd in w:
        want[fd][0].aio_notify_write()
    for key in list(inflight):
        k, cookie = key
        if not handles[k].aio_command_completed(cookie):
            continue
        s, kind, off, n, buf, expected = inflight.pop(key)
        busy.discard(s)
        if kind == 'read' and bytes(buf.to_bytearray()) != expected:
            failures.append('connection %d: read %d+%d returned other bytes' % (k, off, n))
for h in handles:
    h.shutdown()
got = probe.pread(SIZE, 0)
bad = [i for i in range(SIZE) if got[i] != model[i]]
if bad:
    failures.append('%d bytes differ from the model, the first at %d' % (len(bad), bad[0]))
print(' '.join('%s %d' % kv for kv in counts.items()), flush=True)
print('\n'.join(failures) if failures else 'ok')
sys.exit(1 if failures else 0)
`;

/** The minimum block size the export advertises, as nbdinfo reports it. */
export async function advertisedMinimum(uri: string): Promise<number> {
  const info = JSON.parse((await runOk('nbdinfo', ['--json', uri])).stdout) as { exports: Array<{ block_size_minimum: number }> };
  return info.exports[0]!.block_size_minimum;
}
