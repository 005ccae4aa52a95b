// The local Ceph (scripts/ceph/local-ceph) for tests that need a real S3 store. A test file calls
// localCeph() at the top: it starts the cluster when it is not running (the script is idempotent
// and serialises concurrent starts), so a file works alone under `npx vitest run FILE`, and it
// returns the client environment from the cluster's env file. A cluster that does not come up
// fails the file under CI and skips it loudly elsewhere (null).
//
// Buckets: each test file makes its own (testBucket) and removes it with everything in it.
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from './daemon.ts';

export const LOCAL_CEPH = join(REPO_ROOT, 'scripts', 'ceph', 'local-ceph');
// A first start may install the packages (16 s here) and creates the cluster (10 s); allow for a
// slow mirror.
const START_TIMEOUT_MS = 600_000;

/** The client environment the cluster's env file gives (AWS_*, IOMAPD_S3_PATH_STYLE, CEPH_CONF). */
export type CephEnv = Readonly<Record<string, string>>;

function inCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

function stateDir(): string {
  return process.env.IOMAPD_CEPH_DIR ?? join(REPO_ROOT, '.cache', 'ceph');
}

function run(args: string[], timeoutMs: number): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(LOCAL_CEPH, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, output: `${stdout}${stderr}`.slice(-8_000) });
    });
  });
}

/** Parses `export KEY=VALUE` lines (the script writes values without quotes or spaces). */
export function parseEnvFile(text: string): CephEnv {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(?:export )?([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m !== null) env[m[1]!] = m[2]!;
  }
  return env;
}

let started: Promise<CephEnv | null> | undefined;

/** Starts the local Ceph if needed; its client environment, or null (skip) outside CI. */
export function localCeph(): Promise<CephEnv | null> {
  started ??= (async () => {
    const { code, output } = await run(['start'], START_TIMEOUT_MS);
    if (code !== 0) {
      const what = `the local Ceph did not start (scripts/ceph/local-ceph start exited ${code}):\n${output}`;
      if (inCi()) throw new Error(`${what}\nCI is set, so this is a failure, not a skip.`);
      const bar = '!'.repeat(100);
      console.warn(`\n${bar}\n!!! SKIPPING the object-store tests: ${what}\n${bar}\n`);
      return null;
    }
    const env = parseEnvFile(await readFile(join(stateDir(), 'env'), 'utf8'));
    for (const name of ['AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) {
      if (!env[name]) throw new Error(`the local Ceph's env file lacks ${name}`);
    }
    return env;
  })();
  return started;
}

/** An SDK client for the test's own setup (buckets), not the code under test. */
export function adminClient(env: CephEnv): S3Client {
  return new S3Client({
    endpoint: env.AWS_ENDPOINT_URL,
    region: env.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Creates a fresh bucket named after `label`; returns its name and a remover for afterAll. */
export async function testBucket(env: CephEnv, label: string): Promise<{ bucket: string; remove: () => Promise<void> }> {
  const client = adminClient(env);
  const bucket = `${label}-${process.pid}-${Date.now().toString(36)}`.toLowerCase().slice(0, 63);
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const remove = async () => {
    for (;;) {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1000 }));
      const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length === 0) break;
      await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
    }
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
    client.destroy();
  };
  return { bucket, remove };
}
