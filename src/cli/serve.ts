// `iomapd serve`: wires devices, exports and listeners together, and stops cleanly on signals.
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import type { BlockDevice } from '../engine/block-device.ts';
import { MemoryDevice } from '../devices/memory-device.ts';
import { RawFileDevice } from '../devices/raw-file-device.ts';
import { ExportRegistry } from '../server/export-registry.ts';
import { NbdServer, type ListenAddress } from '../server/nbd-server.ts';
import { nbdUri, parseHostPort } from '../util/listen-address.ts';
import { createLogger, LOG_LEVELS, type Logger } from '../util/log.ts';
import { formatSize, parseSize } from '../util/size.ts';
import { IomapdError } from '../util/errors.ts';
import { reportAndExit } from './report.ts';

/** What `iomapd serve` with no arguments serves: a sparse 1 GiB file, created on first run. */
export const EMBEDDED_DEFAULT = { path: 'data/default.img', size: 2 ** 30 } as const;
export const DEFAULT_LISTEN = '127.0.0.1:10809';

interface ServeOptions {
  socket?: string;
  listen?: string;
  export: string;
  description?: string;
  readOnly: boolean;
  size?: string;
  logLevel: string;
}

export function registerServe(program: Command): void {
  program
    .command('serve', { isDefault: true })
    .description('serve FILE (a raw file or block device) over NBD; with no FILE, an embedded default or memory')
    .argument('[FILE]', `raw file or block device to serve (default: ${EMBEDDED_DEFAULT.path}, created if missing)`)
    .option('--socket <PATH>', 'listen on a Unix socket (instead of TCP, unless --listen is also given)')
    .option('--listen <HOST:PORT>', `listen on TCP (default ${DEFAULT_LISTEN})`)
    .option('--export <NAME>', 'export name (the default export "" reaches it too)', '')
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
  const { device, what } = await openDevice(file, options);
  const registry = new ExportRegistry();
  registry.add({ name: options.export, description: options.description ?? '', device });
  const server = new NbdServer(registry, log);

  const addresses: ListenAddress[] = [];
  try {
    if (options.socket !== undefined) addresses.push(await server.listenUnix(options.socket));
    if (options.listen !== undefined || options.socket === undefined) {
      const { host, port } = parseHostPort(options.listen ?? DEFAULT_LISTEN);
      addresses.push(await server.listenTcp(host, port));
    }
  } catch (err) {
    await device.close();
    throw err;
  }
  for (const a of addresses) {
    log.info(
      { serving: what, size: device.size, readOnly: device.readOnly, export: options.export, address: a.address, uri: nbdUri(a.kind, a.address, options.export) },
      'listening',
    );
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
