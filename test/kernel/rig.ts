// The kernel rig runner: builds the rig (scripts/rig/rig build), boots the guest with a scenario
// script (test/kernel/guest/) against a running daemon, answers the guest's requests for host-side
// steps while it runs, and collects what the guest and the daemon reported.
//
// Every wait is bounded: the build, the guest (by its own watchdog, by `timeout` around QEMU and
// by a last bound here), the guest's wait for a host step, and the whole suite (SUITE_BUDGET_MS:
// each boot gets at most what is left). The daemon's own bounds are in kernel-daemon.ts.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'vitest';
import { REPO_ROOT, type Exit } from '../support/daemon.ts';
import { tail, type ConnectionRecord, type KernelDaemon } from './kernel-daemon.ts';

const RIG = join(REPO_ROOT, 'scripts', 'rig', 'rig');
const GUEST_DIR = join(REPO_ROOT, 'test', 'kernel', 'guest');
/** Console and daemon logs of the last run of each scenario, kept for reading after a failure. */
export const LOG_DIR = join(process.env.RIG_CACHE ?? join(REPO_ROOT, '.cache', 'rig'), 'logs');

/** First build: package installs and a 70 MB download; a cached build takes a few seconds. */
export const BUILD_TIMEOUT_MS = 15 * 60_000;
/** How often the host looks at the guest console for RIG-HOST requests. */
const CONSOLE_POLL_MS = 200;
/** After the guest is done, how long the daemon may take to log its closed connections. */
export const CLOSE_LOG_MS = 10_000;
/** The whole kernel suite, from the first boot (IOMAPD_KERNEL_BUDGET_S overrides). */
const SUITE_BUDGET_MS = Number(process.env.IOMAPD_KERNEL_BUDGET_S ?? 720) * 1000;

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
// The build

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
  /** A file in test/kernel/guest/, run after guest/lib.sh; several run one after the other. */
  scenario: string | readonly string[];
  env?: Record<string, string>;
  /** Host files the guest gets in /run/rig/files/ under their base names (keys: never in env). */
  files?: readonly string[];
  daemon: KernelDaemon;
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
function answerHostSteps(consoleLog: string, daemon: KernelDaemon, steps: Record<string, HostStep>, records: HostStepRecord[]): () => Promise<void> {
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
          await daemon.cli(['volume', 'create', daemon.image, `${error === undefined ? 'ack' : 'abort'}-${name}`, '--size', '4K']);
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
  // The last run's console must go first: the host-step poller would answer its RIG-HOST lines
  // (a snapshot of an empty volume, taken before this guest even booted).
  rmSync(consoleLog, { force: true });
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-kernel-guest-'));
  try {
    const script = join(dir, 'test.sh');
    const lib = await readFile(join(GUEST_DIR, 'lib.sh'), 'utf8');
    let text = lib;
    for (const scenario of typeof opts.scenario === 'string' ? [opts.scenario] : opts.scenario) {
      text += `\n# ---- ${scenario}\n${await readFile(join(GUEST_DIR, scenario), 'utf8')}`;
    }
    await writeFile(script, text);
    const args = ['run', '--script', script, '--port', String(opts.daemon.port), '--timeout', String(timeoutSec), '--log', consoleLog, '--quiet'];
    for (const [k, v] of Object.entries(opts.env ?? {})) args.push('--env', `${k}=${v}`);
    for (const f of opts.files ?? []) args.push('--file', f);

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
