// Kernel rig harness: builds the rig (scripts/rig/rig build), starts iomapd on a fresh image (or
// raw file) on a free loopback port, boots the guest with a scenario script (test/kernel/guest/),
// answers the guest's requests for host-side steps while it runs, and collects what the guest
// and the daemon reported. After each run the daemon is stopped and an image must pass
// `iomapd check`.
//
// Every wait is bounded: the build, the daemon's start and stop, each iomapd CLI call, the guest
// (by its own watchdog, by `timeout` around QEMU and by a last bound here), the guest's wait for
// a host step, and the whole suite (SUITE_BUDGET_MS: each boot gets at most what is left). A
// failure message carries the tail of the guest console (which ends with the kernel log) and of
// the daemon's log.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'vitest';
import { openImageFile } from '../../src/fs/image-file.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RIG = join(REPO_ROOT, 'scripts', 'rig', 'rig');
const GUEST_DIR = join(REPO_ROOT, 'test', 'kernel', 'guest');
const NODE = join(REPO_ROOT, 'node_modules', '.bin', 'node');
const MAIN = join(REPO_ROOT, 'src', 'cli', 'main.ts');
/** Console and daemon logs of the last run of each scenario, kept for reading after a failure. */
export const LOG_DIR = join(process.env.RIG_CACHE ?? join(REPO_ROOT, '.cache', 'rig'), 'logs');

/** First build: package installs and a 70 MB download; a cached build takes a few seconds. */
export const BUILD_TIMEOUT_MS = 15 * 60_000;
const DAEMON_READY_MS = 20_000;
const DAEMON_STOP_MS = 15_000;
/** One iomapd CLI command (create, info, map, snapshot, clone, stats, check). */
const CLI_TIMEOUT_MS = 30_000;
/** How often the host looks at the guest console for RIG-HOST requests. */
const CONSOLE_POLL_MS = 200;
/** After the guest is done, how long the daemon may take to log its closed connections. */
const CLOSE_LOG_MS = 10_000;
/** The whole kernel suite, from the first boot (IOMAPD_KERNEL_BUDGET_S overrides). */
const SUITE_BUDGET_MS = Number(process.env.IOMAPD_KERNEL_BUDGET_S ?? 570) * 1000;
/** Lines of console and daemon log put into a failure message. */
const TAIL_LINES = 120;

export const IMAGE_SIZE = '1G';

/** A kernel message that fails a run whatever the script's status. */
const KERNEL_TROUBLE = /BUG:|Oops|Call Trace|Kernel panic|general protection fault|WARNING: CPU:|INFO: task .* blocked/;

function tail(text: string, lines = TAIL_LINES): string {
  const all = text.split('\n');
  return all.length <= lines ? text : `[... ${all.length - lines} lines cut ...]\n${all.slice(-lines).join('\n')}`;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function exitOf(child: ChildProcess): Promise<Exit> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Kills a detached child's whole process group (QEMU, relays): TERM, then KILL. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const t = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }, 5_000);
  t.unref();
}

// ---------------------------------------------------------------------------------------------
// The rig

export interface RigStatus {
  ok: boolean;
  /** What `rig build` printed (or why it could not run). */
  output: string;
  ms: number;
}

let rigPromise: Promise<RigStatus> | undefined;
let suiteStart: number | undefined;

/** Runs `scripts/rig/rig build` once per process. Never rejects. */
export function ensureRig(): Promise<RigStatus> {
  rigPromise ??= (async () => {
    const t0 = Date.now();
    const child = spawn(RIG, ['build'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
    const timer = setTimeout(() => {
      output += `\n[harness] rig build still running after ${BUILD_TIMEOUT_MS} ms: killed`;
      killGroup(child);
    }, BUILD_TIMEOUT_MS);
    const spawnError = new Promise<Exit>((resolve) =>
      child.once('error', (e) => {
        output += `\n[harness] cannot run ${RIG}: ${e.message}`;
        resolve({ code: null, signal: null });
      }),
    );
    const exit = await Promise.race([exitOf(child), spawnError]);
    clearTimeout(timer);
    suiteStart = Date.now();
    return { ok: exit.code === 0, output, ms: Date.now() - t0 };
  })();
  return rigPromise;
}

/**
 * Call at the top of each test. Without a working rig the test fails when CI is set (a skipped
 * kernel test must never look like a pass there) and is skipped loudly otherwise.
 */
export function requireRig(ctx: TestContext, rig: RigStatus | undefined): void {
  if (rig?.ok) return;
  const why = `the kernel rig could not be built (scripts/rig/rig build; it needs Debian packages and root to install them):\n${tail(rig?.output ?? 'ensureRig() was not called', 40)}`;
  if (process.env.CI) throw new Error(`${why}\nCI is set, so this is a failure, not a skip.`);
  const bar = '!'.repeat(100);
  console.warn(`\n${bar}\n!!! SKIPPING "${ctx.task.name}": ${why}\n${bar}\n`);
  ctx.skip('kernel rig unavailable');
}

// ---------------------------------------------------------------------------------------------
// The daemon

/** Commands and flags one connection received, as iomapd logs them when it closes. */
export type RequestCounts = Record<string, number>;

export interface ConnectionRecord {
  conn: number;
  /** The export it reached as iomapd logs it: the volume name ("default" for export ""); "" on a raw file. */
  export: string;
  reason: string;
  requests: RequestCounts;
}

/**
 * What a scenario serves: `image`, a fresh iomapd image (`iomapd create --size 1G`, one volume
 * `default`, the default export) served with `iomapd serve IMAGE`; `raw`, a fresh sparse raw file
 * served with `iomapd serve FILE --raw`.
 */
export type Backend = 'image' | 'raw';

/** `iomapd info --json`. */
export interface ImageInfo {
  blockSize: number;
  dataBlocks: number;
  freeBlocks: number;
  pendingFreeBlocks: number;
  reservedBlocks: number;
  uncommittedOps: number;
  volumes: { name: string; size: number; snapshot: boolean; extents: number; allocatedBytes: number }[];
}

/** One row of `iomapd map --json`. */
export interface MapExtent {
  offset: number;
  length: number;
  type: 'hole' | 'unwritten' | 'mapped' | 'inline';
  physical: number;
  shared: boolean;
}

/** `iomapd stats --json` (counters per export). */
export interface DaemonStats {
  exports: { name: string; connections: number; counters: Record<string, number> }[];
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A command line of iomapd, for messages. */
function commandLine(args: readonly string[]): string {
  return `iomapd ${args.map((a) => (a === '' || /\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`;
}

/** Runs `iomapd ARGS` (bounded); never rejects on a non-zero status, only on a failure to run. */
export function runCli(args: readonly string[], timeoutMs = CLI_TIMEOUT_MS): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [MAIN, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n[harness] ${commandLine(args)} still running after ${timeoutMs} ms: killed`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs `iomapd ARGS` and returns its stdout; throws with its output unless it exits 0. */
export async function cli(args: readonly string[], timeoutMs = CLI_TIMEOUT_MS): Promise<string> {
  const r = await runCli(args, timeoutMs);
  if (r.code !== 0) throw new Error(`$ ${commandLine(args)}\nexited ${r.code}\n${tail(`${r.stdout}${r.stderr}`, 40)}`);
  return r.stdout;
}

/** Reads bytes of what a daemon served, on the host, after it stopped. */
export interface HostReader {
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export interface Daemon {
  readonly name: string;
  readonly backend: Backend;
  readonly port: number;
  /** The file it serves: the image, or the raw file. */
  readonly image: string;
  output(): string;
  /** Ids of the connections negotiated so far (listings and aborted handshakes are not). */
  negotiated(): number[];
  /** Negotiated connections closed so far, from the "connection closed" log lines. */
  closed(): ConnectionRecord[];
  /** Non-null once the process has exited. */
  exited(): Exit | null;
  /** `iomapd info IMAGE --json` (image only; through the control channel while it runs). */
  info(): Promise<ImageInfo>;
  /** `iomapd map IMAGE VOLUME --json` (image only). */
  map(volume: string): Promise<MapExtent[]>;
  /** `iomapd stats IMAGE --json` (image only, while it runs). */
  stats(): Promise<DaemonStats>;
  /**
   * SIGTERM, require exit code 0; for an image, then `iomapd check IMAGE` on the host, which must
   * report it clean. Idempotent.
   */
  stop(): Promise<void>;
  /** `iomapd check --json` output of the stopped image (null for raw, or before stop). */
  checkReport(): string | null;
  /**
   * A volume's bytes read on the host without iomapd: the raw file, or (after stop) the image's
   * volume (`default` unless named) through its own extent map, holes and unwritten as zeros.
   */
  hostReader(volume?: string): Promise<HostReader>;
  /** Removes the files. */
  dispose(): Promise<void>;
}

interface LogLine {
  msg?: unknown;
  address?: unknown;
  conn?: unknown;
  export?: unknown;
  reason?: unknown;
  requests?: unknown;
}

function parseLine(line: string): LogLine | null {
  if (!line.startsWith('{')) return null;
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null ? (v as LogLine) : null;
  } catch {
    return null;
  }
}

/** The type of every byte of [offset, offset+length) in a map, as a set of types. */
export function typesIn(map: readonly MapExtent[], offset: number, length: number): Set<MapExtent['type']> {
  const types = new Set<MapExtent['type']>();
  let covered = 0;
  for (const e of map) {
    const s = Math.max(e.offset, offset);
    const t = Math.min(e.offset + e.length, offset + length);
    if (s < t) {
      types.add(e.type);
      covered += t - s;
    }
  }
  if (covered !== length) throw new Error(`the map covers ${covered} of the ${length} bytes at ${offset}`);
  return types;
}

/** Bytes of a map with the given type (and, if given, sharing). */
export function bytesOf(map: readonly MapExtent[], type: MapExtent['type'], shared?: boolean): number {
  return map.filter((e) => e.type === type && (shared === undefined || e.shared === shared)).reduce((n, e) => n + e.length, 0);
}

/**
 * Starts iomapd on a fresh 1 GiB image (or raw file) listening on a free loopback port. An image
 * is made with `iomapd create IMAGE --size 1G` and served whole (`default` is also export "").
 */
export async function startDaemon(name: string, backend: Backend): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-kernel-'));
  const image = join(dir, backend === 'image' ? 'disk.iomapd' : 'disk.img');
  const common = ['--listen', '127.0.0.1:0', '--log-level', 'info'];
  let args: string[];
  try {
    if (backend === 'image') {
      await cli(['create', image, '--size', IMAGE_SIZE]);
      args = [MAIN, 'serve', image, ...common];
    } else {
      // --raw: the host side reads the guest's patterns back from the file at the same offsets.
      args = [MAIN, 'serve', image, '--raw', '--size', IMAGE_SIZE, ...common];
    }
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const child = spawn(NODE, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const lines: LogLine[] = [];
  let pending = '';
  let exit: Exit | null = null;
  const exited = exitOf(child).then((e) => (exit = e));
  let onAddress: ((port: number) => void) | undefined;
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    pending += d;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const parsed = parseLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      if (parsed === null) continue;
      lines.push(parsed);
      if (parsed.msg === 'listening' && typeof parsed.address === 'string') {
        const port = Number(parsed.address.slice(parsed.address.lastIndexOf(':') + 1));
        if (Number.isInteger(port) && port > 0) onAddress?.(port);
      }
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const output = () => `${stdout}${stderr === '' ? '' : `--- stderr ---\n${stderr}`}`;
  const command = `${NODE} ${args.join(' ')}`;

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening" line within ${DAEMON_READY_MS} ms`)), DAEMON_READY_MS);
      onAddress = (p) => {
        clearTimeout(timer);
        resolve(p);
      };
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      void exited.then((e) => {
        clearTimeout(timer);
        reject(new Error(`it exited (code ${e.code}, signal ${e.signal}) before listening`));
      });
    });
  } catch (e) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`iomapd did not start: ${(e as Error).message}\n$ ${command}\n${tail(output())}`);
  }

  const negotiated = () => lines.filter((l) => l.msg === 'negotiated' && typeof l.conn === 'number').map((l) => l.conn as number);
  const requireImage = (what: string) => {
    if (backend !== 'image') throw new Error(`${what} needs an image, and ${name} serves a raw file`);
  };
  let stopping: Promise<void> | undefined;
  let check: string | null = null;
  return {
    name,
    backend,
    port,
    image,
    output,
    negotiated,
    closed: () => {
      const ids = new Set(negotiated());
      return lines
        .filter((l) => l.msg === 'connection closed' && typeof l.conn === 'number' && ids.has(l.conn))
        .map((l) => ({
          conn: l.conn as number,
          export: typeof l.export === 'string' ? l.export : '',
          reason: typeof l.reason === 'string' ? l.reason : '',
          requests: (typeof l.requests === 'object' && l.requests !== null ? l.requests : {}) as RequestCounts,
        }));
    },
    exited: () => exit,
    async info() {
      requireImage('info');
      return JSON.parse(await cli(['info', image, '--json'])) as ImageInfo;
    },
    async map(volume) {
      requireImage('map');
      return JSON.parse(await cli(['map', image, volume, '--json'])) as MapExtent[];
    },
    async stats() {
      requireImage('stats');
      return JSON.parse(await cli(['stats', image, '--json'])) as DaemonStats;
    },
    checkReport: () => check,
    stop() {
      stopping ??= (async () => {
        if (exit !== null) {
          throw new Error(`iomapd (${name}) died during the test (code ${exit.code}, signal ${exit.signal})\n$ ${command}\n${tail(output())}`);
        }
        child.kill('SIGTERM');
        const r = await Promise.race([exited, sleep(DAEMON_STOP_MS).then(() => null)]);
        if (r === null) {
          child.kill('SIGKILL');
          throw new Error(`iomapd (${name}) did not exit within ${DAEMON_STOP_MS} ms of SIGTERM\n${tail(output())}`);
        }
        if (r.code !== 0) throw new Error(`iomapd (${name}) exited with code ${r.code} (signal ${r.signal}) after SIGTERM\n${tail(output())}`);
        if (backend === 'image') {
          // The image at rest must hold every invariant: no leaked or doubly used block.
          const c = await runCli(['check', image, '--json']);
          check = c.stdout.trim();
          let errors: unknown = ['(no JSON report)'];
          try {
            errors = (JSON.parse(check) as { errors?: unknown }).errors;
          } catch {
            // kept as "(no JSON report)"
          }
          if (c.code !== 0 || !Array.isArray(errors) || errors.length > 0) {
            throw new Error(`iomapd check ${image} (${name}) is not clean (exit ${c.code}):\n${tail(`${c.stdout}${c.stderr}`, 40)}`);
          }
        }
      })();
      return stopping;
    },
    async hostReader(volume = 'default') {
      if (backend === 'raw') {
        const fh = await open(image, 'r');
        return {
          async read(offset, length) {
            const buf = Buffer.alloc(length);
            const { bytesRead } = await fh.read(buf, 0, length, offset);
            if (bytesRead !== length) throw new Error(`short read of ${image}: ${bytesRead} of ${length} bytes at ${offset}`);
            return buf;
          },
          close: () => fh.close(),
        };
      }
      if (exit === null) throw new Error(`hostReader: stop ${name} first (the daemon holds the image)`);
      const store = await openImageFile(image, { readOnly: true });
      return {
        async read(offset, length) {
          const buf = Buffer.alloc(length);
          for (const e of store.extents(volume, offset, offset + length)) {
            const s = Math.max(e.offset, offset);
            const t = Math.min(e.offset + e.length, offset + length);
            if (s >= t) continue;
            if (e.type === 'mapped') await store.readData(e.physical + (s - e.offset), buf.subarray(s - offset, t - offset));
            else if (e.type === 'inline') throw new Error(`hostReader: ${volume} is inline`);
            // hole and unwritten read as zeros: buf is zero-filled.
          }
          return buf;
        },
        close: () => store.close(),
      };
    },
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * Runs body against a fresh daemon, then stops it (a failed stop or an unclean image check fails
 * the test too) and removes its files. Body may stop it itself to look at the stopped image.
 */
export async function withDaemon<T>(name: string, backend: Backend, body: (d: Daemon) => Promise<T>): Promise<T> {
  const daemon = await startDaemon(name, backend);
  try {
    let result: T;
    try {
      result = await body(daemon);
    } catch (e) {
      try {
        await daemon.stop();
      } catch (stopError) {
        (e as Error).message += `\n(also: ${(stopError as Error).message})`;
      }
      throw e;
    }
    await daemon.stop();
    const report = daemon.checkReport();
    if (report !== null) {
      const r = JSON.parse(report) as { volumes: number; extents: number; usedBlocks: number; freeBlocks: number };
      console.log(`[kernel] ${name}: iomapd check clean after stop: ${r.volumes} volumes, ${r.extents} extents, ${r.usedBlocks} used and ${r.freeBlocks} free blocks`);
    }
    return result;
  } finally {
    await daemon.dispose();
  }
}

/** Sums the request counts of several connections. */
export function totals(connections: readonly ConnectionRecord[]): RequestCounts {
  const sum: RequestCounts = {};
  for (const c of connections) for (const [k, v] of Object.entries(c.requests)) sum[k] = (sum[k] ?? 0) + v;
  return sum;
}

// ---------------------------------------------------------------------------------------------
// The guest

export interface Step {
  /** Guest uptime in seconds. */
  at: number;
  what: string;
}

export interface Pattern {
  name: string;
  offset: number;
  length: number;
  sha256: string;
}

/** A device range the guest names for the host (`RIG-RANGE <kind> <offset> <length>`). */
export interface Range {
  kind: string;
  offset: number;
  length: number;
}

/** A host step the guest asked for (`RIG-HOST <name>`) and how long the host took to answer. */
export interface HostStepRecord {
  name: string;
  ms: number;
  error?: string;
}

export interface GuestRun {
  name: string;
  /** The rig's exit status: the script's, or 124 timeout, 125 no status, 126 kernel trouble. */
  status: number | null;
  console: string;
  consoleLog: string;
  wallMs: number;
  steps: Step[];
  patterns: Pattern[];
  ranges: Range[];
  hostSteps: HostStepRecord[];
  /** Connections the daemon logged as closed, once it had closed all it negotiated. */
  connections: ConnectionRecord[];
}

/**
 * A host step: runs when the guest prints `RIG-HOST <name>` (lib.sh's host_step), with the
 * console so far. The guest waits until the host answers: the harness then creates the volume
 * `ack-<name>` (or `abort-<name>` when the step threw), which the guest sees in the export list
 * it polls with `nbd-client -l` through the NBD port, the only way it can reach the host.
 */
export type HostStep = (consoleSoFar: string) => Promise<void>;

export interface GuestOptions {
  /** Names the logs (LOG_DIR/NAME.console.log, NAME.iomapd.log). */
  name: string;
  /** A file in test/kernel/guest/, run after guest/lib.sh. */
  scenario: string;
  env?: Record<string, string>;
  daemon: Daemon;
  /** The guest's own bound, in seconds (less if the suite budget has less left). */
  timeoutSec: number;
  /** Steps the guest may ask the host for (an image daemon only: the answer is a new volume). */
  hostSteps?: Record<string, HostStep>;
}

/** Seconds a boot may still take within the suite budget. */
function budgetLeftSec(): number {
  const start = suiteStart ?? Date.now();
  return Math.floor((SUITE_BUDGET_MS - (Date.now() - start)) / 1000);
}

export function parseRanges(text: string): Range[] {
  return [...text.matchAll(/^RIG-RANGE (\S+) (\d+) (\d+)\s*$/gm)].map((m) => ({ kind: m[1]!, offset: Number(m[2]), length: Number(m[3]) }));
}

/**
 * Watches the console file for `RIG-HOST <name>` lines while the guest runs and answers each one,
 * in order, by running its step and creating `ack-<name>` (or `abort-<name>`). Returns a function
 * that stops the watch and waits for a step in progress.
 */
function answerHostSteps(consoleLog: string, daemon: Daemon, steps: Record<string, HostStep>, records: HostStepRecord[]): () => Promise<void> {
  let done = false;
  let answered = 0;
  const loop = (async () => {
    while (!done) {
      await sleep(CONSOLE_POLL_MS);
      let text: string;
      try {
        text = await readFile(consoleLog, 'utf8');
      } catch {
        continue;
      }
      const asked = [...text.matchAll(/^RIG-HOST (\S+)\s*$/gm)].map((m) => m[1]!);
      while (answered < asked.length) {
        const name = asked[answered++]!;
        const t0 = Date.now();
        const step = steps[name];
        let error: string | undefined;
        try {
          if (step === undefined) throw new Error(`the guest asked for host step "${name}", which this test does not define`);
          await step(text);
        } catch (e) {
          error = (e as Error).message;
        }
        try {
          await cli(['volume', 'create', daemon.image, `${error === undefined ? 'ack' : 'abort'}-${name}`, '--size', '4K']);
        } catch (e) {
          error = `${error === undefined ? '' : `${error}\n(also: `}could not answer the guest: ${(e as Error).message}${error === undefined ? '' : ')'}`;
        }
        records.push({ name, ms: Date.now() - t0, ...(error === undefined ? {} : { error }) });
      }
    }
  })();
  return async () => {
    done = true;
    await loop;
  };
}

/** Boots the guest with a scenario, waits for it (bounded) and for the daemon's closing logs. */
export async function runGuest(opts: GuestOptions): Promise<GuestRun> {
  const left = budgetLeftSec() - 20;
  if (left < 30) throw new Error(`the kernel suite's budget of ${SUITE_BUDGET_MS / 1000} s is spent; not booting "${opts.name}"`);
  const timeoutSec = Math.min(opts.timeoutSec, left);
  mkdirSync(LOG_DIR, { recursive: true });
  const consoleLog = join(LOG_DIR, `${opts.name}.console.log`);
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-kernel-guest-'));
  try {
    const script = join(dir, 'test.sh');
    const lib = await readFile(join(GUEST_DIR, 'lib.sh'), 'utf8');
    const body = await readFile(join(GUEST_DIR, opts.scenario), 'utf8');
    await writeFile(script, `${lib}\n# ---- ${opts.scenario}\n${body}`);
    const args = ['run', '--script', script, '--port', String(opts.daemon.port), '--timeout', String(timeoutSec), '--log', consoleLog, '--quiet'];
    for (const [k, v] of Object.entries(opts.env ?? {})) args.push('--env', `${k}=${v}`);

    const t0 = Date.now();
    const child = spawn(RIG, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let rigOutput = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (rigOutput += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (rigOutput += d));
    const hostSteps: HostStepRecord[] = [];
    const stopAnswering = opts.hostSteps === undefined ? async () => {} : answerHostSteps(consoleLog, opts.daemon, opts.hostSteps, hostSteps);
    // The rig kills QEMU 60 s after the guest's bound; this is the last resort.
    const hardMs = (timeoutSec + 90) * 1000;
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      killGroup(child);
    }, hardMs);
    const exit = await exitOf(child);
    clearTimeout(timer);
    await stopAnswering();
    const wallMs = Date.now() - t0;

    // The daemon logs each connection when it closes: after DISC, or when the relay goes away.
    const deadline = Date.now() + CLOSE_LOG_MS;
    while (opts.daemon.closed().length < opts.daemon.negotiated().length && Date.now() < deadline && opts.daemon.exited() === null) {
      await sleep(100);
    }
    await writeFile(join(LOG_DIR, `${opts.name}.iomapd.log`), opts.daemon.output());

    let consoleText = '';
    try {
      consoleText = readFileSync(consoleLog, 'utf8');
    } catch {
      // no console: rigOutput says why
    }
    consoleText += `\n--- rig ---\n${rigOutput}${killed ? `\n[harness] rig killed after ${hardMs} ms` : ''}`;
    return {
      name: opts.name,
      status: exit.code,
      console: consoleText,
      consoleLog,
      wallMs,
      steps: [...consoleText.matchAll(/^RIG-STEP (\d+(?:\.\d+)?) (.*)$/gm)].map((m) => ({ at: Number(m[1]), what: m[2]! })),
      patterns: [...consoleText.matchAll(/^RIG-PATTERN (\S+) (\d+) (\d+) ([0-9a-f]{64})$/gm)].map((m) => ({
        name: m[1]!,
        offset: Number(m[2]),
        length: Number(m[3]),
        sha256: m[4]!,
      })),
      ranges: parseRanges(consoleText),
      hostSteps,
      connections: opts.daemon.closed(),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A failure message: what went wrong, then the console tail and the daemon log tail. */
export function explain(run: GuestRun, daemon: Daemon, what: string): string {
  return [
    `${what} (scenario "${run.name}", rig status ${run.status}, ${(run.wallMs / 1000).toFixed(1)} s)`,
    `--- guest console (tail; all of it: ${run.consoleLog}) ---`,
    tail(run.console),
    `--- iomapd (${daemon.name}, ${daemon.backend}) ---`,
    tail(daemon.output(), 40),
  ].join('\n');
}

/**
 * Throws unless every host step succeeded, the guest script passed, the kernel logged no oops,
 * BUG, warning or hung task, the daemon is still running, and every connection it negotiated was
 * closed and counted.
 */
export function assertGuestPassed(run: GuestRun, daemon: Daemon): void {
  const problems: string[] = [];
  for (const h of run.hostSteps) if (h.error !== undefined) problems.push(`host step "${h.name}" failed: ${h.error}`);
  if (run.status !== 0) {
    const reason = /^RIG-FAIL: (.*)$/m.exec(run.console)?.[1];
    problems.push(
      run.status === 124
        ? 'the guest timed out (hung?): its blocked tasks are in the kernel log below'
        : run.status === 125
          ? 'the guest printed no exit status (crash, panic or setup failure)'
          : run.status === 126
            ? 'the guest script passed but the kernel logged trouble'
            : `the guest script failed with status ${run.status}${reason === undefined ? '' : `: ${reason}`}`,
    );
  }
  const trouble = run.console.split('\n').find((l) => KERNEL_TROUBLE.test(l));
  if (trouble !== undefined) problems.push(`the guest kernel logged: ${trouble.trim()}`);
  const exit = daemon.exited();
  if (exit !== null) problems.push(`iomapd died during the run (code ${exit.code}, signal ${exit.signal})`);
  if (problems.length === 0 && run.connections.length < daemon.negotiated().length) {
    problems.push(`iomapd negotiated ${daemon.negotiated().length} connections but logged only ${run.connections.length} as closed within ${CLOSE_LOG_MS} ms`);
  }
  if (problems.length > 0) throw new Error(explain(run, daemon, problems.join('; ')));
}

/**
 * Stops the daemon (an image must then check clean) and compares each pattern the guest wrote
 * with the same bytes on the host: in the raw file, or in the image's `default` volume read
 * through its extent map from the image file.
 */
export async function checkPatternsOnHost(run: GuestRun, daemon: Daemon): Promise<void> {
  await daemon.stop();
  const reader = await daemon.hostReader();
  try {
    for (const p of run.patterns) {
      const digest = createHash('sha256')
        .update(await reader.read(p.offset, p.length))
        .digest('hex');
      if (digest !== p.sha256) {
        throw new Error(explain(run, daemon, `pattern ${p.name} (${p.length} bytes at ${p.offset}) differs on the host (${daemon.backend === 'raw' ? 'raw file' : 'image volume default'})`));
      }
    }
  } finally {
    await reader.close();
  }
}

/** One line per connection and the totals, for the test output. */
export function describeCounts(run: GuestRun): string {
  const steps = run.steps.map((s, i) => {
    const next = run.steps[i + 1];
    return next === undefined ? `${s.what}` : `${s.what} ${(next.at - s.at).toFixed(1)}s`;
  });
  return [
    `[kernel] ${run.name}: ${(run.wallMs / 1000).toFixed(1)} s wall`,
    ...run.connections.map((c) => `  conn ${c.conn} (${c.export === '' ? 'raw file' : c.export}, ${c.reason}): ${JSON.stringify(c.requests)}`),
    `  total: ${JSON.stringify(totals(run.connections))}`,
    `  steps: ${steps.join(' | ')}`,
    ...(run.hostSteps.length === 0 ? [] : [`  host steps: ${run.hostSteps.map((h) => `${h.name} ${(h.ms / 1000).toFixed(1)}s${h.error === undefined ? '' : ' FAILED'}`).join(' | ')}`]),
  ].join('\n');
}
