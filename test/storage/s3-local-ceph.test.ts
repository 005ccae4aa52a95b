// scripts/ceph/local-ceph itself, on a second cluster of its own (own state directory and ports,
// so the shared one the other files use is left alone): a first start serves S3 with the keys of
// a 0600 env file, start is idempotent, stop leaves no process behind, a restart keeps the data,
// and destroy removes everything.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../src/storage/s3/s3-object-store.ts';
import { LOCAL_CEPH, localCeph, parseEnvFile, testBucket } from '../support/ceph.ts';

// The shared cluster coming up proves the packages are there (or fails the run under CI).
const shared = await localCeph();
const parent = mkdtempSync(join(tmpdir(), 'iomapd-local-ceph-'));
const state = join(parent, 'ceph');
const conf = join(state, 'ceph.conf');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

const ports = { IOMAPD_CEPH_MON_PORT: String(await freePort()), IOMAPD_CEPH_RGW_PORT: String(await freePort()) };

function localCephCmd(command: string): Promise<{ code: number; output: string; ms: number }> {
  const start = performance.now();
  return new Promise((resolve) => {
    execFile(LOCAL_CEPH, [command], { env: { ...process.env, IOMAPD_CEPH_DIR: state, ...ports }, timeout: 300_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, output: stdout + stderr, ms: performance.now() - start });
    });
  });
}

/** Pids of processes started with this cluster's config. */
function clusterPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(conf)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

describe.skipIf(shared === null)('scripts/ceph/local-ceph', { timeout: 120_000 }, () => {
  afterAll(async () => {
    const destroyed = await localCephCmd('destroy');
    expect(destroyed.code, destroyed.output).toBe(0);
    expect(existsSync(state)).toBe(false);
    expect(clusterPids()).toEqual([]);
    rmSync(parent, { recursive: true, force: true });
  }, 120_000);

  it('starts, stops without leaving a process, restarts with its data, and start is idempotent', async () => {
    const first = await localCephCmd('start');
    expect(first.code, first.output).toBe(0);
    expect(clusterPids()).toHaveLength(3); // monitor, OSD, radosgw

    const envPath = join(state, 'env');
    expect(statSync(envPath).mode & 0o777).toBe(0o600);
    const envText = readFileSync(envPath, 'utf8');
    const env = parseEnvFile(envText);
    expect(env.AWS_ENDPOINT_URL).toBe(`http://127.0.0.1:${ports.IOMAPD_CEPH_RGW_PORT}`);
    expect(env.AWS_ACCESS_KEY_ID).toMatch(/^[A-Z0-9]{20}$/);
    expect(env.AWS_SECRET_ACCESS_KEY).toMatch(/^[A-Za-z0-9]{40}$/);
    expect((await localCephCmd('env')).output).toBe(envText);

    const { bucket } = await testBucket(env, 'local-ceph');
    const store = await S3ObjectStore.connect(`s3://${bucket}/kept`, { env });
    const etag = await store.putIfAbsent('object', Buffer.from('survives a restart'));

    const again = await localCephCmd('start');
    expect(again.code, again.output).toBe(0);
    expect(again.ms).toBeLessThan(5_000);
    expect(readFileSync(envPath, 'utf8')).toBe(envText);
    expect((await localCephCmd('status')).code).toBe(0);

    const stopped = await localCephCmd('stop');
    expect(stopped.code, stopped.output).toBe(0);
    expect(clusterPids()).toEqual([]);
    const status = await localCephCmd('status');
    expect(status.code).toBe(3);
    expect(status.output).toContain('s3 not answering');
    expect((await localCephCmd('stop')).code).toBe(0); // stopping a stopped cluster is fine

    const restarted = await localCephCmd('start');
    expect(restarted.code, restarted.output).toBe(0);
    expect(readFileSync(envPath, 'utf8')).toBe(envText);
    expect(await store.get('object')).toEqual({ body: Buffer.from('survives a restart'), etag });
    store.close();
  });
});
