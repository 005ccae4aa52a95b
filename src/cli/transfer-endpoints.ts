// The ends a transfer reads from and writes to: raw files (SEEK_DATA/SEEK_HOLE, fallocate), NBD
// exports (base:allocation, WRITE_ZEROES), qcow2 files (through qemu-nbd) and image volumes
// (through the engine's read, write and trim paths, so metadata stays consistent).
import { open as openFile, stat, unlink } from 'node:fs/promises';
import { NbdClient, MAX_REQUEST_LENGTH } from '../client/nbd-client.ts';
import { formatNbdAddress, parseNbdUri } from '../client/nbd-uri.ts';
import type { VolumeDevice } from '../engine/volume-device.ts';
import { FileStorage } from '../storage/file-storage.ts';
import { IomapdError } from '../util/errors.ts';
import { isQcow2, startQemuNbd } from './qemu-nbd.ts';
import { GRAIN, type SourceRun, type TransferSource, type TransferTarget } from './transfer.ts';

/** Runs a source can report in one call. */
const MAX_RUNS = 1024;

// ------------------------------------------------------------------ raw files

export async function rawFileSource(path: string): Promise<TransferSource> {
  const storage = await FileStorage.open(path, { readOnly: true });
  const size = await storage.size();
  return {
    name: path,
    size,
    async runs(offset, length) {
      return (await storage.extents(offset, length, MAX_RUNS)) ?? [{ length, data: true }];
    },
    read: (into, offset) => storage.read(into, offset),
    close: () => storage.close(),
  };
}

/** A sparse raw file of `size` bytes; `force` replaces an existing file. `remove` deletes it after a failure. */
export async function rawFileTarget(path: string, size: number, force: boolean): Promise<TransferTarget & { close(): Promise<void>; remove(): Promise<void> }> {
  let fh;
  try {
    fh = await openFile(path, force ? 'w' : 'wx');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new IomapdError('ALREADY_EXISTS', `${path} already exists; pass --force to overwrite it`, { cause: err });
    if (code === 'ENOENT') throw new IomapdError('NOT_FOUND', `cannot create ${path}: its directory does not exist`, { cause: err });
    throw new IomapdError('IO', `cannot create ${path}: ${(err as Error).message}`, { cause: err });
  }
  const storage = FileStorage.over(fh, path);
  await storage.resize(size);
  return {
    name: path,
    size,
    minimum: 1,
    blank: true, // truncated to nothing, then extended: all hole
    write: (data, offset) => storage.write(data, offset),
    hole: (offset, length) => storage.punchHole(offset, length),
    finish: () => storage.sync(),
    close: () => storage.close(),
    async remove() {
      await storage.close().catch(() => {});
      await unlink(path).catch(() => {});
    },
  };
}

// ------------------------------------------------------------------ NBD

function nbdRuns(client: NbdClient): (offset: number, length: number) => Promise<SourceRun[]> {
  return async (offset, length) => (await client.blockStatus(offset, length)).map((r) => ({ length: r.length, data: !r.hole && !r.zero }));
}

/** The copy loop's requests are aligned to GRAIN: an export that needs more cannot take them. */
async function checkMinimum(client: NbdClient): Promise<void> {
  if (client.minimum <= GRAIN) return;
  await client.close();
  throw new IomapdError('NOT_SUPPORTED', `${client.uri} wants requests aligned to ${client.minimum} bytes; import and export align to ${GRAIN}`);
}

export async function nbdSource(uri: string): Promise<TransferSource> {
  const client = await NbdClient.connect(parseNbdUri(uri));
  await checkMinimum(client);
  return { name: client.uri, size: client.size, runs: nbdRuns(client), read: (into, offset) => client.read(into, offset), close: () => client.close() };
}

/** An NBD export to write: it must be writable and at least `size` bytes. */
export async function nbdTarget(uri: string, size: number): Promise<TransferTarget & { close(): Promise<void> }> {
  const address = parseNbdUri(uri);
  const client = await NbdClient.connect(address);
  await checkMinimum(client);
  const fail = async (e: IomapdError) => {
    await client.close();
    throw e;
  };
  if (client.readOnly) await fail(new IomapdError('READ_ONLY', `${formatNbdAddress(address)} is read-only`));
  if (client.size < size) await fail(new IomapdError('NO_SPACE', `${client.uri} holds ${client.size} bytes, less than the ${size} to export`));
  return {
    name: client.uri,
    size: client.size,
    minimum: Math.max(1, client.minimum),
    blank: false, // whatever the export held before: holes are zeroed (WRITE_ZEROES may punch them)
    write: (data, offset) => client.write(data, offset),
    async hole(offset, length) {
      for (let at = offset; at < offset + length; at += MAX_REQUEST_LENGTH) await client.zero(at, Math.min(MAX_REQUEST_LENGTH, offset + length - at));
    },
    finish: () => client.flush(),
    close: () => client.close(),
  };
}

// ------------------------------------------------------------------ files of any kind, qcow2

/** A file (raw, or qcow2 read through qemu-nbd) or an NBD URI; `format` forces raw or qcow2. */
export async function openSource(spec: string, format: string | undefined, isUri: boolean): Promise<TransferSource> {
  if (isUri) {
    if (format !== undefined) throw new IomapdError('BAD_ARGUMENT', '--format applies to files; an NBD URI is read as it is served');
    return nbdSource(spec);
  }
  try {
    if (!(await stat(spec)).isFile()) throw new IomapdError('BAD_ARGUMENT', `${spec} is not a regular file`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new IomapdError('NOT_FOUND', `${spec} does not exist`, { cause: err });
    throw err;
  }
  const kind = format ?? ((await isQcow2(spec)) ? 'qcow2' : 'raw');
  if (kind === 'raw') return rawFileSource(spec);
  if (kind !== 'qcow2') throw new IomapdError('BAD_ARGUMENT', `--format takes raw or qcow2, not ${JSON.stringify(kind)}`);
  const qemu = await startQemuNbd(spec, kind);
  try {
    const inner = await nbdSource(`nbd+unix:///?socket=${qemu.socket}`);
    return {
      ...inner,
      name: spec,
      async close() {
        await inner.close();
        await qemu.stop();
      },
    };
  } catch (err) {
    const why = await qemu.exitError(2000);
    await qemu.stop();
    throw why ?? err;
  }
}

// ------------------------------------------------------------------ image volumes

/** A volume read through the engine: holes and unwritten ranges are not read. */
export function volumeSource(device: VolumeDevice, name: string): TransferSource {
  return {
    name,
    size: device.size,
    async runs(offset, length) {
      return (await device.blockStatus(offset, length)).map((e) => ({ length: e.length, data: !e.zero }));
    },
    read: (into, offset) => device.read(into, offset),
    close: async () => {},
  };
}

/** A volume written through the engine; `blank` when it was just created. */
export function volumeTarget(device: VolumeDevice, name: string, blank: boolean): TransferTarget {
  const plain = { fua: false };
  return {
    name,
    size: device.size,
    minimum: device.blockSizes.minimum,
    blank,
    write: (data, offset) => device.write(data, offset, plain),
    hole: (offset, length) => device.trim(offset, length, plain),
    finish: () => device.flush(),
  };
}
