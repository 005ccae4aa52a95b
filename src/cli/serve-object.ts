// `iomapd serve s3://BUCKET/PREFIX`: opening a bucket image for a daemon, and its background GC.
// Read-write takes the writer role (fencing a daemon elsewhere: failover); --read-only, and an
// --export list of snapshots only, open without it, so several hosts may serve them at once.
import { connect } from 'node:net';
import { Option, type Command } from 'commander';
import type { ServedImage } from '../control/served-image.ts';
import { openImageByName, type ObjectImageOptions } from '../fs/open-image.ts';
import type { ServableImage } from '../fs/servable-image.ts';
import { IomapdError } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import { parseSize } from '../util/size.ts';

export interface ObjectServeOptions {
  cacheDir?: string;
  cacheSize?: string;
  gcInterval: string;
}

/** Seconds between background GC passes when not given. */
const DEFAULT_GC_INTERVAL_S = 600;

export function addObjectServeOptions(command: Command): Command {
  return command
    .option('--cache-dir <DIR>', 's3:// images: local cache of unflushed writes and hot segments (default: in memory)')
    .option('--cache-size <SIZE>', 's3:// images: bound of the local cache (default 64 segments: 256M at 4K blocks)')
    .addOption(
      new Option('--gc-interval <SECONDS>', 's3:// images served read-write: seconds between background GC passes (0: none)').default(String(DEFAULT_GC_INTERVAL_S)),
    );
}

function objectOptions(options: ObjectServeOptions, log: Logger): ObjectImageOptions {
  return {
    cacheDir: options.cacheDir ?? null,
    ...(options.cacheSize !== undefined ? { cacheSize: parseSize(options.cacheSize) } : {}),
    log,
  };
}

export function gcIntervalMs(options: ObjectServeOptions): number {
  const s = options.gcInterval;
  if (!/^\d{1,7}$/.test(s)) throw new IomapdError('BAD_ARGUMENT', `--gc-interval takes whole seconds, got ${JSON.stringify(s)}`);
  return Number(s) * 1000;
}

/** The image behind `url`, opened as the exports need: read-only when nothing exported can be written. */
export async function openObjectServed(url: string, readOnly: boolean, exportNames: string[], options: ObjectServeOptions, log: Logger): Promise<ServableImage> {
  gcIntervalMs(options); // a bad value is refused before the store is touched
  const opts = objectOptions(options, log);
  if (readOnly || exportNames.length === 0) return openImageByName(url, readOnly, opts);
  // Snapshot exports only: no writer role, so another host's writer is left alone.
  const view = await openImageByName(url, true, opts);
  const snapshots = new Set(view.listVolumes().filter((v) => v.snapshot).map((v) => v.name));
  if (exportNames.every((n) => snapshots.has(n))) return view;
  await view.close();
  return openImageByName(url, false, opts);
}

/**
 * Whether a live daemon answers on `path`: a read-only daemon of a bucket image leaves the image's
 * control socket to the writer (or the first reader) on this host instead of taking it over.
 */
export function controlInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A GC pass every interval while the daemon serves read-write; returns the stopper. */
export function startBackgroundGc(image: ServedImage, readOnly: boolean, options: ObjectServeOptions, log: Logger): () => Promise<void> {
  const every = gcIntervalMs(options);
  if (readOnly || every === 0) return async () => {};
  let pass: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (pass !== null) return; // the previous pass is still running
    pass = image
      .collectGarbage()
      .then(
        (r) => log.info({ compacted: r.segmentsCompacted, moved: r.blocksMoved, deleted: r.deleted.length, waiting: r.waiting }, 'background gc pass'),
        (err: unknown) => log.warn({ err: (err as Error).message }, 'background gc pass failed; the next one retries'),
      )
      .finally(() => {
        pass = null;
      });
  }, every);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await pass;
  };
}
