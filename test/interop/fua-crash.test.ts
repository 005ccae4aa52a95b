// FUA durability without FLUSH after a simulated power loss, driven by a real client (semantics §9
// cases 16-19 and 23 over the wire): NbdServer runs in this process over an image store on
// CrashStorage (the image pre-filled with garbage); libnbd's Python API sends FUA and plain writes,
// zeroes and trims; then the storage loses power (unsynced writes dropped, applied or torn per
// sector), the store is reopened from what survived, and every 512-byte sector must hold a value
// the client could have left there: exactly the FUA-acknowledged one where FUA came last, the old
// or the new value elsewhere, and never garbage. verify() must be clean.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { CrashStorage } from '../support/crash-storage.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { ExportRegistry } from '../../src/server/export-registry.ts';
import { NbdServer } from '../../src/server/nbd-server.ts';
import { nbdUri } from '../../src/util/listen-address.ts';
import { silentLogger } from '../../src/util/log.ts';
import { requireTool, runPython } from './harness.ts';

const B = 4096;
const SECTOR = 512;
const VOLUME = 512 * B;
const GARBAGE = 0xee;

type Op =
  | { kind: 'write'; offset: number; length: number; byte: number; fua: boolean }
  | { kind: 'zero'; offset: number; length: number; fua: boolean }
  | { kind: 'trim'; offset: number; length: number; fua: boolean }
  | { kind: 'flush' };

const w = (block: number, byte: number, fua: boolean, within = 0, length = B): Op => ({ kind: 'write', offset: block * B + within, length, byte, fua });

/** Base state made durable by FLUSH, then a mix in which no FLUSH follows. */
const OPS: Op[] = [
  ...Array.from({ length: 16 }, (_, i) => w(i, 0x10, false)),
  { kind: 'zero', offset: 16 * B, length: 16 * B, fua: false }, // NO_HOLE: unwritten
  { kind: 'flush' },
  w(0, 0x21, true, 1024, SECTOR), // pure overwrite: FUA shortcut
  w(1, 0x22, false), // plain overwrite
  w(40, 0x23, true), // FUA into a hole
  w(41, 0x24, true, 2048, SECTOR), // FUA sub-block into a hole (zero pads)
  w(48, 0x25, false), // plain into a hole
  w(49, 0x26, false, 512, SECTOR),
  w(16, 0x27, true, 1536, SECTOR), // FUA sub-block into unwritten
  w(17, 0x28, false), // plain into unwritten
  w(60, 0x29, false), // plain hole fill, then a FUA overwrite of it: must commit the fill (E11)
  w(60, 0x2a, true, 0, 1024),
  w(2, 0x2b, false),
  w(3, 0x2c, true), // pure overwrite after a plain one elsewhere
  { kind: 'write', offset: 31 * B, length: 2 * B, byte: 0x2d, fua: true }, // unwritten + hole: full path
  { kind: 'trim', offset: 5 * B, length: B, fua: false },
  { kind: 'trim', offset: 6 * B, length: B, fua: true },
  { kind: 'zero', offset: 7 * B, length: B, fua: true },
  w(8, 0x2e, true, 0, SECTOR),
  w(8, 0x2f, false, 0, SECTOR), // a plain write after a FUA one: either may survive
  ...Array.from({ length: 4 }, (_, i) => w(100 + i, 0x30 + i, false)),
];

/** Per sector, the values a crash may leave there (0 for zeros). */
function allowedAfter(ops: readonly Op[]): Array<Set<number>> {
  const sectors = VOLUME / SECTOR;
  const allowed = Array.from({ length: sectors }, () => new Set([0]));
  const latest = new Array<number>(sectors).fill(0);
  for (const op of ops) {
    if (op.kind === 'flush') {
      for (let s = 0; s < sectors; s++) allowed[s] = new Set([latest[s]!]);
      continue;
    }
    const value = op.kind === 'write' ? op.byte : 0;
    for (let s = op.offset / SECTOR; s < (op.offset + op.length) / SECTOR; s++) {
      latest[s] = value;
      if (op.fua) allowed[s] = new Set([value]);
      else allowed[s]!.add(value);
    }
  }
  return allowed;
}

const SCRIPT = String.raw`
import json, sys, nbd
ops = json.loads(open(sys.argv[2]).read())
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for op in ops:
    fua = nbd.CMD_FLAG_FUA if op.get('fua') else 0
    if op['kind'] == 'write':
        h.pwrite(bytes([op['byte']]) * op['length'], op['offset'], fua)
    elif op['kind'] == 'zero':
        h.zero(op['length'], op['offset'], fua | nbd.CMD_FLAG_NO_HOLE)
    elif op['kind'] == 'trim':
        h.trim(op['length'], op['offset'], fua)
    else:
        h.flush()
# No FLUSH, and the connection just goes away: only what FUA made durable is promised.
h.shutdown()
print('done', len(ops))
`;

/** Runs `ops` through a real client, loses power right after its last reply, checks what survived. */
async function crashAfter(ops: readonly Op[], seed: number, dir: string): Promise<void> {
  const crash = new CrashStorage(Buffer.alloc(8 << 20, GARBAGE), seed);
  const store = await ImageStore.create(crash, { dataBytes: 4 << 20, journalBytes: 256 << 10 });
  await store.createVolume('vol', VOLUME);
  const engine = new Engine(store);
  const registry = new ExportRegistry();
  registry.add({ name: 'vol', description: '', device: engine.device('vol') });
  const server = new NbdServer(registry, silentLogger);
  const socket = join(dir, `nbd-${ops.length}-${seed}.sock`);
  await server.listenUnix(socket);
  let image: Buffer;
  try {
    const opsFile = join(dir, 'ops.json');
    await writeFile(opsFile, JSON.stringify(ops));
    const host = { uri: nbdUri('unix', socket, 'vol'), dir, output: () => '(in-process server)' };
    await runPython(host, SCRIPT, [host.uri, opsFile]);
    if (ops === OPS) {
      const c = engine.counters('vol');
      expect(c.fuaShortcuts, 'pure FUA overwrites take the shortcut').toBe(3);
      expect(c.journalCommits).toBeGreaterThanOrEqual(8);
    }
    // Power loss now, with the server still up: nothing after the client's last reply is durable.
    image = crash.crashImage();
  } finally {
    await server.shutdown(2000);
    await store.close();
  }

  const reopened = await ImageStore.open(new MemoryStorage(image));
  expect(reopened.verify().errors, `seed ${seed}: verify`).toEqual([]);
  const got = Buffer.alloc(VOLUME);
  await new Engine(reopened).device('vol').read(got, 0);
  const allowed = allowedAfter(ops);
  const wrong: string[] = [];
  for (let s = 0; s < VOLUME / SECTOR; s++) {
    const sector = got.subarray(s * SECTOR, (s + 1) * SECTOR);
    const v = sector[0]!;
    if (!sector.every((x) => x === v) || !allowed[s]!.has(v)) {
      wrong.push(`block ${Math.floor((s * SECTOR) / B)} sector ${s % 8}: ${sector.subarray(0, 4).toString('hex')}..., allowed ${[...allowed[s]!].map((x) => x.toString(16))}`);
    }
  }
  expect(wrong, `crash after op ${ops.length - 1} (${JSON.stringify(ops.at(-1))}), seed ${seed}`).toEqual([]);
  await reopened.close();
}

describe('FUA over the wire survives a power loss without FLUSH', () => {
  it('every FUA-acknowledged write is there, nothing else reads back that was never written, verify() is clean', async (ctx) => {
    requireTool(ctx, 'python3-nbd');
    const dir = await mkdtemp(join(tmpdir(), 'iomapd-fua-crash-'));
    try {
      // Power fails right after each FUA reply (a later full-path commit would hide a FUA that
      // forgot its own), and after the whole sequence with several seeds.
      const cuts = OPS.flatMap((op, i) => (op.kind !== 'flush' && op.fua ? [i + 1] : []));
      for (const cut of cuts) await crashAfter(OPS.slice(0, cut), cut, dir);
      for (const seed of [1, 2, 3]) await crashAfter(OPS, seed, dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
