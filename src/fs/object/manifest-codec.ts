// The manifest: the one object an object-store image modifies, only by putIfMatch
// (docs/OBJECT-STORE.md). JSON, so an operator can read it with any S3 tool, with a CRC-32 over
// the canonical JSON of the other fields so a damaged or foreign object is refused (CORRUPT).
import { checksum } from '../../util/checksum.ts';
import { IomapdError } from '../../util/errors.ts';

export const MANIFEST_FORMAT = 'iomapd-object-image';
export const MANIFEST_VERSION = 1;

export interface Manifest {
  uuid: string;
  blockSize: number;
  dataBlocks: number;
  /** The format version of the metadata (as a file image's superblock records it). */
  formatVersion: number;
  /** The writer epoch: raised by every read-write open. */
  epoch: number;
  checkpoint: { key: string; generation: number };
  /** Where replay starts: journal/<epoch>/<seq> and on. */
  journal: { epoch: number; seq: number };
}

function body(m: Manifest): string {
  return JSON.stringify({
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    uuid: m.uuid,
    blockSize: m.blockSize,
    dataBlocks: m.dataBlocks,
    formatVersion: m.formatVersion,
    epoch: m.epoch,
    checkpoint: { key: m.checkpoint.key, generation: m.checkpoint.generation },
    journal: { epoch: m.journal.epoch, seq: m.journal.seq },
  });
}

export function encodeManifest(m: Manifest): Buffer {
  const text = body(m);
  return Buffer.from(`${text.slice(0, -1)},"crc":${checksum(Buffer.from(text))}}\n`);
}

function bad(why: string): never {
  throw new IomapdError('CORRUPT', `manifest: ${why}`);
}

function uint(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad(`${what} is not an unsigned integer`);
  return v;
}

export function decodeManifest(buf: Buffer): Manifest {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(buf.toString('utf8')) as Record<string, unknown>;
  } catch {
    return bad('not JSON');
  }
  if (j === null || typeof j !== 'object' || j.format !== MANIFEST_FORMAT) {
    throw new IomapdError('BAD_MAGIC', 'the prefix holds no iomapd object image (manifest format)');
  }
  if (j.version !== MANIFEST_VERSION) throw new IomapdError('FORMAT_TOO_NEW', `manifest version ${String(j.version)} is not ${MANIFEST_VERSION}`);
  const ck = j.checkpoint as Record<string, unknown> | undefined;
  const jr = j.journal as Record<string, unknown> | undefined;
  if (!ck || typeof ck.key !== 'string' || !jr || typeof j.uuid !== 'string') bad('fields missing');
  if (!/^[0-9a-f]{32}$/.test(j.uuid as string)) bad('uuid is not 32 hex digits');
  const m: Manifest = {
    uuid: j.uuid as string,
    blockSize: uint(j.blockSize, 'blockSize'),
    dataBlocks: uint(j.dataBlocks, 'dataBlocks'),
    formatVersion: uint(j.formatVersion, 'formatVersion'),
    epoch: uint(j.epoch, 'epoch'),
    checkpoint: { key: ck.key as string, generation: uint(ck.generation, 'checkpoint generation') },
    journal: { epoch: uint(jr.epoch, 'journal epoch'), seq: uint(jr.seq, 'journal seq') },
  };
  if (j.crc !== checksum(Buffer.from(body(m)))) bad('CRC mismatch');
  return m;
}
