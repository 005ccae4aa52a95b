// --min-block-size: with 1, libnbd programs that pick any byte offset and length (as libnbd's own
// multi-connection tests do) are served, on an image (buffered and O_DIRECT), a raw file and
// memory; 512 (the default) and 4096 advertise and enforce their granularity (EINVAL).
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Daemon, MAIN, NODE } from '../support/daemon.ts';
import { pythonWithNbd, requireTool, runOk } from './harness.ts';

// CONNS connections with up to DEPTH commands in flight each (libnbd's aio calls, one select
// loop) write, zero, trim and read random byte ranges inside 64-byte stripes. Commands in flight
// never share a stripe, so the model stays exact, but neighbouring stripes of one sector and one
// 4 KiB block are written by different connections at once: a read-modify-write that is not
// serialised loses a neighbour's bytes. Every read is checked against the model, and the whole
// disk at the end.
const BYTE_RANGES = String.raw`
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

// Requests at the granularity below the advertised minimum, sent anyway (strict mode off).
const BELOW_MINIMUM = String.raw`
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.set_strict_mode(0)
step = int(sys.argv[2])
for what, fn in [('write', lambda: h.pwrite(bytes(step), step)), ('read', lambda: h.pread(step, step)),
                 ('zero', lambda: h.zero(step, step)), ('trim', lambda: h.trim(step, step))]:
    try:
        fn()
        sys.exit('%s of %d bytes at %d succeeded' % (what, step, step))
    except nbd.Error as e:
        assert e.errno == 'EINVAL', (what, e.errno)
h.pwrite(bytes(4096), 4096)
assert h.pread(4096, 4096) == bytes(4096)
print('ok')
`;

const CONNS = 4;
const OPS = Number(process.env.IOMAPD_BYTE_OPS ?? 3000);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-bytes-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function image(): string {
  const path = join(dir, 'disk.iomapd');
  const r = spawnSync(NODE, [MAIN, 'create', path, '--size', '16M', '--volume', 'default'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return path;
}

const TARGETS: Record<string, () => string[]> = {
  image: () => [image()],
  'image, --cache none': () => [image(), '--cache', 'none'],
  'raw file': () => [join(dir, 'disk.raw'), '--raw', '--size', '1M'],
  memory: () => ['--size', '1M'],
};

async function advertisedMinimum(uri: string): Promise<number> {
  const info = JSON.parse((await runOk('nbdinfo', ['--json', uri])).stdout) as { exports: Array<{ block_size_minimum: number }> };
  return info.exports[0]!.block_size_minimum;
}

describe('--min-block-size 1: byte-granular clients', () => {
  for (const [name, args] of Object.entries(TARGETS)) {
    it(`serves random byte ranges over ${CONNS} connections (${name})`, async (ctx) => {
      requireTool(ctx, 'python3-nbd', 'nbdinfo');
      const serveArgs = args();
      const daemon = await Daemon.start([...serveArgs, '--listen', '127.0.0.1:0', '--min-block-size', '1']);
      try {
        expect(await advertisedMinimum(daemon.uri)).toBe(1);
        const r = await runOk(pythonWithNbd()!, ['-c', BYTE_RANGES, daemon.uri, String(CONNS), String(OPS), '16'], { timeoutMs: 120_000 });
        expect(r.stdout).toMatch(/^minimum 1$/m);
        expect(r.stdout.trim().split('\n').at(-1)).toBe('ok');
        if (name.includes('none')) expect(daemon.output()).toContain('image opened with O_DIRECT');
      } finally {
        await daemon.stop();
      }
      if (name.startsWith('image')) await runOk(NODE, [MAIN, 'check', serveArgs[0]!]);
    }, 180_000);
  }
});

describe('--min-block-size 512 and 4096', () => {
  for (const [minimum, below] of [
    ['512', 1],
    ['4096', 512],
  ] as const) {
    for (const name of ['image', 'raw file'] as const) {
      it(`advertises ${minimum} and refuses ${below}-byte granularity with EINVAL (${name})`, async (ctx) => {
        requireTool(ctx, 'python3-nbd', 'nbdinfo');
        const extra = minimum === '512' ? [] : ['--min-block-size', minimum]; // 512 is the default
        const daemon = await Daemon.start([...TARGETS[name]!(), '--listen', '127.0.0.1:0', ...extra]);
        try {
          expect(await advertisedMinimum(daemon.uri)).toBe(Number(minimum));
          const r = await runOk(pythonWithNbd()!, ['-c', BELOW_MINIMUM, daemon.uri, String(below)]);
          expect(r.stdout.trim()).toBe('ok');
        } finally {
          await daemon.stop();
        }
      }, 60_000);
    }
  }
});
