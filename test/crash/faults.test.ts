// Fault injection (issue 7 item 3): a fixed workload over the wire, run once per storage call with
// that call failing (EIO, then ENOSPC): every write, sync and read the workload makes, in turn.
// Each time: the request that hit the fault gets exactly that errno (ENOSPC or EIO), nothing before
// it fails, the connection stays usable, reads keep working, and after a failed sync (or any
// failed metadata write) every later write-type request and FLUSH gets EIO instead of a guess.
// Afterwards the live store verifies clean with nothing reserved or pinned, and the image, reopened,
// verifies clean (no leaks) and holds every write acknowledged before a successful FLUSH or with FUA.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { ExportRegistry } from '../../src/server/export-registry.ts';
import { toNbdErrno } from '../../src/server/errno.ts';
import { NbdServer } from '../../src/server/nbd-server.ts';
import { FaultStorage, type FaultErrno, type FaultOp } from '../support/fault-storage.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { silentLogger } from '../../src/util/log.ts';
import { compare, pattern, SECTOR, VolumeModel } from '../support/crash/sector-model.ts';
import { TestClient } from '../support/test-client.ts';
import { CMD, ERR, FLAG } from '../support/wire.ts';

const SECTORS = 256; // 32 blocks of 4 KiB
const NBD_ERRNO: Record<FaultErrno, number> = { EIO: ERR.EIO, ENOSPC: ERR.ENOSPC };

type Step =
  | { cmd: 'write'; sector: number; count: number; fua?: boolean }
  | { cmd: 'zero'; sector: number; count: number; noHole?: boolean; fua?: boolean }
  | { cmd: 'trim'; sector: number; count: number }
  | { cmd: 'read'; sector: number; count: number }
  | { cmd: 'flush' }
  | { cmd: 'snapshot' };

/** Every mapping type and durability path once: hole fill, pads, overwrite, FUA both ways, TRIM, zeroing, COW with copy-up. */
const WORKLOAD: Step[] = [
  { cmd: 'write', sector: 0, count: 16 }, // hole fill, two blocks
  { cmd: 'write', sector: 9, count: 1 }, // sub-block, in place
  { cmd: 'write', sector: 33, count: 2 }, // sub-block into a hole: padded
  { cmd: 'write', sector: 0, count: 8, fua: true }, // its map change is not durable: full path
  { cmd: 'flush' },
  { cmd: 'write', sector: 0, count: 8, fua: true }, // pure overwrite: data sync only
  { cmd: 'read', sector: 0, count: 64 },
  { cmd: 'trim', sector: 8, count: 8 },
  { cmd: 'zero', sector: 32, count: 8 }, // written block: punched
  { cmd: 'zero', sector: 48, count: 8, noHole: true }, // hole: provisioned unwritten
  { cmd: 'write', sector: 50, count: 2 }, // into unwritten: padded, converted
  { cmd: 'flush' },
  { cmd: 'snapshot' },
  { cmd: 'write', sector: 1, count: 2 }, // shared: COW with copy-up
  { cmd: 'write', sector: 64, count: 40, fua: true }, // multi-block hole fill, FUA
  { cmd: 'zero', sector: 4, count: 1, fua: true }, // sub-block zero of a written block
  { cmd: 'read', sector: 0, count: SECTORS },
  { cmd: 'flush' },
];

const isWriteType = (s: Step): boolean => s.cmd !== 'read';

interface Outcome {
  /** [step index, NBD error] for every request. */
  errors: Array<[number, number]>;
  calls: Record<FaultOp, number>;
  problems: string[];
}

async function runWorkload(fault: { op: FaultOp; nth: number; errno: FaultErrno } | null): Promise<Outcome> {
  const inner = new MemoryStorage(Buffer.alloc(4 << 20, 0xee));
  const storage = new FaultStorage(inner);
  const store = await ImageStore.create(storage, { dataBytes: 2 << 20, journalBytes: 16 << 10 });
  await store.createVolume('v', SECTORS * SECTOR);
  const engine = new Engine(store);
  const registry = new ExportRegistry();
  registry.add({ name: 'v', description: '', device: engine.device('v') });
  registry.closeAll = async () => {}; // the test owns the store (it may be poisoned on purpose)
  const server = new NbdServer(registry, silentLogger);
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-faults-'));
  const problems: string[] = [];
  const errors: Array<[number, number]> = [];
  const before = { ...storage.counts };
  let client: TestClient | null = null;
  try {
    await server.listenUnix(join(dir, 'nbd.sock'));
    client = await TestClient.connect({ path: join(dir, 'nbd.sock') });
    await client.negotiate({ name: 'v' });
    if (fault) storage.failOn(fault);
    const model = new VolumeModel(SECTORS);
    let value = 1;
    let cookie = 1n;
    for (const [i, step] of WORKLOAD.entries()) {
      if (step.cmd === 'snapshot') {
        // Not a request, but it commits like a FLUSH: judged as one, with the errno it would get.
        const mark = model.flushBegin();
        const errno = await engine.snapshot('v', 'snap').then(() => 0, (err: unknown) => toNbdErrno(err).errno);
        errors.push([i, errno]);
        if (errno === 0) model.flushEnd(mark);
        continue;
      }
      if (step.cmd === 'flush') {
        const mark = model.flushBegin();
        client.send({ type: CMD.FLUSH, cookie: cookie++ });
        const r = await client.simpleReply();
        errors.push([i, r.error]);
        if (r.error === 0) model.flushEnd(mark);
        continue;
      }
      const offset = step.sector * SECTOR;
      const length = step.count * SECTOR;
      if (step.cmd === 'read') {
        client.send({ type: CMD.READ, cookie: cookie++, offset, length });
        const r = await client.simpleReply(length);
        errors.push([i, r.error]);
        if (r.error === 0) {
          const whole = Buffer.alloc(SECTORS * SECTOR);
          r.data.copy(whole, offset);
          const bad = compare(model, whole).filter((m) => m.sector >= step.sector && m.sector < step.sector + step.count);
          if (bad.length > 0) problems.push(`step ${i}: live read mismatch ${JSON.stringify(bad)}`);
        }
        continue;
      }
      const v = step.cmd === 'write' ? value++ : 0;
      const seq = model.begin(step.sector, step.count, v);
      const fua = 'fua' in step && step.fua === true;
      const flags = (fua ? FLAG.FUA : 0) | (step.cmd === 'zero' && step.noHole ? FLAG.NO_HOLE : 0);
      const type = step.cmd === 'write' ? CMD.WRITE : step.cmd === 'zero' ? CMD.WRITE_ZEROES : CMD.TRIM;
      client.send({ type, flags, cookie: cookie++, offset, length, ...(step.cmd === 'write' ? { payload: pattern(step.count, step.sector, v) } : {}) });
      const r = await client.simpleReply();
      errors.push([i, r.error]);
      if (r.error === 0) model.ack(step.sector, step.count, seq, fua);
    }
    const calls = diff(storage.counts, before); // the workload's calls: faults target these
    // The connection is still usable: a whole-volume read on it works and agrees with the model.
    client.send({ type: CMD.READ, cookie: cookie++, offset: 0, length: SECTORS * SECTOR });
    const last = await client.simpleReply(SECTORS * SECTOR);
    if (last.error !== 0) problems.push(`final read failed with ${last.error}`);
    else for (const m of compare(model, last.data)) problems.push(`final read: sector ${m.sector} reads ${m.got}, allowed ${m.allowed}`);
    // Invariants of the live store: nothing reserved, pinned or taken is left behind.
    problems.push(...store.verify().errors.map((e) => `live verify: ${e}`));
    if (store.alloc.reservedBlocks !== 0 || store.alloc.pinCount !== 0 || store.alloc.takenBlocks !== 0) {
      problems.push(`left behind: reserved ${store.alloc.reservedBlocks}, pins ${store.alloc.pinCount}, taken ${store.alloc.takenBlocks}`);
    }
    // Restart: the image as written (memory keeps every completed write) opens, verifies clean
    // (no leaked blocks) and holds everything flushed or written with FUA.
    await store.abandon();
    const reopened = await ImageStore.open(new MemoryStorage(inner.snapshot()));
    problems.push(...reopened.verify().errors.map((e) => `after reopen: ${e}`));
    const data = Buffer.alloc(SECTORS * SECTOR);
    await new Engine(reopened).device('v').read(data, 0);
    for (const m of compare(model, data)) problems.push(`after reopen: sector ${m.sector} reads ${m.got}, allowed ${JSON.stringify(m.allowed)}`);
    await reopened.abandon();
    return { errors, calls, problems };
  } finally {
    client?.destroy();
    await server.shutdown(1000);
    await rm(dir, { recursive: true, force: true });
  }
}

function diff(now: Record<FaultOp, number>, before: Record<FaultOp, number>): Record<FaultOp, number> {
  return { read: now.read - before.read, write: now.write - before.write, sync: now.sync - before.sync, resize: now.resize - before.resize };
}

/** Checks the replies of a faulted run; returns what is wrong. */
function judge(out: Outcome, fault: { op: FaultOp; errno: FaultErrno }): string[] {
  const problems = [...out.problems];
  const first = out.errors.findIndex(([, e]) => e !== 0);
  if (first < 0) return problems; // the fault hit the snapshot step (not a request), or nothing visible
  const [step, errno] = out.errors[first]!;
  if (errno !== NBD_ERRNO[fault.errno]) problems.push(`step ${step} got errno ${errno}, injected ${fault.errno}`);
  const later = out.errors.slice(first + 1);
  for (const [i, e] of later) {
    if (WORKLOAD[i]!.cmd === 'read' && e !== 0) problems.push(`read at step ${i} failed with ${e} after the fault`);
  }
  const writes = later.filter(([i]) => isWriteType(WORKLOAD[i]!)).map(([, e]) => e);
  // Either the image carries on (a failed data write is that request's failure alone), or it is
  // poisoned and refuses every later write with EIO; a failed sync always poisons it.
  const poisoned = writes.length > 0 && writes[0] !== 0;
  if (fault.op === 'sync' && writes.some((e) => e !== ERR.EIO)) problems.push(`after a failed sync, writes got ${writes} (want EIO)`);
  if (poisoned && writes.some((e) => e !== ERR.EIO)) problems.push(`poisoned image answered writes with ${writes} (want EIO)`);
  if (!poisoned && writes.some((e) => e !== 0)) problems.push(`writes after a recovered fault got ${writes}`);
  return problems;
}

describe('fault injection at every storage call', () => {
  it('the fixed workload runs clean without faults', async () => {
    const out = await runWorkload(null);
    expect(out.problems).toEqual([]);
    expect(out.errors.every(([, e]) => e === 0)).toBe(true);
  });

  for (const errno of ['EIO', 'ENOSPC'] as const) {
    it(`${errno} at each write, sync and read in turn: right errno, usable connection, invariants hold`, async () => {
      const { calls } = await runWorkload(null);
      const failures: string[] = [];
      let cases = 0;
      for (const op of ['write', 'sync', 'read'] as const) {
        for (let nth = 1; nth <= calls[op]; nth++) {
          cases++;
          const problems = judge(await runWorkload({ op, nth, errno }), { op, errno });
          if (problems.length > 0) failures.push(`${errno} on ${op} #${nth}:\n  ${problems.slice(0, 6).join('\n  ')}`);
        }
      }
      console.log(`fault injection ${errno}: ${cases} cases (${calls.write} writes, ${calls.sync} syncs, ${calls.read} reads), ${failures.length} failing`);
      expect(failures).toEqual([]);
      expect(cases).toBeGreaterThanOrEqual(20);
    });
  }
});
