// `iomapd backup IMAGE VOLUME --to FILE [--since SNAPSHOT]`: takes a snapshot of VOLUME and copies
// it into FILE (a raw file or block device): all its data for a full copy, or with --since only
// the ranges that changed since that earlier backup snapshot, onto the copy that run made. The
// snapshot is kept (VOLUME@backup-N) and printed, so the next run can start from it; a regular
// FILE gets a record beside it (FILE.iomapd-backup) that --since is checked against.
// Wiring and printing only: the backup is src/control/backup.ts, run here on an idle image or by
// the daemon serving it (the control channel's backup op); the copy is src/devices/block-copy.ts.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { type BackupProgress, type BackupReport, type CopyTo, backupVolume } from '../control/backup.ts';
import { openDaemon } from '../control/open-admin.ts';
import { copyRanges } from '../devices/block-copy.ts';
import { RawFileDevice } from '../devices/raw-file-device.ts';
import { Engine } from '../engine/engine.ts';
import { openImageFile } from '../fs/image-file.ts';
import { ImageLock } from '../fs/lock.ts';
import { IomapdError } from '../util/errors.ts';
import { progressMode, startProgress } from './progress.ts';
import { reportAndExit } from './report.ts';

/** The copy into a raw file or block device, for backupVolume (local, or injected into the daemon). */
export const copyToRawFile: CopyTo = async (src, file, size, ranges, onProgress) => {
  const dst = await RawFileDevice.open(file, { readOnly: false, createSize: size });
  try {
    if (dst.size < size) throw new IomapdError('NO_SPACE', `${file} holds ${dst.size} bytes, the snapshot needs ${size}`);
    return await copyRanges(src, dst, ranges, onProgress);
  } finally {
    await dst.close();
  }
};

/**
 * Backs up on an idle image (this process opens it) or through the daemon serving it, which sends
 * the copy's progress over the control channel; either way `onProgress` hears it.
 */
export async function runBackup(image: string, volume: string, file: string, since: string | undefined, onProgress?: BackupProgress): Promise<BackupReport> {
  const path = resolve(file); // a daemon's working directory is not ours
  if ((await ImageLock.holder(image)) !== null) {
    const admin = await openDaemon(image);
    return admin.backup(volume, path, since, onProgress).finally(() => admin.close());
  }
  const store = await openImageFile(image);
  try {
    const engine = new Engine(store);
    const host = {
      volumes: store.volumes,
      mapper: store.mapper,
      imageId: store.stats().uuid,
      snapshot: (v: string, n: string) => engine.snapshot(v, n),
      deleteVolume: (n: string) => engine.deleteVolume(n),
      device: (n: string) => engine.device(n),
    };
    return await backupVolume(host, copyToRawFile, volume, path, since, onProgress);
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
    .option('--progress', 'draw a progress bar (bytes copied) on stderr even when it is not a terminal')
    .option('--no-progress', 'never draw a progress bar')
    .action(async (image: string, volume: string, o: { to: string; since?: string; json?: boolean; progress?: boolean }) => {
      try {
        // Started at the first report, when the copy's size is known (after the snapshot and diff).
        let bar: ReturnType<typeof startProgress> | null = null;
        const r = await runBackup(image, volume, o.to, o.since, (done, total) => {
          bar ??= startProgress('backup', total, 'bytes', progressMode(o.progress));
          bar.update(done);
        }).finally(() => bar?.stop());
        if (o.json) {
          process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
          return;
        }
        const kind = r.since === null ? 'full copy' : `incremental since ${r.since}`;
        process.stdout.write(`backed up ${r.volume} as snapshot ${r.snapshot} (${kind}): ${r.bytesWritten} bytes written, ${r.bytesZeroed} zeroed, to ${r.file}\n`);
        process.stdout.write(`next: iomapd backup ${image} ${r.volume} --to ${o.to} --since ${r.snapshot}\n`);
      } catch (err) {
        reportAndExit(err);
      }
    });
}
