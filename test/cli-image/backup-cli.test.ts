// `iomapd backup IMAGE VOLUME --to FILE [--since SNAPSHOT]` through the real CLI: a full sparse
// copy, then incremental runs that each copy only what changed since the snapshot the run before
// kept (VOLUME@backup-N), equal the volume byte for byte over rounds of random writes, trims,
// zeroes and a resize; wrong requests fail with `iomapd: CODE: message` and leave nothing behind.
import { readFile, stat, writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createImageFile, openImageFile } from '../../src/fs/image-file.ts';
import type { ImageStore } from '../../src/fs/image-store.ts';
import { punch, readBytes, writeBytes } from '../fs/support/mini-engine.ts';
import { runCli } from '../support/daemon.ts';
import { seededRandom } from '../support/seeded-random.ts';

const B = 4096;
let dir = '';
let img = '';

async function withStore<T>(fn: (s: ImageStore) => Promise<T>): Promise<T> {
  const store = await openImageFile(img);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

async function scribble(store: ImageStore, random: () => number, blocks: number, ops: number): Promise<void> {
  for (let i = 0; i < ops; i++) {
    const start = Math.floor(random() * blocks);
    const len = 1 + Math.floor(random() * Math.min(16, blocks - start));
    const r = random();
    if (r < 0.6) await writeBytes(store, 'vol', start * B, Buffer.alloc(len * B, 1 + Math.floor(random() * 255)));
    else if (r < 0.8) await punch(store, 'vol', start * B, len * B, 'trim');
    else await punch(store, 'vol', start * B, len * B, 'zero', random() < 0.5);
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-backup-cli-'));
  img = join(dir, 'b.img');
  const store = await createImageFile(img, { dataBytes: 64 << 20 });
  await store.createVolume('vol', 256 * B);
  await store.createVolume('other', 16 * B);
  await store.snapshot('other', 'o1');
  await scribble(store, seededRandom(1), 128, 30); // the upper half stays a hole
  await store.close();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('iomapd backup', () => {
  it('a full sparse copy, then incremental runs, each equal to the volume', async () => {
    const file = join(dir, 'vol.raw');
    const full = await runCli(['backup', img, 'vol', '--to', file]);
    expect(full.stderr).toBe('');
    expect(full.code).toBe(0);
    expect(full.stdout).toMatch(/^backed up vol as snapshot vol@backup-1 \(full copy\): \d+ bytes written/);
    expect(full.stdout).toContain(`next: iomapd backup ${img} vol --to ${file} --since vol@backup-1`);
    // .equals, not toEqual: vitest compares large Buffers element by element, very slowly.
    expect((await readFile(file)).equals(await withStore((s) => readBytes(s, 'vol', 0, 256 * B)))).toBe(true);
    expect((await stat(file)).blocks * 512).toBeLessThan(256 * B); // the hole stayed a hole
    expect(JSON.parse(await readFile(`${file}.iomapd-backup`, 'utf8'))).toMatchObject({ volume: 'vol', snapshot: 'vol@backup-1' });

    const random = seededRandom(2);
    for (let round = 2; round <= 5; round++) {
      let size = 0;
      await withStore(async (s) => {
        await scribble(s, random, 256, 6);
        if (round === 4) await s.resizeVolume('vol', 320 * B);
        size = s.volumes.facts('vol').size;
        if (round === 4) await writeBytes(s, 'vol', 300 * B, Buffer.alloc(B, 0x5a));
      });
      const r = await runCli(['backup', img, 'vol', '--to', file, '--since', `vol@backup-${round - 1}`, '--json']);
      expect(r.stderr).toBe('');
      const report = JSON.parse(r.stdout);
      expect(report).toMatchObject({ volume: 'vol', snapshot: `vol@backup-${round}`, since: `vol@backup-${round - 1}`, size });
      expect(report.bytesWritten + report.bytesZeroed).toBeLessThan(size); // only what changed
      const expected = await withStore(async (s) => {
        const snap = await readBytes(s, `vol@backup-${round}`, 0, size);
        expect(snap.equals(await readBytes(s, 'vol', 0, size))).toBe(true);
        return snap;
      });
      expect((await readFile(file)).equals(expected), `round ${round}`).toBe(true);
    }
    // The record names what the copy holds: an older or newer --since is refused, changing nothing.
    const stale = await runCli(['backup', img, 'vol', '--to', file, '--since', 'vol@backup-4']);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/^iomapd: BAD_ARGUMENT: .*vol\.raw holds vol@backup-5, not vol@backup-4 .*: pass --since vol@backup-5/);
  }, 120_000);

  it('refuses wrong requests and leaves no snapshot or file behind', async () => {
    const before = (await runCli(['volume', 'ls', img, '--json'])).stdout;
    const exists = join(dir, 'exists.raw');
    await writeFile(exists, Buffer.alloc(B));
    const cases: Array<[string[], RegExp]> = [
      [['vol', '--to', exists], /^iomapd: ALREADY_EXISTS: .*exists\.raw exists: pass --since SNAPSHOT/],
      [['vol', '--to', exists, '--since', 'vol@backup-1'], /^iomapd: BAD_ARGUMENT: .*exists\.raw is 4096 bytes but vol@backup-1 is 1048576: it is not a copy of vol@backup-1/],
      [['vol', '--to', join(dir, 'nope.raw'), '--since', 'vol@backup-1'], /^iomapd: NOT_FOUND: .*nope\.raw does not exist/],
      [['vol', '--to', join(dir, 'x.raw'), '--since', 'o1'], /^iomapd: BAD_ARGUMENT: o1 is not an earlier point of vol's history/],
      [['o1', '--to', join(dir, 'y.raw')], /^iomapd: BAD_ARGUMENT: o1 is a snapshot/],
      [['ghost', '--to', join(dir, 'z.raw')], /^iomapd: NOT_FOUND: no volume named "ghost"/],
      // Fails only after the snapshot was taken: the snapshot goes again (volume ls below).
      [['vol', '--to', dir, '--since', 'vol@backup-1'], /^iomapd: BAD_ARGUMENT: .* is neither a regular file nor a block device/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['backup', img, ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(message);
    }
    expect((await runCli(['volume', 'ls', img, '--json'])).stdout).toBe(before);
    for (const f of ['nope.raw', 'x.raw', 'y.raw', 'z.raw']) await expect(stat(join(dir, f))).rejects.toMatchObject({ code: 'ENOENT' });
  }, 120_000);
});
