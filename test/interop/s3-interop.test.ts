// The interop clients against a volume kept in a bucket of the local Ceph, served by `iomapd serve
// s3://...` with a cache directory: nbdinfo (size, --map), nbdsh, qemu-img info/convert, qemu-io,
// nbdcopy in and out, fio verify. Each client's writes are then read back by a second daemon on an
// empty cache (a new host), so what the clients flushed is proven to be in the bucket.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from '../support/daemon.ts';
import { expectFioVerified, fioVerifyArgs } from './fio-verify.ts';
import { describeRun, nbdshEnv, requireTool, run, runOk } from './harness.ts';
import { type S3Fixture, s3Fixture } from './s3-harness.ts';

const MiB = 1 << 20;
let fx: S3Fixture | null = null;
let daemon: Daemon | null = null;
let img = '';
let socket = '';
const uri = (name: string, sock = socket) => `nbd+unix:///${name}?socket=${sock}`;

beforeAll(async () => {
  fx = await s3Fixture('s3-interop');
  if (!fx) return;
  img = `s3://${fx.bucket}/interop/img`;
  await fx.cliOk(['create', img, '--size', '64M', '--capacity', '256M', '--volume', 'main']);
  for (const v of ['copyin', 'fio']) await fx.cliOk(['volume', 'create', img, v, '--size', '32M']);
  socket = join(fx.dir, 'nbd.sock');
  daemon = await Daemon.start([img, '--socket', socket, '--cache-dir', join(fx.dir, 'cache'), '--cache-size', '64M'], { env: fx.env() });
}, 660_000);
afterAll(async () => {
  await daemon?.stop();
  await fx?.close();
});

/** Serves the image read-only from an empty cache (another host) while `body` runs. */
async function onNewHost<T>(body: (sock: string) => Promise<T>): Promise<T> {
  const sock = join(fx!.dir, `new-host-${Date.now()}.sock`);
  const d = await Daemon.start([img, '--socket', sock, '--read-only'], { env: fx!.env({ IOMAPD_RUN_DIR: join(fx!.dir, 'new-host') }) });
  try {
    return await body(sock);
  } finally {
    await d.stop();
  }
}

describe('interop clients on an object-store volume', () => {
  it('nbdinfo: size, and --map shows the written extent as data, the rest as hole', async (ctx) => {
    if (!fx) return ctx.skip();
    requireTool(ctx, 'nbdinfo', 'qemu-io');
    const size = await runOk('nbdinfo', ['--size', uri('main')]);
    expect(size.stdout.trim()).toBe(String(64 * MiB));
    await runOk('qemu-io', ['-f', 'raw', uri('main'), '-c', 'write -P 0x42 1M 2M', '-c', 'flush']);
    const map = await runOk('nbdinfo', ['--map', '--json', uri('main')]);
    const rows = (JSON.parse(map.stdout) as Array<{ offset: number; length: number; type: number }>).filter((r) => r.offset < 4 * MiB);
    const data = rows.filter((r) => (r.type & 1) === 0);
    expect(data.map((r) => [r.offset, r.length]), map.stdout).toEqual([[MiB, 2 * MiB]]);
    await onNewHost(async (sock) => {
      const r = await run('qemu-io', ['-r', '-f', 'raw', uri('main', sock), '-c', 'read -P 0x42 1M 2M', '-c', 'read -P 0 0 1M']);
      expect(r.code, describeRun(r)).toBe(0);
      expect(r.stdout + r.stderr, describeRun(r)).not.toMatch(/fail|mismatch/i);
    });
  }, 180_000);

  it('nbdsh: FUA write, zero, flush', async (ctx) => {
    if (!fx) return ctx.skip();
    requireTool(ctx, 'nbdsh');
    const commands = [
      "h.pwrite(b'\\x61' * 8192, 8 * 1024 * 1024, nbd.CMD_FLAG_FUA)",
      'h.zero(4096, 8 * 1024 * 1024 + 4096)',
      'h.flush()',
      "print('result', h.pread(8192, 8 * 1024 * 1024) == b'\\x61' * 4096 + bytes(4096))",
    ];
    const args = ['-u', uri('main')];
    for (const c of commands) args.push('-c', c);
    const r = await runOk('nbdsh', args, { env: nbdshEnv() });
    expect(r.stdout.trim()).toBe('result True');
  }, 120_000);

  it('qemu-img info and convert in and out; nbdcopy in and out; the bytes match on a new host', async (ctx) => {
    if (!fx) return ctx.skip();
    requireTool(ctx, 'qemu-img', 'nbdcopy', 'cmp');
    const source = join(fx.dir, 'source.raw');
    const pattern = Buffer.alloc(32 * MiB);
    for (let off = 0; off < pattern.length; off += 3 * MiB) randomBytes(512 * 1024).copy(pattern, off);
    await writeFile(source, pattern);
    const info = JSON.parse((await runOk('qemu-img', ['info', '--output=json', uri('copyin')])).stdout) as { 'virtual-size': number };
    expect(info['virtual-size']).toBe(32 * MiB);
    await runOk('nbdcopy', [source, uri('copyin')]);
    const out1 = join(fx.dir, 'out1.raw');
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri('copyin'), out1]);
    expect((await readFile(out1)).equals(pattern)).toBe(true);
    // qemu-img convert into the volume (over what nbdcopy wrote), then nbdcopy out on a new host.
    const reversed = Buffer.from(pattern).reverse();
    await writeFile(source, reversed);
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, uri('copyin')]);
    await onNewHost(async (sock) => {
      const out2 = join(fx!.dir, 'out2.raw');
      await runOk('nbdcopy', [uri('copyin', sock), out2]);
      await runOk('cmp', [source, out2]);
    });
  }, 240_000);

  it('fio verify over two connections with a FLUSH every 32 writes', async (ctx) => {
    if (!fx) return ctx.skip();
    requireTool(ctx, 'fio');
    const perJob = 8 * MiB;
    const output = join(fx.dir, 'fio.json');
    const r = await run('fio', fioVerifyArgs('s3', uri('fio'), perJob, output), { timeoutMs: 240_000 });
    await expectFioVerified(output, perJob, describeRun(r));
    expect(r.code, describeRun(r)).toBe(0);
    expect(await fx.cliOk(['check', img])).toMatch(/^clean: /m);
  }, 300_000);
});
