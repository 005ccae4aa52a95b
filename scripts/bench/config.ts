// Benchmark configuration: everything the environment may change, read once.
//
//   BENCH_QUICK=1          short jobs (2 s, 0.5 s ramp) for a smoke run; results go to bench/results/quick
//   BENCH_RUNTIME=S        seconds each fio job measures (default 8)
//   BENCH_RAMP=S           seconds each fio job runs before measuring (default 2)
//   BENCH_REPS=N           repetitions of the whole matrix, interleaved (default 3; fewer is a smoke run)
//   BENCH_SERVERS=a,b      only these servers (iomapd-image, iomapd-raw, nbdkit, qemu-nbd,
//                          iomapd-image-tls, nbdkit-tls: TLS_JOBS only)
//   BENCH_JOBS=a,b         only these fio jobs (names in fio-jobs.ts)
//   BENCH_TRANSPORTS=a,b   only these transports (unix, tcp)
//   BENCH_AUX=0            skip the nbdcopy / nbdinfo --map timings
//   BENCH_DROP_CACHES=1    also drop the page cache before each job (root only; slows other work)
//   BENCH_DIR=PATH         where the data files live (default bench/tmp, git-ignored)
//   BENCH_OUT=PATH         where results are written (default bench/results)
//   BENCH_DOCS=0           do not update docs/PERFORMANCE.md (quick runs never do)
//   BENCH_NO_INSTALL=1     never apt-get install missing tools
//   BENCH_IOMAPD=PATH      the iomapd launcher to run (default scripts/iomapd; compare.ts uses it)
import { resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

export const SERVER_NAMES = ['iomapd-image', 'iomapd-raw', 'nbdkit', 'qemu-nbd', 'iomapd-image-tls', 'nbdkit-tls'] as const;
export type ServerName = (typeof SERVER_NAMES)[number];
/** Servers behind `--tls require` with X.509 certificates; clients reach them at nbds:// URIs. */
export const TLS_SERVERS: readonly ServerName[] = ['iomapd-image-tls', 'nbdkit-tls'];
/** The fio jobs the TLS servers run (TLS costs per byte and per request: one row of each kind). */
export const TLS_JOBS: readonly string[] = ['randread-4k-qd32', 'seqread-1m-qd8', 'seqwrite-1m-qd8'];

/** Whether `server` runs `job` (TLS servers run TLS_JOBS only, and no nbdcopy / nbdinfo rows). */
export function serverRuns(server: ServerName, job: string): boolean {
  return !TLS_SERVERS.includes(server) || TLS_JOBS.includes(job);
}
export const TRANSPORTS = ['unix', 'tcp'] as const;
export type Transport = (typeof TRANSPORTS)[number];

function num(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v} is not a non-negative number`);
  return n;
}

function list<T extends string>(name: string, all: readonly T[]): T[] {
  const v = process.env[name];
  if (v === undefined || v === '') return [...all];
  const picked = v.split(',').map((s) => s.trim()) as T[];
  for (const p of picked) if (!all.includes(p)) throw new Error(`${name}: unknown ${p} (known: ${all.join(', ')})`);
  return picked;
}

export interface BenchConfig {
  quick: boolean;
  runtime: number;
  ramp: number;
  reps: number;
  servers: ServerName[];
  transports: Transport[];
  jobFilter: string[] | null;
  aux: boolean;
  dropCaches: boolean;
  dir: string;
  out: string;
  updateDocs: boolean;
  install: boolean;
  /** Bytes served: the same 1 GiB for every server. */
  size: number;
}

export function loadConfig(): BenchConfig {
  const quick = process.env.BENCH_QUICK === '1';
  const out = resolve(ROOT, process.env.BENCH_OUT ?? (quick ? 'bench/results/quick' : 'bench/results'));
  const jobs = process.env.BENCH_JOBS;
  return {
    quick,
    runtime: num('BENCH_RUNTIME', quick ? 2 : 8),
    ramp: num('BENCH_RAMP', quick ? 0.5 : 2),
    reps: Math.max(1, Math.floor(num('BENCH_REPS', 3))),
    servers: list('BENCH_SERVERS', SERVER_NAMES),
    transports: list('BENCH_TRANSPORTS', TRANSPORTS),
    jobFilter: jobs ? jobs.split(',').map((s) => s.trim()) : null,
    aux: process.env.BENCH_AUX !== '0',
    dropCaches: process.env.BENCH_DROP_CACHES === '1',
    dir: resolve(ROOT, process.env.BENCH_DIR ?? 'bench/tmp'),
    out,
    updateDocs: !quick && process.env.BENCH_DOCS !== '0' && process.env.BENCH_OUT === undefined,
    install: process.env.BENCH_NO_INSTALL !== '1',
    size: GiB,
  };
}
