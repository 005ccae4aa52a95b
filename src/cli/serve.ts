// `iomapd serve`: wires devices, exports and listeners together, and stops cleanly on signals.
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import type { BlockDevice } from '../engine/block-device.ts';
import { MIN_BLOCK_SIZES, type MinBlockSize } from '../engine/block-sizes.ts';
import { MemoryDevice } from '../devices/memory-device.ts';
import { RawFileDevice } from '../devices/raw-file-device.ts';
import { ControlServer, controlPath } from '../control/control-server.ts';
import type { ReloadResult } from '../control/admin.ts';
import { DaemonAdmin } from '../control/daemon-admin.ts';
import { ServedImage } from '../control/served-image.ts';
import { startMetrics } from '../control/metrics.ts';
import { parseMetricsAddress, type MetricsAddress, type MetricsServer } from '../control/metrics-http.ts';
import { createImageFile, openImage } from '../fs/image-file.ts';
import { isObjectImageName, resolveImageName } from '../fs/image-name.ts';
import type { ServableImage } from '../fs/servable-image.ts';
import { probeImageFile } from '../fs/image-probe.ts';
import type { InlineIoGates, InlineIoModes } from '../util/fd-io.ts';
import { INLINE_IO_MODES, type InlineIoMode } from '../util/inline-io.ts';
import { CACHE_MODES, type CacheMode } from '../storage/open-file.ts';
import { ExportRegistry } from '../server/export-registry.ts';
import { NbdServer, type ListenAddress } from '../server/nbd-server.ts';
import { nbdUri, parseHostPort } from '../util/listen-address.ts';
import { createLogger, LOG_LEVELS, type Logger } from '../util/log.ts';
import { takeInheritedSockets, type InheritedSockets } from '../util/listen-fds.ts';
import { formatSize, parseSize } from '../util/size.ts';
import { IomapdError } from '../util/errors.ts';
import { ServerSecurity } from '../server/tls/security.ts';
import { addLimitOptions, limitsFromOptions, type LimitOptions } from './limit-options.ts';
import { addTlsOptions, securitySourcesFromOptions, type TlsOptions } from './tls-options.ts';
import { copyToRawFile } from './backup-command.ts';
import { reportAndExit } from './report.ts';
import { addObjectServeOptions, controlInUse, openObjectServed, startBackgroundGc, type ObjectServeOptions } from './serve-object.ts';

/** What `iomapd serve` with no arguments serves: a 1 GiB iomapd image with volume 'default', created on first run. */
export const EMBEDDED_DEFAULT = { path: 'data/default.iomapd', size: 2 ** 30, volume: 'default' } as const;
export const DEFAULT_LISTEN = '127.0.0.1:10809';
/** --cache for images when not given (docs/ENGINE.md, "Backing I/O"). */
export const DEFAULT_CACHE: CacheMode = 'writeback';

/** How the image file is accessed (src/fs/image-file.ts openImage). */
type ImageIo = { readonly direct: boolean; readonly fallback: string | null; readonly gates: InlineIoGates | null };

interface ServeOptions extends LimitOptions, TlsOptions, ObjectServeOptions {
  socket?: string;
  listen?: string;
  export: string[];
  description?: string;
  readOnly: boolean;
  dirtyBitmap?: string;
  cache?: CacheMode;
  raw: boolean;
  size?: string;
  inlineReads: InlineIoMode;
  inlineWrites: InlineIoMode;
  logLevel: string;
  metrics?: string;
  minBlockSize: string;
}

/** Whether this server admits TLS clients: require-tls volumes are exported only then. */
function tlsEnabled(options: ServeOptions): boolean {
  return options.tls !== 'off';
}

export function registerServe(program: Command): void {
  const command = program
    .command('serve', { isDefault: true })
    .description('serve FILE over NBD: every volume of an iomapd image (a file or s3://BUCKET/PREFIX), or a raw file with --raw; with no FILE, an embedded default image or memory')
    .argument('[FILE]', `iomapd image to serve (default: ${EMBEDDED_DEFAULT.path}, created if missing), or s3://BUCKET/PREFIX; a raw disk only with --raw`)
    .option('--socket <PATH>', 'listen on a Unix socket (instead of TCP, unless --listen is also given)')
    .option('--listen <HOST:PORT>', `listen on TCP (default ${DEFAULT_LISTEN})`)
    .option('--export <NAME>', 'image: volumes to export (repeatable or comma list; default all); raw: the export name', collectNames, [])
    .option('--raw', 'serve FILE as a raw disk (required for any file that is not an iomapd image; even an image is then served raw)', false)
    .option('--description <TEXT>', 'export description shown to clients')
    .option('--read-only', 'refuse writes (EPERM)', false)
    .option('--dirty-bitmap <NAME>', 'image: offer only qemu:dirty-bitmap:NAME (a snapshot) among the dirty bitmaps, as imageio-style clients want exactly one')
    .addOption(new Option('--cache <MODE>', 'image I/O: none (O_DIRECT where the filesystem allows it) or writeback (page cache)').choices(CACHE_MODES))
    .option('--size <SIZE>', 'without FILE: serve memory of this size; with --raw FILE: create the raw file this size if missing')
    .addOption(
      new Option('--inline-reads <MODE>', 'reads from the page cache on the event loop: auto (while they hit the cache), never (always the thread pool) or always')
        .choices(INLINE_IO_MODES)
        .default('auto'),
    )
    .addOption(
      new Option('--inline-writes <MODE>', 'writes into the page cache on the event loop: auto (while they are fast), never (always the thread pool) or always')
        .choices(INLINE_IO_MODES)
        .default('auto'),
    )
    .addOption(new Option('--log-level <LEVEL>', 'log level').choices(LOG_LEVELS).default('info'))
    .addOption(
      new Option('--min-block-size <BYTES>', 'the smallest request granularity advertised and accepted: 1 (any byte offset and length), 512 or 4096')
        .choices(MIN_BLOCK_SIZES.map(String))
        .default('512'),
    )
    .option('--metrics <HOST:PORT|PATH>', 'serve Prometheus metrics at http://HOST:PORT/metrics (or over a Unix socket at PATH); off by default');
  addObjectServeOptions(addTlsOptions(addLimitOptions(command)))
    .action(async (file: string | undefined, options: ServeOptions) => {
      try {
        await serve(file, options);
      } catch (err) {
        reportAndExit(err);
      }
    });
}

/** --min-block-size as a number (commander has checked it is one of MIN_BLOCK_SIZES). */
function minimumBlock(options: ServeOptions): MinBlockSize {
  return Number(options.minBlockSize) as MinBlockSize;
}

/** Every export's size must be whole minimum blocks: a ragged tail could be neither read nor written. */
function requireWholeBlocks(exports: Served['exports'], minimum: MinBlockSize): void {
  for (const e of exports) {
    if (e.device.size % minimum !== 0) {
      throw new IomapdError('BAD_ARGUMENT', `--min-block-size ${minimum}: export "${e.name}" is ${e.device.size} bytes, not a multiple of ${minimum}`);
    }
  }
}

/** --inline-reads / --inline-writes: the modes the served file's own gates start in. */
function inlineModes(options: ServeOptions): InlineIoModes {
  return { reads: options.inlineReads, writes: options.inlineWrites };
}

function collectNames(value: string, previous: string[]): string[] {
  return previous.concat(value.split(',').map((n) => n.trim()));
}

interface Served {
  exports: Array<{ name: string; device: BlockDevice; requireTls?: boolean }>;
  /** Require-tls volumes not exported because this server has no TLS. */
  heldForTls?: string[];
  what: string;
  /** The served file's inline-I/O gates, for metrics (none for memory or O_DIRECT). */
  gates: InlineIoGates | null;
  /** Set when serving an image: the control channel works on it. */
  image?: { path: string; served: ServedImage; io: ImageIo | null };
  close(): Promise<void>;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Picks what to serve: memory (--size, no FILE), a raw file (--raw only), or an image's volumes.
 * Without --raw a file is never guessed to be raw: one with no image magic is refused, and so,
 * louder, is one that still carries another signature of the format (a damaged image served raw
 * would let clients write over its metadata).
 */
async function openServed(file: string | undefined, options: ServeOptions, log: Logger): Promise<Served> {
  if (file !== undefined && isObjectImageName(file)) {
    const image = resolveImageName(file);
    if (options.raw) throw new IomapdError('BAD_ARGUMENT', '--raw serves a local file; an s3:// name is always an iomapd image');
    if (options.cache !== undefined) throw new IomapdError('BAD_ARGUMENT', '--cache applies to file images; an s3:// image caches in --cache-dir');
    if (image.kind !== 'object') throw new IomapdError('BAD_ARGUMENT', `not an object-store image name: ${file}`);
    const store = await openObjectServed(image.url, options.readOnly, options.export, options, log);
    return serveImage(store, image.url, options, null);
  }
  if (options.cacheDir !== undefined || options.cacheSize !== undefined) {
    throw new IomapdError('BAD_ARGUMENT', '--cache-dir and --cache-size apply to s3:// images only');
  }
  if (options.raw || (file === undefined && options.size !== undefined)) {
    const { device, what } = await openDevice(file, options);
    const name = options.export.length > 0 ? options.export[0]! : '';
    const gates = device instanceof RawFileDevice ? device.gates : null;
    return { exports: [{ name, device }], what, gates, close: () => device.close() };
  }
  const shown = file ?? EMBEDDED_DEFAULT.path;
  const path = resolve(shown);
  if (file === undefined && !(await exists(path))) {
    await mkdir(dirname(path), { recursive: true });
    const store = await createImageFile(path, { dataBytes: EMBEDDED_DEFAULT.size });
    await store.createVolume(EMBEDDED_DEFAULT.volume, EMBEDDED_DEFAULT.size);
    await store.close();
  }
  await requireImage(path, shown, options);
  const { store, io } = await openImage(path, { readOnly: options.readOnly, cache: options.cache ?? DEFAULT_CACHE, inline: inlineModes(options) });
  return serveImage(store, path, options, io);
}

/** Refuses (NOT_FOUND, CORRUPT or BAD_MAGIC) unless `path` starts like an iomapd image; `shown` is the name the user gave. */
async function requireImage(path: string, shown: string, options: ServeOptions): Promise<void> {
  const signature = await probeImageFile(path).catch((err: NodeJS.ErrnoException) => {
    if (err?.code !== 'ENOENT') throw err;
    const size = options.size ?? 'SIZE';
    throw new IomapdError(
      'NOT_FOUND',
      `${shown} does not exist; create an image with \`iomapd create ${shown} --size ${size}\`, or pass --raw --size ${size} to serve a new raw file`,
    );
  });
  if (signature.kind === 'image') return;
  if (signature.kind === 'damaged') {
    const fix = signature.superblock
      ? `run \`iomapd check --repair ${shown}\` to rewrite the damaged superblock, then serve it again`
      : `both superblocks are lost, which \`iomapd check --repair\` cannot rebuild; \`iomapd check ${shown}\` shows the damage`;
    throw new IomapdError('CORRUPT', `${shown} looks like a damaged iomapd image (${signature.evidence}); refusing to serve it: ${fix}`);
  }
  throw new IomapdError('BAD_MAGIC', `${shown} is not an iomapd image; pass --raw to serve it as a raw disk`);
}

/** The served image owns the store from here on: Served.close() is the one place it closes. */
function serveImage(store: ServableImage, path: string, options: ServeOptions, io: ImageIo | null): Served {
  const served = new ServedImage(store, null, { meterCommits: options.metrics !== undefined, minimumBlock: minimumBlock(options) });
  const { engine } = served;
  const volumes = store.volumes.list().map((v) => v.name);
  const names = options.export.length > 0 ? options.export : volumes;
  for (const n of names) if (!volumes.includes(n)) throw new IomapdError('NOT_FOUND', `image ${path} has no volume "${n}"`);
  // The default export "" reaches the first one added: 'default' if it is served.
  const ordered = names.includes(EMBEDDED_DEFAULT.volume) ? [EMBEDDED_DEFAULT.volume, ...names.filter((n) => n !== EMBEDDED_DEFAULT.volume)] : names;
  // A require-tls volume is never reachable without TLS: with --tls off it is not exported at all.
  const needsTls = (name: string): boolean => store.volumes.facts(name).requireTls;
  const heldForTls = tlsEnabled(options) ? [] : ordered.filter(needsTls);
  const exports = ordered
    .filter((name) => !heldForTls.includes(name))
    .map((name) => {
      const device = engine.device(name);
      return { name, device: options.readOnly || store.readOnly ? readOnlyView(device) : device, requireTls: needsTls(name) };
    });
  return { exports, heldForTls, what: path, gates: io?.gates ?? null, image: { path, served, io }, close: () => served.close() };
}

/** --dirty-bitmap NAME: a snapshot of the served image (docs/BACKUP.md). */
function dirtyBitmapOption(served: Served, options: ServeOptions): string | undefined {
  const name = options.dirtyBitmap;
  if (name === undefined) return undefined;
  if (!served.image) throw new IomapdError('BAD_ARGUMENT', '--dirty-bitmap applies to iomapd images only (a dirty bitmap is a snapshot of a volume)');
  const facts = served.image.served.volumes.allFacts().find((f) => f.name === name);
  if (facts === undefined || !facts.snapshot) throw new IomapdError('NOT_FOUND', `--dirty-bitmap ${name}: ${served.what} has no snapshot named "${name}"`);
  return name;
}

/** --read-only over an image: the same device, refusing writes at validation (EPERM). */
function readOnlyView(device: BlockDevice): BlockDevice {
  return Object.create(device, { readOnly: { value: true } }) as BlockDevice;
}

async function openDevice(file: string | undefined, options: ServeOptions): Promise<{ device: BlockDevice; what: string }> {
  if (options.cache !== undefined) throw new IomapdError('BAD_ARGUMENT', '--cache applies to iomapd images only');
  const size = options.size === undefined ? undefined : parseSize(options.size);
  if (size !== undefined && (size === 0 || size % 512 !== 0)) {
    throw new IomapdError('BAD_ARGUMENT', `--size must be a positive multiple of 512 bytes, got ${options.size}`);
  }
  if (file === undefined && size !== undefined) {
    return { device: new MemoryDevice({ size, readOnly: options.readOnly, minimumBlock: minimumBlock(options) }), what: `memory (${formatSize(size)})` };
  }
  const path = resolve(file ?? EMBEDDED_DEFAULT.path);
  const createSize = size ?? (file === undefined ? EMBEDDED_DEFAULT.size : undefined);
  if (createSize !== undefined) await mkdir(dirname(path), { recursive: true });
  const device = await RawFileDevice.open(path, {
    readOnly: options.readOnly,
    inline: inlineModes(options),
    minimumBlock: minimumBlock(options),
    ...(createSize === undefined ? {} : { createSize }),
  });
  return { device, what: path };
}

async function serve(file: string | undefined, options: ServeOptions): Promise<void> {
  const inherited = inheritedSockets(options);
  // Socket-activated by a client tool (`nbdinfo -- [ iomapd serve ... ]`), our stdout is the
  // tool's: logs go to stderr then (under systemd both reach the journal).
  const log = createLogger(options.logLevel as never, inherited === null ? process.stdout : process.stderr);
  if (inherited !== null) log.info({ fds: inherited.fds, names: inherited.names }, 'socket activation: serving the sockets passed in LISTEN_FDS');
  const limits = limitsFromOptions(options); // before opening anything: a bad value changes nothing
  const metricsAt: MetricsAddress | null = options.metrics === undefined ? null : parseMetricsAddress(options.metrics);
  const security = await ServerSecurity.load(securitySourcesFromOptions(options), log);
  const served = await openServed(file, options, log);
  if (served.image?.io) logImageIo(served.image.io, options, log);
  if (served.heldForTls !== undefined && served.heldForTls.length > 0) {
    log.warn({ volumes: served.heldForTls }, `not exported: ${served.heldForTls.join(', ')} require TLS and --tls is off`);
  }
  try {
    requireWholeBlocks(served.exports, minimumBlock(options));
  } catch (err) {
    await served.close();
    throw err;
  }
  const registry = new ExportRegistry();
  registry.onlyDirtyBitmap = dirtyBitmapOption(served, options);
  for (const e of served.exports) {
    registry.add({ name: e.name, description: options.description ?? '', device: e.device, requireTls: e.requireTls ?? false });
  }
  const server = new NbdServer(registry, log, limits);
  server.useSecurity(security);
  for (const name of security.access().exports) {
    if (registry.list().every((e) => e.name !== name)) log.warn({ export: name }, 'an allow-list names an export this daemon does not serve');
  }

  const addresses: ListenAddress[] = [];
  let metrics: MetricsServer | null = null;
  try {
    // First: an address in use fails before any NBD client could connect.
    if (metricsAt !== null) {
      metrics = await startMetrics(metricsAt, { server, exports: registry, image: served.image?.served ?? null, gates: served.gates }, log);
    }
    for (const fd of inherited?.fds ?? []) addresses.push(await server.listenFd(fd));
    if (options.socket !== undefined) addresses.push(await server.listenUnix(options.socket));
    if (inherited === null && (options.listen !== undefined || options.socket === undefined)) {
      const { host, port } = parseHostPort(options.listen ?? DEFAULT_LISTEN);
      addresses.push(await server.listenTcp(host, port));
    }
  } catch (err) {
    await metrics?.close();
    await served.close();
    throw err;
  }
  // SIGHUP and `iomapd reload` do the same: rotate certificates, CRL, PSKs and allow-lists; a
  // broken file keeps the old material (logged, and answered to `reload`).
  const reload = async (): Promise<ReloadResult> => {
    await security.reload();
    return { tls: security.tlsMode, restrictedExports: security.access().exports.length };
  };
  const control = served.image ? await startControl(served.image, registry, server, options, reload, log) : null;
  // Before the `listening` lines: a client (or a supervisor) may signal as soon as it sees one.
  const stopGc = served.image && isObjectImageName(served.image.path) ? startBackgroundGc(served.image.served, served.exports.every((e) => e.device.readOnly), options, log) : async () => {};
  stopOnSignals(log, async () => {
    await stopGc();
    await control?.close();
    await metrics?.close();
    await server.shutdown();
    // The store's one owner closes it (devices never do, and every export may be gone).
    await served.close();
  });
  process.on('SIGHUP', () => void reload().catch(() => {}));
  if (metrics !== null) log.info({ metrics: metrics.address, url: metricsUrl(metrics.address) }, 'metrics listening');
  for (const a of addresses) {
    for (const e of served.exports) {
      log.info(
        { serving: served.what, size: e.device.size, readOnly: e.device.readOnly, export: e.name, address: a.address, uri: nbdUri(a.kind, a.address, e.name) },
        'listening',
      );
    }
  }
}

/**
 * The listening sockets systemd (or another supervisor) passed us, or null. They replace
 * --listen and --socket: given both, serve refuses rather than guess which the user meant.
 */
function inheritedSockets(options: ServeOptions): InheritedSockets | null {
  const inherited = takeInheritedSockets();
  if (inherited !== null && (options.listen !== undefined || options.socket !== undefined)) {
    const n = inherited.fds.length;
    throw new IomapdError('BAD_ARGUMENT', `socket activation passed ${n} listening socket${n === 1 ? '' : 's'} (LISTEN_FDS); --listen and --socket cannot be given with them`);
  }
  return inherited;
}

/** Where a scraper finds the metrics (curl's --unix-socket form for a socket path). */
function metricsUrl(address: string): string {
  return address.includes('/') ? `unix:${address}:/metrics` : `http://${address}/metrics`;
}

/** One line on how the image is accessed; a --cache=none that fell back says why. */
function logImageIo(io: ImageIo, options: ServeOptions, log: Logger): void {
  const cache = options.cache ?? DEFAULT_CACHE;
  if (io.fallback !== null) log.warn({ cache, reason: io.fallback }, 'O_DIRECT unavailable: using buffered I/O');
  else log.info({ cache, direct: io.direct }, io.direct ? 'image opened with O_DIRECT' : 'image opened with buffered I/O');
}

/** The control channel next to the image; without it the daemon still serves (one warning). */
async function startControl(
  image: NonNullable<Served['image']>,
  registry: ExportRegistry,
  server: NbdServer,
  options: ServeOptions,
  reload: () => Promise<ReloadResult>,
  log: Logger,
): Promise<ControlServer | null> {
  const path = controlPath(image.path);
  if (isObjectImageName(image.path) && image.served.readOnly && (await controlInUse(path))) {
    log.info({ control: path }, 'another daemon on this host answers on the control channel of this image: volume commands go to it');
    return null;
  }
  const admin = new DaemonAdmin({ image: image.served, registry, server, description: options.description ?? '', tls: tlsEnabled(options), log, reload, copyTo: copyToRawFile });
  try {
    const control = await ControlServer.listen(path, admin, log);
    log.info({ control: control.path }, 'control channel listening');
    return control;
  } catch (err) {
    log.warn({ err: (err as Error).message, control: controlPath(image.path) }, 'control channel unavailable: volume commands cannot reach this daemon');
    return null;
  }
}

function stopOnSignals(log: Logger, stopAll: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'stopping: finishing in-flight requests');
    stopAll().then(
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
