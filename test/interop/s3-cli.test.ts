// Every image command on an image in a bucket of the local Ceph (s3://BUCKET/PREFIX), as on a file;
// serve read-write (the writer role) beside read-only and snapshot exports that do not take it; and
// each bad configuration failing before listening, with exit 1, a clear message and no secret.
import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from '../support/daemon.ts';
import { S3Proxy } from '../support/s3-proxy.ts';
import { describeRun, requireTool, run } from './harness.ts';
import { type S3Fixture, s3Fixture } from './s3-harness.ts';

const MiB = 1 << 20;
let fx: S3Fixture | null = null;

beforeAll(async () => {
  fx = await s3Fixture('s3-cli');
}, 660_000);
afterAll(async () => {
  await fx?.close();
});

function uriOf(socket: string, name: string): string {
  return `nbd+unix:///${name}?socket=${socket}`;
}

async function qemuIo(uri: string, commands: string[], readOnly = false): Promise<string> {
  const args = [...(readOnly ? ['-r'] : []), '-f', 'raw', uri];
  for (const c of commands) args.push('-c', c);
  const r = await run('qemu-io', args);
  if (r.code !== 0 || /fail|error|mismatch/i.test(r.stdout + r.stderr)) throw new Error(describeRun(r));
  return r.stdout;
}

/** Runs `iomapd ARGS` expecting exit 1 with `iomapd: CODE:` and none of the secrets anywhere. */
async function expectRefused(f: S3Fixture, args: string[], code: string, message: RegExp, extra: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await f.cli(args, extra, 90_000);
  const out = `${r.stdout}${r.stderr}`;
  expect(r.code, out).toBe(1);
  expect(r.stderr, out).toMatch(new RegExp(`^iomapd: ${code}: `, 'm'));
  expect(r.stderr, out).toMatch(message);
  expect(out, out).not.toMatch(/"msg":"listening"/);
  for (const secret of [f.ceph.AWS_SECRET_ACCESS_KEY!, extra.AWS_SECRET_ACCESS_KEY].filter((s): s is string => !!s)) {
    expect(out.includes(secret), `a secret appears in the output of iomapd ${args.join(' ')}`).toBe(false);
  }
  return out;
}

describe('image commands on s3://BUCKET/PREFIX', () => {
  it('create, volume create|ls|resize|set|rm, snapshot, clone, info, map, check, gc, stats', async (ctx) => {
    if (!fx) return ctx.skip();
    const img = `s3://${fx.bucket}/cmds/img`;
    expect(await fx.cliOk(['create', img, '--size', '16M', '--capacity', '64M'])).toMatch(/created .*volume default of 16M, capacity 64M/);
    await expectRefused(fx, ['create', img, '--size', '16M'], 'ALREADY_EXISTS', /already holds an iomapd object image/);
    expect(await fx.cliOk(['volume', 'create', img, 'v2', '--size', '8M'])).toMatch(/created volume v2 \(8M\)/);
    expect(await fx.cliOk(['volume', 'resize', img, 'v2', '12M'])).toMatch(/resized volume v2 to 12M/);
    expect(await fx.cliOk(['volume', 'set', img, 'v2', '--require-tls', 'on'])).toMatch(/TLS required/);
    expect(await fx.cliOk(['snapshot', img, 'default', 's1'])).toMatch(/snapshot s1 of default/);
    expect(await fx.cliOk(['clone', img, 's1', 'c1'])).toMatch(/clone c1 of s1/);
    const list = JSON.parse(await fx.cliOk(['volume', 'ls', img, '--json'])) as Array<{ name: string; size: number; snapshot: boolean; requireTls: boolean }>;
    expect(list.map((v) => [v.name, v.size, v.snapshot, v.requireTls])).toEqual([
      ['default', 16 * MiB, false, false],
      ['v2', 12 * MiB, false, true],
      ['s1', 16 * MiB, true, false],
      ['c1', 16 * MiB, false, false],
    ]);
    expect(await fx.cliOk(['volume', 'rm', img, 'c1'])).toMatch(/removed volume c1/);
    const info = JSON.parse(await fx.cliOk(['info', img, '--json'])) as { blockSize: number; volumes: unknown[]; dataBlocks: number };
    expect(info.blockSize).toBe(4096);
    expect(info.volumes).toHaveLength(3);
    expect(info.dataBlocks * 4096).toBeGreaterThanOrEqual(64 * MiB);
    expect(JSON.parse(await fx.cliOk(['map', img, 'default', '--json']))).toEqual([{ offset: 0, length: 16 * MiB, type: 'hole', shared: false, physical: -1 }]);
    expect(await fx.cliOk(['check', img])).toMatch(/^clean: /m);
    expect(await fx.cliOk(['gc', img])).toMatch(/^gc: compacted \d+ segment\(s\).*deleted \d+ object\(s\)/);
    expect(await fx.cliOk(['check', img])).toMatch(/^clean: /m);
    await expectRefused(fx, ['stats', img], 'NOT_RUNNING', /no iomapd daemon on this host is serving/);
    await expectRefused(fx, ['check', '--repair', img], 'BAD_ARGUMENT', /iomapd gc/);
    await expectRefused(fx, ['info', `s3://${fx.bucket}/cmds/none`], 'STORE_CONFIG', /nothing is stored under the prefix/);
  }, 240_000);

  it('import and export (sparse) and the pictures work on a bucket image as on a file (issue 16)', async (ctx) => {
    if (!fx) return ctx.skip();
    const img = `s3://${fx.bucket}/transfer/img`;
    await fx.cliOk(['create', img, '--size', '4M', '--capacity', '64M']);
    const src = join(fx.dir, 'src.raw');
    const out = join(fx.dir, 'out.raw');
    const data = Buffer.alloc(3 * MiB);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i + 1, i);
    await writeFile(src, data);
    await truncate(src, 16 * MiB); // 3 MiB of data, then 13 MiB of hole
    expect(await fx.cliOk(['import', src, img, 'imp'])).toMatch(/3\.00 MiB of data written, 13\.0 MiB left as holes/);
    const map = JSON.parse(await fx.cliOk(['map', img, 'imp', '--json'])) as Array<{ offset: number; length: number; type: string }>;
    expect(map.filter((e) => e.type === 'hole').reduce((n, e) => n + e.length, 0)).toBe(13 * MiB);
    expect(await fx.cliOk(['export', img, 'imp', out])).toMatch(/3\.00 MiB of data written/);
    expect((await readFile(out)).equals(await readFile(src))).toBe(true);
    expect((await stat(out)).blocks * 512).toBeLessThan(4 * MiB); // the holes stayed holes
    await fx.cliOk(['map', img, 'imp', '--svg', join(fx.dir, 'map.svg')]);
    await fx.cliOk(['info', img, '--svg', join(fx.dir, 'info.svg')]);
    expect(await readFile(join(fx.dir, 'map.svg'), 'utf8')).toMatch(/^<svg[\s\S]*mapped[\s\S]*hole[\s\S]*<\/svg>\s*$/);
    expect(await readFile(join(fx.dir, 'info.svg'), 'utf8')).toMatch(/^<svg[\s\S]*free[\s\S]*<\/svg>\s*$/);
    expect(await fx.cliOk(['check', img])).toMatch(/^clean: /m);
  }, 240_000);

  it('serve read-write takes the writer role; --read-only and snapshot exports serve beside it without fencing it', async (ctx) => {
    if (!fx) return ctx.skip();
    requireTool(ctx, 'qemu-io', 'nbdinfo');
    const f = fx;
    const img = `s3://${f.bucket}/serve/img`;
    await f.cliOk(['create', img, '--size', '32M']);
    const wSock = join(f.dir, 'w.sock');
    const w = await Daemon.start([img, '--socket', wSock, '--cache-dir', join(f.dir, 'cache-w'), '--cache-size', '32M'], { env: f.env() });
    const readers: Daemon[] = [];
    try {
      const size = await run('nbdinfo', ['--size', uriOf(wSock, 'default')]);
      expect(size.stdout.trim(), describeRun(size)).toBe(String(32 * MiB));
      await qemuIo(uriOf(wSock, 'default'), ['write -P 0x5a 0 3M', 'write -P 0x17 5M 64k', 'flush']);
      // Volume commands reach the daemon through its control channel.
      expect(await f.cliOk(['volume', 'create', img, 'extra', '--size', '4M'])).toMatch(/created volume extra/);
      expect(await f.cliOk(['snapshot', img, 'default', 'snap'])).toMatch(/snapshot snap of default/);
      const stats = JSON.parse(await f.cliOk(['stats', img, '--json'])) as { pid: number; exports: Array<{ name: string }> };
      expect(stats.pid).toBe(w.pid);
      expect(stats.exports.map((e) => e.name).sort()).toEqual(['default', 'extra', 'snap']);
      expect(await f.cliOk(['gc', img])).toMatch(/^gc: /);
      // Two more "hosts" (own run dirs and caches): one --read-only, one exporting the snapshot only.
      for (const [name, extra] of [
        ['r1', ['--read-only']],
        ['r2', ['--export', 'snap']],
      ] as const) {
        const sock = join(f.dir, `${name}.sock`);
        const d = await Daemon.start([img, '--socket', sock, '--cache-dir', join(f.dir, `cache-${name}`), ...extra], { env: f.env() });
        readers.push(d);
        const exportName = name === 'r1' ? 'default' : 'snap';
        await qemuIo(uriOf(sock, exportName), ['read -P 0x5a 0 3M', 'read -P 0x17 5M 64k', 'read -P 0 3M 2M'], true);
        const ro = await run('nbdinfo', ['--json', uriOf(sock, exportName)]);
        expect((JSON.parse(ro.stdout) as { exports: Array<{ is_read_only: boolean }> }).exports[0]!.is_read_only, describeRun(ro)).toBe(true);
      }
      // The writer was not fenced by them: it still writes and flushes.
      await qemuIo(uriOf(wSock, 'default'), ['write -P 0x66 8M 1M', 'flush', 'read -P 0x66 8M 1M']);
      expect(w.output()).not.toMatch(/FENCED/);
    } finally {
      for (const d of readers) await d.stop();
      await w.stop();
    }
    expect(await f.cliOk(['check', img])).toMatch(/^clean: /m);
    // A new host with an empty cache reads what the writer flushed.
    const again = join(f.dir, 'again.sock');
    const d = await Daemon.start([img, '--socket', again, '--read-only'], { env: f.env() });
    try {
      await qemuIo(uriOf(again, 'default'), ['read -P 0x5a 0 3M', 'read -P 0x17 5M 64k', 'read -P 0x66 8M 1M'], true);
    } finally {
      await d.stop();
    }
  }, 300_000);
});

describe('bad object-store configuration fails before listening, with no secret in any output', () => {
  it('a missing prefix or bucket, wrong credentials, an endpoint that does not answer', async (ctx) => {
    if (!fx) return ctx.skip();
    const f = fx;
    const img = `s3://${f.bucket}/bad/img`;
    await f.cliOk(['create', img, '--size', '8M']);
    const serve = (name: string, extra: string[] = []) => ['serve', name, '--socket', join(f.dir, 'bad.sock'), ...extra];
    await expectRefused(f, serve(`s3://${f.bucket}`), 'BAD_ARGUMENT', /the prefix is missing/);
    await expectRefused(f, serve('s3://'), 'BAD_ARGUMENT', /the bucket is missing/);
    await expectRefused(f, serve(`s3://no-such-bucket-${process.pid}/img`), 'STORE_CONFIG', /no-such-bucket/);
    await expectRefused(f, serve(`s3://${f.bucket}/bad/nothing-here`), 'STORE_CONFIG', /nothing is stored under the prefix/);
    const wrongSecret = 'WrongSecretKeyForTheTest0123456789abcdefgh';
    await expectRefused(f, serve(img), 'STORE_CONFIG', /./, { AWS_SECRET_ACCESS_KEY: wrongSecret });
    await expectRefused(f, serve(img), 'STORE_CONFIG', /./, { AWS_ACCESS_KEY_ID: 'NOSUCHKEYID000000000' });
    // Nothing listens on a port we just closed; and a listener that never answers.
    const closed = await freePort();
    const budget = { IOMAPD_S3_RETRY_BUDGET_MS: '3000', IOMAPD_S3_ATTEMPT_TIMEOUT_MS: '1000' };
    await expectRefused(f, serve(img), 'STORE_CONFIG', new RegExp(`127\\.0\\.0\\.1:${closed}`), { AWS_ENDPOINT_URL: `http://127.0.0.1:${closed}`, ...budget });
    const mute = await muteListener();
    try {
      await expectRefused(f, serve(img), 'STORE_CONFIG', /127\.0\.0\.1/, { AWS_ENDPOINT_URL: `http://127.0.0.1:${(mute.address() as { port: number }).port}`, ...budget });
    } finally {
      mute.close();
    }
    // The same refusals from an image command.
    await expectRefused(f, ['volume', 'ls', img], 'STORE_CONFIG', /./, { AWS_SECRET_ACCESS_KEY: wrongSecret });
  }, 300_000);

  it('a store that ignores If-None-Match and If-Match: read-write refused (STORE_UNSUPPORTED), --read-only serves', async (ctx) => {
    if (!fx) return ctx.skip();
    requireTool(ctx, 'nbdinfo');
    const f = fx;
    const img = `s3://${f.bucket}/nocas/img`;
    await f.cliOk(['create', img, '--size', '8M']);
    const proxy = await S3Proxy.start(f.ceph.AWS_ENDPOINT_URL!);
    try {
      proxy.mode = { kind: 'ignore-preconditions' };
      const viaProxy = { AWS_ENDPOINT_URL: proxy.url, IOMAPD_S3_PATH_STYLE: '1' };
      await expectRefused(f, ['serve', img, '--socket', join(f.dir, 'nocas.sock')], 'STORE_UNSUPPORTED', /If-None-Match|If-Match/, viaProxy);
      expect(proxy.faulted).toBeGreaterThan(0);
      await expectRefused(f, ['volume', 'create', img, 'x', '--size', '1M'], 'STORE_UNSUPPORTED', /conditional writes/, viaProxy);
      const sock = join(f.dir, 'nocas-ro.sock');
      const d = await Daemon.start([img, '--socket', sock, '--read-only'], { env: f.env(viaProxy) });
      try {
        const r = await run('nbdinfo', ['--size', uriOf(sock, 'default')]);
        expect(r.stdout.trim(), describeRun(r)).toBe(String(8 * MiB));
      } finally {
        await d.stop();
      }
    } finally {
      await proxy.stop();
    }
  }, 180_000);
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Accepts connections and never answers (an endpoint that hangs). */
async function muteListener(): Promise<Server> {
  const s = createServer(() => {});
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return s;
}
