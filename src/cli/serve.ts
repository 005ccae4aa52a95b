// `iomapd serve`: wires devices, exports and listeners together, and stops cleanly on signals.
import { mkdir, open, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import type { BlockDevice } from '../engine/block-device.ts';
import { MemoryDevice } from '../devices/memory-device.ts';
import { RawFileDevice } from '../devices/raw-file-device.ts';
import { Engine } from '../engine/engine.ts';
import { createImageFile, openImageFile } from '../fs/image-file.ts';
import type { ImageStore } from '../fs/image-store.ts';
import { ExportRegistry } from '../server/export-registry.ts';
import { NbdServer, type ListenAddress } from '../server/nbd-server.ts';
import { nbdUri, parseHostPort } from '../util/listen-address.ts';
import { createLogger, LOG_LEVELS, type Logger } from '../util/log.ts';
import { formatSize, parseSize } from '../util/size.ts';
import { IomapdError } from '../util/errors.ts';
import { reportAndExit } from './report.ts';

/** What `iomapd serve` with no arguments serves: a 1 GiB iomapd image with volume 'default', created on first run. */
export const EMBEDDED_DEFAULT = { path: 'data/default.iomapd', size: 2 ** 30, volume: 'default' } as const;
/** The first bytes of an iomapd image (superblock magic, src/fs/superblock.ts). */
const IMAGE_MAGIC = Buffer.from('IOMAPDSB', 'latin1');
export const DEFAULT_LISTEN = '127.0.0.1:10809';

interface ServeOptions {
  socket?: string;
  listen?: string;
  export: string[];
  description?: string;
  readOnly: boolean;
  raw: boolean;
  size?: string;
  logLevel: string;
}

export function registerServe(program: Command): void {
  program
    .command('serve', { isDefault: true })
    .description('serve FILE over NBD: every volume of an iomapd image, or a raw file with --raw; with no FILE, an embedded default image or memory')
    .argument('[FILE]', `iomapd image (or, with --raw or no image magic, a raw file) to serve (default: ${EMBEDDED_DEFAULT.path}, created if missing)`)
    .option('--socket <PATH>', 'listen on a Unix socket (instead of TCP, unless --listen is also given)')
    .option('--listen <HOST:PORT>', `listen on TCP (default ${DEFAULT_LISTEN})`)
    .option('--export <NAME>', 'image: volumes to export (repeatable or comma list; default all); raw: the export name', collectNames, [])
    .option('--raw', 'serve FILE as a raw disk even if it could be an image', false)
    .option('--description <TEXT>', 'export description shown to clients')
    .option('--read-only', 'refuse writes (EPERM)', false)
    .option('--size <SIZE>', 'without FILE: serve memory of this size; with FILE: create it this size if missing')
    .addOption(new Option('--log-level <LEVEL>', 'log level').choices(LOG_LEVELS).default('info'))
    .action(async (file: string | undefined, options: ServeOptions) => {
      try {
        await serve(file, options);
      } catch (err) {
        reportAndExit(err);
      }
    });
}

function collectNames(value: string, previous: string[]): string[] {
  return previous.concat(value.split(',').map((n) => n.trim()));
}

interface Served {
  exports: Array<{ name: string; device: BlockDevice }>;
  what: string;
  close(): Promise<void>;
}

async function hasImageMagic(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(IMAGE_MAGIC.length);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return bytesRead === buf.length && buf.equals(IMAGE_MAGIC);
  } finally {
    await fh.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Picks what to serve: memory (--size, no FILE), a raw file (--raw or no magic), or an image's volumes. */
async function openServed(file: string | undefined, options: ServeOptions): Promise<Served> {
  const path = resolve(file ?? EMBEDDED_DEFAULT.path);
  const wantImage = !options.raw && !(file === undefined && options.size !== undefined);
  if (wantImage && file === undefined && !(await exists(path))) {
    await mkdir(dirname(path), { recursive: true });
    const store = await createImageFile(path, { dataBytes: EMBEDDED_DEFAULT.size });
    await store.createVolume(EMBEDDED_DEFAULT.volume, EMBEDDED_DEFAULT.size);
    await store.close();
  }
  if (wantImage && (await exists(path)) && (await hasImageMagic(path))) {
    return serveImage(await openImageFile(path, { readOnly: options.readOnly }), path, options);
  }
  const { device, what } = await openDevice(file, options);
  const name = options.export.length > 0 ? options.export[0]! : '';
  return { exports: [{ name, device }], what, close: () => device.close() };
}

function serveImage(store: ImageStore, path: string, options: ServeOptions): Served {
  const engine = new Engine(store, null);
  const volumes = store.listVolumes().map((v) => v.name);
  const names = options.export.length > 0 ? options.export : volumes;
  for (const n of names) if (!volumes.includes(n)) throw new IomapdError('NOT_FOUND', `image ${path} has no volume "${n}"`);
  // The default export "" reaches the first one added: 'default' if it is served.
  const ordered = names.includes(EMBEDDED_DEFAULT.volume) ? [EMBEDDED_DEFAULT.volume, ...names.filter((n) => n !== EMBEDDED_DEFAULT.volume)] : names;
  const exports = ordered.map((name) => {
    const device = engine.device(name);
    return { name, device: options.readOnly ? readOnlyView(device) : device };
  });
  return { exports, what: path, close: () => engine.close() };
}

/** --read-only over an image: the same device, refusing writes at validation (EPERM). */
function readOnlyView(device: BlockDevice): BlockDevice {
  return Object.create(device, { readOnly: { value: true } }) as BlockDevice;
}

async function openDevice(file: string | undefined, options: ServeOptions): Promise<{ device: BlockDevice; what: string }> {
  const size = options.size === undefined ? undefined : parseSize(options.size);
  if (size !== undefined && (size === 0 || size % 512 !== 0)) {
    throw new IomapdError('BAD_ARGUMENT', `--size must be a positive multiple of 512 bytes, got ${options.size}`);
  }
  if (file === undefined && size !== undefined) {
    return { device: new MemoryDevice({ size, readOnly: options.readOnly }), what: `memory (${formatSize(size)})` };
  }
  const path = resolve(file ?? EMBEDDED_DEFAULT.path);
  const createSize = size ?? (file === undefined ? EMBEDDED_DEFAULT.size : undefined);
  if (createSize !== undefined) await mkdir(dirname(path), { recursive: true });
  const device = await RawFileDevice.open(path, { readOnly: options.readOnly, ...(createSize === undefined ? {} : { createSize }) });
  return { device, what: path };
}

async function serve(file: string | undefined, options: ServeOptions): Promise<void> {
  const log = createLogger(options.logLevel as never);
  const served = await openServed(file, options);
  const registry = new ExportRegistry();
  for (const e of served.exports) registry.add({ name: e.name, description: options.description ?? '', device: e.device });
  const server = new NbdServer(registry, log);

  const addresses: ListenAddress[] = [];
  try {
    if (options.socket !== undefined) addresses.push(await server.listenUnix(options.socket));
    if (options.listen !== undefined || options.socket === undefined) {
      const { host, port } = parseHostPort(options.listen ?? DEFAULT_LISTEN);
      addresses.push(await server.listenTcp(host, port));
    }
  } catch (err) {
    await served.close();
    throw err;
  }
  for (const a of addresses) {
    for (const e of served.exports) {
      log.info(
        { serving: served.what, size: e.device.size, readOnly: e.device.readOnly, export: e.name, address: a.address, uri: nbdUri(a.kind, a.address, e.name) },
        'listening',
      );
    }
  }
  stopOnSignals(server, log);
}

function stopOnSignals(server: NbdServer, log: Logger): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'stopping: finishing in-flight requests');
    server.shutdown().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
