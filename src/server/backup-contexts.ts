// The qemu: meta contexts an image volume's export offers for incremental backup (docs/BACKUP.md,
// qemu's docs/interop/nbd.rst): qemu:allocation-depth, and qemu:dirty-bitmap:FROM for each
// snapshot FROM that is an earlier point of the volume's history. `serve --dirty-bitmap NAME`
// narrows the bitmaps to that one (imageio uses a bitmap only when exactly one is listed).
// Offered per export and per request, so a snapshot taken while serving is listed at once.
import type { BlockDevice, StatusRun } from '../engine/block-device.ts';
import { QEMU_ALLOCATION_DEPTH, QEMU_DIRTY_BITMAP_PREFIX } from '../protocol/constants.ts';

/** The qemu: contexts a device offers, allocation depth first, then bitmaps oldest first. */
export function backupContexts(device: BlockDevice, onlyBitmap?: string): string[] {
  const history = device.history;
  if (history === undefined) return [];
  const points = history.points().filter((p) => onlyBitmap === undefined || p === onlyBitmap);
  return [QEMU_ALLOCATION_DEPTH, ...points.map((p) => QEMU_DIRTY_BITMAP_PREFIX + p)];
}

export function isBackupContext(context: string): boolean {
  return context === QEMU_ALLOCATION_DEPTH || context.startsWith(QEMU_DIRTY_BITMAP_PREFIX);
}

/** A qemu: context's answer for [offset, offset + length), 32-bit flags per run. */
export function backupExtents(device: BlockDevice, context: string, offset: number, length: number): Promise<StatusRun[]> {
  const history = device.history;
  // Selection only offers these contexts for devices with a history.
  if (history === undefined) throw new Error(`${context} selected for a device without a history`);
  if (context === QEMU_ALLOCATION_DEPTH) return history.depth(offset, length);
  return history.dirty(context.slice(QEMU_DIRTY_BITMAP_PREFIX.length), offset, length);
}
