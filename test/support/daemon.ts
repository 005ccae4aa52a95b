// iomapd as a child process for the campaigns: start `iomapd serve IMAGE --socket PATH`, wait for
// its "listening" line, kill it (SIGKILL for crashes, SIGTERM for a clean stop), read its RSS.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The Node the project pins (npm's `node` package), not whatever `node` is on PATH. */
export const NODE = join(REPO_ROOT, 'node_modules', '.bin', 'node');
export const MAIN = join(REPO_ROOT, 'src', 'cli', 'main.ts');

const OUTPUT_TAIL = 6000;

export class Daemon {
  readonly child: ChildProcess;
  private out = '';
  private exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.exit = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => this.keep(d));
    child.stderr!.on('data', (d: string) => this.keep(d));
  }

  /** Starts the daemon and resolves once it listens; rejects (with its output) if it does not within the deadline. */
  static async start(image: string, socket: string, extraArgs: readonly string[] = [], timeoutMs = 20_000): Promise<Daemon> {
    const args = [MAIN, 'serve', image, '--socket', socket, '--log-level', 'warn', ...extraArgs];
    const child = spawn(NODE, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new Daemon(child);
    // At warn level the listening line is not logged: wait for the socket to accept instead.
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`iomapd exited before listening:\n${d.output()}`);
      if (await canConnect(socket)) return d;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`iomapd did not listen within ${timeoutMs} ms:\n${d.output()}`);
      }
      await new Promise((r) => setTimeout(r, 15));
    }
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.out;
  }

  /** SIGKILL: the process dies at once; the page cache keeps what it wrote (a process crash, not power loss). */
  async kill(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    await this.waitExit(10_000);
  }

  /** SIGTERM and a clean exit (code 0) within the deadline. */
  async stop(timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.alive) this.child.kill('SIGTERM');
    return this.waitExit(timeoutMs);
  }

  private async waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
    const r = await Promise.race([this.exit, timeout]);
    clearTimeout(timer);
    if (r === null) {
      this.child.kill('SIGKILL');
      throw new Error(`iomapd (pid ${this.pid}) did not exit within ${timeoutMs} ms`);
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

  private keep(d: string): void {
    this.out += d;
    if (this.out.length > 4 * OUTPUT_TAIL) this.out = this.out.slice(-OUTPUT_TAIL);
  }
}

async function canConnect(path: string): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const s = connect({ path });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Runs the iomapd CLI to completion (e.g. `check`), bounded by a timeout. */
export function runCli(args: readonly string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [MAIN, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`iomapd ${args.join(' ')} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
