// What the engine and the control channel get of an open image: the backend-independent mapper
// and volumes, and the backend's data area and durability (store-contract.ts). Never the store
// itself: whoever opened the store (the composition root) is the only one to close it.
import type { Mapper } from './mapper.ts';
import type { DataArea, Durability } from './store-contract.ts';
import type { Volumes } from './volumes.ts';

export interface StoreParts {
  readonly mapper: Mapper;
  readonly volumes: Volumes;
  readonly data: DataArea;
  readonly durability: Durability;
}
