// `iomapd backup` itself, wherever the image is held: by the CLI (an idle image) or by the daemon
// serving it (the control channel's backup op). The host takes and removes snapshots its own way
// (a daemon drains the volume and exports the snapshot); the copy into FILE is injected (the
// devices layer's raw file, wired by the CLI), since control does not reach devices.
import { stat, truncate, unlink } from 'node:fs/promises';
import type { BlockDevice } from '../engine/block-device.ts';
import { type DiffRange, diffVolumes, merge } from '../fs/diff.ts';
import type { Mapper } from '../fs/mapper.ts';
import { MappingType } from '../fs/mapping.ts';
import type { Volumes } from '../fs/volumes.ts';
import { IomapdError } from '../util/errors.ts';
import { checkRecord, planBackup, readBackupRecord, writeBackupRecord } from './backup-plan.ts';

export interface BackupReport {
  volume: string;
  /** The snapshot copied, kept for the next incremental run. */
  snapshot: string;
  /** The snapshot the copy was brought up from; null for a full copy. */
  since: string | null;
  file: string;
  size: number;
  bytesWritten: number;
  bytesZeroed: number;
}

/** What a backup needs of whoever holds the image. */
export interface BackupHost {
  readonly volumes: Volumes;
  readonly mapper: Mapper;
  /** The image's uuid, for the record beside the copy. */
  readonly imageId: string;
  snapshot(volume: string, name: string): Promise<unknown>;
  deleteVolume(name: string): Promise<void>;
  device(name: string): BlockDevice;
}

/**
 * Opens FILE (created sparse, `size` bytes, when missing; NO_SPACE if smaller), copies the ranges
 * from `src` (zero ranges may punch), flushes and closes it; `onProgress` hears the bytes copied
 * so far of all the ranges' bytes.
 */
export type CopyTo = (
  src: BlockDevice,
  file: string,
  size: number,
  ranges: readonly DiffRange[],
  onProgress?: BackupProgress,
) => Promise<{ bytesWritten: number; bytesZeroed: number }>;

/** Bytes of the copy done so far, of all it has to copy (a progress bar's hook). */
export type BackupProgress = (done: number, total: number) => void;

async function statOrNull(path: string): Promise<Awaited<ReturnType<typeof stat>> | null> {
  return stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
}

/** A full copy writes the snapshot's data; holes and unwritten ranges stay holes in a new sparse file. */
function dataRanges(mapper: Mapper, name: string): DiffRange[] {
  const data = [...mapper.extents(name)].filter((e) => e.type === MappingType.MAPPED || e.type === MappingType.INLINE);
  return merge(data.map((e) => ({ offset: e.offset, length: e.length, zero: false })));
}

export async function backupVolume(
  host: BackupHost,
  copyTo: CopyTo,
  volume: string,
  file: string,
  since: string | undefined,
  onProgress?: BackupProgress,
): Promise<BackupReport> {
  const plan = planBackup(host.volumes, volume, since);
  const existing = await statOrNull(file);
  if (plan.since === null && existing !== null) {
    throw new IomapdError('ALREADY_EXISTS', `${file} exists: pass --since SNAPSHOT to bring it up to date, or remove it for a full copy`);
  }
  if (plan.since !== null) {
    if (existing === null) throw new IomapdError('NOT_FOUND', `${file} does not exist: --since brings an earlier copy up to date`);
    if (existing.isFile() && existing.size !== plan.since.size) {
      throw new IomapdError('BAD_ARGUMENT', `${file} is ${existing.size} bytes but ${plan.since.name} is ${plan.since.size}: it is not a copy of ${plan.since.name}`);
    }
    if (existing.isFile()) checkRecord(await readBackupRecord(file), file, host.imageId, volume, plan.since.name);
  }
  await host.snapshot(volume, plan.snapshot);
  try {
    const size = host.volumes.facts(plan.snapshot).size;
    const ranges = plan.since === null ? dataRanges(host.mapper, plan.snapshot) : await diffVolumes(host, plan.since.name, plan.snapshot);
    // The volume may have been resized since the earlier copy.
    if (existing?.isFile() && existing.size !== size) await truncate(file, size);
    const copied = await copyTo(host.device(plan.snapshot), file, size, ranges, onProgress);
    if ((await stat(file)).isFile()) await writeBackupRecord(file, { image: host.imageId, volume, snapshot: plan.snapshot });
    return { volume, snapshot: plan.snapshot, since: plan.since?.name ?? null, file, size, ...copied };
  } catch (err) {
    // Nothing half-done stays behind to be mistaken for a base: the snapshot, and a new file.
    await host.deleteVolume(plan.snapshot).catch(() => {});
    if (existing === null) await unlink(file).catch(() => {});
    throw err;
  }
}
