// What `iomapd backup` decides before it copies anything: which volume, which earlier backup
// snapshot an incremental run starts from, and the name of the snapshot this run takes
// (VOLUME@backup-N, N one more than the highest so far, so names sort by age and are predictable).
// Beside a regular FILE a record (FILE.iomapd-backup, JSON) says which image, volume and snapshot
// the copy holds, so --since cannot name a snapshot the copy was never brought up to.
import { readFile, writeFile } from 'node:fs/promises';
import { historyPair } from '../fs/diff.ts';
import type { VolumeFacts, Volumes } from '../fs/volumes.ts';
import { fail } from '../util/errors.ts';

export interface BackupPlan {
  readonly volume: VolumeFacts;
  /** The snapshot an incremental copy starts from; null for a full copy. */
  readonly since: VolumeFacts | null;
  /** The snapshot to take now and copy from. */
  readonly snapshot: string;
}

/** Checks the request against the image (nothing changes); BAD_ARGUMENT / NOT_FOUND say why not. */
export function planBackup(volumes: Volumes, volume: string, since: string | undefined): BackupPlan {
  const v = volumes.facts(volume);
  if (v.snapshot) fail('BAD_ARGUMENT', `${volume} is a snapshot; back up the volume it was taken of (backup takes its own snapshot)`);
  // The new snapshot will be taken of `volume`, so a point of its history now is one of the snapshot's.
  const from = since === undefined ? null : historyPair(volumes, since, volume).from;
  return { volume: v, since: from, snapshot: nextBackupName(volumes, volume) };
}

export function nextBackupName(volumes: Volumes, volume: string): string {
  const prefix = `${volume}@backup-`;
  let highest = 0;
  for (const f of volumes.allFacts()) {
    if (!f.name.startsWith(prefix)) continue;
    const n = Number(f.name.slice(prefix.length));
    if (Number.isSafeInteger(n) && n > highest) highest = n;
  }
  return `${prefix}${highest + 1}`;
}

/** What a copy holds, recorded beside it after each successful run. */
export interface BackupRecord {
  /** The image's uuid (iomapd info). */
  readonly image: string;
  readonly volume: string;
  readonly snapshot: string;
}

export const recordPath = (file: string): string => `${file}.iomapd-backup`;

export async function readBackupRecord(file: string): Promise<BackupRecord | null> {
  let text: string;
  try {
    text = await readFile(recordPath(file), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const r = JSON.parse(text) as Partial<BackupRecord>;
  if (typeof r.image !== 'string' || typeof r.volume !== 'string' || typeof r.snapshot !== 'string') {
    fail('BAD_ARGUMENT', `${recordPath(file)} is not a backup record (image, volume, snapshot)`);
  }
  return r as BackupRecord;
}

export async function writeBackupRecord(file: string, record: BackupRecord): Promise<void> {
  await writeFile(recordPath(file), `${JSON.stringify(record)}\n`);
}

/** --since must name what the copy holds, when a record says so. */
export function checkRecord(record: BackupRecord | null, file: string, image: string, volume: string, since: string): void {
  if (record === null) return;
  if (record.image !== image || record.volume !== volume) {
    fail('BAD_ARGUMENT', `${file} is a copy of volume ${record.volume} of another image or volume (${recordPath(file)}), not of ${volume} here`);
  }
  if (record.snapshot !== since) {
    fail('BAD_ARGUMENT', `${file} holds ${record.snapshot}, not ${since} (${recordPath(file)}): pass --since ${record.snapshot}`);
  }
}
