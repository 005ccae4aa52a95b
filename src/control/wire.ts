// The control channel's protocol: line-delimited JSON over a Unix socket (IMAGE.ctl, mode 0600).
//
//   request:  {"id": 1, "op": "snapshot", "args": {"volume": "vm1", "name": "vm1-before"}}
//   response: {"id": 1, "ok": true, "result": {...}}
//             {"id": 1, "ok": false, "error": {"code": "NOT_FOUND", "message": "..."}}
//
// One line each way per request; a connection's requests are answered in order. A long op (backup)
// may send progress lines before its response: {"id": 1, "progress": {"done": N, "total": M}}.
// The ops and their arguments are the ImageAdmin methods (admin.ts); `call` checks the arguments
// and runs one.
import { ErrorCodes, IomapdError, type ErrorCode } from '../util/errors.ts';
import type { ImageAdmin } from './admin.ts';

/** A request line longer than this is refused and the connection closed. */
export const MAX_REQUEST_BYTES = 64 * 1024;

export interface ControlRequest {
  readonly id: number;
  readonly op: string;
  readonly args: Record<string, unknown>;
}

export type ControlResponse =
  | { readonly id: number | null; readonly ok: true; readonly result: unknown }
  | { readonly id: number | null; readonly ok: false; readonly error: { readonly code: string; readonly message: string } };

/** How far a long op has got, sent before its response (bytes for a backup). */
export interface ControlProgress {
  readonly id: number;
  readonly progress: { readonly done: number; readonly total: number };
}

export function encodeLine(message: ControlRequest | ControlResponse | ControlProgress): string {
  return `${JSON.stringify(message)}\n`;
}

/** Parses one request line; malformed lines are BAD_ARGUMENT (answered, not fatal). */
export function parseRequest(line: string): ControlRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new IomapdError('BAD_ARGUMENT', 'a control request must be one JSON object per line');
  }
  if (typeof value !== 'object' || value === null) throw new IomapdError('BAD_ARGUMENT', 'a control request must be a JSON object');
  const { id, op, args } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(id)) throw new IomapdError('BAD_ARGUMENT', 'a control request needs an integer "id"');
  if (typeof op !== 'string') throw new IomapdError('BAD_ARGUMENT', 'a control request needs a string "op"');
  if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) {
    throw new IomapdError('BAD_ARGUMENT', '"args" must be an object');
  }
  return { id: id as number, op, args: (args ?? {}) as Record<string, unknown> };
}

/** The error a response carries, rebuilt on the client side (unknown codes become IO). */
export function responseError(error: { code: string; message: string }): IomapdError {
  const code = (Object.hasOwn(ErrorCodes, error.code) ? error.code : 'IO') as ErrorCode;
  return new IomapdError(code, error.message);
}

/** How the daemon answers a failure: IomapdErrors by their code, anything else as IO. */
export function errorBody(err: unknown): { code: string; message: string } {
  if (err instanceof IomapdError) return { code: err.code, message: err.message };
  return { code: 'IO', message: `internal error: ${(err as Error)?.message ?? String(err)}` };
}

function text(args: Record<string, unknown>, key: string): string {
  const v = args[key];
  if (typeof v !== 'string') throw new IomapdError('BAD_ARGUMENT', `"${key}" must be a string`);
  return v;
}

function size(args: Record<string, unknown>, key: string): number {
  const v = args[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new IomapdError('BAD_ARGUMENT', `"${key}" must be a positive integer`);
  return v;
}

function wholeNumber(args: Record<string, unknown>, key: string): number {
  const v = args[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new IomapdError('BAD_ARGUMENT', `"${key}" must be a whole number`);
  return v;
}

function flag(args: Record<string, unknown>, key: string): boolean {
  const v = args[key] ?? false;
  if (typeof v !== 'boolean') throw new IomapdError('BAD_ARGUMENT', `"${key}" must be true or false`);
  return v;
}

/** A boolean that must be given (a setting to change, not an option with a default). */
function required(args: Record<string, unknown>, key: string): boolean {
  if (args[key] === undefined) throw new IomapdError('BAD_ARGUMENT', `"${key}" is required`);
  return flag(args, key);
}

/** Every op: its name on the wire and how it runs on an ImageAdmin. */
type Progress = (done: number, total: number) => void;
const OPS: Record<string, (admin: ImageAdmin, args: Record<string, unknown>, progress?: Progress) => Promise<unknown>> = {
  'volume.ls': (a) => a.listVolumes(),
  'volume.create': (a, x) =>
    a.createVolume(text(x, 'name'), size(x, 'size'), { preallocate: flag(x, 'preallocate'), readOnly: flag(x, 'readOnly'), requireTls: flag(x, 'requireTls') }),
  'volume.rm': (a, x) => a.deleteVolume(text(x, 'name')),
  'volume.resize': (a, x) => a.resizeVolume(text(x, 'name'), size(x, 'size')),
  'volume.set': (a, x) => a.setRequireTls(text(x, 'name'), required(x, 'requireTls')),
  snapshot: (a, x) => a.snapshot(text(x, 'volume'), text(x, 'name')),
  clone: (a, x) => a.clone(text(x, 'snapshot'), text(x, 'name')),
  info: (a) => a.info(),
  map: (a, x) => a.map(text(x, 'volume')),
  diff: (a, x) => a.diff(text(x, 'from'), text(x, 'to')),
  backup: (a, x, p) => a.backup(text(x, 'volume'), text(x, 'file'), x.since === undefined ? undefined : text(x, 'since'), p),
  check: (a) => a.check(),
  stats: (a) => a.stats(),
  reload: (a) => a.reload(),
  gc: (a, x) => a.gc(x.graceMs === undefined ? {} : { graceMs: wholeNumber(x, 'graceMs') }),
};

/** Runs one request; `progress` carries a long op's progress lines to the client. */
export function call(admin: ImageAdmin, req: ControlRequest, progress?: Progress): Promise<unknown> {
  const op = Object.hasOwn(OPS, req.op) ? OPS[req.op] : undefined;
  if (op === undefined) return Promise.reject(new IomapdError('BAD_ARGUMENT', `unknown control op "${req.op}"`));
  return op(admin, req.args, progress);
}
