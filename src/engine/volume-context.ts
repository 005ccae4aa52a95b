// What the per-request paths need to know about the volume they serve.
import type { ImageStore } from '../fs/image-store.ts';
import type { Logger } from '../util/log.ts';
import type { VolumeCounters } from './counters.ts';

export interface VolumeContext {
  readonly store: ImageStore;
  readonly name: string;
  readonly counters: VolumeCounters;
  readonly log: Logger | null;
}
