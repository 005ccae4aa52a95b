// The shape of a benchmark run as stored in bench/results/*.json, and the summaries drawn from it:
// medians and spread per (job, transport, server), and ratios of medians against nbdkit.
import type { ServerName, Transport } from './config.ts';
import type { FioResult } from './fio-jobs.ts';
import type { MachineInfo } from './system.ts';

export interface JobRun extends FioResult {
  rep: number;
  job: string;
  transport: Transport;
  server: ServerName;
  /** Server CPU seconds (user + system, all threads) in the measured window. */
  cpuS: number;
  cpuUsPerRequest: number;
  peakRssMiB: number;
  /** 1-minute load average just before the job started (after the page cache was equalised). */
  load1: number;
  /** 1/5/15-minute load averages at the same moment. */
  load?: [number, number, number];
  /** CPUs busy with other work in the half second before the server started (otherWorkCpus). */
  otherCpus?: number;
  /** Percent of CPU time stolen by the hypervisor during the measured window (/proc/stat steal). */
  stealPct?: number;
}

export interface AuxRun {
  rep: number;
  test: 'nbdcopy-sparse' | 'nbdinfo-map';
  transport: Transport;
  server: ServerName;
  seconds: number;
  /** nbdinfo --map: extents the server reported. */
  extents?: number;
  cpuS: number;
  peakRssMiB: number;
}

export interface BenchResults {
  version: 1;
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  settings: { runtime: number; ramp: number; reps: number; dropCaches: boolean; servers: ServerName[]; transports: Transport[] };
  machine: MachineInfo;
  load: {
    start: [number, number, number];
    end: [number, number, number];
    /** Median 1-minute load before the jobs. */
    medianBeforeJobs?: number;
    /** Median and largest CPUs busy with other work before the jobs (runs since 2026-12-03). */
    otherCpusMedian?: number;
    otherCpusMax?: number;
    /** Whether other work shared the machine: other CPUs (or, for older runs, the load) too high. */
    high?: boolean;
  };
  jobs: Array<{ name: string; title: string; metric: 'iops' | 'MiB/s'; small: boolean }>;
  runs: JobRun[];
  aux: AuxRun[];
}

export const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export interface Cell {
  median: number;
  min: number;
  max: number;
  /** (max - min) / median, in percent. */
  spreadPct: number;
  n: number;
}

export function cell(xs: number[]): Cell | null {
  if (xs.length === 0) return null;
  const m = median(xs);
  const min = Math.min(...xs);
  const max = Math.max(...xs);
  return { median: m, min, max, spreadPct: m > 0 ? (100 * (max - min)) / m : 0, n: xs.length };
}

export const ratio = (a: Cell | null | undefined, b: Cell | null | undefined): number | null =>
  a && b && b.median > 0 ? a.median / b.median : null;
