// The fixed fio matrix (nbd engine, so libnbd talks to the server directly) and what is kept of
// each run. Every job is time-based over the whole 1 GiB export.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './system.ts';

export interface FioJob {
  readonly name: string;
  readonly title: string;
  /** The figure compared: IOPS for 4 KiB jobs, MiB/s for 1 MiB jobs. */
  readonly metric: 'iops' | 'MiB/s';
  /** 4 KiB jobs count toward "server CPU per 4 KiB request". */
  readonly small: boolean;
  readonly args: readonly string[];
}

export const FIO_JOBS: readonly FioJob[] = [
  { name: 'randread-4k-qd1', title: '4 KiB random read, QD1', metric: 'iops', small: true, args: ['--rw=randread', '--bs=4k', '--iodepth=1'] },
  { name: 'randwrite-4k-qd1', title: '4 KiB random write, QD1', metric: 'iops', small: true, args: ['--rw=randwrite', '--bs=4k', '--iodepth=1'] },
  { name: 'randread-4k-qd32', title: '4 KiB random read, QD32', metric: 'iops', small: true, args: ['--rw=randread', '--bs=4k', '--iodepth=32'] },
  { name: 'randwrite-4k-qd32', title: '4 KiB random write, QD32', metric: 'iops', small: true, args: ['--rw=randwrite', '--bs=4k', '--iodepth=32'] },
  { name: 'seqread-1m-qd8', title: '1 MiB sequential read, QD8', metric: 'MiB/s', small: false, args: ['--rw=read', '--bs=1m', '--iodepth=8'] },
  { name: 'seqwrite-1m-qd8', title: '1 MiB sequential write, QD8', metric: 'MiB/s', small: false, args: ['--rw=write', '--bs=1m', '--iodepth=8'] },
  {
    name: 'randwrite-4k-qd32-flush32',
    title: '4 KiB random write, QD32, FLUSH every 32 writes',
    metric: 'iops',
    small: true,
    args: ['--rw=randwrite', '--bs=4k', '--iodepth=32', '--fsync=32'],
  },
  {
    name: 'randread-4k-2conn',
    title: '4 KiB random read, 2 connections x QD16',
    metric: 'iops',
    small: true,
    args: ['--rw=randread', '--bs=4k', '--iodepth=16', '--numjobs=2', '--group_reporting'],
  },
];

export interface FioResult {
  /** The compared figure (IOPS or MiB/s), reads and writes together. */
  value: number;
  iops: number;
  mibps: number;
  /** Requests in the measured window: reads, writes and flushes. */
  requests: number;
  flushes: number;
  /** Mean and 99th percentile completion latency of reads and writes, microseconds. */
  latMeanUs: number;
  latP99Us: number;
}

interface FioDir {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  clat_ns?: { mean: number; N?: number; percentile?: Record<string, number> };
}
interface FioJson {
  jobs: Array<{ error: number; read: FioDir; write: FioDir; sync?: { total_ios: number } }>;
}

export function fioArgs(job: FioJob, uri: string, runtime: number, ramp: number, output: string): string[] {
  return [
    `--name=${job.name}`,
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--time_based=1',
    `--runtime=${runtime}`,
    ...(ramp > 0 ? [`--ramp_time=${ramp}`] : []),
    '--output-format=json',
    `--output=${output}`,
    ...job.args,
  ];
}

/** Runs one job against a server and reads fio's JSON report. */
export async function runFio(job: FioJob, uri: string, runtime: number, ramp: number, dir: string): Promise<FioResult> {
  const output = join(dir, 'fio.json');
  await rm(output, { force: true });
  const r = await run('fio', fioArgs(job, uri, runtime, ramp, output), { timeoutMs: (runtime + ramp + 60) * 1000, cwd: dir });
  if (r.code !== 0) throw new Error(`fio ${job.name} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  const report = JSON.parse(await readFile(output, 'utf8')) as FioJson;
  let iops = 0;
  let bytes = 0;
  let requests = 0;
  let flushes = 0;
  let latSum = 0;
  let latN = 0;
  let p99 = 0;
  for (const j of report.jobs) {
    if (j.error !== 0) throw new Error(`fio ${job.name}: job error ${j.error}`);
    for (const d of [j.read, j.write]) {
      iops += d.iops;
      bytes += d.bw_bytes;
      requests += d.total_ios;
      const n = d.clat_ns?.N ?? 0;
      if (n > 0) {
        latSum += d.clat_ns!.mean * n;
        latN += n;
        p99 = Math.max(p99, d.clat_ns!.percentile?.['99.000000'] ?? 0);
      }
    }
    flushes += j.sync?.total_ios ?? 0;
  }
  requests += flushes;
  const mibps = bytes / 1024 / 1024;
  return {
    value: job.metric === 'iops' ? iops : mibps,
    iops,
    mibps,
    requests,
    flushes,
    latMeanUs: latN > 0 ? latSum / latN / 1000 : 0,
    latP99Us: p99 / 1000,
  };
}
