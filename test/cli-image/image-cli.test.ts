// Runs the real image commands on a temp image file through `node src/cli/main.ts`.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
// Node 24 from the npm `node` package runs .ts directly; the test runner itself may be older.
const localNode = join(root, 'node_modules/.bin/node');
const nodeBin = existsSync(localNode) ? localNode : process.execPath;
let dir = '';
let img = '';

function iomapd(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(nodeBin, [join(root, 'src/cli/main.ts'), ...args], { encoding: 'utf8', cwd: root });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-cli-'));
  img = join(dir, 'a.img');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('iomapd image commands', () => {
  it('create, volumes, snapshot, clone, info, map, check', () => {
    expect(iomapd('create', img, '--size', '8M', '--preallocate').code).toBe(0);
    expect(iomapd('create', img, '--size', '8M').err).toMatch(/ALREADY_EXISTS/);
    expect(iomapd('volume', 'create', img, 'data', '--size', '4M').code).toBe(0);
    expect(iomapd('volume', 'create', img, 'tiny', '--size', '1K').code).toBe(0);
    expect(iomapd('snapshot', img, 'default', 'snap').code).toBe(0);
    expect(iomapd('clone', img, 'snap', 'work').code).toBe(0);
    expect(iomapd('volume', 'resize', img, 'data', '8M').code).toBe(0);
    const ls = iomapd('volume', 'ls', img, '--json');
    const vols = JSON.parse(ls.out) as Array<{ name: string; size: number; snapshot: boolean; inline: boolean }>;
    expect(vols.map((v) => v.name)).toEqual(['default', 'data', 'tiny', 'snap', 'work']);
    expect(vols.find((v) => v.name === 'snap')!.snapshot).toBe(true);
    expect(vols.find((v) => v.name === 'tiny')!.inline).toBe(true);
    const map = JSON.parse(iomapd('map', img, 'work', '--json').out);
    expect(map).toEqual([{ offset: 0, length: 8 << 20, type: 'unwritten', physical: expect.any(Number), shared: true }]);
    expect(iomapd('map', img, 'data').out).toMatch(/^0\t8388608\thole\t-/);
    expect(iomapd('info', img).out).toMatch(/format version: 3/);
    const check = iomapd('check', img);
    expect(check.code).toBe(0);
    expect(check.out).toMatch(/clean/);
    expect(iomapd('volume', 'rm', img, 'snap').code).toBe(0);
    expect(iomapd('volume', 'rm', img, 'nope').err).toMatch(/iomapd: NOT_FOUND/);
    expect(iomapd('check', img).code).toBe(0);
  }, 60_000);

  it('reports bad input with a code and a non-zero exit', async () => {
    const junk = join(dir, 'junk');
    const fh = await open(junk, 'w');
    await fh.write(Buffer.alloc(65536, 1));
    await fh.close();
    const r = iomapd('info', junk);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/BAD_MAGIC/);
    const c = iomapd('check', junk);
    expect(c.code).toBe(2);
    expect(c.out).toMatch(/error: BAD_MAGIC/);
    expect(iomapd('create', join(dir, 'b.img'), '--size', 'lots').err).toMatch(/BAD_ARGUMENT/);
    // a corrupted superblock copy is survivable; check notes it and --repair rewrites it
    const fh2 = await open(img, 'r+');
    await fh2.write(Buffer.from([0xff]), 0, 1, 200);
    await fh2.close();
    expect(iomapd('check', img).out).toMatch(/superblock copy 0/);
    expect(iomapd('check', img, '--repair').code).toBe(0);
    expect(iomapd('check', img).out).not.toMatch(/superblock copy 0/);
  }, 60_000);
});
