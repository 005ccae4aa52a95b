// What every crash campaign checks, in one place: each 512-byte sector a workload writes carries a
// self-describing pattern (a write id and the sector's own address), and a per-sector model says
// which of those patterns may be read back after a crash.
//
// Model (semantics D1, D5, D11): per sector, the values written to it in order, each with a
// sequence number. A FLUSH moves the sector's floor to the last write acknowledged before the
// FLUSH was sent; an acknowledged FUA write moves it to itself. After a crash the sector must read
// as the floor value or any value written after it (acknowledged, failed or still in flight):
// never an older value, never zeros that were not written, never garbage or another sector's data.
// Writers keep at most one write in flight per sector, so the order per sector is total.

export const SECTOR = 512;
const MAGIC = 0x5ec7_0a11;
const WORD = 16;

/** Fills `buf` (whole sectors) with the pattern of value `value` for sectors first, first+1, ... */
export function fillPattern(buf: Buffer, firstSector: number, value: number): Buffer {
  if (value === 0) return buf.fill(0);
  for (let s = 0; s * SECTOR < buf.length; s++) {
    const base = s * SECTOR;
    for (let w = 0; w < SECTOR / WORD; w++) {
      const at = base + w * WORD;
      buf.writeUInt32LE(MAGIC, at);
      buf.writeUInt32LE(value, at + 4);
      buf.writeUInt32LE(firstSector + s, at + 8);
      buf.writeUInt32LE(w, at + 12);
    }
  }
  return buf;
}

export function pattern(sectors: number, firstSector: number, value: number): Buffer {
  return fillPattern(Buffer.alloc(sectors * SECTOR), firstSector, value);
}

/** The value a sector holds: 0 for zeros, a write id, or -1 for anything else (garbage, another sector's bytes, a mix). */
export function sectorValue(buf: Buffer, at: number, sector: number): number {
  if (buf.readUInt32LE(at) !== MAGIC) return isZero(buf, at) ? 0 : -1;
  const value = buf.readUInt32LE(at + 4);
  for (let w = 0; w < SECTOR / WORD; w++) {
    const p = at + w * WORD;
    if (buf.readUInt32LE(p) !== MAGIC || buf.readUInt32LE(p + 4) !== value || buf.readUInt32LE(p + 8) !== sector || buf.readUInt32LE(p + 12) !== w) return -1;
  }
  return value;
}

function isZero(buf: Buffer, at: number): boolean {
  for (let i = at; i < at + SECTOR; i++) if (buf[i] !== 0) return false;
  return true;
}

interface Entry {
  readonly seq: number;
  readonly value: number;
}

/** A FLUSH in flight: the last acknowledged write of every sector when it was sent. */
export type FlushMark = Float64Array;

let nextSeq = 1;

export class VolumeModel {
  readonly sectors: number;
  /** Per sector: values from the floor on, oldest first; entries[s][0] is the floor. */
  private readonly entries: Entry[][];
  private readonly lastAcked: Float64Array;
  /** Open recordFrom() collections (snapshots being taken). */
  private readonly recorders = new Set<Entry[][]>();

  constructor(sectors: number, initial = 0) {
    this.sectors = sectors;
    this.entries = [];
    this.lastAcked = new Float64Array(sectors);
    for (let s = 0; s < sectors; s++) {
      const e = { seq: nextSeq++, value: initial };
      this.entries.push([e]);
      this.lastAcked[s] = e.seq;
    }
  }

  /** A write of `value` to sectors [first, first+count) is being sent; returns its sequence number. */
  begin(first: number, count: number, value: number): number {
    const seq = nextSeq++;
    for (let s = first; s < first + count; s++) {
      this.entries[s]!.push({ seq, value });
      for (const r of this.recorders) r[s]!.push({ seq, value });
    }
    return seq;
  }

  /** The write was acknowledged; with FUA it is durable now. */
  ack(first: number, count: number, seq: number, fua: boolean): void {
    for (let s = first; s < first + count; s++) {
      if (seq > this.lastAcked[s]!) this.lastAcked[s] = seq;
      if (fua) this.raiseFloor(s, seq);
    }
  }

  /** Call when a FLUSH (or anything that commits, like a snapshot) is sent. */
  flushBegin(): FlushMark {
    return Float64Array.from(this.lastAcked);
  }

  /** The FLUSH sent at `mark` completed: everything acknowledged before it is durable. */
  flushEnd(mark: FlushMark): void {
    for (let s = 0; s < this.sectors; s++) this.raiseFloor(s, mark[s]!);
  }

  private raiseFloor(s: number, seq: number): void {
    const list = this.entries[s]!;
    let i = 0;
    while (i + 1 < list.length && list[i + 1]!.seq <= seq) i++;
    if (i > 0) list.splice(0, i);
  }

  /** The values sector `s` may hold after a crash. */
  allowed(s: number): number[] {
    return this.entries[s]!.map((e) => e.value);
  }

  /** The value of the last write sent to sector `s` (what a read sees once it is acknowledged). */
  latest(s: number): number {
    return this.entries[s]!.at(-1)!.value;
  }

  /** After a verified recovery: the sector now durably holds `value` and nothing is in flight. */
  settle(s: number, value: number): void {
    const e = { seq: nextSeq++, value };
    this.entries[s] = [e];
    this.lastAcked[s] = e.seq;
  }

  /**
   * For a snapshot asked for at `mark` (flushBegin) while writes go on: collects, per sector, the
   * value acknowledged by then and every value written until finish() (a snapshot drains in-flight
   * writes, K2, and may include any of them). Kept apart from this model's floors, so a FLUSH or
   * FUA that prunes old values here meanwhile does not prune them from the snapshot's candidates.
   */
  recordFrom(mark: FlushMark): { finish(): VolumeModel } {
    const lists = this.entries.map((list, s) => list.filter((e) => e.seq >= mark[s]!));
    this.recorders.add(lists);
    return {
      finish: () => {
        this.recorders.delete(lists);
        const m = new VolumeModel(this.sectors);
        for (let s = 0; s < this.sectors; s++) {
          m.entries[s] = lists[s]!.length > 0 ? lists[s]! : [this.entries[s]!.at(-1)!];
          m.lastAcked[s] = m.entries[s]![0]!.seq;
        }
        return m;
      },
    };
  }

  /**
   * A snapshot or clone taken now, with nothing in flight and everything committed: each sector
   * holds what this volume holds from its last acknowledged write on.
   */
  copyCurrent(): VolumeModel {
    const m = new VolumeModel(this.sectors);
    for (let s = 0; s < this.sectors; s++) {
      m.entries[s] = this.entries[s]!.filter((e) => e.seq >= this.lastAcked[s]!);
      m.lastAcked[s] = this.lastAcked[s]!;
    }
    return m;
  }
}

export interface Mismatch {
  readonly sector: number;
  readonly got: number;
  readonly allowed: number[];
}

/** Compares `data` (the whole volume from sector 0) with the model; returns the first few mismatches. */
export function compare(model: VolumeModel, data: Buffer, limit = 5): Mismatch[] {
  const out: Mismatch[] = [];
  for (let s = 0; s < model.sectors && out.length < limit; s++) {
    const got = sectorValue(data, s * SECTOR, s);
    const allowed = model.allowed(s);
    if (got < 0 || !allowed.includes(got)) out.push({ sector: s, got, allowed });
  }
  return out;
}
