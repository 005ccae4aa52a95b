// `iomapd import SOURCE IMAGE VOLUME` and `iomapd export IMAGE VOLUME TARGET`: sparse copies between
// an image volume and a raw file, a qcow2 file (import) or an NBD export, with a progress bar.
// The image is opened by this process (LOCKED while a daemon serves it) and written through the
// engine, as a client's writes would be; a failed import into a new volume removes the volume.
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { looksLikeNbdUri } from '../client/nbd-uri.ts';
import { Engine } from '../engine/engine.ts';
import { INLINE_MAX } from '../fs/format.ts';
import { openImageFile } from '../fs/image-file.ts';
import { isObjectImageName } from '../fs/image-name.ts';
import { openImageByName } from '../fs/open-image.ts';
import type { ServableImage } from '../fs/servable-image.ts';
import { IomapdError, isIomapdError } from '../util/errors.ts';
import { parseSize } from '../util/size.ts';
import { humanBytes, progressMode, startProgress, type ProgressMode } from './progress.ts';
import { reportAndExit } from './report.ts';
import { transfer, type TransferResult, type TransferSource, type TransferTarget } from './transfer.ts';
import { nbdTarget, openSource, rawFileTarget, volumeSource, volumeTarget } from './transfer-endpoints.ts';

/** Opens an image for a transfer, explaining LOCKED and NOT_FOUND in this command's terms. */
async function openForTransfer(image: string, readOnly: boolean, verb: string): Promise<ServableImage> {
  // A bucket image (s3://) is opened through the object store: read-write takes the writer role.
  if (isObjectImageName(image)) return openImageByName(image, readOnly);
  try {
    await stat(image);
  } catch {
    throw new IomapdError('NOT_FOUND', `${image} does not exist (make an image with iomapd create ${image} --size SIZE)`);
  }
  try {
    return await openImageFile(image, { readOnly });
  } catch (err) {
    if (isIomapdError(err, 'LOCKED')) {
      throw new IomapdError('LOCKED', `${err.message}: a served image cannot be ${verb} directly; stop the daemon, or copy to or from its NBD export with an nbd:// URI`, { cause: err });
    }
    throw err;
  }
}

/** Whether two paths name one file (the second exists; the first may not). */
async function sameFile(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([stat(a).catch(() => null), stat(b)]);
  return x !== null && x.dev === y.dev && x.ino === y.ino;
}

/** The size a new volume gets for a source of `bytes`: rounded up to what a volume may be. */
function volumeSizeFor(bytes: number, blockSize: number): number {
  const size = Math.max(512, Math.ceil(bytes / 512) * 512);
  return size <= INLINE_MAX ? size : Math.ceil(size / blockSize) * blockSize;
}

/**
 * Runs `fn` with SIGINT and SIGTERM turned into an abort of its signal, so the copy stops between
 * pieces and the command's cleanup (removing a new volume or file) still runs; a second signal
 * exits at once.
 */
async function interruptible<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const stop = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (stop.signal.aborted) process.exit(130);
    stop.abort(new IomapdError('SHUTTING_DOWN', `${what} interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(stop.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The copy, with its bar. */
async function run(label: string, source: TransferSource, target: TransferTarget, mode: ProgressMode, signal: AbortSignal): Promise<TransferResult> {
  signal.throwIfAborted();
  const bar = startProgress(label, source.size, 'bytes', mode);
  try {
    return await transfer(source, target, (done, r) => bar.update(done, `${humanBytes(r.written)} written`), signal);
  } finally {
    bar.stop();
  }
}

function summary(r: TransferResult): string {
  return `${humanBytes(r.bytes)}: ${humanBytes(r.written)} of data written, ${humanBytes(r.holes)} left as holes`;
}

interface ImportOptions {
  create?: string;
  force?: boolean;
  format?: string;
  progress?: boolean;
}

async function importCommand(spec: string, image: string, volume: string, o: ImportOptions, signal: AbortSignal): Promise<void> {
  const isUri = looksLikeNbdUri(spec);
  const source = await openSource(spec, o.format, isUri);
  let store: ServableImage | null = null;
  let created = false;
  try {
    store = await openForTransfer(image, false, 'imported into');
    const exists = store.listVolumes().some((v) => v.name === volume);
    if (exists && !o.force) throw new IomapdError('ALREADY_EXISTS', `volume ${volume} already exists in ${image}; pass --force to overwrite it`);
    if (!exists) {
      const size = o.create !== undefined ? parseSize(o.create) : volumeSizeFor(source.size, store.blockSize);
      if (size < source.size) throw new IomapdError('NO_SPACE', `--create ${o.create} is smaller than ${source.name} (${source.size} bytes)`);
      await store.createVolume(volume, size);
      created = true;
    }
    const facts = store.volumes.info(volume);
    if (facts.snapshot || facts.readOnly) throw new IomapdError('READ_ONLY', `volume ${volume} is ${facts.snapshot ? 'a snapshot' : 'read-only'}`);
    if (facts.size < source.size) throw new IomapdError('NO_SPACE', `volume ${volume} holds ${facts.size} bytes, less than ${source.name} (${source.size} bytes)`);
    const device = new Engine(store).device(volume);
    const r = await run('import', source, volumeTarget(device, volume, created), progressMode(o.progress), signal);
    const closing = store;
    store = null; // closed here, so a failing close is reported rather than swallowed
    await closing.close();
    process.stdout.write(`imported ${source.name} into ${image} volume ${volume} (${created ? 'new' : 'overwritten'}): ${summary(r)}\n`);
  } catch (err) {
    if (created && store) await store.volumes.delete(volume).catch(() => {});
    throw err;
  } finally {
    await store?.close().catch(() => {});
    await source.close().catch(() => {});
  }
}

async function exportCommand(image: string, volume: string, spec: string, o: { force?: boolean; progress?: boolean }, signal: AbortSignal): Promise<void> {
  const store = await openForTransfer(image, true, 'exported from');
  try {
    const device = new Engine(store).device(volume);
    const source = volumeSource(device, `${image} volume ${volume}`);
    if (looksLikeNbdUri(spec)) {
      const target = await nbdTarget(spec, source.size);
      try {
        const r = await run('export', source, target, progressMode(o.progress), signal);
        process.stdout.write(`exported ${image} volume ${volume} to ${target.name}: ${summary(r)}\n`);
      } finally {
        await target.close();
      }
      return;
    }
    if (!isObjectImageName(image) && (await sameFile(spec, image))) throw new IomapdError('BAD_ARGUMENT', `${spec} is the image itself`);
    const target = await rawFileTarget(spec, source.size, !!o.force);
    try {
      const r = await run('export', source, target, progressMode(o.progress), signal);
      await target.close();
      process.stdout.write(`exported ${image} volume ${volume} to ${spec}: ${summary(r)}\n`);
    } catch (err) {
      await target.remove(); // a half-written file is worse than none
      throw err;
    }
  } finally {
    await store.close();
  }
}

function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (err) {
      reportAndExit(err);
    }
  };
}

export function registerImportExport(program: Command): void {
  program
    .command('import')
    .description('copy a raw file, a qcow2 file or an NBD export into a volume of an image; holes stay holes')
    .argument('<source>', 'a file (raw or qcow2, told apart by its header) or nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH')
    .argument('<image>', 'the image (not served by a daemon)')
    .argument('<volume>', 'the volume: created unless it exists (then --force is needed)')
    .option('--create <size>', "size of the new volume (default: the source's size)")
    .option('--force', 'overwrite an existing volume (it must be at least as large as the source)')
    .option('--format <raw|qcow2>', "read the file as this format instead of guessing from its header")
    .option('--progress', 'draw a progress bar on stderr even when it is not a terminal')
    .option('--no-progress', 'never draw a progress bar')
    .action(action((source: string, image: string, volume: string, o: ImportOptions) => interruptible('import', (signal) => importCommand(source, image, volume, o, signal))));

  program
    .command('export')
    .description('copy a volume or snapshot of an image to a sparse raw file or an NBD export; holes stay holes')
    .argument('<image>', 'the image (not served by a daemon)')
    .argument('<volume>', 'the volume or snapshot')
    .argument('<target>', 'a file (created sparse; --force replaces one) or nbd://... / nbd+unix://... (at least the volume\'s size)')
    .option('--force', 'replace an existing file')
    .option('--progress', 'draw a progress bar on stderr even when it is not a terminal')
    .option('--no-progress', 'never draw a progress bar')
    .action(
      action((image: string, volume: string, target: string, o: { force?: boolean; progress?: boolean }) =>
        interruptible('export', (signal) => exportCommand(image, volume, target, o, signal)),
      ),
    );
}
