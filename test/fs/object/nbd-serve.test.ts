// The object-store image through the real engine and NBD server, driven by real clients (qemu-io,
// nbdinfo): what a FLUSH or a FUA write acknowledged is in the bucket, and a new host with an empty
// cache serves it; a fenced writer's clients get EIO.
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { ObjectImageStore } from '../../../src/fs/object/object-image-store.ts';
import { FakeObjectStore } from '../../support/fake-object-store.ts';
import { type TestServer, startServer } from '../../support/server-fixture.ts';
import { expectFioVerified, fioVerifyArgs } from '../../interop/fio-verify.ts';
import { describeRun, requireTool, run, withTempDir } from '../../interop/harness.ts';
import { SMALL, openSmall } from './helpers.ts';

const MiB = 1 << 20;

async function serve(image: ObjectImageStore): Promise<{ server: TestServer; uri: string }> {
  const engine = new Engine(image);
  const server = await startServer([{ name: 'v', device: engine.device('v') }], 'unix');
  const path = (server.target as { path: string }).path;
  return { server, uri: `nbd+unix:///v?socket=${path}` };
}

async function qemuIo(uri: string, commands: string[]): Promise<{ ok: boolean; text: string }> {
  const args = ['-f', 'raw', uri];
  for (const c of commands) args.push('-c', c);
  const r = await run('qemu-io', args);
  const complaint = /Pattern verification failed|failed|error|Error|mismatch/;
  const ok = r.code === 0 && !r.timedOut && !complaint.test(r.stdout) && !complaint.test(r.stderr);
  return { ok, text: describeRun(r) };
}

async function qemuIoOk(uri: string, commands: string[]): Promise<void> {
  const r = await qemuIo(uri, commands);
  if (!r.ok) throw new Error(r.text);
}

describe('object image served over NBD', () => {
  it('keeps what FLUSH and FUA acknowledged, for a new host with an empty cache', async (ctx) => {
    requireTool(ctx, 'qemu-io', 'nbdinfo');
    const bucket = new FakeObjectStore({ pageSize: 100 });
    const a = await ObjectImageStore.create(bucket, { dataBytes: 64 * MiB, ...SMALL, segmentBlocks: 256, cacheSize: 16 * MiB });
    await a.createVolume('v', 32 * MiB);
    const sa = await serve(a);
    try {
      await qemuIoOk(sa.uri, [
        'write -P 0xab 0 4M',
        'write -P 0x19 4608 1536', // sub-block: read-modify-write of the block
        'flush',
        'write -P 0x3c 8M 1M',
        'aio_write -P 0x44 12M 1M',
        'aio_flush',
        'write -f -P 0x12 20M 64k', // FUA, no FLUSH after it
      ]);
      const info = await run('nbdinfo', ['--size', sa.uri]);
      expect(info.stdout.trim(), describeRun(info)).toBe(String(32 * MiB));
    } finally {
      await sa.server.stop();
    }
    a.abandon(); // the host dies: nothing more is uploaded

    const b = await openSmall(bucket.durable(), { segmentBlocks: 256, cacheSize: 16 * MiB });
    const sb = await serve(b);
    try {
      await qemuIoOk(sb.uri, [
        'read -P 0xab 0 4608',
        'read -P 0x19 4608 1536',
        'read -P 0xab 6144 4188160',
        'read -P 0x3c 8M 1M',
        'read -P 0x44 12M 1M',
        'read -P 0x12 20M 64k',
        'read -P 0 24M 1M',
      ]);
    } finally {
      await sb.server.stop();
    }
  }, 60_000);

  it('answers EIO to the clients of a fenced writer', async (ctx) => {
    requireTool(ctx, 'qemu-io');
    const bucket = new FakeObjectStore({ pageSize: 100 });
    const a = await ObjectImageStore.create(bucket, { dataBytes: 16 * MiB, ...SMALL });
    await a.createVolume('v', 8 * MiB);
    const sa = await serve(a);
    try {
      await qemuIoOk(sa.uri, ['write -P 0xab 0 64k', 'flush']);
      const b = await openSmall(bucket); // takes over
      const r = await qemuIo(sa.uri, ['write -P 0xcd 0 64k', 'flush']);
      expect(r.ok, r.text).toBe(false);
      expect(r.text).toMatch(/Input\/output error/);
      await b.close();
    } finally {
      // The server's final flush of the device fails too: the writer is fenced for good.
      await expect(sa.server.stop()).rejects.toMatchObject({ code: 'FENCED' });
    }
    const c = await openSmall(bucket);
    const sc = await serve(c);
    try {
      await qemuIoOk(sc.uri, ['read -P 0xab 0 64k']);
    } finally {
      await sc.server.stop();
    }
  }, 60_000);

  it('passes fio verify over two connections, and a new host verifies the same data', async (ctx) => {
    requireTool(ctx, 'fio');
    const perJob = 8 * MiB;
    const bucket = new FakeObjectStore({ pageSize: 100 });
    bucket.reorder(2, 9); // uploads complete in any order
    const a = await ObjectImageStore.create(bucket, { dataBytes: 64 * MiB, segmentBlocks: 256, cacheSize: 8 * MiB, checkpointEvery: 16 });
    await a.createVolume('v', 2 * perJob);
    await withTempDir(async (dir) => {
      const sa = await serve(a);
      try {
        const out = `${dir}/a.json`;
        const r = await run('fio', fioVerifyArgs('objimg', sa.uri, perJob, out));
        await expectFioVerified(out, perJob, describeRun(r));
        await a.commit(); // the last writes after fio's last FLUSH
      } finally {
        await sa.server.stop();
      }
      a.abandon();
      const b = await openSmall(bucket.durable(), { segmentBlocks: 256, cacheSize: 8 * MiB });
      const sb = await serve(b);
      try {
        const out = `${dir}/b.json`;
        const r = await run('fio', [...fioVerifyArgs('objimg', sb.uri, perJob, out), '--verify_only']);
        const report = JSON.parse(await readFile(out, 'utf8')) as { jobs: Array<{ error: number; read: { io_bytes: number } }> };
        for (const job of report.jobs) {
          expect(job.error, describeRun(r)).toBe(0);
          expect(job.read.io_bytes, describeRun(r)).toBe(perJob);
        }
      } finally {
        await sb.server.stop();
      }
    });
  }, 120_000);
});
