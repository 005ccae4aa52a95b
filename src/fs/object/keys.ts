// Object keys of an object-store image (docs/OBJECT-STORE.md). Fixed-width hex numbers, so a
// bucket list (lexicographic) comes back in epoch and sequence order.
export const MANIFEST_KEY = 'manifest';

export type ObjectKind = 'seg' | 'journal' | 'ckpt';

const WIDTH = { epoch: 8, num: 12 } as const;
/** Epochs are u32 in every encoding; 0xffffffff marks "no segment" in index changes. */
export const MAX_EPOCH = 0xfffffffe;

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

export function objectKey(kind: ObjectKind, epoch: number, num: number): string {
  return `${kind}/${hex(epoch, WIDTH.epoch)}/${hex(num, WIDTH.num)}`;
}

export function segmentKey(epoch: number, num: number): string {
  return objectKey('seg', epoch, num);
}

export function journalKey(epoch: number, seq: number): string {
  return objectKey('journal', epoch, seq);
}

export function checkpointKey(epoch: number, generation: number): string {
  return objectKey('ckpt', epoch, generation);
}

const PATTERN = /^(seg|journal|ckpt)\/([0-9a-f]{8})\/([0-9a-f]{12})$/;

/** The kind, epoch and number of one of our keys; null for anything else (the manifest, strangers). */
export function parseKey(key: string): { kind: ObjectKind; epoch: number; num: number } | null {
  const m = PATTERN.exec(key);
  if (!m) return null;
  return { kind: m[1] as ObjectKind, epoch: Number.parseInt(m[2]!, 16), num: Number.parseInt(m[3]!, 16) };
}
