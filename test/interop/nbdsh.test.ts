// libnbd's Python API (what nbdsh runs) against iomapd: negotiation, block status, zero, trim,
// flush, FUA, cache, a pipelined batch, and the error codes of protocol.md §3 for requests a
// strict client would never send (strict mode is turned off so libnbd sends them).
//
// Each script collects every mismatch and prints them all before exiting non-zero, so one run
// shows every wrong error code at once.
import { describe, expect, it } from 'vitest';
import { MiB, VARIANTS, nbdshEnv, requireTool, runOk, runPython, withIomapd } from './harness.ts';
import type { IomapdServer, ServeOptions, Variant } from './harness.ts';

const PRELUDE = String.raw`
import errno, sys, time
import nbd

URI = sys.argv[1]
SIZE = int(sys.argv[2])
MiB = 1024 * 1024
failures = []

def connect(uri=URI, strict=True, structured=True, meta=True):
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    if not strict:
        h.set_strict_mode(0)  # let libnbd send requests the server must reject
    return h

def check(cond, what):
    if not cond:
        failures.append(what)

def expect_error(what, want, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        check(e.errno == want, '%s: got %s (%s), expected %s' % (what, e.errno, e.string, want))
        return
    failures.append('%s: succeeded, expected %s' % (what, want))

def expect_ok(what, fn, *args):
    try:
        return fn(*args)
    except nbd.Error as e:
        failures.append('%s: failed with %s (%s)' % (what, e.errno, e.string))

def allocation(h, offset, length, flags=0):
    """base:allocation extents [(offset, length, flags)] covering [offset, offset+length)."""
    out = []
    pos = offset
    end = offset + length
    for _ in range(10000):
        if pos >= end:
            break
        got = []
        def cb(context, start, entries, err):
            if context == nbd.CONTEXT_BASE_ALLOCATION:
                got.append((start, list(entries)))
            return 0
        h.block_status(end - pos, pos, cb, flags)
        check(len(got) == 1, 'block status at %d: %d base:allocation replies' % (pos, len(got)))
        if not got:
            break
        start, entries = got[0]
        check(start == pos, 'block status at %d: reply for offset %d' % (pos, start))
        check(len(entries) >= 2 and len(entries) % 2 == 0, 'block status at %d: entries %r' % (pos, entries))
        for i in range(0, len(entries), 2):
            ln, fl = entries[i], entries[i + 1]
            check(ln > 0, 'block status at %d: zero-length extent' % pos)
            if pos >= end or ln == 0:
                break
            out.append((pos, min(ln, end - pos), fl))
            pos += ln
    return out

def flags_over(extents, offset, length):
    """The set of flags seen over [offset, offset+length)."""
    return {fl for (o, l, fl) in extents if o < offset + length and o + l > offset}

def finish(h=None):
    if h is not None:
        h.shutdown()
    if failures:
        print('MISMATCHES (%d):' % len(failures))
        for f in failures:
            print('  - ' + f)
        sys.exit(1)
    print('ok')
`;

/** Runs PRELUDE + body against the server; any mismatch fails with the script's full output. */
async function script(server: IomapdServer, size: number, body: string): Promise<void> {
  await runPython(server, `${PRELUDE}\n${body}`, [server.uri, String(size)]);
}

function testWith(variant: Variant, name: string, opts: Partial<ServeOptions>, sizeMiB: number, body: string): void {
  it(name, async (ctx) => {
    requireTool(ctx, 'python3-nbd');
    await withIomapd({ ...variant, size: `${sizeMiB}M`, ...opts }, (server) => script(server, sizeMiB * MiB, body));
  });
}

describe.each(VARIANTS)('libnbd (nbdsh API) over $transport ($backend)', (variant) => {
  it('nbdsh -u URI -c runs commands on the export', async (ctx) => {
    requireTool(ctx, 'nbdsh');
    await withIomapd({ ...variant, size: '8M' }, async (server) => {
      const commands = [
        'assert h.get_size() == 8 * 1024 * 1024',
        'assert h.get_structured_replies_negotiated()',
        "h.pwrite(b'\\x61' * 4096, 4096, nbd.CMD_FLAG_FUA)",
        "assert h.pread(8192, 0) == bytes(4096) + b'\\x61' * 4096",
        'h.zero(4096, 4096)',
        'h.flush()',
        "print('result', h.pread(8192, 0) == bytes(8192))",
      ];
      const args = ['-u', server.uri];
      for (const c of commands) args.push('-c', c);
      const r = await runOk('nbdsh', args, { server, env: nbdshEnv() });
      expect(r.stdout.trim()).toBe('result True');
    });
  });

  testWith(variant, 'negotiates structured replies, base:allocation and the block sizes', {}, 64, String.raw`
h = connect()
check(h.get_protocol() == 'newstyle-fixed', 'protocol %r' % h.get_protocol())
check(h.get_structured_replies_negotiated(), 'structured replies not negotiated')
check(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION), 'base:allocation not negotiated')
check(h.get_size() == SIZE, 'size %d' % h.get_size())
check(h.get_block_size(nbd.SIZE_MINIMUM) == 512, 'minimum block %d' % h.get_block_size(nbd.SIZE_MINIMUM))
check(h.get_block_size(nbd.SIZE_PREFERRED) == 4096, 'preferred block %d' % h.get_block_size(nbd.SIZE_PREFERRED))
check(h.get_block_size(nbd.SIZE_MAXIMUM) == 32 * MiB, 'maximum payload %d' % h.get_block_size(nbd.SIZE_MAXIMUM))
for name, fn in [('flush', h.can_flush), ('fua', h.can_fua), ('trim', h.can_trim), ('zero', h.can_zero),
                 ('fast_zero', h.can_fast_zero), ('df', h.can_df), ('multi_conn', h.can_multi_conn), ('cache', h.can_cache)]:
    check(fn(), 'can_%s is false' % name)
check(not h.is_read_only(), 'read-only')

# Structured reads: data, a hole, and DF (a single chunk).
h.pwrite(b'\x11' * 8192, 0)
check(h.pread(8192, 0) == b'\x11' * 8192, 'structured read of written data')
check(h.pread(65536, 10 * MiB) == bytes(65536), 'structured read of a hole')
# DF: at most one content chunk, holes sent as data.
chunks = []
def chunk(sub, off, status, err):
    chunks.append((off, len(sub), status, bytes(sub)))
    return 0
buf = h.pread_structured(65536, 0, chunk, nbd.CMD_FLAG_DF)
check(buf == b'\x11' * 8192 + bytes(65536 - 8192), 'DF read returned wrong data')
check(len(chunks) == 1 and chunks[0][:3] == (0, 65536, nbd.READ_DATA), 'DF read chunks %r' % [c[:3] for c in chunks])
check(h.pread(32 * MiB, 0) == b'\x11' * 8192 + bytes(32 * MiB - 8192), '32 MiB structured read')
finish(h)

# Simple replies only (as the kernel negotiates): reads and writes still work, DF is not offered.
h = connect(structured=False, meta=False)
check(not h.get_structured_replies_negotiated(), 'structured replies negotiated although not requested')
check(not h.can_df(), 'DF advertised without structured replies')
h.pwrite(b'\x22' * 4096, 4096)
check(h.pread(16384, 0) == b'\x11' * 4096 + b'\x22' * 4096 + bytes(8192), 'simple read')
check(h.pread(32 * MiB, 0)[:8192] == b'\x11' * 4096 + b'\x22' * 4096, '32 MiB simple read')
finish(h)
`);

  testWith(variant, 'reports block status (base:allocation) with holes and data', {}, 64, String.raw`
h = connect()
before = allocation(h, 0, SIZE)
check(all(fl & nbd.STATE_HOLE for (_, _, fl) in before), 'fresh device not all hole: %r' % before[:8])
h.pwrite(b'\xab' * MiB, 4 * MiB)
h.pwrite(b'\xcd' * MiB, 9 * MiB)
ext = allocation(h, 0, SIZE)
check(sum(l for (_, l, _) in ext) == SIZE, 'extents do not cover the device: %r' % ext)
check(flags_over(ext, 4 * MiB, MiB) == {0}, 'written MiB at 4M: flags %r' % flags_over(ext, 4 * MiB, MiB))
check(flags_over(ext, 9 * MiB, MiB) == {0}, 'written MiB at 9M: flags %r' % flags_over(ext, 9 * MiB, MiB))
for (o, l) in [(0, 4 * MiB), (5 * MiB, 4 * MiB), (10 * MiB, SIZE - 10 * MiB)]:
    fl = flags_over(ext, o, l)
    check(all(f & nbd.STATE_HOLE for f in fl), 'untouched [%d, +%d): flags %r' % (o, l, fl))

# A query that starts inside a data extent.
mid = allocation(h, 4 * MiB + 65536, 4096)
check(mid and mid[0][0] == 4 * MiB + 65536 and mid[0][2] == 0, 'query inside data: %r' % mid)

# REQ_ONE: exactly one extent, not past the request.
got = []
h.block_status(8 * MiB, 4 * MiB, lambda c, o, e, err: got.append(list(e)) or 0, nbd.CMD_FLAG_REQ_ONE)
check(len(got) == 1 and len(got[0]) == 2, 'REQ_ONE returned %r' % got)
if got and len(got[0]) == 2:
    check(0 < got[0][0] <= 8 * MiB and got[0][1] == 0, 'REQ_ONE extent %r' % got[0])
finish(h)
`);

  testWith(variant, 'zeroes ranges (WRITE_ZEROES, NO_HOLE, FAST_ZERO, FUA)', {}, 64, String.raw`
h = connect()
h.pwrite(b'\xcc' * (4 * MiB), 8 * MiB)
h.zero(256 * 1024, 8 * MiB + 256 * 1024)
h.zero(512, 9 * MiB + 512, nbd.CMD_FLAG_NO_HOLE)
h.zero(4096, 10 * MiB, nbd.CMD_FLAG_FUA)
try:
    h.zero(MiB, 11 * MiB, nbd.CMD_FLAG_FAST_ZERO)
    fast_zeroed = True
except nbd.Error as e:
    check(e.errno == 'ENOTSUP', 'FAST_ZERO failed with %s (%s); only ENOTSUP is allowed' % (e.errno, e.string))
    fast_zeroed = False
got = h.pread(4 * MiB, 8 * MiB)
want = bytearray(b'\xcc' * (4 * MiB))
want[256 * 1024:512 * 1024] = bytes(256 * 1024)
want[MiB + 512:MiB + 1024] = bytes(512)
want[2 * MiB:2 * MiB + 4096] = bytes(4096)
if fast_zeroed:
    want[3 * MiB:4 * MiB] = bytes(MiB)
check(got == bytes(want), 'contents after WRITE_ZEROES differ at byte %s' %
      next((i for i in range(len(got)) if got[i] != want[i]), None))
# Zeroing a hole keeps reading zeros.
h.zero(MiB, 30 * MiB)
check(h.pread(MiB, 30 * MiB) == bytes(MiB), 'zeroed hole reads non-zero')
finish(h)
`);

  testWith(variant, 'trims ranges to zeros and holes', {}, 64, String.raw`
h = connect()
h.pwrite(b'\x77' * (2 * MiB), 16 * MiB)
h.trim(MiB, 16 * MiB)
h.trim(4096, 17 * MiB + 4096, nbd.CMD_FLAG_FUA)
got = h.pread(2 * MiB, 16 * MiB)
want = bytearray(bytes(MiB) + b'\x77' * MiB)
want[MiB + 4096:MiB + 8192] = bytes(4096)
check(got == bytes(want), 'contents after TRIM differ at byte %s' %
      next((i for i in range(len(got)) if got[i] != want[i]), None))
ext = allocation(h, 16 * MiB, 2 * MiB)
check(all(f & nbd.STATE_HOLE for f in flags_over(ext, 16 * MiB, MiB)), 'trimmed MiB not a hole: %r' % ext)
check(flags_over(ext, 17 * MiB + 8192, MiB - 8192) == {0}, 'untrimmed data not data: %r' % ext)
finish(h)
`);

  testWith(variant, 'flushes, and FUA and FLUSH cover writes across connections', {}, 64, String.raw`
a, b, c = connect(), connect(), connect()
# Write on A, wait for the reply; FLUSH on B; read on C.
a.pwrite(b'\x31' * 65536, 20 * MiB)
b.flush()
check(c.pread(65536, 20 * MiB) == b'\x31' * 65536, 'C does not see A\'s write after B\'s flush')
# FUA on A, read on B.
a.pwrite(b'\x32' * 65536, 21 * MiB, nbd.CMD_FLAG_FUA)
check(b.pread(65536, 21 * MiB) == b'\x32' * 65536, 'B does not see A\'s FUA write')
# FUA on the other commands is accepted (semantics.md D9).
expect_ok('zero+FUA', a.zero, 65536, 22 * MiB, nbd.CMD_FLAG_FUA)
expect_ok('trim+FUA', a.trim, 65536, 23 * MiB, nbd.CMD_FLAG_FUA)
for h in (a, b, c):
    h.flush()
d = connect(strict=False)  # libnbd's strict mode does not let FUA onto a FLUSH
expect_ok('flush+FUA', d.flush, nbd.CMD_FLAG_FUA)
expect_ok('read+FUA', d.pread, 4096, 0, nbd.CMD_FLAG_FUA)
expect_ok('cache+FUA', d.cache, 4096, 0, nbd.CMD_FLAG_FUA)
d.shutdown()
finish(a)
b.shutdown()
c.shutdown()
`);

  testWith(variant, 'caches ranges (CACHE)', {}, 64, String.raw`
h = connect()
h.pwrite(b'\x44' * MiB, 0)
h.cache(MiB, 0)
h.cache(4 * MiB, 8 * MiB)
h.cache(SIZE, 0)
check(h.pread(MiB, 0) == b'\x44' * MiB, 'contents changed by CACHE')
finish(h)
`);

  testWith(variant, 'answers a pipelined batch of aio_pwrite/aio_pread in any order', {}, 64, String.raw`
h = connect()
def wait_all(cookies, what):
    deadline = time.time() + 30
    order = []
    pending = set(cookies)
    while pending:
        if time.time() > deadline:
            failures.append('%s: %d requests not answered within 30 s' % (what, len(pending)))
            return order
        h.poll(1000)
        for ck in list(pending):
            try:
                done = h.aio_command_completed(ck)
            except nbd.Error as e:
                failures.append('%s: request %d failed: %s' % (what, ck, e))
                done = True
            if done:
                pending.discard(ck)
                order.append(ck)
    return order

# 96 writes of varied sizes to disjoint places, all queued before any reply is awaited.
reqs = []
off = 0
for i in range(96):
    ln = 4096 * (1 + (i * 7) % 32)
    reqs.append((off, ln, bytes([(i * 37 + 1) % 256]) * ln))
    off += ln + 4096 * (i % 3)
check(off < SIZE, 'batch does not fit')
bufs = [nbd.Buffer.from_bytearray(bytearray(data)) for (_, _, data) in reqs]
cookies = [h.aio_pwrite(buf, o) for (buf, (o, _, _)) in zip(bufs, reqs)]
check(h.aio_in_flight() > 1, 'writes were not pipelined (in flight: %d)' % h.aio_in_flight())
wait_all(cookies, 'writes')

# Reads and writes mixed in one batch; reads of the first half, new writes past the end of it.
rbufs = [nbd.Buffer(ln) for (_, ln, _) in reqs]
mixed = [h.aio_pread(buf, o) for (buf, (o, _, _)) in zip(rbufs, reqs)]
tail = [(off + 4096 * i, b'\xee' * 4096) for i in range(32)]
tbufs = [nbd.Buffer.from_bytearray(bytearray(d)) for (_, d) in tail]
mixed += [h.aio_pwrite(buf, o, flags=(nbd.CMD_FLAG_FUA if i % 4 == 0 else 0)) for i, (buf, (o, _)) in enumerate(zip(tbufs, tail))]
mixed.append(h.aio_flush())
wait_all(mixed, 'mixed batch')
for i, (buf, (o, ln, data)) in enumerate(zip(rbufs, reqs)):
    if bytes(buf.to_bytearray()) != data:
        failures.append('aio read %d at %d (+%d) returned wrong data' % (i, o, ln))
check(h.pread(32 * 4096, off) == b'\xee' * (32 * 4096), 'aio writes of the mixed batch are missing')
finish(h)
`);

  testWith(variant, 'rejects out-of-range, misaligned and invalid requests with the right errno', {}, 64, String.raw`
h = connect(strict=False)
h.pwrite(b'\xee' * 4096, 0)
h.pwrite(b'\xef' * 4096, SIZE - 4096)

# Beyond the end: EINVAL for READ, TRIM, CACHE and BLOCK_STATUS; ENOSPC for WRITE and WRITE_ZEROES.
expect_error('READ straddling the end', 'EINVAL', h.pread, 1024, SIZE - 512)
expect_error('READ at the end', 'EINVAL', h.pread, 512, SIZE)
expect_error('READ at 2^63', 'EINVAL', h.pread, 512, 2**63)
expect_error('READ at 2^64-512', 'EINVAL', h.pread, 512, 2**64 - 512)
expect_error('WRITE straddling the end', 'ENOSPC', h.pwrite, b'\x01' * 1024, SIZE - 512)
expect_error('WRITE at the end', 'ENOSPC', h.pwrite, b'\x01' * 512, SIZE)
expect_error('WRITE at 2^64-512', 'ENOSPC', h.pwrite, b'\x01' * 512, 2**64 - 512)
expect_error('WRITE_ZEROES straddling the end', 'ENOSPC', h.zero, 1024, SIZE - 512)
expect_error('WRITE_ZEROES at 2^63', 'ENOSPC', h.zero, 512, 2**63)
expect_error('TRIM straddling the end', 'EINVAL', h.trim, 1024, SIZE - 512)
expect_error('TRIM at 2^63', 'EINVAL', h.trim, 512, 2**63)
expect_error('CACHE straddling the end', 'EINVAL', h.cache, 1024, SIZE - 512)
expect_error('BLOCK_STATUS at the end', 'EINVAL', h.block_status, 512, SIZE, lambda *a: 0)

# Misaligned to the 512-byte minimum: EINVAL.
expect_error('READ at offset 100', 'EINVAL', h.pread, 512, 100)
expect_error('READ of 100 bytes', 'EINVAL', h.pread, 100, 0)
expect_error('WRITE at offset 1', 'EINVAL', h.pwrite, b'\x02' * 512, 1)
expect_error('WRITE of 100 bytes', 'EINVAL', h.pwrite, b'\x02' * 100, 0)
expect_error('WRITE of 4095 bytes', 'EINVAL', h.pwrite, b'\x02' * 4095, 4096)
expect_error('WRITE_ZEROES of 100 bytes', 'EINVAL', h.zero, 100, 0)
expect_error('TRIM at offset 256', 'EINVAL', h.trim, 512, 256)
expect_error('CACHE of 100 bytes', 'EINVAL', h.cache, 100, 0)

# Flags that are not valid for the command: EINVAL.
expect_error('READ with NO_HOLE', 'EINVAL', h.pread, 512, 0, nbd.CMD_FLAG_NO_HOLE)
expect_error('READ with REQ_ONE', 'EINVAL', h.pread, 512, 0, nbd.CMD_FLAG_REQ_ONE)
expect_error('WRITE with DF', 'EINVAL', h.pwrite, b'\x03' * 512, 0, nbd.CMD_FLAG_DF)
expect_error('WRITE with FAST_ZERO', 'EINVAL', h.pwrite, b'\x03' * 512, 0, nbd.CMD_FLAG_FAST_ZERO)
expect_error('TRIM with NO_HOLE', 'EINVAL', h.trim, 512, 0, nbd.CMD_FLAG_NO_HOLE)
expect_error('READ with unknown flag 0x8000', 'EINVAL', h.pread, 512, 0, 0x8000)

# The advertised maximum payload is usable. (Oversized writes cannot be sent from here: libnbd
# refuses requests over 64 MiB itself, and iomapd accepts up to 64 MiB.)
expect_ok('WRITE of 32 MiB', h.pwrite, b'\x05' * (32 * MiB), 8 * MiB)
check(h.pread(4096, 40 * MiB - 4096) == b'\x05' * 4096, 'tail of the 32 MiB write')

# Zero-length requests succeed with no effect.
got = expect_ok('READ of 0 bytes', h.pread, 0, 0)
check(got is None or got == b'', 'READ of 0 bytes returned data')
expect_ok('WRITE of 0 bytes', h.pwrite, b'', 0)

# Nothing above changed the data, and the stream is still in step after the rejected writes.
check(h.pread(4096, 0) == b'\xee' * 4096, 'data at 0 changed by rejected requests')
check(h.pread(4096, SIZE - 4096) == b'\xef' * 4096, 'data at the end changed by rejected requests')
finish(h)

# The same with simple replies (the kernel's mode): errors in simple reply headers.
h = connect(strict=False, structured=False, meta=False)
expect_error('simple: READ straddling the end', 'EINVAL', h.pread, 1024, SIZE - 512)
expect_error('simple: READ misaligned', 'EINVAL', h.pread, 512, 100)
expect_error('simple: WRITE straddling the end', 'ENOSPC', h.pwrite, b'\x01' * 1024, SIZE - 512)
expect_error('simple: WRITE misaligned', 'EINVAL', h.pwrite, b'\x01' * 512, 7)
expect_error('simple: READ with DF (not advertised)', 'EINVAL', h.pread, 512, 0, nbd.CMD_FLAG_DF)
expect_error('simple: BLOCK_STATUS without a context', 'EINVAL', h.block_status, 512, 0, lambda *a: 0)
check(h.pread(4096, 0) == b'\xee' * 4096, 'simple: stream out of step after rejected requests')
finish(h)
`);

  testWith(variant, 'rejects writes, trims and zeroes on a read-only export with EPERM', { readOnly: true }, 64, String.raw`
h = connect(strict=False)
check(h.is_read_only(), 'export not read-only')
expect_error('WRITE', 'EPERM', h.pwrite, b'\x01' * 4096, 0)
expect_error('WRITE+FUA', 'EPERM', h.pwrite, b'\x01' * 4096, 0, nbd.CMD_FLAG_FUA)
expect_error('TRIM', 'EPERM', h.trim, 4096, 0)
expect_error('WRITE_ZEROES', 'EPERM', h.zero, 4096, 0)
# Read-only is checked before alignment and bounds (semantics.md V1).
expect_error('misaligned WRITE', 'EPERM', h.pwrite, b'\x01' * 100, 1)
expect_error('WRITE past the end', 'EPERM', h.pwrite, b'\x01' * 512, SIZE)
# Reads, cache, flush and block status still work, and the rejected payloads were drained.
check(expect_ok('READ', h.pread, 4096, 0) == bytes(4096), 'read-only export reads non-zero')
expect_ok('CACHE', h.cache, 4096, 0)
expect_ok('FLUSH', h.flush)
check(len(allocation(h, 0, SIZE)) >= 1, 'no block status on a read-only export')
check(h.pread(512, SIZE - 512) == bytes(512), 'stream out of step after rejected writes')
finish(h)
`);
});
