// Kernel rig harness: builds the rig (scripts/rig/rig build), starts iomapd on a fresh raw image
// on a free loopback port, boots the guest with a scenario script (test/kernel/guest/) and
// collects what the guest and the daemon reported.
//
// Every wait is bounded: the build, the daemon's start and stop, the guest (by its own watchdog,
// by `timeout` around QEMU and by a last bound here), and the whole suite (SUITE_BUDGET_MS: each
// boot gets at most what is left). A failure message carries the tail of the guest console
// (which ends with the kernel log) and of the daemon's log.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'vitest';

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
  reason: string;
  requests: RequestCounts;
}

export interface Daemon {
  readonly name: string;
  readonly port: number;
  /** The raw image file it serves. */
  readonly image: string;
  output(): string;
  /** Connections negotiated so far. */
  negotiated(): number;
  /** Connections closed so far, from the "connection closed" log lines. */
  closed(): ConnectionRecord[];
  /** Non-null once the process has exited. */
  exited(): Exit | null;
  /** SIGTERM, require exit code 0, remove the image. */
  stop(): Promise<void>;
}

interface LogLine {
  msg?: unknown;
  address?: unknown;
  conn?: unknown;
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

/** Starts `iomapd serve --raw` on a fresh sparse raw file, listening on a free loopback port. */
export async function startDaemon(name: string): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-kernel-'));
  const image = join(dir, 'disk.img');
  // --raw: the host side reads the guest's patterns back from the file at the same offsets.
  const args = [MAIN, 'serve', image, '--raw', '--size', IMAGE_SIZE, '--listen', '127.0.0.1:0', '--log-level', 'info'];
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

  let stopped = false;
  return {
    name,
    port,
    image,
    output,
    negotiated: () => lines.filter((l) => l.msg === 'negotiated').length,
    closed: () =>
      lines
        .filter((l) => l.msg === 'connection closed')
        .map((l) => ({
          conn: typeof l.conn === 'number' ? l.conn : -1,
          reason: typeof l.reason === 'string' ? l.reason : '',
          requests: (typeof l.requests === 'object' && l.requests !== null ? l.requests : {}) as RequestCounts,
        })),
    exited: () => exit,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
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
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Runs body against a fresh daemon and always stops it; a failed stop fails the test too. */
export async function withDaemon<T>(name: string, body: (d: Daemon) => Promise<T>): Promise<T> {
  const daemon = await startDaemon(name);
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
  return result;
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

export interface GuestRun {
  name: string;
  /** The rig's exit status: the script's, or 124 timeout, 125 no status, 126 kernel trouble. */
  status: number | null;
  console: string;
  consoleLog: string;
  wallMs: number;
  steps: Step[];
  patterns: Pattern[];
  /** Connections the daemon logged as closed, once it had closed all it negotiated. */
  connections: ConnectionRecord[];
}

export interface GuestOptions {
  /** Names the logs (LOG_DIR/NAME.console.log, NAME.iomapd.log). */
  name: string;
  /** A file in test/kernel/guest/, run after guest/lib.sh. */
  scenario: string;
  env?: Record<string, string>;
  daemon: Daemon;
  /** The guest's own bound, in seconds (less if the suite budget has less left). */
  timeoutSec: number;
}

/** Seconds a boot may still take within the suite budget. */
function budgetLeftSec(): number {
  const start = suiteStart ?? Date.now();
  return Math.floor((SUITE_BUDGET_MS - (Date.now() - start)) / 1000);
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
    // The rig kills QEMU 60 s after the guest's bound; this is the last resort.
    const hardMs = (timeoutSec + 90) * 1000;
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      killGroup(child);
    }, hardMs);
    const exit = await exitOf(child);
    clearTimeout(timer);
    const wallMs = Date.now() - t0;

    // The daemon logs each connection when it closes: after DISC, or when the relay goes away.
    const deadline = Date.now() + CLOSE_LOG_MS;
    while (opts.daemon.closed().length < opts.daemon.negotiated() && Date.now() < deadline && opts.daemon.exited() === null) {
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
    `--- iomapd (${daemon.name}) ---`,
    tail(daemon.output(), 40),
  ].join('\n');
}

/**
 * Throws unless the guest script passed, the kernel logged no oops, BUG, warning or hung task,
 * the daemon is still running, and every connection it negotiated was closed and counted.
 */
export function assertGuestPassed(run: GuestRun, daemon: Daemon): void {
  const problems: string[] = [];
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
  if (problems.length === 0 && run.connections.length < daemon.negotiated()) {
    problems.push(`iomapd negotiated ${daemon.negotiated()} connections but logged only ${run.connections.length} as closed within ${CLOSE_LOG_MS} ms`);
  }
  if (problems.length > 0) throw new Error(explain(run, daemon, problems.join('; ')));
}

/** Compares each pattern the guest wrote with the same bytes of the image file on the host. */
export async function checkPatternsOnHost(run: GuestRun, daemon: Daemon): Promise<void> {
  const fh = await open(daemon.image, 'r');
  try {
    for (const p of run.patterns) {
      const buf = Buffer.alloc(p.length);
      const { bytesRead } = await fh.read(buf, 0, p.length, p.offset);
      const digest = createHash('sha256').update(buf.subarray(0, bytesRead)).digest('hex');
      if (bytesRead !== p.length || digest !== p.sha256) {
        throw new Error(explain(run, daemon, `pattern ${p.name} (${p.length} bytes at ${p.offset}) differs in the image file on the host (read ${bytesRead} bytes)`));
      }
    }
  } finally {
    await fh.close();
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
    ...run.connections.map((c) => `  conn ${c.conn} (${c.reason}): ${JSON.stringify(c.requests)}`),
    `  total: ${JSON.stringify(totals(run.connections))}`,
    `  steps: ${steps.join(' | ')}`,
  ].join('\n');
}
