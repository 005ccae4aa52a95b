// The one launcher for `iomapd serve` as a child process, used by every test and campaign that
// starts a daemon: spawn it with the pinned Node, wait for its `listening` log line, stop it with
// SIGTERM (clean) or SIGKILL (a crash), and keep what it printed for failure messages. Also
// runCli for one-shot commands (`create`, `check`, a serve expected to refuse).
// A test that needs particular log lines whole (the kernel harness counts connections from them)
// passes onLog, which sees every JSON log line as it arrives.
//
// The listening line is logged at info, so a daemon always runs at `--log-level info` or lower
// (`trace`, `debug`); its output is kept as a bounded tail, and every error or fatal log line is
// kept whole so a test can require that there was none.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The Node the project pins (npm's `node` package), not whatever `node` is on PATH. */
export const NODE = join(REPO_ROOT, 'node_modules', '.bin', 'node');
export const MAIN = join(REPO_ROOT, 'src', 'cli', 'main.ts');

/** How long a start may take; the soak raises it (IOMAPD_READY_TIMEOUT_MS), its campaigns share two cores. */
const READY_TIMEOUT_MS = Number(process.env.IOMAPD_READY_TIMEOUT_MS ?? 20_000);
/** How much of each stream is kept (the tail), and how much a failure message quotes. */
const KEEP = 64 * 1024;
const QUOTE = 8_000;
const PINO_ERROR = 50;

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** One pino JSON log line's fields. */
export type LogEntry = Readonly<Record<string, unknown>>;

export interface DaemonOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  readyTimeoutMs?: number;
  /** Called with every JSON log line on stdout, in order (the output itself is kept only as a tail). */
  onLog?: (entry: LogEntry) => void;
}

/** Daemons still running; killed if the test process exits first (a timed-out test). */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export class Daemon {
  readonly child: ChildProcess;
  /** The command line, for failure messages. */
  readonly command: string;
  /** The URI from the `listening` line (set once start() resolves). */
  uri = '';
  /** The address from the `listening` line: `HOST:PORT` for TCP, the path for a Unix socket. */
  address = '';
  private stdout = '';
  private stderr = '';
  private pendingLine = '';
  private readonly badLines: string[] = [];
  private exitInfo: Exit | null = null;
  private readonly exitPromise: Promise<Exit>;
  private onListening: ((entry: { uri: string; address: string }) => void) | null = null;
  private readonly onLog: ((entry: LogEntry) => void) | undefined;

  private constructor(child: ChildProcess, command: string, onLog?: (entry: LogEntry) => void) {
    this.child = child;
    this.command = command;
    this.onLog = onLog;
    live.add(child);
    // 'close' rather than 'exit': it comes after the output has been read to the end.
    this.exitPromise = new Promise((resolve) =>
      child.on('close', (code, signal) => {
        live.delete(child);
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      }),
    );
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => this.onStdout(d));
    child.stderr!.on('data', (d: string) => (this.stderr = keepTail(this.stderr + d)));
  }

  /**
   * Starts `iomapd serve ARGS` and resolves once it logs `listening`; rejects with its command
   * line and output if it exits or stays silent past the deadline (it is killed then).
   */
  static async start(serveArgs: readonly string[], opts: DaemonOptions = {}): Promise<Daemon> {
    const args = [MAIN, 'serve', ...serveArgs];
    if (!serveArgs.includes('--log-level')) args.push('--log-level', 'info');
    const child = spawn(NODE, args, { cwd: opts.cwd ?? REPO_ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new Daemon(child, [NODE, ...args].join(' '), opts.onLog);
    const timeoutMs = opts.readyTimeoutMs ?? READY_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    try {
      ({ uri: d.uri, address: d.address } = await new Promise<{ uri: string; address: string }>((resolve, reject) => {
        d.onListening = resolve;
        timer = setTimeout(() => reject(new Error(`no "listening" line within ${timeoutMs} ms`)), timeoutMs);
        child.once('error', reject);
        void d.exitPromise.then(({ code, signal }) => reject(new Error(`it exited (code ${code}, signal ${signal}) before listening`)));
      }));
    } catch (err) {
      await d.kill().catch(() => {});
      throw new Error(`iomapd did not start: ${(err as Error).message}\n${d.describe()}`);
    } finally {
      clearTimeout(timer);
      d.onListening = null;
    }
    return d;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The TCP port it listens on (from the `listening` address; throws for a Unix socket). */
  get port(): number {
    const port = Number(this.address.slice(this.address.lastIndexOf(':') + 1));
    if (!Number.isInteger(port) || port <= 0) throw new Error(`iomapd listens on ${JSON.stringify(this.address)}, not a TCP port`);
    return port;
  }

  get alive(): boolean {
    return this.exitInfo === null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** How it exited, or null while it runs. */
  get exited(): Exit | null {
    return this.exitInfo;
  }

  /** What it printed (the tails of stdout, then stderr). */
  output(): string {
    return `${this.stdout}${this.stderr === '' ? '' : `--- stderr ---\n${this.stderr}`}`;
  }

  /** Just its stderr (where error messages go when the daemon refuses or fails). */
  errorOutput(): string {
    return this.stderr;
  }

  /** Every log line at level error or fatal, whole. */
  errorLogLines(): readonly string[] {
    return this.badLines;
  }

  /** The command line and the tail of its output, for a failure message. */
  describe(): string {
    const out = this.output();
    const quoted = out.length <= QUOTE ? out : `[... ${out.length - QUOTE} chars cut ...]\n${out.slice(-QUOTE)}`;
    return `$ ${this.command}\n--- output ---\n${quoted}`;
  }

  /** SIGKILL: the process dies at once; the page cache keeps what it wrote (a process crash, not power loss). */
  async kill(timeoutMs = 10_000): Promise<Exit> {
    if (this.alive) this.child.kill('SIGKILL');
    return this.waitExit(timeoutMs);
  }

  /** SIGTERM and the exit within the deadline (SIGKILL and a rejection if it hangs). */
  async stop(timeoutMs = 20_000): Promise<Exit> {
    if (this.alive) this.child.kill('SIGTERM');
    return this.waitExit(timeoutMs);
  }

  private async waitExit(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
    const r = await Promise.race([this.exitPromise, timeout]);
    clearTimeout(timer);
    if (r === null) {
      this.child.kill('SIGKILL');
      throw new Error(`iomapd (pid ${this.pid}) did not exit within ${timeoutMs} ms\n${this.describe()}`);
    }
    return r;
  }

  /** Resident set size in bytes (Linux /proc), or -1 if it cannot be read. */
  async rss(): Promise<number> {
    try {
      const status = await readFile(`/proc/${this.pid}/status`, 'utf8');
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
      return m ? Number(m[1]) * 1024 : -1;
    } catch {
      return -1;
    }
  }

  private onStdout(d: string): void {
    this.stdout = keepTail(this.stdout + d);
    this.pendingLine += d;
    let nl: number;
    while ((nl = this.pendingLine.indexOf('\n')) >= 0) {
      const line = this.pendingLine.slice(0, nl);
      this.pendingLine = this.pendingLine.slice(nl + 1);
      const entry = logEntry(line);
      if (entry === null) continue;
      if (typeof entry.level === 'number' && entry.level >= PINO_ERROR) this.badLines.push(line);
      if (entry.msg === 'listening' && typeof entry.uri === 'string') {
        this.onListening?.({ uri: entry.uri, address: typeof entry.address === 'string' ? entry.address : '' });
      }
      this.onLog?.(entry);
    }
  }
}

function keepTail(text: string): string {
  return text.length <= 2 * KEEP ? text : text.slice(-KEEP);
}

/** A pino JSON line's fields, or null for any other line. */
function logEntry(line: string): LogEntry | null {
  if (!line.startsWith('{')) return null;
  try {
    const obj: unknown = JSON.parse(line);
    return typeof obj === 'object' && obj !== null && !Array.isArray(obj) ? (obj as LogEntry) : null;
  } catch {
    return null;
  }
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the iomapd CLI to completion (e.g. `check`), bounded by a timeout. */
export function runCli(args: readonly string[], opts: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [MAIN, ...args], { cwd: opts.cwd ?? REPO_ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    // Decoded as a stream, so a character split across two chunks stays whole.
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`iomapd ${args.join(' ')} timed out after ${timeoutMs} ms\n${`${stdout}${stderr}`.slice(-QUOTE)}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
