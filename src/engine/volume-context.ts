// What the per-request paths need to know about the volume they serve: the mapper (begin/end),
// the data area, and where to count and log. Nothing else of the store.
import type { Mapper } from '../fs/mapper.ts';
import type { DataArea } from '../fs/store-contract.ts';
import type { Logger } from '../util/log.ts';
import type { VolumeCounters } from './counters.ts';

export interface VolumeContext {
  readonly mapper: Mapper;
  readonly data: DataArea;
  readonly name: string;
  readonly counters: VolumeCounters;
  readonly log: Logger | null;
}
