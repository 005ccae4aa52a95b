// Item 1(d): leaked space is reported and reclaimable. The campaigns have never produced a leak, so
// this makes one on purpose (blocks neither free nor referenced, as an allocation whose mapping
// never committed would be) and runs the real CLI: `iomapd check` reports it and fails,
// `iomapd check --repair` gives the blocks back, and the image then checks clean.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { openImageFile } from '../../src/fs/image-file.ts';
import { runCli } from '../support/daemon.ts';

it('iomapd check reports leaked blocks and check --repair reclaims them', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-leak-'));
  const image = join(dir, 'image.iomapd');
  try {
    expect((await runCli(['create', image, '--size', '1M', '--capacity', '4M'])).code).toBe(0);
    const store = await openImageFile(image);
    const free = store.stats().freeBlocks;
    const run = [...store.meta.free.entries()].find((e) => e.v.len >= 10)!;
    expect(store.meta.takeFree(run.start + run.v.len - 5, 5)).toBe(true); // leak 5 blocks
    await store.checkpoint();
    await store.close();

    const found = await runCli(['check', image]);
    expect(found.code).toBe(2);
    expect(found.stdout).toContain('5 blocks are neither free nor referenced (leaked)');

    const repaired = await runCli(['check', image, '--repair']);
    expect(repaired.stdout).toContain('(repaired)');
    const clean = await runCli(['check', image]);
    expect(clean.code).toBe(0);
    expect(clean.stdout).toMatch(/^clean/m);
    const after = await openImageFile(image, { readOnly: true });
    expect(after.stats().freeBlocks).toBe(free);
    await after.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
