// Interop harness: starts iomapd as a child process, runs real NBD clients against it, stops it.
//
// Every child process gets a deadline, and everything a child printed goes into the failure
// message, so a red test says which command ran, what it printed and what the server logged.
// A missing client tool fails the test under CI and is skipped loudly elsewhere (`requireTool`).
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import type { TestContext } from 'vitest';
import { Daemon, MAIN, NODE, REPO_ROOT } from '../support/daemon.ts';

export { REPO_ROOT };

export const MiB = 1024 * 1024;

/** Bounds for the server's own life cycle. */
const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;
/** Default bound for one client command. */
export const TOOL_TIMEOUT_MS = 40_000;
/** How much of a child's output goes into a failure message. */
const OUTPUT_TAIL = 8_000;

export type Transport = 'unix' | 'tcp';
export const TRANSPORTS: readonly Transport[] = ['unix', 'tcp'];

/** What a server with no `file` serves: a memory device, or an image made with `iomapd create`. */
export type Backend = 'memory' | 'image';
export interface Variant {
  readonly transport: Transport;
  readonly backend: Backend;
}
/**
 * The interop matrix: the memory device over both transports, and an image-store volume (through
 * the engine) over a Unix socket. The image's transport adds nothing the memory runs do not cover.
 */
export const VARIANTS: readonly Variant[] = [
  { transport: 'unix', backend: 'memory' },
  { transport: 'tcp', backend: 'memory' },
  { transport: 'unix', backend: 'image' },
];

// ---------------------------------------------------------------------------------------------
// Tools

interface ToolInfo {
  /** The Debian package that provides it; scripts/test installs these. */
  debianPackage: string;
  /** Returns true when the tool is usable here. */
  probe: () => boolean;
}

function onPath(command: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, command), fsConstants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

let pythonCache: string | null | undefined;

/**
 * A python3 that can `import nbd` (Debian's python3-libnbd installs into the system python).
 * /usr/bin/python3 comes first: a python3 earlier on PATH (pyenv, a venv) usually lacks the module,
 * which is also why the tests do not go through `nbdsh` (a wrapper around `python3 -m nbd`).
 */
export function pythonWithNbd(): string | null {
  if (pythonCache !== undefined) return pythonCache;
  pythonCache = null;
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    if (candidate.startsWith('/') && !existsSync(candidate)) continue;
    const r = spawnSync(candidate, ['-c', 'import nbd'], { timeout: 10_000, stdio: 'ignore' });
    if (r.status === 0) {
      pythonCache = candidate;
      break;
    }
  }
  return pythonCache;
}

const TOOLS = {
  nbdinfo: { debianPackage: 'libnbd-bin', probe: () => onPath('nbdinfo') },
  nbdcopy: { debianPackage: 'libnbd-bin', probe: () => onPath('nbdcopy') },
  'python3-nbd': { debianPackage: 'python3-libnbd', probe: () => pythonWithNbd() !== null },
  nbdsh: { debianPackage: 'libnbd-bin', probe: () => onPath('nbdsh') && pythonWithNbd() !== null },
  'qemu-io': { debianPackage: 'qemu-utils', probe: () => onPath('qemu-io') },
  'qemu-img': { debianPackage: 'qemu-utils', probe: () => onPath('qemu-img') },
  fio: { debianPackage: 'fio', probe: () => onPath('fio') },
  cmp: { debianPackage: 'diffutils', probe: () => onPath('cmp') },
  'nbd-client': { debianPackage: 'nbd-client', probe: () => onPath('nbd-client') || existsSync('/usr/sbin/nbd-client') },
  'systemd-socket-activate': { debianPackage: 'systemd', probe: () => onPath('systemd-socket-activate') },
  chromium: { debianPackage: 'chromium', probe: () => onPath('chromium') },
  script: { debianPackage: 'bsdutils', probe: () => onPath('script') },
} satisfies Record<string, ToolInfo>;

export type ToolName = keyof typeof TOOLS;

const probed = new Map<ToolName, boolean>();

export function haveTool(name: ToolName): boolean {
  let ok = probed.get(name);
  if (ok === undefined) {
    ok = TOOLS[name].probe();
    probed.set(name, ok);
  }
  return ok;
}

function inCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

/**
 * Call at the top of a test. A missing tool fails the test when CI is set (a skipped interop
 * test must never look like a pass there) and skips it with a loud warning otherwise.
 */
export function requireTool(ctx: TestContext, ...names: ToolName[]): void {
  const missing = names.filter((n) => !haveTool(n));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((n) => TOOLS[n].debianPackage))].join(' ');
  const what = `interop tool(s) missing: ${missing.join(', ')} (Debian: ${packages}); scripts/test installs them`;
  if (inCi()) throw new Error(`${what}. CI is set, so this is a failure, not a skip.`);
  const bar = '!'.repeat(100);
  console.warn(`\n${bar}\n!!! SKIPPING "${ctx.task.name}": ${what}\n${bar}\n`);
  ctx.skip(what);
}

// ---------------------------------------------------------------------------------------------
// Running commands

export interface RunResult {
  command: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function formatCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map(quote).join(' ');
}

function tail(text: string): string {
  return text.length <= OUTPUT_TAIL ? text : `[... ${text.length - OUTPUT_TAIL} chars cut ...]\n${text.slice(-OUTPUT_TAIL)}`;
}

/** Kill a child: SIGTERM, then SIGKILL if it is still there a little later. */
function killHard(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, 2_000);
  t.unref();
}

/** Runs a command to completion, bounded by a timeout. Never rejects on a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? TOOL_TIMEOUT_MS;
  const command = formatCommand(cmd, args);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? REPO_ROOT,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killHard(child);
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        command,
        code,
        signal,
        timedOut,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {}); // the child may exit without reading it all
      child.stdin!.end(opts.input);
    }
  });
}

/** A readable account of a finished command, for failure messages. */
export function describeRun(r: RunResult, server?: ScriptHost): string {
  const status = r.timedOut ? 'TIMED OUT' : r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`;
  let text = `$ ${r.command}\n-> ${status}\n--- stdout ---\n${tail(r.stdout)}\n--- stderr ---\n${tail(r.stderr)}`;
  if (server) text += `\n--- iomapd (${server.uri}) ---\n${tail(server.output())}`;
  return text;
}

/** Runs a command and throws, with everything it printed, unless it exits 0 in time. */
export async function runOk(
  cmd: string,
  args: readonly string[],
  opts: RunOptions & { server?: ScriptHost } = {},
): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0 || r.timedOut) throw new Error(`command failed\n${describeRun(r, opts.server)}`);
  return r;
}

/** The command line that runs the iomapd CLI, for scripts that call it themselves. */
export const IOMAPD_COMMAND: readonly string[] = [NODE, MAIN];

/** Runs the iomapd CLI (`iomapd ARGS...`) with the pinned Node; throws unless it exits 0. */
export function iomapd(args: readonly string[], opts: RunOptions & { server?: ScriptHost } = {}): Promise<RunResult> {
  return runOk(NODE, [MAIN, ...args], opts);
}

/** Where a script runs: a scratch directory, and the server whose output explains a failure. */
export interface ScriptHost {
  readonly uri: string;
  readonly dir: string;
  output(): string;
}

/**
 * Runs a Python program that uses libnbd's bindings (`import nbd`), the same API nbdsh exposes.
 * The script is written into the server's temporary directory so tracebacks name real lines.
 */
export async function runPython(
  server: ScriptHost,
  script: string,
  args: readonly string[] = [],
  opts: RunOptions = {},
): Promise<RunResult> {
  const python = pythonWithNbd();
  if (python === null) throw new Error('no python3 with the nbd module (python3-libnbd)');
  const path = join(server.dir, `script-${++scriptCounter}.py`);
  await writeFile(path, script);
  return runOk(python, [path, ...args], { ...opts, server });
}
let scriptCounter = 0;

/**
 * The environment for `nbdsh`, a shell script that runs `python3 -m nbd`: PATH starts with the
 * directory of a python3 that has the module.
 */
export function nbdshEnv(): NodeJS.ProcessEnv {
  const python = pythonWithNbd();
  if (python === null || !python.startsWith('/')) return process.env;
  return { ...process.env, PATH: `${dirname(python)}${delimiter}${process.env.PATH ?? ''}` };
}

// ---------------------------------------------------------------------------------------------
// The server

export interface ServeOptions {
  transport: Transport;
  /** Serve this file (an image, or with `raw` a raw disk); otherwise `backend`. */
  file?: string;
  /** `--raw`: serve `file` as a raw disk (`iomapd serve` refuses a file that is not an image without it). */
  raw?: boolean;
  /** Without `file`: memory (default), or a fresh image with one volume named after the export ('default' for ''). */
  backend?: Backend;
  /** `--size` (e.g. '64M'); defaults to 64M for the memory device and the image's volume. */
  size?: string;
  /** The image's data capacity (`iomapd create --capacity`; default: the volume size). */
  capacity?: string;
  exportName?: string;
  readOnly?: boolean;
  extraArgs?: readonly string[];
  /** Error log lines the test provokes on purpose (a failed reload): stop() does not count them. */
  expectedErrors?: RegExp;
}

export interface IomapdServer {
  /** The URI iomapd logged when it began listening. */
  readonly uri: string;
  readonly transport: Transport;
  readonly exportName: string;
  /** A temporary directory owned by this server (socket, scratch files); removed by stop(). */
  readonly dir: string;
  /** The image served (backend 'image'), for `iomapd` commands through the control channel. */
  readonly image: string | null;
  /** The daemon's process id (to signal it, e.g. SIGHUP). */
  readonly pid: number;
  /** URI of the same server with another export name (e.g. '' for the default export). */
  uriFor(exportName: string): string;
  /** Everything the server printed so far (stdout then stderr). */
  output(): string;
  /**
   * SIGTERM, wait for the exit, require exit code 0 and no error/fatal log line, remove the
   * temporary directory.
   */
  stop(): Promise<void>;
}

/** Starts `iomapd serve` (test/support/daemon.ts) and resolves once it has logged that it is listening. */
export async function startIomapd(opts: ServeOptions): Promise<IomapdServer> {
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-interop-'));
  const exportName = opts.exportName ?? '';
  const args: string[] = [];
  let image: string | null = null;
  if (opts.file === undefined && opts.backend === 'image') {
    image = join(dir, 'image.iomapd');
    const create = ['create', image, '--size', opts.size ?? '64M', '--volume', exportName === '' ? 'default' : exportName];
    if (opts.capacity !== undefined) create.push('--capacity', opts.capacity);
    try {
      await iomapd(create);
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    args.push(image);
  } else if (opts.file !== undefined) {
    args.push(opts.file);
    if (opts.raw) args.push('--raw');
  }
  if (opts.size !== undefined && image === null) args.push('--size', opts.size);
  else if (opts.file === undefined && image === null) args.push('--size', '64M');
  if (opts.transport === 'unix') args.push('--socket', join(dir, 'nbd.sock'));
  else args.push('--listen', '127.0.0.1:0');
  // An image's one volume is already named after the export (and "" reaches it as the default).
  if (opts.exportName !== undefined && image === null) args.push('--export', opts.exportName);
  if (opts.readOnly) args.push('--read-only');
  args.push('--log-level', 'info', ...(opts.extraArgs ?? []));

  let daemon: Daemon;
  try {
    // stdout is a pipe, so iomapd logs JSON lines there.
    daemon = await Daemon.start(args, { readyTimeoutMs: READY_TIMEOUT_MS });
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }

  let stopped = false;
  return {
    uri: daemon.uri,
    transport: opts.transport,
    exportName,
    dir,
    image,
    pid: daemon.pid,
    uriFor: (name: string) => withExportName(daemon.uri, name),
    output: () => daemon.output(),
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        const died = daemon.exited;
        if (died !== null) {
          throw new Error(`iomapd died during the test (code ${died.code}, signal ${died.signal})\n${daemon.describe()}`);
        }
        const result = await daemon.stop(STOP_TIMEOUT_MS);
        if (result.code !== 0) {
          throw new Error(`iomapd exited with code ${result.code} (signal ${result.signal}) after SIGTERM; expected 0\n${daemon.describe()}`);
        }
        // Client mistakes get error replies, not error logs: an error or fatal line is a server bug.
        const bad = daemon.errorLogLines().filter((line) => opts.expectedErrors === undefined || !opts.expectedErrors.test(line));
        if (bad.length > 0) {
          throw new Error(`iomapd logged ${bad.length} error/fatal line(s)\n$ ${daemon.command}\n${tail(bad.join('\n'))}`);
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Replaces the export name (the URI path) of an nbd:// or nbd+unix:// URI. */
export function withExportName(uri: string, name: string): string {
  const u = new URL(uri);
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

/**
 * Runs `body` against a fresh server and always stops it; a failed stop (non-zero exit, hang)
 * fails the test even when the body passed.
 */
export async function withIomapd<T>(opts: ServeOptions, body: (server: IomapdServer) => Promise<T>): Promise<T> {
  const server = await startIomapd(opts);
  let result: T;
  try {
    result = await body(server);
  } catch (e) {
    try {
      await server.stop();
    } catch (stopError) {
      (e as Error).message += `\n(also, stopping the server failed: ${(stopError as Error).message})`;
    }
    throw e;
  }
  await server.stop();
  return result;
}

/** A temporary directory for scratch files, removed afterwards. */
export async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-interop-files-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Deterministic pseudo-random bytes (xorshift32), with every fourth MiB left as zeros so that
 * copies also exercise zero detection (WRITE_ZEROES, holes).
 */
export function patternBytes(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= length; i += 4) {
    if (Math.floor(i / MiB) % 4 === 3) continue;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  return buf;
}

// ---------------------------------------------------------------------------------------------
// TLS (issue 12): the credentials each client family wants, from test/support/tls-fixtures.ts

/** What a client presents: an X.509 certificate directory, or a PSK file and the name to use. */
export type ClientCreds = { readonly kind: 'x509'; readonly dir: string } | { readonly kind: 'psk'; readonly file: string; readonly username: string };

/**
 * A directory in libnbd's and qemu's layout for a client certificate: `ca-cert.pem`,
 * `client-cert.pem`, `client-key.pem` (the fixtures keep `clients/NAME-cert.pem`).
 */
export async function x509ClientDir(into: string, caCert: string, cert: { cert: string; key: string }): Promise<ClientCreds> {
  await mkdir(into, { recursive: true });
  await copyFile(caCert, join(into, 'ca-cert.pem'));
  await copyFile(cert.cert, join(into, 'client-cert.pem'));
  await copyFile(cert.key, join(into, 'client-key.pem'));
  return { kind: 'x509', dir: into };
}

/**
 * The server's URI as `nbds://` / `nbds+unix://` with libnbd's TLS query parameters, for
 * `exportName`. The query is written by hand: paths stay readable in failure messages.
 */
export function tlsUri(server: IomapdServer, exportName: string, creds: ClientCreds | null): string {
  const plain = new URL(withExportName(server.uri, exportName));
  const scheme = plain.protocol.replace(/^nbds?(\+unix)?:$/, (_m, unix: string | undefined) => `nbds${unix ?? ''}:`);
  const params: string[] = [];
  const socket = plain.searchParams.get('socket');
  if (socket !== null) params.push(`socket=${socket}`);
  if (creds?.kind === 'x509') params.push(`tls-certificates=${creds.dir}`);
  // libnbd 1.14 (Debian 12) takes the PSK user name from the URI's user part only: it ignores a
  // `tls-username` parameter and falls back to the login name.
  if (creds?.kind === 'psk') params.push(`tls-psk-file=${creds.file}`);
  const authority = `${creds?.kind === 'psk' ? `${creds.username}@` : ''}${plain.host}`;
  return `${scheme}//${authority}${plain.pathname}${params.length > 0 ? `?${params.join('&')}` : ''}`;
}

/** The plain-text URI of the same export (`nbd://`, `nbd+unix://`), for clients without TLS. */
export function plainUri(server: IomapdServer, exportName: string): string {
  return withExportName(server.uri, exportName).replace(/^nbds(\+unix)?:/, (_m, unix: string | undefined) => `nbd${unix ?? ''}:`);
}

/**
 * qemu's arguments for a TLS client: the `--object` that holds the credentials (`tls0`), and the
 * `--image-opts` string for the export. qemu names the PSK file `keys.psk` inside `dir`, and checks
 * an X.509 server's certificate against a host name, which a Unix socket does not have.
 */
export function qemuTls(server: IomapdServer, exportName: string, creds: ClientCreds): { object: string; imageOpts: string } {
  const object =
    creds.kind === 'x509'
      ? `tls-creds-x509,id=tls0,dir=${creds.dir},endpoint=client`
      : `tls-creds-psk,id=tls0,dir=${dirname(creds.file)},username=${creds.username},endpoint=client`;
  if (creds.kind === 'psk' && !creds.file.endsWith('/keys.psk')) throw new Error(`qemu reads DIR/keys.psk, not ${creds.file}`);
  const u = new URL(server.uri);
  const socket = u.searchParams.get('socket');
  const where = socket !== null ? `server.type=unix,server.path=${socket},tls-hostname=localhost` : `server.type=inet,server.host=${u.hostname},server.port=${u.port}`;
  return { object, imageOpts: `driver=nbd,${where},export=${exportName},tls-creds=tls0` };
}

/** Every secret in `keyFiles` (PEM key bodies, psktool hex keys): none may appear in a daemon's output. */
export async function secretsIn(keyFiles: readonly string[]): Promise<string[]> {
  const secrets: string[] = [];
  for (const file of keyFiles) {
    const text = await readFile(file, 'utf8');
    for (const line of text.split('\n')) {
      const psk = /^[^:#\s][^:]*:([0-9a-fA-F]{16,})\s*$/.exec(line);
      if (psk) secrets.push(psk[1]!.toLowerCase(), psk[1]!.toUpperCase());
      else if (/^[A-Za-z0-9+/=]{40,}$/.test(line.trim())) secrets.push(line.trim());
    }
  }
  return secrets;
}

/** Throws, naming the file but never the secret, if any secret appears in `output`. */
export function expectNoSecrets(output: string, secrets: readonly string[], what = 'the daemon output'): void {
  const leaked = secrets.filter((s) => output.includes(s));
  if (leaked.length > 0) throw new Error(`${leaked.length} secret(s) (private key or PSK material) appeared in ${what}`);
}

/** The daemon's JSON log lines (whatever of its output is kept). */
export function logLines(server: { output(): string }): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of server.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line cut by the kept tail
    }
  }
  return out;
}

/** Waits (bounded) until a log line satisfies `match`, and returns it. */
export async function waitForLog(
  server: IomapdServer,
  match: (entry: Record<string, unknown>) => boolean,
  timeoutMs = 5_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = logLines(server).find(match);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`no matching log line within ${timeoutMs} ms\n--- iomapd ---\n${tail(server.output())}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** How a client authenticates: X.509 (a client certificate, checked with --tls-verify-peer) or PSK. */
export type TlsAuth = 'x509' | 'psk';
export interface TlsVariant {
  readonly transport: Transport;
  readonly auth: TlsAuth;
  /** An image-store volume, or a raw file (`--raw`). */
  readonly served: 'image' | 'raw';
}
/**
 * The TLS matrix: each transport with each kind of credential once, and each of those pairs
 * against one of the two kinds of export; every dimension is covered twice, in four servers.
 */
export const TLS_VARIANTS: readonly TlsVariant[] = [
  { transport: 'tcp', auth: 'x509', served: 'image' },
  { transport: 'unix', auth: 'psk', served: 'image' },
  { transport: 'unix', auth: 'x509', served: 'raw' },
  { transport: 'tcp', auth: 'psk', served: 'raw' },
];

/**
 * The server side of the TLS options: X.509 (client certificates required unless `verifyPeer` is
 * false), PSK, or both kinds of credential on one server.
 */
export function tlsServeArgs(
  fx: { certDir: string; pskFile: string },
  auth: TlsAuth | 'both',
  mode: 'on' | 'require' = 'require',
  verifyPeer = true,
): string[] {
  const args = ['--tls', mode];
  if (auth !== 'psk') args.push('--tls-certificates', fx.certDir, ...(verifyPeer ? ['--tls-verify-peer'] : []));
  if (auth !== 'x509') args.push('--tls-psk', fx.pskFile);
  return args;
}

/** ServeOptions for a TLS variant: export `exportName` of `size`, raw files kept in `scratch`. */
export function tlsServeOptions(v: TlsVariant, scratch: string, exportName: string, size: string, extraArgs: readonly string[]): ServeOptions {
  const base = { transport: v.transport, exportName, size, extraArgs };
  return v.served === 'image' ? { ...base, backend: 'image' } : { ...base, file: join(scratch, `${exportName}.raw`), raw: true };
}
