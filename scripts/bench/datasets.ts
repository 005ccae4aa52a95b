// The data every server serves, made once and kept in BENCH_DIR between runs:
//   main     1 GiB of random bytes, as a raw file and as an image-store volume (fully mapped);
//   sparse   1 GiB with 1 MiB of data every 16 MiB (64 MiB of data), for nbdcopy to null:;
//   extents  1 GiB with 4 KiB of data every 32 KiB (32,768 data extents and as many holes), for
//            nbdinfo --map.
// The image volumes are filled over NBD by nbdcopy from the raw files, holes left as holes.
// The main files (what every fio job runs on) are fully written: the raw file in sequential writes
// with no truncate first, the image's volume fully mapped; both checked for holes and unwritten
// extents, synced and dropped from the page cache, so no server starts from a file in another state.
import { randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GiB, MiB, ROOT } from './config.ts';
import type { Dataset } from './servers.ts';
import { isImage, startServer } from './servers.ts';
import { assertFullyWritten, evictFromPageCache, run } from './system.ts';

/** Bump when the layout of a dataset changes, so old files are rebuilt. */
const LAYOUT = 2;

export interface Datasets {
  main: Dataset;
  sparse: Dataset;
  extents: Dataset;
}

type Pattern = 'full' | 'sparse' | 'extents';


/** Writes a raw file of `size` bytes following the pattern (random data, holes elsewhere). */
async function writeRaw(path: string, size: number, pattern: Pattern): Promise<void> {
  await rm(path, { force: true });
  const fh = await open(path, 'wx');
  try {
    // Holes only where the pattern has them: a full file grows by its own writes.
    if (pattern !== 'full') await fh.truncate(size);
    const chunk = Buffer.allocUnsafe(pattern === 'extents' ? 4096 : pattern === 'sparse' ? MiB : 8 * MiB);
    const stride = pattern === 'extents' ? 32 * 1024 : pattern === 'sparse' ? 16 * MiB : chunk.length;
    for (let at = 0; at < size; at += stride) {
      randomFillSync(chunk);
      await fh.write(chunk, 0, chunk.length, at);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes every hole of a file with the zeros it reads as (a copy with `cp --sparse=never` put in
 * its place): the image store leaves the unused part of its metadata area as a hole.
 */
async function fillHoles(path: string): Promise<void> {
  const copy = `${path}.filling`;
  const r = await run('cp', ['--sparse=never', '--preserve=mode', path, copy], { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`cp --sparse=never ${path} failed: ${r.stderr}`);
  await rename(copy, path);
}

/** An image with one volume holding the raw file's bytes; holes stay holes. */
async function writeImage(image: string, raw: string, size: number, dir: string, logDir: string): Promise<void> {
  await rm(image, { force: true });
  const iomapd = join(ROOT, 'scripts/iomapd');
  const created = await run(iomapd, ['create', image, '--size', String(size)]);
  if (created.code !== 0) throw new Error(`iomapd create failed: ${created.stderr}`);
  const server = await startServer('iomapd-image', 'unix', { raw, image }, { dir, logDir });
  try {
    // One request at a time: the volume is allocated in logical order, as a raw file is laid out.
    const copy = await run('nbdcopy', ['--destination-is-zero', '--flush', '--connections=1', '--requests=1', raw, server.uri], { timeoutMs: 600_000 });
    if (copy.code !== 0) throw new Error(`nbdcopy into the image failed: ${copy.stderr}`);
  } finally {
    await server.stop();
  }
}

export async function prepareDatasets(dir: string, logDir: string, size = GiB): Promise<Datasets> {
  await mkdir(dir, { recursive: true });
  const make = async (name: keyof Datasets, pattern: Pattern): Promise<Dataset> => {
    const d = { raw: join(dir, `${name}.raw`), image: join(dir, `${name}.iomapd`) };
    const marker = join(dir, `${name}.ready`);
    const stamp = `layout ${LAYOUT} size ${size}\n`;
    if (existsSync(marker) && existsSync(d.raw) && existsSync(d.image) && (await isImage(d.image))) {
      if ((await readFile(marker, 'utf8')) === stamp) return d;
    }
    console.log(`preparing the ${name} dataset in ${dir} ...`);
    await rm(marker, { force: true });
    await writeRaw(d.raw, size, pattern);
    await writeImage(d.image, d.raw, size, dir, logDir);
    if (pattern === 'full') await fillHoles(d.image);
    await run('sync', []);
    if (pattern === 'full') for (const f of [d.raw, d.image]) await assertFullyWritten(f);
    for (const f of [d.raw, d.image]) await evictFromPageCache(f);
    await writeFile(marker, stamp);
    return d;
  };
  return { main: await make('main', 'full'), sparse: await make('sparse', 'sparse'), extents: await make('extents', 'extents') };
}
