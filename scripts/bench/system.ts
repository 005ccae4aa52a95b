// The machine side of the benchmark: running commands, installing the tools, describing the
// machine, reading a process's CPU time and peak RSS from /proc, and making the page cache equal.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { MiB } from './config.ts';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion (bounded by timeoutMs), capturing its output and wall time. */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
    });
  });
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** The Debian/Ubuntu package that provides each tool. */
const PACKAGES: Record<string, string> = {
  nbdkit: 'nbdkit',
  'qemu-nbd': 'qemu-utils',
  fio: 'fio',
  nbdcopy: 'libnbd-bin',
  nbdinfo: 'libnbd-bin',
};

/** Installs nbdkit, qemu-utils, fio and libnbd-bin with apt-get when any tool is missing. */
export function ensureTools(install: boolean): void {
  const missing = Object.keys(PACKAGES).filter((t) => !has(t));
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((t) => PACKAGES[t]!))];
  if (!install || !has('apt-get')) {
    throw new Error(`missing ${missing.join(', ')}: install ${pkgs.join(' ')} (apt-get unavailable or BENCH_NO_INSTALL=1)`);
  }
  // apt-get as root: directly, or through sudo.
  const asRoot = (args: string[]): [string, string[]] => (process.getuid?.() === 0 ? ['apt-get', args] : ['sudo', ['apt-get', ...args]]);
  console.log(`installing ${pkgs.join(' ')} ...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...pkgs]]) {
    const [cmd, argv] = asRoot(args);
    execFileSync(cmd, argv, { stdio: 'inherit', env });
  }
  const still = Object.keys(PACKAGES).filter((t) => !has(t));
  if (still.length > 0) throw new Error(`still missing after install: ${still.join(', ')}`);
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown';
}

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memoryMiB: number;
  kernel: string;
  node: string;
  tools: Record<string, string>;
  threadpool: string;
}

export function machineInfo(nodePath: string): MachineInfo {
  return {
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryMiB: Math.round(totalmem() / MiB),
    kernel: firstLine('uname', ['-sr']),
    node: firstLine(nodePath, ['--version']),
    tools: {
      nbdkit: firstLine('nbdkit', ['--version']),
      'qemu-nbd': firstLine('qemu-nbd', ['--version']),
      fio: firstLine('fio', ['--version']),
      nbdcopy: firstLine('nbdcopy', ['--version']),
      nbdinfo: firstLine('nbdinfo', ['--version']),
    },
    threadpool: process.env.UV_THREADPOOL_SIZE ?? `${Math.max(2, cpus().length)} threads (iomapd's default: one per CPU, at least 2)`,
  };
}

export const loadAverage = (): [number, number, number] => loadavg().map((x) => Math.round(x * 100) / 100) as [number, number, number];

/** Busy, stolen and total jiffies of all CPUs together, from the first line of /proc/stat. */
export async function cpuJiffies(): Promise<{ busy: number; steal: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0]!;
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number); // user nice system idle iowait irq softirq steal
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - v[3]! - v[4]!, steal: v[7]!, total };
}

/** Percent of the CPUs' time between two samples that the hypervisor gave to other guests. */
export function stealPercent(a: { steal: number; total: number }, b: { steal: number; total: number }): number {
  return b.total > a.total ? Math.round(((b.steal - a.steal) / (b.total - a.total)) * 1000) / 10 : 0;
}

/**
 * CPUs kept busy by whatever runs during `ms` while the bench itself waits: other work on the
 * machine. The load average cannot tell this: it lags by a minute and, before a job, still counts
 * the previous job's server and fio threads (nbdkit's 16 threads waiting on ext4 count too).
 */
export async function otherWorkCpus(ms: number): Promise<number> {
  const a = await cpuJiffies();
  await sleep(ms);
  const b = await cpuJiffies();
  const cpus = availableParallelism();
  return b.total > a.total ? Math.round(((b.busy - a.busy) / (b.total - a.total)) * cpus * 100) / 100 : 0;
}

const CLK_TCK = Number(firstLine('getconf', ['CLK_TCK'])) || 100;

/** User + system CPU seconds a process (all its threads) has used so far. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: split after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Peak resident set size (VmHWM) of a process, in MiB. */
export async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * Drops a file's pages from the page cache (posix_fadvise DONTNEED through dd's `iflag=nocache`;
 * Node has no fadvise). Only clean pages go: sync first.
 */
export async function evictFromPageCache(file: string): Promise<void> {
  const r = await run('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
  if (r.code !== 0) throw new Error(`dd iflag=nocache of ${file} failed: ${r.stderr}`);
}

/**
 * Makes the page cache the same for every job: write back dirty pages (so no job pays for an
 * earlier job's writes), drop the served file's pages (optionally the whole cache), then read the
 * file whole so every job starts with its data resident in pages made the same way. The drop
 * matters: on this kernel (6.18, ext4 with large folios) the size of the folios a file's pages
 * sit in depends on how they entered the cache (8 MiB writes or readahead give 2 MiB folios,
 * smaller writes small ones), and a 4 KiB write into a 2 MiB folio costs about 30 to 50 µs
 * against 4 µs into a 4 KiB one and dirties the whole folio (docs/PERFORMANCE.md, "Why the raw
 * file was slower to write"). Read back by readahead, every file gets the same folios.
 */
export async function equalisePageCache(files: string[], drop: boolean): Promise<void> {
  await run('sync', []);
  for (const f of files) await evictFromPageCache(f);
  if (drop) await writeFile('/proc/sys/vm/drop_caches', '3\n').catch(() => {});
  const buf = Buffer.allocUnsafe(8 * MiB);
  for (const f of files) {
    const fh = await open(f, 'r');
    try {
      let pos = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
      }
    } finally {
      await fh.close();
    }
  }
}

/**
 * Throws unless every byte of the file has a block written on disk: no holes (allocated blocks
 * cover the size) and no unwritten (fallocated, not yet written) extents in `filefrag -v`.
 */
export async function assertFullyWritten(file: string): Promise<void> {
  const st = await stat(file, { bigint: true });
  if (st.blocks * 512n < st.size) throw new Error(`${file}: ${st.blocks * 512n} bytes allocated for ${st.size}: it has holes`);
  const frag = await run('filefrag', ['-v', file]);
  if (frag.code !== 0) return; // no filefrag (e2fsprogs) or no FIEMAP: the hole check above stands alone
  const unwritten = frag.stdout.split('\n').filter((l) => /\bunwritten\b/.test(l)).length;
  if (unwritten > 0) throw new Error(`${file}: ${unwritten} unwritten extents (filefrag -v)`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
