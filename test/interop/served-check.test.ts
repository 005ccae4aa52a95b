// `iomapd check IMAGE` while a daemon serves the image: the daemon checks its live metadata through
// the control channel (the check op) and keeps serving. A libnbd client writes, trims, zeroes and
// flushes in a loop the whole time (and a snapshot lands in the middle, so copy-on-write and shared
// refcounts move too); every check is clean with the offline check's output and exit status,
// every request of the client succeeds and reads back what the model says. `--repair` on a served image is refused.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/daemon.ts';
import { describeRun, requireTool, runPython, withIomapd } from './harness.ts';

// Random 4 KiB-aligned writes, trims and zeroes over the first 16 MiB, checked against a model by
// reads, until the stop file appears (or 120 s, a bound so it always ends). Any failed request
// raises, so the script exits non-zero.
const CHURN = String.raw`
import os, random, sys, time, nbd
URI, STOP = sys.argv[1], sys.argv[2]
B, SPAN = 4096, 4096
rnd = random.Random(7)
h = nbd.NBD()
h.connect_uri(URI)
model = {}
counts = {'write': 0, 'trim': 0, 'zero': 0, 'flush': 0, 'read': 0}
deadline = time.monotonic() + 120
while not os.path.exists(STOP) and time.monotonic() < deadline:
    start = rnd.randrange(SPAN - 16)
    n = 1 + rnd.randrange(16)
    r = rnd.random()
    if r < 0.6:
        fill = rnd.randrange(1, 256)
        h.pwrite(bytes([fill]) * (n * B), start * B)
        for b in range(start, start + n): model[b] = fill
        counts['write'] += 1
    elif r < 0.8:
        h.trim(n * B, start * B)
        for b in range(start, start + n): model[b] = 0
        counts['trim'] += 1
    else:
        h.zero(n * B, start * B)
        for b in range(start, start + n): model[b] = 0
        counts['zero'] += 1
    if rnd.random() < 0.1:
        h.flush()
        counts['flush'] += 1
    b = rnd.randrange(SPAN)
    got = h.pread(B, b * B)
    want = bytes([model.get(b, 0)]) * B
    if got != want:
        raise SystemExit(f'block {b}: read {got[0]} x{B}, expected {want[0]}')
    counts['read'] += 1
for b in range(SPAN):
    if h.pread(B, b * B) != bytes([model.get(b, 0)]) * B:
        raise SystemExit(f'final read of block {b} differs from the model')
h.shutdown()
print(' '.join(f'{k}={v}' for k, v in counts.items()), flush=True)
`;

describe('iomapd check on a served image', () => {
  it('is clean under live writes, and every request of the client succeeds', async (ctx) => {
    requireTool(ctx, 'python3-nbd');
    await withIomapd({ transport: 'unix', backend: 'image', exportName: 'vol', size: '64M' }, async (server) => {
      const image = server.image!;
      const stop = join(server.dir, 'stop');
      const churn = runPython(server, CHURN, [server.uri, stop], { timeoutMs: 150_000 });
      const checks: string[] = [];
      try {
        for (let i = 0; i < 6; i++) {
          if (i === 3) expect((await runCli(['snapshot', image, 'vol', 'mid'])).code).toBe(0);
          const r = await runCli(['check', image]);
          expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
          expect(r.stderr).toBe('');
          if (i < 3) {
            expect(r.stdout).toMatch(/note: served image: checked a copy of the metadata after a commit; requests waited [\d.]+ ms\n/);
          } else {
            // Known limitation (format 3): once a snapshot shares tree nodes, the copy sometimes does
            // not check clean while writes go on (seen in CI), and the daemon falls back, by design,
            // to checking the live metadata in place. The report must still be the offline one.
            expect(r.stdout).toMatch(
              /note: served image: (checked a copy of the metadata|the copy of the metadata did not check clean \([^\n]*\), so the live metadata was checked in place\nnote: served image: checked the live metadata) after a commit; requests waited [\d.]+ ms\n/,
            );
          }
          expect(r.stdout).toMatch(/^clean: [12] volumes, \d+ extents, \d+ used and \d+ free blocks$/m);
          checks.push(r.stdout);
        }
        const json = await runCli(['check', image, '--json']);
        expect(json.code).toBe(0);
        const report = JSON.parse(json.stdout) as { errors: string[]; volumes: number; extents: number; repaired: boolean };
        expect(report).toMatchObject({ errors: [], volumes: 2, repaired: false });
        expect(report.extents).toBeGreaterThan(0);

        const repair = await runCli(['check', image, '--repair']);
        expect(repair.code).toBe(1);
        expect(repair.stdout).toBe('');
        expect(repair.stderr).toMatch(/^iomapd: LOCKED: .* is served by process \d+: --repair rewrites the metadata and needs an idle image/);
      } finally {
        await writeFile(stop, '');
      }
      const done = await churn;
      expect(done.stdout, describeRun(done, server)).toMatch(/^write=[1-9]\d* trim=\d+ zero=\d+ flush=\d+ read=[1-9]\d*$/m);
      // The checks ran while the client changed the metadata: they did not all see one state.
      expect(new Set(checks.map((c) => c.split('\n').at(-2))).size).toBeGreaterThan(1);
    });
  }, 240_000);
});
