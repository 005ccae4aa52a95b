// The manifest of an object-store image as the root record (the Superblocks piece of
// store-contract.ts): read it, and replace it only by putIfMatch on the etag last seen.
// A CAS that loses reads the manifest again to learn why:
// - it names the checkpoint we were writing: an earlier attempt whose answer was lost landed;
// - a newer epoch: another writer took over, we are fenced;
// - our own epoch otherwise: an attempt of ours landed with older contents; retry on its etag.
import { randomBytes } from 'node:crypto';
import { IomapdError, fail } from '../../util/errors.ts';
import { ObjectConflict, type ObjectStore } from '../../storage/object-store.ts';
import type { Superblocks } from '../store-contract.ts';
import type { Superblock } from '../superblock.ts';
import { MANIFEST_KEY, checkpointKey } from './keys.ts';
import { type Manifest, decodeManifest, encodeManifest } from './manifest-codec.ts';
import type { WriterLatch } from './writer-latch.ts';

export async function readManifest(store: ObjectStore): Promise<{ manifest: Manifest; etag: string }> {
  const got = await store.get(MANIFEST_KEY);
  if (!got) fail('NOT_FOUND', `no iomapd object image at ${store.description} (no manifest)`);
  return { manifest: decodeManifest(got.body), etag: got.etag };
}

export class ManifestSuperblocks implements Superblocks {
  private readonly store: ObjectStore;
  private readonly writer: WriterLatch;
  manifest: Manifest;
  etag: string;

  constructor(store: ObjectStore, writer: WriterLatch, manifest: Manifest, etag: string) {
    this.store = store;
    this.writer = writer;
    this.manifest = manifest;
    this.etag = etag;
  }

  /** The manifest in the file image's terms (generation = checkpoint generation). */
  get current(): Readonly<Superblock> {
    const m = this.manifest;
    return {
      version: m.formatVersion,
      blockSize: m.blockSize,
      generation: m.checkpoint.generation,
      imageBytes: 0,
      journalOffset: 0,
      journalBytes: 0,
      dataOffset: 0,
      dataBlocks: m.dataBlocks,
      uuid: Buffer.from(m.uuid, 'hex'),
      journalSalt: 0,
      journalStart: 0,
      journalSeq: m.journal.seq,
      journalPrevCrc: 0,
      checkpointBytes: 0,
      checkpointCrc: 0,
      checkpointRuns: [],
    };
  }

  /** Points the manifest at the checkpoint of `sb.generation` with replay from `sb.journalSeq`. */
  async write(sb: Superblock): Promise<void> {
    const m = this.manifest;
    await this.replace({
      ...m,
      formatVersion: sb.version,
      checkpoint: { key: checkpointKey(m.epoch, sb.generation), generation: sb.generation },
      journal: { epoch: m.epoch, seq: sb.journalSeq },
    });
  }

  /** One CAS of the manifest, with the lost-race analysis above. */
  async replace(next: Manifest): Promise<void> {
    this.writer.refuse();
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        this.etag = await this.store.putIfMatch(MANIFEST_KEY, encodeManifest(next), this.etag);
        this.manifest = next;
        return;
      } catch (err) {
        if (!(err instanceof ObjectConflict)) throw err;
      }
      const { manifest, etag } = await readManifest(this.store);
      if (manifest.epoch > next.epoch) throw this.writer.fence(`the manifest is at epoch ${manifest.epoch}, ours is ${next.epoch}`);
      if (manifest.epoch < next.epoch) throw new IomapdError('CORRUPT', `the manifest went back to epoch ${manifest.epoch}`);
      this.etag = etag;
      this.manifest = manifest;
      if (manifest.checkpoint.key === next.checkpoint.key && manifest.journal.seq === next.journal.seq) return;
    }
    throw new IomapdError('STORE_UNAVAILABLE', 'the manifest kept changing under this writer');
  }
}

/** A new image's first manifest: epoch 1, checkpoint generation 1, replay from journal (1, 0). */
export function firstManifest(blockSize: number, dataBlocks: number, formatVersion: number): Manifest {
  return {
    uuid: randomBytes(16).toString('hex'),
    blockSize,
    dataBlocks,
    formatVersion,
    epoch: 1,
    checkpoint: { key: checkpointKey(1, 1), generation: 1 },
    journal: { epoch: 1, seq: 0 },
  };
}

/** Creates the manifest; ALREADY_EXISTS if the prefix holds an image. */
export async function createManifest(store: ObjectStore, m: Manifest): Promise<string> {
  try {
    return await store.putIfAbsent(MANIFEST_KEY, encodeManifest(m));
  } catch (err) {
    if (err instanceof ObjectConflict) fail('ALREADY_EXISTS', `${store.description} already holds an iomapd object image`);
    throw err;
  }
}
