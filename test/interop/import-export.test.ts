// `iomapd import` and `iomapd export` with real tools: raw files round trip byte for byte and stay
// sparse (SEEK_DATA of the exported file, `iomapd map` of the imported volume); qcow2 files made by
// qemu-img and qemu-io import equal (`qemu-img compare`); NBD exports of a served iomapd are read
// and written; every refusal is `iomapd: CODE: message` with exit 1 and leaves nothing behind.
import { spawn } from 'node:child_process';
import { open, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileStorage } from '../../src/storage/file-storage.ts';
import { iomapd, MiB, requireTool, run, runOk, withIomapd, withTempDir } from './harness.ts';
import { MAIN, NODE } from '../support/daemon.ts';

interface Row {
  offset: number;
  length: number;
  type: string;
}

/**
 * `iomapd map --json` without holes: the logical ranges that are not holes, neighbours of one
 * type merged (the store splits an extent where its physical blocks are not contiguous).
 */
async function mapped(image: string, volume: string): Promise<Array<[number, number, string]>> {
  const rows = JSON.parse((await iomapd(['map', image, volume, '--json'])).stdout) as Row[];
  const out: Array<[number, number, string]> = [];
  for (const r of rows.filter((x) => x.type !== 'hole')) {
    const last = out.at(-1);
    if (last && last[0] + last[1] === r.offset && last[2] === r.type) last[1] += r.length;
    else out.push([r.offset, r.length, r.type]);
  }
  return out;
}

/** The data runs of a file as SEEK_DATA/SEEK_HOLE see them: [offset, length]. */
async function dataRuns(path: string): Promise<Array<[number, number]>> {
  const f = await FileStorage.open(path, { readOnly: true });
  try {
    const size = await f.size();
    const out: Array<[number, number]> = [];
    let at = 0;
    for (const r of (await f.extents(0, size, 10_000))!) {
      if (r.data) out.push([at, r.length]);
      at += r.length;
    }
    return out;
  } finally {
    await f.close();
  }
}

/** Writes `data` into the file at `offset` (the file's other ranges stay holes). */
async function poke(path: string, offset: number, data: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  await fh.write(data, 0, data.length, offset);
  await fh.close();
}

const fill = (n: number, byte: number) => Buffer.alloc(n, byte);
/** Each test runs the CLI many times (a second or two each on a loaded machine). */
const SLOW = 240_000;

async function newImage(dir: string, size = '64M'): Promise<string> {
  const image = join(dir, 'a.iomapd');
  await iomapd(['create', image, '--size', '4M', '--capacity', size]);
  return image;
}

function failsWith(r: { code: number | null; stdout: string; stderr: string }, code: string): void {
  expect(r.code, `${r.stdout}${r.stderr}`).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`^iomapd: ${code}: \\S`));
}

describe('iomapd import and export', () => {
  it('a sparse raw file round trips byte for byte, and holes and zero blocks stay holes', async (ctx) => {
    requireTool(ctx, 'cmp');
    await withTempDir(async (dir) => {
      const raw = join(dir, 'in.raw');
      await writeFile(raw, '');
      await truncate(raw, 24 * MiB);
      await poke(raw, 1 * MiB, fill(8192, 0xa1));
      await poke(raw, 5 * MiB + 100, Buffer.from('not block aligned')); // inside one 4 KiB block
      await poke(raw, 8 * MiB, fill(64 * 1024, 0)); // written zeroes: allocated in the file, a hole after import
      await poke(raw, 12 * MiB, fill(3 * MiB, 0x5c));
      const image = await newImage(dir);

      const imported = await iomapd(['import', raw, image, 'disk']);
      expect(imported.stdout).toMatch(/imported .* volume disk \(new\)/);
      expect(await mapped(image, 'disk')).toEqual([
        [1 * MiB, 8192, 'mapped'],
        [5 * MiB, 4096, 'mapped'],
        [12 * MiB, 3 * MiB, 'mapped'],
      ]);
      const info = JSON.parse((await iomapd(['volume', 'ls', image, '--json'])).stdout) as Array<{ name: string; size: number; allocatedBytes: number }>;
      expect(info.find((v) => v.name === 'disk')).toMatchObject({ size: 24 * MiB, allocatedBytes: 8192 + 4096 + 3 * MiB });

      const out = join(dir, 'out.raw');
      await iomapd(['export', image, 'disk', out]);
      await runOk('cmp', [raw, out]);
      expect((await stat(out)).size).toBe(24 * MiB);
      expect(await dataRuns(out)).toEqual([
        [1 * MiB, 8192],
        [5 * MiB, 4096],
        [12 * MiB, 3 * MiB],
      ]);

      // Overwrite the volume (--force) after a snapshot: the snapshot still exports the old bytes,
      // and the volume now holds the new file exactly, its old data trimmed where the new file has holes.
      await iomapd(['snapshot', image, 'disk', 'disk-1']);
      const second = join(dir, 'second.raw');
      await writeFile(second, '');
      await truncate(second, 24 * MiB);
      await poke(second, 13 * MiB, fill(4096, 0x7e));
      await iomapd(['import', second, image, 'disk', '--force']);
      expect(await mapped(image, 'disk')).toEqual([[13 * MiB, 4096, 'mapped']]);
      const snapOut = join(dir, 'snap.raw');
      const diskOut = join(dir, 'disk.raw');
      await iomapd(['export', image, 'disk-1', snapOut]);
      await iomapd(['export', image, 'disk', diskOut]);
      await runOk('cmp', [raw, snapOut]);
      await runOk('cmp', [second, diskOut]);
      const check = await iomapd(['check', image]);
      expect(check.stdout).toMatch(/^clean: /m);
    });
  }, SLOW);

  it('a qcow2 file made by qemu-img and qemu-io imports equal, its unallocated and zero clusters as holes', async (ctx) => {
    requireTool(ctx, 'qemu-img', 'qemu-io');
    await withTempDir(async (dir) => {
      const qcow2 = join(dir, 'in.qcow2');
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '32M']);
      await runOk('qemu-io', ['-f', 'qcow2', qcow2, '-c', 'write -P 0xab 1M 2M', '-c', 'write -P 0xcd 20M 64k', '-c', 'write -z 24M 1M', '-c', 'write -P 0x11 30M 4k']);
      const image = await newImage(dir);
      await iomapd(['import', qcow2, image, 'q']);
      const rows = await mapped(image, 'q');
      expect(rows.reduce((n, [, l]) => n + l, 0)).toBe(2 * MiB + 64 * 1024 + 4096);
      expect(rows.every(([o, l]) => o + l <= 24 * MiB || o >= 25 * MiB)).toBe(true); // the zeroed cluster stayed a hole
      const out = join(dir, 'out.raw');
      await iomapd(['export', image, 'q', out]);
      await runOk('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', qcow2, out]);
    });
  }, SLOW);

  it('imports from an NBD export of a served iomapd and exports into one, holes as holes both ways', async (ctx) => {
    requireTool(ctx, 'qemu-io', 'nbdinfo', 'cmp', 'nbdcopy');
    await withTempDir(async (dir) => {
      const image = await newImage(dir);
      await withIomapd({ transport: 'unix', backend: 'image', size: '16M' }, async (server) => {
        await runOk('qemu-io', ['-f', 'raw', server.uri, '-c', 'write -P 0x42 2M 1M', '-c', 'write -P 0x43 9M 4k'], { server });
        await iomapd(['import', server.uri, image, 'fromnbd']);
        expect(await mapped(image, 'fromnbd')).toEqual([
          [2 * MiB, MiB, 'mapped'],
          [9 * MiB, 4096, 'mapped'],
        ]);
      });
      const src = join(dir, 'src.raw');
      await iomapd(['export', image, 'fromnbd', src]);

      // Export into a served volume that held other data: the holes of the source are punched there.
      await withIomapd({ transport: 'tcp', backend: 'image', size: '16M' }, async (server) => {
        await runOk('qemu-io', ['-f', 'raw', server.uri, '-c', 'write -P 0x99 0 16M'], { server });
        await iomapd(['export', image, 'fromnbd', server.uri]);
        const back = join(dir, 'back.raw');
        await runOk('nbdcopy', [server.uri, back], { server });
        await runOk('cmp', [src, back]);
        const map = (await runOk('nbdinfo', ['--map', server.uri], { server })).stdout;
        const data = map.split('\n').filter((l) => /\bdata\b/.test(l)).map((l) => l.trim().split(/\s+/).slice(0, 2).map(Number));
        expect(data).toEqual([[2 * MiB, MiB], [9 * MiB, 4096]]);
      });
    });
  }, SLOW);

  it('refuses bad input with a clear error and leaves nothing half-made', async (ctx) => {
    requireTool(ctx, 'qemu-img');
    await withTempDir(async (dir) => {
      const image = await newImage(dir, '8M');
      const raw = join(dir, 'in.raw');
      await writeFile(raw, fill(2 * MiB, 0x77));
      const cli = (...args: string[]) => run(NODE, [MAIN, ...args]);
      const volumes = async () => (JSON.parse((await iomapd(['volume', 'ls', image, '--json'])).stdout) as Array<{ name: string }>).map((v) => v.name);

      failsWith(await cli('import', join(dir, 'missing.raw'), image, 'x'), 'NOT_FOUND');
      failsWith(await cli('import', 'nbd://[bad/x', image, 'x'), 'BAD_ARGUMENT');
      failsWith(await cli('import', 'nbd+unix:///x', image, 'x'), 'BAD_ARGUMENT'); // no socket=
      failsWith(await cli('import', `nbd+unix:///x?socket=${join(dir, 'none.sock')}`, image, 'x'), 'NOT_FOUND');
      failsWith(await cli('import', raw, image, 'x', '--create', '1M'), 'NO_SPACE');
      failsWith(await cli('import', raw, image, 'x', '--format', 'vmdk'), 'BAD_ARGUMENT');
      const notQcow2 = await cli('import', raw, image, 'x', '--format', 'qcow2'); // qemu-nbd refuses it
      failsWith(notQcow2, 'BAD_ARGUMENT');
      expect(notQcow2.stderr).toMatch(/qemu-nbd could not open .* as qcow2/);
      failsWith(await cli('import', raw, join(dir, 'no.iomapd'), 'x'), 'NOT_FOUND');
      await iomapd(['import', raw, image, 'x']);
      failsWith(await cli('import', raw, image, 'x'), 'ALREADY_EXISTS');
      await iomapd(['import', raw, image, 'x', '--force']);
      await writeFile(join(dir, 'big.raw'), '');
      await truncate(join(dir, 'big.raw'), 4 * MiB);
      await poke(join(dir, 'big.raw'), 3 * MiB, fill(4096, 1));
      failsWith(await cli('import', join(dir, 'big.raw'), image, 'x', '--force'), 'NO_SPACE'); // the 2 MiB volume is too small
      // More data than the image holds: the new volume is removed again.
      await writeFile(join(dir, 'huge.raw'), fill(12 * MiB, 0x31));
      failsWith(await cli('import', join(dir, 'huge.raw'), image, 'huge'), 'NO_SPACE');
      expect(await volumes()).toEqual(['default', 'x']);

      const out = join(dir, 'out.raw');
      await writeFile(out, 'keep me');
      failsWith(await cli('export', image, 'x', out), 'ALREADY_EXISTS');
      expect(await stat(out)).toMatchObject({ size: 7 });
      failsWith(await cli('export', image, 'nosuch', join(dir, 'n.raw')), 'NOT_FOUND');
      await expect(stat(join(dir, 'n.raw'))).rejects.toThrow();
      await iomapd(['export', image, 'x', out, '--force']);
      expect((await stat(out)).size).toBe(2 * MiB);
      failsWith(await cli('export', image, 'x', image, '--force'), 'BAD_ARGUMENT'); // never truncate the image itself
      expect((await iomapd(['check', image])).stdout).toMatch(/^clean: /m);
    });
  }, SLOW);

  it('refuses to import into or export from a served image (LOCKED)', async () => {
    await withTempDir(async (dir) => {
      const image = await newImage(dir, '8M');
      const raw = join(dir, 'in.raw');
      await writeFile(raw, fill(2 * MiB, 0x77));
      await iomapd(['import', raw, image, 'x']);
      const cli = (...args: string[]) => run(NODE, [MAIN, ...args]);

      // A served image is LOCKED for both commands.
      await withIomapd({ transport: 'unix', file: image }, async (server) => {
        failsWith(await cli('import', raw, image, 'y'), 'LOCKED');
        failsWith(await cli('export', image, 'x', join(dir, 'z.raw')), 'LOCKED');
        expect(server.uri).toMatch(/^nbd\+unix:/);
      });
    });
  }, SLOW);

  it('an interrupted import (SIGINT) removes the volume it created and leaves the image clean', async () => {
    await withTempDir(async (dir) => {
      const image = await newImage(dir, '1G');
      const raw = join(dir, 'big.raw');
      const fh = await open(raw, 'w');
      const block = fill(8 * MiB, 0x5a);
      for (let i = 0; i < 64; i++) await fh.write(block, 0, block.length, i * block.length); // 512 MiB of data
      await fh.close();
      // --progress prints the bar's first line once the volume exists and the copy starts.
      const child = spawn(NODE, [MAIN, 'import', raw, image, 'big', '--progress'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no progress line within 30 s: ${stderr}`)), 30_000);
        child.stderr.setEncoding('utf8').on('data', (d: string) => {
          stderr += d;
          if (stderr.includes('import [')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      child.kill('SIGINT');
      expect(await exited).toBe(1);
      expect(stderr).toMatch(/iomapd: SHUTTING_DOWN: import interrupted by SIGINT/);
      const volumes = JSON.parse((await iomapd(['volume', 'ls', image, '--json'])).stdout) as Array<{ name: string }>;
      expect(volumes.map((v) => v.name)).toEqual(['default']);
      expect((await iomapd(['check', image])).stdout).toMatch(/^clean: 1 volumes, 0 extents/m);
    });
  }, SLOW);
});
