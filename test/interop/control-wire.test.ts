// The control channel against a serving daemon, with libnbd's Python API on the wire (semantics
// §9 [N] cases 7, 8 and 9): snapshots taken through `iomapd snapshot` while clients are connected,
// sub-block writes into the shared blocks (copy-up), a clone of the snapshot read back, the
// iomapd:mapping context and nbdinfo --map checked against `iomapd map`, the counters of
// `iomapd stats` moving as expected, and a snapshot that holds exactly the acknowledged writes.
import { describe, expect, it } from 'vitest';
import { IOMAPD_COMMAND, iomapd, requireTool, runOk, runPython, withExportName, withIomapd, type IomapdServer } from './harness.ts';

const PRELUDE = String.raw`
import json, subprocess, sys, time
import nbd
URI, IMAGE = sys.argv[1], sys.argv[2]
IOMAPD = sys.argv[3:]
B = 4096
fails = []
def check(c, what):
    if not c: fails.append(what)
def cli(*args):
    r = subprocess.run(IOMAPD + list(args), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        print('iomapd %s failed: %s' % (' '.join(args), r.stderr)); sys.exit(1)
    return r.stdout
def uri(name):
    return URI.replace('/vm?', '/%s?' % name)
def conn(name='vm'):
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.add_meta_context('iomapd:mapping')
    h.connect_uri(uri(name))
    return h
def counters(name='vm'):
    return next(e for e in json.loads(cli('stats', IMAGE, '--json'))['exports'] if e['name'] == name)['counters']
def mapping(h, off, ln):
    got = []
    def cb(ctx, start, e, err):
        if ctx == 'iomapd:mapping':
            got.extend([(e[i], e[i + 1]) for i in range(0, len(e), 2)])
        return 0
    h.block_status(ln, off, cb)
    return got
def finish():
    if fails:
        print('\n'.join(fails)); sys.exit(1)
`;

// Mapping flags (docs/CONTEXTS.md): type in bits 0-1, SHARED = 4.
const SHARED_WRITES = String.raw`
h = conn()
check(h.can_meta_context('iomapd:mapping'), 'iomapd:mapping not negotiated')
h.pwrite(b'\x11' * (8 * B), 0, nbd.CMD_FLAG_FUA)           # hole fill: full path (journal commit)
s0 = counters()
check(s0['journalCommits'] >= 1, 'FUA hole fill did not commit: %r' % s0)
h.pwrite(b'\x33' * B, 0, nbd.CMD_FLAG_FUA)                 # pure overwrite: FUA shortcut
s1 = counters()
check(s1['fuaShortcuts'] == s0['fuaShortcuts'] + 1, 'no FUA shortcut: %r -> %r' % (s0, s1))
check(s1['journalCommits'] == s0['journalCommits'], 'pure overwrite committed the journal')

cli('snapshot', IMAGE, 'vm', 'snap1')                      # while h stays connected
check(mapping(h, 0, 16 * B) == [(8 * B, 6), (8 * B, 0)], 'after snapshot: %r' % mapping(h, 0, 16 * B))

# Sub-block writes into shared blocks: copy-on-write with copy-up of the rest of each block.
h.pwrite(b'\x44' * 512, B + 1024)
h.pwrite(b'\x55' * 512, 3 * B + 3584, nbd.CMD_FLAG_FUA)
s2 = counters()
check(s2['cowCopies'] == s1['cowCopies'] + 2, 'COW copies %d -> %d' % (s1['cowCopies'], s2['cowCopies']))
check(s2['copyUpBytes'] == s1['copyUpBytes'] + 2 * (B - 512), 'copy-up bytes %d -> %d' % (s1['copyUpBytes'], s2['copyUpBytes']))
check(s2['journalCommits'] == s1['journalCommits'] + 1, 'FUA COW write: journal commits %d -> %d' % (s1['journalCommits'], s2['journalCommits']))
check(mapping(h, 0, 8 * B) == [(B, 6), (B, 2), (B, 6), (B, 2), (4 * B, 6)], 'after COW: %r' % mapping(h, 0, 8 * B))

snap = bytearray(b'\x11' * (8 * B)); snap[0:B] = b'\x33' * B
vm = bytearray(snap); vm[B + 1024:B + 1536] = b'\x44' * 512; vm[3 * B + 3584:4 * B] = b'\x55' * 512
check(h.pread(8 * B, 0) == bytes(vm), 'volume after sub-block COW writes')

cli('clone', IMAGE, 'snap1', 'clone1')
c, s = conn('clone1'), conn('snap1')
check(s.is_read_only(), 'snapshot export is writable')
check(s.pread(8 * B, 0) == bytes(snap), 'snapshot content')
check(c.pread(8 * B, 0) == bytes(snap), 'clone content')
c.pwrite(b'\x66' * 512, 2 * B)                             # the clone's own COW
check(s.pread(8 * B, 0) == bytes(snap), 'snapshot changed by a write to the clone')
check(h.pread(8 * B, 0) == bytes(vm), 'volume changed by a write to the clone')
check(counters('clone1')['cowCopies'] == 1, 'clone COW copies %r' % counters('clone1'))
for x in (h, c, s): x.shutdown()
finish()
`;

// Writes acknowledged before the snapshot command are in the snapshot; writes issued after it
// returned are not; every block holds one whole write or its old contents.
const ATOMIC = String.raw`
N, SZ = 64, 64 * 1024
h = conn()
bufs = [nbd.Buffer.from_bytearray(bytearray([i + 1]) * SZ) for i in range(N)]
pending = {h.aio_pwrite(bufs[i], i * SZ): i for i in range(N)}
acked = set()
deadline = time.time() + 30
while len(acked) < N // 2 and time.time() < deadline:
    h.poll(1000)
    for ck in [ck for ck in pending if h.aio_command_completed(ck)]:
        acked.add(pending.pop(ck))
cli('snapshot', IMAGE, 'vm', 'atomic')
late = [nbd.Buffer.from_bytearray(bytearray(b'\xee') * SZ) for i in range(N)]
for i in range(N):
    pending[h.aio_pwrite(late[i], i * SZ)] = -1
while pending and time.time() < deadline:
    h.poll(1000)
    for ck in [ck for ck in pending if h.aio_command_completed(ck)]:
        pending.pop(ck)
check(not pending, '%d writes unanswered' % len(pending))
s = conn('atomic')
got = s.pread(N * SZ, 0)
for i in range(N):
    block = got[i * SZ:(i + 1) * SZ]
    if i in acked:
        check(block == bytes([i + 1]) * SZ, 'write %d acknowledged before the snapshot is missing from it' % i)
    else:
        check(block in (bytes([i + 1]) * SZ, bytes(SZ)), 'write %d is torn or late in the snapshot' % i)
check(h.pread(N * SZ, 0) == b'\xee' * (N * SZ), 'late writes missing from the volume')
print('acked before the snapshot: %d of %d' % (len(acked), N))
h.shutdown(); s.shutdown()
finish()
`;

// Semantics §9 case 7 over the wire: eight concurrent 512-byte writes to the sectors of one block,
// for 256 shared blocks (copy-up races) and 256 unwritten ones (zero-pad races), all pipelined.
const SECTOR_RACES = String.raw`
BLOCKS, BASE = 256, 8 * 1024 * 1024
h = conn()
h.pwrite(b'\x01' * (BLOCKS * B), BASE)
cli('snapshot', IMAGE, 'vm', 'races')
h.zero(BLOCKS * B, BASE + BLOCKS * B, nbd.CMD_FLAG_NO_HOLE)  # after the snapshot: exclusive
check(mapping(h, BASE, 2 * BLOCKS * B) == [(BLOCKS * B, 6), (BLOCKS * B, 1)], 'setup: %r' % mapping(h, BASE, 2 * BLOCKS * B))
bufs, pending = [], set()
for blk in range(2 * BLOCKS):
    for sec in range(8):
        buf = nbd.Buffer.from_bytearray(bytearray([(blk * 8 + sec) % 251 + 2]) * 512)
        bufs.append(buf)
        pending.add(h.aio_pwrite(buf, BASE + blk * B + sec * 512))
deadline = time.time() + 30
while pending and time.time() < deadline:
    h.poll(1000)
    pending = {ck for ck in pending if not h.aio_command_completed(ck)}
check(not pending, '%d sector writes unanswered' % len(pending))
got = h.pread(2 * BLOCKS * B, BASE)
lost = [blk for blk in range(2 * BLOCKS) if any(got[blk * B + sec * 512:blk * B + (sec + 1) * 512] != bytes([(blk * 8 + sec) % 251 + 2]) * 512 for sec in range(8))]
check(not lost, 'sector writes lost in blocks %r' % lost[:10])
check(conn('races').pread(BLOCKS * B, BASE) == b'\x01' * (BLOCKS * B), 'snapshot changed by the races')
finish()
`;

/** Extents [offset, length, flags] with equal neighbours merged. */
function merged(rows: Array<{ offset: number; length: number; flags: number }>): number[][] {
  const out: number[][] = [];
  for (const r of rows) {
    const last = out.at(-1);
    if (last && last[2] === r.flags && last[0]! + last[1]! === r.offset) last[1]! += r.length;
    else out.push([r.offset, r.length, r.flags]);
  }
  return out;
}

const TYPE_CODE: Record<string, number> = { hole: 0, unwritten: 1, mapped: 2, inline: 3 };

async function wireMap(server: IomapdServer, context: string): Promise<number[][]> {
  const r = await runOk('nbdinfo', [`--map=${context}`, '--json', server.uri], { server });
  return merged((JSON.parse(r.stdout) as Array<{ offset: number; length: number; type: number }>).map((e) => ({ offset: e.offset, length: e.length, flags: e.type })));
}

function serveVm<T>(body: (server: IomapdServer) => Promise<T>): Promise<T> {
  return withIomapd({ transport: 'unix', backend: 'image', size: '16M', capacity: '64M', exportName: 'vm' }, body);
}

describe('control channel while serving', () => {
  it('snapshot, sub-block writes into shared blocks, clone, stats; nbdinfo --map and iomapd:mapping match iomapd map', async (ctx) => {
    requireTool(ctx, 'python3-nbd', 'nbdinfo');
    await serveVm(async (server) => {
      const image = server.image!;
      await runPython(server, PRELUDE + SHARED_WRITES, [server.uri, image, ...IOMAPD_COMMAND]);

      const rows = JSON.parse((await iomapd(['map', image, 'vm', '--json'], { server })).stdout) as Array<{ offset: number; length: number; type: string; shared: boolean }>;
      const ours = merged(rows.map((r) => ({ offset: r.offset, length: r.length, flags: TYPE_CODE[r.type]! + (r.shared ? 4 : 0) })));
      expect(ours.slice(0, 5)).toEqual([
        [0, 4096, 6],
        [4096, 4096, 2],
        [8192, 4096, 6],
        [12288, 4096, 2],
        [16384, 16384, 6],
      ]);
      expect(await wireMap(server, 'iomapd:mapping')).toEqual(ours);
      const allocation = merged(rows.map((r) => ({ offset: r.offset, length: r.length, flags: r.type === 'hole' ? 3 : r.type === 'unwritten' ? 2 : 0 })));
      expect(await wireMap(server, 'base:allocation')).toEqual(allocation);

      // The new exports are listed, and `volume ls` sees them through the channel.
      const list = await runOk('nbdinfo', ['--list', '--json', server.uri], { server });
      const names = (JSON.parse(list.stdout) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']);
      expect(names.sort()).toEqual(['clone1', 'snap1', 'vm']);
      expect((await iomapd(['volume', 'ls', image], { server })).stdout).toMatch(/^snap1\t16M\tsnapshot/m);
    });
  }, 60_000);

  it('a snapshot through the channel holds exactly the acknowledged writes; concurrent sector writes into shared and unwritten blocks all survive', async (ctx) => {
    requireTool(ctx, 'python3-nbd');
    await serveVm(async (server) => {
      const r = await runPython(server, PRELUDE + ATOMIC, [server.uri, server.image!, ...IOMAPD_COMMAND]);
      expect(r.stdout).toMatch(/acked before the snapshot: \d+ of 64/);
      await runPython(server, PRELUDE + SECTOR_RACES, [server.uri, server.image!, ...IOMAPD_COMMAND]);
    });
  }, 60_000);

  it('volume create adds an export; volume rm of a connected volume is BUSY; stats needs a daemon', async (ctx) => {
    requireTool(ctx, 'python3-nbd', 'nbdinfo');
    let image = '';
    await serveVm(async (server) => {
      image = server.image!;
      await iomapd(['volume', 'create', image, 'extra', '--size', '1M'], { server });
      const size = await runOk('nbdinfo', ['--size', withExportName(server.uri, 'extra')], { server });
      expect(size.stdout.trim()).toBe(String(1024 * 1024));
      await runPython(
        server,
        String.raw`${PRELUDE}
h = conn('extra')
r = subprocess.run(IOMAPD + ['volume', 'rm', IMAGE, 'extra'], capture_output=True, text=True, timeout=60)
check(r.returncode != 0 and 'BUSY' in r.stderr, 'rm of a connected volume: %d %s' % (r.returncode, r.stderr))
h.shutdown()
finish()
`,
        [server.uri, image, ...IOMAPD_COMMAND],
      );
      // Connections close asynchronously after the client's DISC: retry briefly.
      let removed = false;
      for (let i = 0; i < 50 && !removed; i++) {
        removed = await iomapd(['volume', 'rm', image, 'extra']).then(() => true, () => false);
        if (!removed) await new Promise((r) => setTimeout(r, 100));
      }
      expect(removed).toBe(true);
      expect((await iomapd(['volume', 'ls', image], { server })).stdout).not.toMatch(/^extra\t/m);
    });
    // The daemon is gone: the socket was removed and stats refuses.
    const r = await iomapd(['stats', image]).catch((e: Error) => e);
    expect(String(r)).toMatch(/NOT_RUNNING/);
  }, 60_000);
});
