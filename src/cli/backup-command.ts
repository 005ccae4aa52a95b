// `iomapd backup IMAGE VOLUME --to FILE [--since SNAPSHOT]`: takes a snapshot of VOLUME and copies
// it into FILE (a raw file or block device): all its data for a full copy, or with --since only
// the ranges that changed since that earlier backup snapshot, onto the copy that run made. The
// snapshot is kept (VOLUME@backup-N) and printed, so the next run can start from it; a regular
// FILE gets a record beside it (FILE.iomapd-backup) that --since is checked against.
// Wiring and printing only: the plan is src/control/backup-plan.ts, the changed ranges
// src/fs/diff.ts, the copy src/devices/block-copy.ts. Works on an idle image (not served).
import { stat, truncate, unlink } from 'node:fs/promises';
import type { Command } from 'commander';
import { checkRecord, planBackup, readBackupRecord, writeBackupRecord } from '../control/backup-plan.ts';
import { type CopyRange, copyRanges } from '../devices/block-copy.ts';
import { RawFileDevice } from '../devices/raw-file-device.ts';
import { Engine } from '../engine/engine.ts';
import { diffVolumes, merge } from '../fs/diff.ts';
import type { ImageStore } from '../fs/image-store.ts';
import { MappingType } from '../fs/mapping.ts';
import { openImageFile } from '../fs/image-file.ts';
import { IomapdError, isIomapdError } from '../util/errors.ts';
import { reportAndExit } from './report.ts';

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

/** Opens an idle image; LOCKED names `served`, the route for a served image, when a daemon holds it. */
export async function openIdleImage(image: string, readOnly: boolean, served: string): Promise<ImageStore> {
  try {
    return await openImageFile(image, { readOnly });
  } catch (err) {
    if (isIomapdError(err, 'LOCKED')) throw new IomapdError('LOCKED', `${(err as Error).message}; ${served}`, { cause: err });
    throw err;
  }
}

/** A full copy writes the snapshot's data; holes and unwritten ranges stay holes in a new sparse file. */
function dataRanges(store: ImageStore, name: string): CopyRange[] {
  const data = [...store.mapper.extents(name)].filter((e) => e.type === MappingType.MAPPED || e.type === MappingType.INLINE);
  return merge(data.map((e) => ({ offset: e.offset, length: e.length, zero: false })));
}

async function statOrNull(path: string): Promise<Awaited<ReturnType<typeof stat>> | null> {
  return stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
}

export async function runBackup(image: string, volume: string, file: string, since: string | undefined): Promise<BackupReport> {
  const store = await openIdleImage(image, false, 'back up a served image with nbdcopy and its qemu:dirty-bitmap: contexts (docs/BACKUP.md)');
  try {
    const plan = planBackup(store.volumes, volume, since);
    const existing = await statOrNull(file);
    if (plan.since === null && existing !== null) {
      throw new IomapdError('ALREADY_EXISTS', `${file} exists: pass --since SNAPSHOT to bring it up to date, or remove it for a full copy`);
    }
    if (plan.since !== null) {
      if (existing === null) throw new IomapdError('NOT_FOUND', `${file} does not exist: --since brings an earlier copy up to date`);
      if (existing.isFile() && existing.size !== plan.since.size) {
        throw new IomapdError('BAD_ARGUMENT', `${file} is ${existing.size} bytes but ${plan.since.name} is ${plan.since.size}: it is not a copy of ${plan.since.name}`);
      }
      if (existing.isFile()) checkRecord(await readBackupRecord(file), file, store.stats().uuid, volume, plan.since.name);
    }
    const engine = new Engine(store);
    await engine.snapshot(volume, plan.snapshot);
    try {
      const size = store.volumes.facts(plan.snapshot).size;
      const ranges = plan.since === null ? dataRanges(store, plan.snapshot) : await diffVolumes(store, plan.since.name, plan.snapshot);
      // The volume may have been resized since the earlier copy.
      if (existing?.isFile() && existing.size !== size) await truncate(file, size);
      const dst = await RawFileDevice.open(file, { readOnly: false, createSize: size });
      let copied;
      try {
        if (dst.size < size) throw new IomapdError('NO_SPACE', `${file} holds ${dst.size} bytes, ${plan.snapshot} needs ${size}`);
        // The import/export progress bar (another change) plugs in as copyRanges' onProgress.
        copied = await copyRanges(engine.device(plan.snapshot), dst, ranges);
      } finally {
        await dst.close();
      }
      if ((await stat(file)).isFile()) await writeBackupRecord(file, { image: store.stats().uuid, volume, snapshot: plan.snapshot });
      return { volume, snapshot: plan.snapshot, since: plan.since?.name ?? null, file, size, ...copied };
    } catch (err) {
      // Nothing half-done stays behind to be mistaken for a base: the snapshot, and a new file.
      await store.volumes.delete(plan.snapshot).catch(() => {});
      if (existing === null) await unlink(file).catch(() => {});
      throw err;
    }
  } finally {
    await store.close();
  }
}

export function registerBackup(program: Command): void {
  program
    .command('backup')
    .description('snapshot VOLUME and copy it to FILE: a full sparse copy, or with --since only what changed since that earlier backup snapshot')
    .argument('<image>')
    .argument('<volume>')
    .requiredOption('--to <file>', 'the copy: a raw file (created sparse for a full copy) or a block device')
    .option('--since <snapshot>', 'the snapshot the copy in FILE was made from (printed by the run that made it)')
    .option('--json', 'print JSON')
    .action(async (image: string, volume: string, o: { to: string; since?: string; json?: boolean }) => {
      try {
        const r = await runBackup(image, volume, o.to, o.since);
        if (o.json) {
          process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
          return;
        }
        const kind = r.since === null ? 'full copy' : `incremental since ${r.since}`;
        process.stdout.write(`backed up ${r.volume} as snapshot ${r.snapshot} (${kind}): ${r.bytesWritten} bytes written, ${r.bytesZeroed} zeroed, to ${r.file}\n`);
        process.stdout.write(`next: iomapd backup ${image} ${r.volume} --to ${r.file} --since ${r.snapshot}\n`);
      } catch (err) {
        reportAndExit(err);
      }
    });
}
