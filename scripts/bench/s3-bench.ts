#!/usr/bin/env node
// Object-store benchmark (not a test): the fio matrix against a volume kept in the local Ceph's
// bucket (iomapd serve s3://...), beside the same volume as an image file, and beside qemu-nbd
// serving an RBD image of the same cluster (how Ceph block volumes are served over NBD today).
// Each job starts its server fresh (the s3 volume on an empty cache: reads fetch from the bucket);
// jobs are interleaved across servers, the order reversed every other repetition. Besides
// throughput and latency, the FLUSH latency percentiles of the FLUSH-every-32 job.
//
// Usage: node scripts/bench/s3-bench.ts   (BENCH_RUNTIME seconds per job, default 8; BENCH_REPS, default 2)
// Writes bench/results/s3/results.json and results.md. Needs ceph-common, rbd and qemu-block-extra
// (qemu's rbd driver): installed with apt-get when missing.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAverage, run, sleep } from './system.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE = join(ROOT, 'node_modules', '.bin', 'node');
const MAIN = join(ROOT, 'src', 'cli', 'main.ts');
const RUNTIME = Number(process.env.BENCH_RUNTIME ?? 8);
const REPS = Number(process.env.BENCH_REPS ?? 2);
const SIZE_MIB = 256;
const OUT = join(ROOT, 'bench', 'results', 's3');

const JOBS = [
  { name: 'randread-4k-qd1', args: ['--rw=randread', '--bs=4k', '--iodepth=1'] },
  { name: 'randread-4k-qd32', args: ['--rw=randread', '--bs=4k', '--iodepth=32'] },
  { name: 'randwrite-4k-qd1', args: ['--rw=randwrite', '--bs=4k', '--iodepth=1'] },
  { name: 'randwrite-4k-qd32', args: ['--rw=randwrite', '--bs=4k', '--iodepth=32'] },
  { name: 'seqread-1m-qd8', args: ['--rw=read', '--bs=1m', '--iodepth=8'] },
  { name: 'seqwrite-1m-qd8', args: ['--rw=write', '--bs=1m', '--iodepth=8'] },
  { name: 'randwrite-4k-qd32-flush32', args: ['--rw=randwrite', '--bs=4k', '--iodepth=32', '--fsync=32'] },
] as const;
const SERVERS = ['iomapd-s3', 'iomapd-file', 'qemu-nbd-rbd'] as const;
type ServerName = (typeof SERVERS)[number];

interface Result {
  server: ServerName;
  job: string;
  rep: number;
  iops: number;
  mibps: number;
  latMeanUs: number;
  latP99Us: number;
  flushes: number;
  flushP50Us?: number;
  flushP99Us?: number;
  flushMaxUs?: number;
  load1: number;
}

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function ensureRbdTools(): void {
  const rbdDriver = spawnSync('sh', ['-c', 'ls /usr/lib/x86_64-linux-gnu/qemu/block-rbd.so'], { stdio: 'ignore' }).status === 0;
  const missing = [...(spawnSync('sh', ['-c', 'command -v rbd'], { stdio: 'ignore' }).status === 0 ? [] : ['ceph-common']), ...(rbdDriver ? [] : ['qemu-block-extra'])];
  if (missing.length > 0) sh('apt-get', ['install', '-y', ...missing], { ...process.env, DEBIAN_FRONTEND: 'noninteractive' });
}

async function cephEnv(): Promise<NodeJS.ProcessEnv> {
  sh(join(ROOT, 'scripts', 'ceph', 'local-ceph'), ['start']);
  const env: NodeJS.ProcessEnv = { ...process.env };
  const dir = process.env.IOMAPD_CEPH_DIR ?? join(ROOT, '.cache', 'ceph');
  for (const line of (await readFile(join(dir, 'env'), 'utf8')).split('\n')) {
    const m = /^(?:export )?([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

/** Servers still running: killed if the script ends early. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

function startProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const p = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
  live.add(p);
  p.once('close', () => live.delete(p));
  return p;
}

async function waitSocket(sock: string, env: NodeJS.ProcessEnv): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if ((await run('nbdinfo', ['--size', `nbd+unix:///default?socket=${sock}`], { env, timeoutMs: 5000 }).catch(() => null))?.code === 0) return;
    await sleep(100);
  }
  throw new Error(`no server on ${sock}`);
}

async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return;
  const done = new Promise((r) => p.once('close', r));
  p.kill('SIGTERM');
  await Promise.race([done, sleep(30_000)]);
  if (p.exitCode === null) p.kill('SIGKILL');
}

/** fio's JSON: throughput, latency, and the FLUSH (sync) latency percentiles when there are any. */
async function runJob(job: (typeof JOBS)[number], uri: string, dir: string): Promise<Omit<Result, 'server' | 'job' | 'rep' | 'load1'>> {
  const output = join(dir, 'fio.json');
  await rm(output, { force: true });
  const args = [`--name=${job.name}`, '--ioengine=nbd', `--uri=${uri}`, '--time_based=1', `--runtime=${RUNTIME}`, '--ramp_time=1', '--output-format=json', `--output=${output}`, ...job.args];
  const r = await run('fio', args, { timeoutMs: (RUNTIME + 120) * 1000 });
  if (r.code !== 0) throw new Error(`fio ${job.name}: ${r.stderr || r.stdout}`);
  const j = (JSON.parse(await readFile(output, 'utf8')) as { jobs: any[] }).jobs[0];
  const dirs = [j.read, j.write].filter((d) => d.total_ios > 0);
  const pct = (p: Record<string, number> | undefined, k: string) => (p?.[k] ?? 0) / 1000;
  const sync = j.sync;
  return {
    iops: dirs.reduce((s, d) => s + d.iops, 0),
    mibps: dirs.reduce((s, d) => s + d.bw_bytes, 0) / 1048576,
    latMeanUs: dirs.length ? dirs[0].clat_ns.mean / 1000 : 0,
    latP99Us: dirs.length ? pct(dirs[0].clat_ns.percentile, '99.000000') : 0,
    flushes: sync?.total_ios ?? 0,
    ...(sync?.total_ios > 0
      ? { flushP50Us: pct(sync.lat_ns.percentile, '50.000000'), flushP99Us: pct(sync.lat_ns.percentile, '99.000000'), flushMaxUs: sync.lat_ns.max / 1000 }
      : {}),
  };
}

async function main(): Promise<void> {
  ensureRbdTools();
  const env = await cephEnv();
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-s3-bench-'));
  const bucket = `bench-${Date.now().toString(36)}`;
  const s3img = `s3://${bucket}/img`;
  const fileImg = join(dir, 'image.iomapd');
  const pool = 'rbdbench';
  const benchEnv = { ...env, IOMAPD_RUN_DIR: dir };
  // Bucket, images and pool; each volume filled whole once so reads find mapped data.
  const { CreateBucketCommand, S3Client } = await import('@aws-sdk/client-s3');
  const client = new S3Client({ endpoint: env.AWS_ENDPOINT_URL, region: env.AWS_REGION, forcePathStyle: true, credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! } });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  sh(NODE, [MAIN, 'create', s3img, '--size', `${SIZE_MIB}M`], benchEnv);
  sh(NODE, [MAIN, 'create', fileImg, '--size', `${SIZE_MIB}M`], benchEnv);
  spawnSync('ceph', ['osd', 'pool', 'create', pool, '8'], { env, stdio: 'ignore' });
  spawnSync('rbd', ['pool', 'init', pool], { env, stdio: 'ignore' });
  spawnSync('rbd', ['rm', `${pool}/img`], { env, stdio: 'ignore' });
  sh('rbd', ['create', '--size', `${SIZE_MIB}M`, `${pool}/img`], env);
  const sock = join(dir, 'nbd.sock');
  let cacheN = 0;
  const start = (server: ServerName): ChildProcess => {
    const cache = join(dir, `cache-${++cacheN}`); // empty each time: a cold host
    if (server === 'iomapd-s3') return startProcess(NODE, [MAIN, 'serve', s3img, '--socket', sock, '--cache-dir', cache, '--cache-size', '512M', '--gc-interval', '0', '--log-level', 'warn'], benchEnv);
    if (server === 'iomapd-file') return startProcess(NODE, [MAIN, 'serve', fileImg, '--socket', sock, '--log-level', 'warn'], benchEnv);
    return startProcess('qemu-nbd', ['-t', '-k', sock, '-f', 'raw', '-x', 'default', '--cache=writeback', `rbd:${pool}/img:conf=${env.CEPH_CONF}`], env);
  };
  const uri = `nbd+unix:///default?socket=${sock}`;
  for (const server of SERVERS) {
    const p = start(server);
    await waitSocket(sock, env);
    const r = await run('fio', ['--name=fill', '--ioengine=nbd', `--uri=${uri}`, '--rw=write', '--bs=1m', '--iodepth=8', '--end_fsync=1'], { timeoutMs: 600_000 });
    if (r.code !== 0) throw new Error(`fill ${server}: ${r.stderr}`);
    await stopProcess(p);
    console.log(`filled ${server}`);
  }
  const results: Result[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    for (const job of JOBS) {
      const order = rep % 2 === 0 ? SERVERS : [...SERVERS].reverse();
      for (const server of order) {
        const p = start(server);
        try {
          await waitSocket(sock, env);
          const load1 = loadAverage()[0];
          const r = { server, job: job.name, rep, load1, ...(await runJob(job, uri, dir)) };
          results.push(r);
          console.log(JSON.stringify(r));
        } finally {
          await stopProcess(p);
        }
      }
    }
  }
  await mkdir(OUT, { recursive: true });
  await writeFile(join(OUT, 'results.json'), `${JSON.stringify({ when: new Date().toISOString(), runtimeS: RUNTIME, reps: REPS, sizeMiB: SIZE_MIB, results }, null, 2)}\n`);
  await writeFile(join(OUT, 'results.md'), table(results));
  console.log(table(results));
  await rm(dir, { recursive: true, force: true });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Medians over the repetitions, and each figure's ratio to iomapd on a file and to qemu-nbd on RBD. */
function table(results: Result[]): string {
  const lines = [
    `fio medians of ${REPS} interleaved repetitions, ${RUNTIME} s each, ${SIZE_MIB} MiB volume, Unix socket; median 1-min load before jobs ${median(results.map((r) => r.load1)).toFixed(1)} on ${spawnSync('nproc').stdout.toString().trim()} CPUs`,
    '',
    '| job | iomapd s3 | iomapd file | qemu-nbd rbd | s3 / file | s3 / rbd |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  const fig = (job: string, server: ServerName) => {
    const rs = results.filter((r) => r.job === job && r.server === server);
    return job.includes('1m') ? median(rs.map((r) => r.mibps)) : median(rs.map((r) => r.iops));
  };
  for (const job of JOBS) {
    const unit = job.name.includes('1m') ? ' MiB/s' : ' IOPS';
    const [a, b, c] = SERVERS.map((s) => fig(job.name, s));
    lines.push(`| ${job.name} | ${a!.toFixed(0)}${unit} | ${b!.toFixed(0)}${unit} | ${c!.toFixed(0)}${unit} | ${(a! / b!).toFixed(2)} | ${(a! / c!).toFixed(2)} |`);
  }
  lines.push('', 'FLUSH latency (randwrite-4k-qd32-flush32), medians over repetitions, ms:', '', '| server | flushes | p50 | p99 | max |', '| --- | ---: | ---: | ---: | ---: |');
  for (const s of SERVERS) {
    const rs = results.filter((r) => r.job === 'randwrite-4k-qd32-flush32' && r.server === s);
    const m = (k: 'flushP50Us' | 'flushP99Us' | 'flushMaxUs') => (median(rs.map((r) => r[k] ?? 0)) / 1000).toFixed(1);
    lines.push(`| ${s} | ${median(rs.map((r) => r.flushes)).toFixed(0)} | ${m('flushP50Us')} | ${m('flushP99Us')} | ${m('flushMaxUs')} |`);
  }
  return `${lines.join('\n')}\n`;
}

await main();
