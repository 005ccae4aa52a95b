// `iomapd diff IMAGE FROM TO [--json]` through the real CLI on an image file built in process:
// the ranges equal the library's diff (src/fs/diff.ts), text and JSON agree, and pairs that are
// not two points of one history, or unknown names, fail with `iomapd: CODE: message`, exit 1.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffVolumes } from '../../src/fs/diff.ts';
import { createImageFile, openImageFile } from '../../src/fs/image-file.ts';
import { runCli } from '../support/daemon.ts';
import { runHistory } from '../support/history-workload.ts';

let dir = '';
let img = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-diff-cli-'));
  img = join(dir, 'h.img');
  const store = await createImageFile(img, { dataBytes: 16 << 20 });
  await runHistory(store, 'w', 4242, { blocks: 128, ops: 20, partial: false });
  await store.createVolume('other', 1 << 20);
  await store.snapshot('other', 'o1');
  await store.close();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('iomapd diff', () => {
  it('prints the ranges the library finds, as text and as JSON', async () => {
    const store = await openImageFile(img, { readOnly: true });
    const expected = await diffVolumes(store, 'w-s1', 'w-s2');
    const live = await diffVolumes(store, 'w-s1', 'w');
    await store.close();
    expect(expected.length).toBeGreaterThan(0);

    const json = await runCli(['diff', img, 'w-s1', 'w-s2', '--json']);
    expect(json.stderr).toBe('');
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report).toMatchObject({ from: 'w-s1', to: 'w-s2', size: 128 * 4096, granularity: 4096, ranges: expected });
    expect(report.changedBytes).toBe(expected.reduce((n, r) => n + r.length, 0));

    const text = await runCli(['diff', img, 'w-s1', 'w']);
    expect(text.code).toBe(0);
    expect(text.stdout).toBe(live.map((r) => `${r.offset}\t${r.length}\t${r.zero ? 'zero' : 'data'}\n`).join(''));
  }, 60_000);

  it('refuses pairs outside one history and unknown names', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['w-s2', 'w-s1'], /^iomapd: BAD_ARGUMENT: w-s2 is not an earlier point of w-s1's history/],
      [['o1', 'w'], /^iomapd: BAD_ARGUMENT: o1 is not an earlier point of w's history \(w's lineage: w\)/],
      [['w', 'w-s1'], /^iomapd: BAD_ARGUMENT: w is not a snapshot/],
      [['nope', 'w'], /^iomapd: NOT_FOUND: no volume named "nope"/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['diff', img, ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe('');
    }
  }, 60_000);
});
