// The data every server serves, made once and kept in BENCH_DIR between runs:
//   main     1 GiB of random bytes, as a raw file and as an image-store volume (fully mapped);
//   sparse   1 GiB with 1 MiB of data every 16 MiB (64 MiB of data), for nbdcopy to null:;
//   extents  1 GiB with 4 KiB of data every 32 KiB (32,768 data extents and as many holes), for
//            nbdinfo --map.
// The image volumes are filled over NBD by nbdcopy from the raw files, holes left as holes.
import { randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GiB, MiB, ROOT } from './config.ts';
import type { Dataset } from './servers.ts';
import { isImage, startServer } from './servers.ts';
import { run } from './system.ts';

/** Bump when the layout of a dataset changes, so old files are rebuilt. */
const LAYOUT = 1;

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
    await fh.truncate(size);
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
    await writeFile(marker, stamp);
    return d;
  };
  return { main: await make('main', 'full'), sparse: await make('sparse', 'sparse'), extents: await make('extents', 'extents') };
}
