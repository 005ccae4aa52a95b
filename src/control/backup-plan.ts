// What `iomapd backup` decides before it copies anything: which volume, which earlier backup
// snapshot an incremental run starts from, and the name of the snapshot this run takes
// (VOLUME@backup-N, N one more than the highest so far, so names sort by age and are predictable).
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
