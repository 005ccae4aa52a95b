// The engine over the wire (semantics §9 [N] cases 1, 3, 5, 6, 23, 30): an iomapd image served by
// `iomapd serve IMAGE`, driven with libnbd's Python API, and nbdinfo --map checked against
// `iomapd map`.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, requireTool, runOk, runPython, withIomapd } from './harness.ts';

const NODE = join(REPO_ROOT, 'node_modules', '.bin', 'node');
const MAIN = join(REPO_ROOT, 'src', 'cli', 'main.ts');

const SCRIPT = String.raw`
import sys, nbd
URI = sys.argv[1]
B = 4096
fails = []
def check(c, what):
    if not c: fails.append(what)
def conn():
    h = nbd.NBD(); h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION); h.connect_uri(URI); return h
a, b, c = conn(), conn(), conn()
check(a.can_multi_conn(), 'multi-conn advertised')
a.pwrite(b'\x11' * (2 * B), 0)                        # mapped
a.zero(2 * B, 4 * B, nbd.CMD_FLAG_NO_HOLE)           # unwritten over [4B, 6B)
a.pwrite(b'\x22' * 512, 4 * B + 1024)                # sub-block write into unwritten
a.pwrite(b'\x33' * 512, 1024)                        # sub-block overwrite of mapped
got = a.pread(8 * B, 0)
check(got[0:1024] == b'\x11' * 1024 and got[1024:1536] == b'\x33' * 512 and got[1536:2 * B] == b'\x11' * (2 * B - 1536), 'mapped data')
check(got[2 * B:4 * B] == bytes(2 * B), 'hole reads zeros')
check(got[4 * B:4 * B + 1024] == bytes(1024) and got[4 * B + 1024:4 * B + 1536] == b'\x22' * 512 and got[4 * B + 1536:5 * B] == bytes(B - 1536), 'sub-block write into unwritten is padded with zeros')
check(got[5 * B:6 * B] == bytes(B), 'unwritten reads zeros')
ext = []
a.block_status(8 * B, 0, lambda ctx, off, e, err: ext.extend(e) or 0)
flags = [(ext[i], ext[i + 1]) for i in range(0, len(ext), 2)]
check(flags[:4] == [(2 * B, 0), (2 * B, 3), (B, 0), (B, 2)], 'block status %r' % flags[:4])
a.trim(B, 6 * B)
check(a.pread(B, 6 * B) == bytes(B), 'trim reads zeros')
# multi-connection: written on b, flushed on c, read on a
b.pwrite(b'\x44' * B, 9 * B)
c.flush()
check(a.pread(B, 9 * B) == b'\x44' * B, 'write on B visible on A after FLUSH on C')
for h in (a, b, c): h.shutdown()
if fails:
    print('\n'.join(fails)); sys.exit(1)
`;

function cli(...args: string[]): string {
  const r = spawnSync(NODE, [MAIN, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`iomapd ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

describe('engine over the wire', () => {
  it('serves an image volume: mixed reads, sub-block writes, block status, multi-connection FLUSH, and nbdinfo --map matches iomapd map', async (ctx) => {
    requireTool(ctx, 'python3-nbd', 'nbdinfo');
    const dir = await mkdtemp(join(tmpdir(), 'iomapd-engine-'));
    const image = join(dir, 'img.iomapd');
    try {
      cli('create', image, '--size', '16M');
      let map = '';
      await withIomapd({ transport: 'unix', file: image, exportName: 'default' }, async (server) => {
        await runPython(server, SCRIPT, [server.uri]);
        map = (await runOk('nbdinfo', ['--map', '--json', server.uri], { server })).stdout;
      });
      const wire = (JSON.parse(map) as Array<{ offset: number; length: number; type: number }>).map((e) => [e.offset, e.length, e.type]);
      const extents = JSON.parse(cli('map', image, 'default', '--json')) as Array<{ offset: number; length: number; type: string }>;
      const merged: number[][] = [];
      for (const e of extents) {
        const t = e.type === 'hole' ? 3 : e.type === 'unwritten' ? 2 : 0;
        const last = merged[merged.length - 1];
        if (last && last[2] === t) last[1]! += e.length;
        else merged.push([e.offset, e.length, t]);
      }
      expect(wire).toEqual(merged);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
