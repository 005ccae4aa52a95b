// Re-sent writes (issue 7 item 7, semantics K3): the kernel re-sends a timed-out request on another
// connection after tearing the first one down, so one write can arrive twice. The copy on the dead
// connection must be drained, not abandoned: it keeps its range lock until its data and completion
// stage are done, so it can never land after a newer acknowledged write to the same range.
//
// Rig: the engine over storage that holds the first connection's data write (the stale copy) in
// the middle of its I/O, with the range lock taken. The client kills that connection, re-sends the
// write on a second one, then writes newer data; only then is the stale copy let go.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { ExportRegistry } from '../../src/server/export-registry.ts';
import { NbdServer } from '../../src/server/nbd-server.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { PassThroughStorage } from '../support/pass-through-storage.ts';
import { silentLogger } from '../../src/util/log.ts';
import { TestClient } from '../support/test-client.ts';
import { Gate, sleep, until } from '../support/test-devices.ts';
import { CMD, FLAG } from '../support/wire.ts';

const B = 4096;
const STALE = 0x51;
const NEWER = 0x52;

/** Storage that holds the first write carrying a 512-byte run of `marker` (data, not metadata) until the gate opens. */
class HoldingStorage extends PassThroughStorage {
  readonly gate = new Gate();
  held = false;
  /** The held write has reached the inner storage. */
  heldDone = false;
  private marker: number | null = null;


  holdFirstWriteOf(marker: number): void {
    this.marker = marker;
  }

  override async write(buf: Buffer, offset: number): Promise<void> {
    if (this.marker !== null && buf.includes(Buffer.alloc(512, this.marker))) {
      this.marker = null;
      this.held = true;
      await this.gate.wait;
      await this.inner.write(buf, offset);
      this.heldDone = true;
      return;
    }
    return super.write(buf, offset);
  }
}

interface Rig {
  storage: HoldingStorage;
  mem: MemoryStorage;
  store: ImageStore;
  engine: Engine;
  server: NbdServer;
  path: string;
  dir: string;
}

let rig: Rig | null = null;

async function makeRig(): Promise<Rig> {
  const mem = new MemoryStorage(Buffer.alloc(4 << 20, 0xee));
  const storage = new HoldingStorage(mem);
  const store = await ImageStore.create(storage, { dataBytes: 2 << 20, journalBytes: 64 << 10 });
  await store.createVolume('v', 64 * B);
  const engine = new Engine(store);
  const registry = new ExportRegistry();
  registry.add({ name: 'v', description: '', device: engine.device('v') });
  const server = new NbdServer(registry, silentLogger);
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-resend-'));
  const path = join(dir, 'nbd.sock');
  await server.listenUnix(path);
  return { storage, mem, store, engine, server, path, dir };
}

afterEach(async () => {
  if (!rig) return;
  rig.storage.gate.open();
  await rig.server.shutdown(2000).catch(() => {});
  await rm(rig.dir, { recursive: true, force: true });
  rig = null;
});

async function client(): Promise<TestClient> {
  const c = await TestClient.connect({ path: rig!.path });
  await c.negotiate({ name: 'v' });
  return c;
}

/** The volume's bytes now, and after a restart from what the storage holds. */
async function contents(offset: number, length: number): Promise<{ live: Buffer; reopened: Buffer }> {
  const live = Buffer.alloc(length);
  await rig!.engine.device('v').read(live, offset);
  const again = await ImageStore.open(new MemoryStorage(rig!.mem.snapshot()));
  const reopened = Buffer.alloc(length);
  await new Engine(again).device('v').read(reopened, offset);
  await again.abandon();
  return { live, reopened };
}

const cases = [
  { name: 'a whole-block write into a hole (hole fill)', offset: 4 * B, length: B, setup: null },
  { name: 'a sub-block write into a hole (padded block)', offset: 8 * B + 512, length: 1024, setup: null },
  { name: 'an overwrite in place', offset: 12 * B, length: 2 * B, setup: 'written' as const },
];

describe('re-sent writes (K3)', () => {
  for (const c of cases) {
    it(`a stale copy of ${c.name} on a dead connection never lands after a newer acknowledged write`, async () => {
      rig = await makeRig();
      if (c.setup === 'written') {
        const w = await client();
        w.send({ type: CMD.WRITE, flags: FLAG.FUA, cookie: 1n, offset: c.offset, payload: Buffer.alloc(c.length, 0x33) });
        expect((await w.simpleReply()).error).toBe(0);
        w.destroy();
      }
      rig.storage.holdFirstWriteOf(STALE);
      // Connection A sends the write; its data write is held with the range lock taken.
      const a = await client();
      a.send({ type: CMD.WRITE, cookie: 7n, offset: c.offset, payload: Buffer.alloc(c.length, STALE) });
      await until(() => rig!.storage.held, 3000, 'the stale write to reach the storage');
      // The client gives up on A (kernel timeout): the socket is torn down, the request re-sent on B.
      a.destroy();
      await until(() => rig!.server.connectionCount === 1 || rig!.server.connectionCount === 0, 3000, 'A to close');
      const b = await client();
      b.send({ type: CMD.WRITE, cookie: 7n, offset: c.offset, payload: Buffer.alloc(c.length, STALE) });
      // The re-sent copy waits behind the stale one (K1): no reply while it is held.
      await b.expectSilence(150);
      // Newer data for the same range, pipelined behind it, and a FLUSH.
      b.send({ type: CMD.WRITE, cookie: 8n, offset: c.offset, payload: Buffer.alloc(c.length, NEWER) });
      await sleep(50);
      rig.storage.gate.open();
      const replies = [await b.simpleReply(), await b.simpleReply()];
      expect(replies.map((r) => [r.cookie, r.error])).toEqual([
        [7n, 0],
        [8n, 0],
      ]);
      b.send({ type: CMD.FLUSH, cookie: 9n });
      expect((await b.simpleReply()).error).toBe(0);
      // Let anything left of the dead connection's request finish before looking.
      await until(() => rig!.storage.heldDone, 3000, 'the stale write to land');
      await sleep(50);
      const { live, reopened } = await contents(c.offset, c.length);
      expect(live.every((x) => x === NEWER)).toBe(true);
      expect(reopened.every((x) => x === NEWER)).toBe(true);
      expect(rig.store.verify().errors).toEqual([]);
    });
  }

  it('the re-send answered before the newer write is sent (the kernel order) ends with the newer data too', async () => {
    rig = await makeRig();
    rig.storage.holdFirstWriteOf(STALE);
    const a = await client();
    a.send({ type: CMD.WRITE, cookie: 1n, offset: 0, payload: Buffer.alloc(B, STALE) });
    await until(() => rig!.storage.held, 3000, 'the stale write to reach the storage');
    a.destroy();
    const b = await client();
    b.send({ type: CMD.WRITE, cookie: 1n, offset: 0, payload: Buffer.alloc(B, STALE) });
    setTimeout(() => rig?.storage.gate.open(), 100);
    expect((await b.simpleReply(0, 5000)).error).toBe(0);
    b.send({ type: CMD.WRITE, flags: FLAG.FUA, cookie: 2n, offset: 0, payload: Buffer.alloc(B, NEWER) });
    expect((await b.simpleReply()).error).toBe(0);
    await until(() => rig!.storage.heldDone, 3000, 'the stale write to land');
    await sleep(50);
    const { live, reopened } = await contents(0, B);
    expect(live.every((x) => x === NEWER)).toBe(true);
    expect(reopened.every((x) => x === NEWER)).toBe(true);
  });
});
