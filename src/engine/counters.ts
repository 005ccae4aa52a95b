// Per-volume counters (semantics Z3: client bytes, pad bytes, copy-up bytes and image bytes are
// kept apart). Plain numbers, bumped on the hot path; `iomapd stats` and tests read them.
export interface VolumeCounters {
  /** Bytes clients read and wrote (payload only). */
  clientBytesRead: number;
  clientBytesWritten: number;
  /** Read bytes served as zeros from holes and unwritten space, with no backing read. */
  zeroFilledBytes: number;
  /** Bytes zeroed by WRITE_ZEROES / TRIM (metadata or data). */
  bytesZeroed: number;
  /** Zero pads written around sub-block writes into unwritten space (Z2). */
  padBytes: number;
  /** Old bytes copied up into a copy-on-write block (E9). */
  copyUpBytes: number;
  /** Bytes read from and written to the image's data area. */
  imageBytesRead: number;
  imageBytesWritten: number;
  /** FUA writes that only synced data (D3). */
  fuaShortcuts: number;
  /** Journal commits this volume asked for (full-path FUA and FLUSH). */
  journalCommits: number;
  flushes: number;
  /** Copy-on-write mappings written (one per shared piece). */
  cowCopies: number;
  /** Requests that failed for lack of space. */
  allocationFailures: number;
  /** Requests that failed with any error. */
  errors: number;
}

export function newCounters(): VolumeCounters {
  return {
    clientBytesRead: 0,
    clientBytesWritten: 0,
    zeroFilledBytes: 0,
    bytesZeroed: 0,
    padBytes: 0,
    copyUpBytes: 0,
    imageBytesRead: 0,
    imageBytesWritten: 0,
    fuaShortcuts: 0,
    journalCommits: 0,
    flushes: 0,
    cowCopies: 0,
    allocationFailures: 0,
    errors: 0,
  };
}
