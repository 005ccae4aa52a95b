// Micro-benchmark of one request below the socket: dispatch() of 4 KiB READs (and WRITEs) at queue
// depth 32 against an image volume on memory storage (the engine alone), a memory device, the
// raw-file device and an image-store volume on a file, in process, so
// the figures hold no protocol parsing, socket I/O or client. Reports wall time and process CPU
// (main thread and thread pool) per request, and the promises each request makes (counted with an
// async hook in a separate pass: a figure the machine's load cannot blur). Uses the benchmark data in bench/tmp (npm run bench),
// opened read-only for reads; writes go to a scratch copy.
//   node scripts/bench/dispatch-micro.ts [N] [FILTER]   (FILTER: run only cases whose name contains it)
import { createHook } from 'node:async_hooks';
import { copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Cmd } from '../../src/protocol/constants.ts';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import { RawFileDevice } from '../../src/devices/raw-file-device.ts';
import type { BlockDevice } from '../../src/engine/block-device.ts';
import { Engine } from '../../src/engine/engine.ts';
import { openImageFile } from '../../src/fs/image-file.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { replySent } from '../../src/server/io-buffers.ts';
import { dispatch } from '../../src/server/dispatch.ts';
import type { ValidRequest } from '../../src/server/validate.ts';
import { loadConfig } from './config.ts';

const N = Number(process.argv[2] ?? 200_000);
const QD = 32;
const only = process.argv[3] ?? '';
const cfg = loadConfig();
const raw = join(cfg.dir, 'main.raw');
const image = join(cfg.dir, 'main.iomapd');

async function measure(name: string, device: BlockDevice, type: number): Promise<void> {
  if (!name.includes(only)) return;
  const ctx = { device, style: 'structured' as const, contexts: new Map<string, number>(), metrics: null };
  const blocks = Math.floor(device.size / 4096);
  const payload = Buffer.alloc(4096, 7);
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < N) {
      const i = next++;
      const offset = ((i * 2654435761) % blocks) * 4096;
      const req: ValidRequest = { type, flags: 0, cookie: BigInt(i), offset, length: 4096, wireOffset: BigInt(offset) };
      const reply = await dispatch(ctx, req, type === Cmd.WRITE ? payload : null);
      for (const buf of reply) replySent(buf); // as the transport does once the socket sent it
    }
  };
  // Promises per request, in a pass of its own (the hook slows everything it sees).
  let promises = 0;
  const hook = createHook({ init: (_id, type) => void (type === 'PROMISE' && promises++) });
  const counted = Math.min(N, 20_000);
  next = N - counted;
  hook.enable();
  await Promise.all(Array.from({ length: QD }, one));
  hook.disable();
  const perRequest = (promises / counted).toFixed(1);
  for (let round = 0; round < 2; round++) {
    next = 0;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: QD }, one));
    const ns = Number(process.hrtime.bigint() - t0);
    const c = process.cpuUsage(c0);
    if (round === 1) {
      console.log(`${name.padEnd(22)} ${(ns / N / 1000).toFixed(2).padStart(6)} µs wall/request  ${((c.user + c.system) / N).toFixed(2).padStart(6)} µs CPU/request  ${Math.round((N / ns) * 1e9).toLocaleString('en-US')} requests/s  ${perRequest} promises/request`);
    }
  }
}

{
  // The engine's own cost: an image store on memory storage (no thread pool), 64 MiB mapped.
  const store = await ImageStore.create(new MemoryStorage(), { dataBytes: 80 << 20 });
  await store.createVolume('m', 64 << 20);
  const engine = new Engine(store, null);
  const dev = engine.device('m');
  for (let at = 0; at < dev.size; at += 1 << 20) await dev.write(Buffer.alloc(1 << 20, 1), at, { fua: false });
  await measure('memory image read', dev, Cmd.READ);
  await measure('memory image write', dev, Cmd.WRITE);
  await store.close();
}
const mem = new MemoryDevice({ size: 1 << 30, readOnly: false });
await measure('memory read', mem, Cmd.READ);
await mem.close();
const rawDev = await RawFileDevice.open(raw, { readOnly: true });
await measure('raw file read', rawDev, Cmd.READ);
await rawDev.close();
{
  const store = await openImageFile(image, { readOnly: true });
  const engine = new Engine(store, null);
  await measure('image volume read', engine.device('default'), Cmd.READ);
  await store.close();
}
const scratch = join(cfg.dir, 'work', 'micro.iomapd');
await copyFile(image, scratch);
try {
  const store = await openImageFile(scratch);
  const engine = new Engine(store, null);
  await measure('image volume write', engine.device('default'), Cmd.WRITE);
  await store.close();
  const rawCopy = join(cfg.dir, 'work', 'micro.raw');
  await copyFile(raw, rawCopy);
  const rw = await RawFileDevice.open(rawCopy, { readOnly: false });
  await measure('raw file write', rw, Cmd.WRITE);
  await rw.close();
  await rm(rawCopy, { force: true });
} finally {
  await rm(scratch, { force: true });
}
