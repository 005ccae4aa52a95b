// What the object-store interop, crash and fault tests share: the local Ceph's client environment
// with a private run directory (control sockets), a fresh bucket per file, and the CLI run there.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { type CephEnv, adminClient, localCeph, testBucket } from '../support/ceph.ts';
import { type CliResult, runCli } from '../support/daemon.ts';

export interface S3Fixture {
  readonly ceph: CephEnv;
  readonly bucket: string;
  /** Scratch directory: run dir, cache dirs, sockets. */
  readonly dir: string;
  /** process.env with the store's settings and IOMAPD_RUN_DIR=dir (plus `extra`). */
  env(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  /** `iomapd ARGS` with env(extra). */
  cli(args: readonly string[], extra?: NodeJS.ProcessEnv, timeoutMs?: number): Promise<CliResult>;
  /** Like cli, but throws with the output unless it exits 0. */
  cliOk(args: readonly string[], extra?: NodeJS.ProcessEnv, timeoutMs?: number): Promise<string>;
  /** Sum of the sizes of every object under `prefix`, by listing. */
  bucketBytes(prefix: string): Promise<{ objects: number; bytes: number }>;
  close(): Promise<void>;
}

/** The fixture, or null where the local Ceph is unavailable outside CI (localCeph warns loudly). */
export async function s3Fixture(label: string): Promise<S3Fixture | null> {
  const ceph = await localCeph();
  if (ceph === null) return null;
  const { bucket, remove } = await testBucket(ceph, label);
  const dir = await mkdtemp(join(tmpdir(), `iomapd-${label}-`));
  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ ...process.env, ...ceph, IOMAPD_RUN_DIR: dir, ...extra });
  const cli = (args: readonly string[], extra?: NodeJS.ProcessEnv, timeoutMs = 60_000) => runCli(args, { env: env(extra), timeoutMs });
  const admin = adminClient(ceph);
  return {
    ceph,
    bucket,
    dir,
    env,
    cli,
    async cliOk(args, extra, timeoutMs) {
      const r = await cli(args, extra, timeoutMs);
      if (r.code !== 0) throw new Error(`iomapd ${args.join(' ')} exited ${r.code}\n${r.stdout}${r.stderr}`);
      return r.stdout;
    },
    async bucketBytes(prefix) {
      let objects = 0;
      let bytes = 0;
      let token: string | undefined;
      do {
        const page = await admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const o of page.Contents ?? []) {
          objects++;
          bytes += o.Size ?? 0;
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
      return { objects, bytes };
    },
    async close() {
      admin.destroy();
      await remove();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
