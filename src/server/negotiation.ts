// Option negotiation (fixed newstyle only): one option in, its replies out. No sockets here: the
// connection feeds options and writes what comes back, so transcripts are testable as bytes.
import { Info, Opt, Rep } from '../protocol/constants.ts';
import {
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContextEntry,
  encodeOptionReply,
  encodeServerEntry,
  parseInfoRequest,
  parseMetaContextRequest,
} from '../protocol/handshake.ts';
import { decodeString } from '../protocol/strings.ts';
import { Limits } from './limits.ts';
import type { Admission, ClientView, Export, ExportRegistry } from './export-registry.ts';
import { contextsFor, listContexts, selectContexts } from './meta-contexts.ts';
import { transmissionFlags } from './transmission-flags.ts';

/** What one connection has negotiated so far. */
export interface Session {
  noZeroes: boolean;
  structured: boolean;
  extended: boolean;
  /** The SET_META_CONTEXT selection and the export it was made for. */
  meta: { exportName: string; ids: Map<string, number> } | null;
  nextContextId: number;
  /** Set once STARTTLS has completed: who the client is, and what was negotiated (for the log). */
  tls: TlsSession | null;
}

export interface TlsSession {
  readonly identities: readonly string[];
  readonly version: string;
  readonly cipher: string;
}

export const newSession = (noZeroes: boolean): Session => ({
  noZeroes,
  structured: false,
  extended: false,
  meta: null,
  nextContextId: 1,
  tls: null,
});

const clientView = (session: Session): ClientView => ({ tls: session.tls !== null, identities: session.tls?.identities ?? [] });

export type OptionResult =
  | { readonly kind: 'continue'; readonly replies: Buffer[]; readonly refused?: Refusal }
  | { readonly kind: 'close'; readonly replies: Buffer[]; readonly reason: string; readonly refused?: Refusal }
  | { readonly kind: 'transmission'; readonly replies: Buffer[]; readonly export: Export }
  /** STARTTLS accepted: the ACK goes out in plain text, then the TLS handshake runs. */
  | { readonly kind: 'starttls'; readonly replies: Buffer[] };

/** An existing export the client was refused (the connection logs it at warn). */
export interface Refusal {
  readonly export: string;
  readonly reason: string;
}

const text = (s: string): Buffer => Buffer.from(s, 'utf8');
const reply = (option: number, type: number, payload?: Buffer): Buffer => encodeOptionReply(option, type, payload);
const errorReply = (option: number, type: number, message: string): OptionResult => ({
  kind: 'continue',
  replies: [reply(option, type, text(message))],
});

export function handleOption(
  session: Session,
  option: number,
  data: Buffer,
  registry: ExportRegistry,
  shuttingDown: boolean,
): OptionResult {
  if (shuttingDown && option !== Opt.ABORT) {
    if (option === Opt.EXPORT_NAME) return { kind: 'close', replies: [], reason: 'shutting down' };
    return errorReply(option, Rep.ERR_SHUTDOWN, 'the server is shutting down');
  }
  // TLS-only mode (proto.md "TLS support"): before TLS only STARTTLS and ABORT are served.
  if (registry.policy.tlsMode === 'require' && session.tls === null && option !== Opt.STARTTLS && option !== Opt.ABORT) {
    if (option === Opt.EXPORT_NAME) return { kind: 'close', replies: [], reason: 'EXPORT_NAME before TLS' };
    return errorReply(option, Rep.ERR_TLS_REQD, 'this server requires TLS: send STARTTLS first');
  }
  switch (option) {
    case Opt.EXPORT_NAME:
      return exportName(session, data, registry);
    case Opt.ABORT:
      return { kind: 'close', replies: [reply(option, Rep.ACK)], reason: 'client aborted' };
    case Opt.LIST:
      return list(session, data, registry);
    case Opt.STARTTLS:
      if (data.length !== 0) return errorReply(option, Rep.ERR_INVALID, 'STARTTLS takes no data');
      if (registry.policy.tlsMode === 'off') return errorReply(option, Rep.ERR_UNSUP, 'TLS is not configured on this server');
      if (session.tls !== null) return errorReply(option, Rep.ERR_INVALID, 'TLS is already active');
      return { kind: 'starttls', replies: [reply(option, Rep.ACK)] };
    case Opt.INFO:
    case Opt.GO:
      return infoOrGo(session, option, data, registry);
    case Opt.STRUCTURED_REPLY:
      return structuredReply(session, data);
    case Opt.EXTENDED_HEADERS:
      return extendedHeaders(session, data);
    case Opt.LIST_META_CONTEXT:
    case Opt.SET_META_CONTEXT:
      return metaContext(session, option, data, registry);
    default:
      return errorReply(option, Rep.ERR_UNSUP, `option ${option} is not supported`);
  }
}

/** Block sizes every export advertises: 512 minimum (the kernel's default), the device's own rest. */
function blockSizeInfo(exp: Export): Buffer {
  const sizes = exp.device.blockSizes;
  return encodeInfoBlockSize(sizes.minimum, sizes.preferred, Math.min(sizes.maximum, Limits.advertisedMaxPayload));
}

function exportName(session: Session, data: Buffer, registry: ExportRegistry): OptionResult {
  // EXPORT_NAME cannot carry an error: anything wrong closes the connection.
  if (session.extended) return { kind: 'close', replies: [], reason: 'EXPORT_NAME after extended headers' };
  const decodedName = decodeString(data, 0, data.length, 'export name');
  if (!decodedName.ok) return { kind: 'close', replies: [], reason: decodedName.message };
  const name = decodedName.value;
  const admission = registry.open(name, clientView(session));
  if (!admission.ok) return { kind: 'close', replies: [], reason: `unknown export "${name}"`, ...refusal(admission) };
  const exp = admission.export;
  const flags = transmissionFlags(exp.device, session.structured);
  return { kind: 'transmission', replies: [encodeExportNameReply(exp.device.size, flags, session.noZeroes)], export: exp };
}

/** Why an existing export was refused, for the log; nothing for a name that does not exist. */
function refusal(admission: Admission & { ok: false }): { refused?: Refusal } {
  return admission.export === undefined ? {} : { refused: { export: admission.export.name, reason: admission.reason } };
}

/** The error reply for a refused name: unknown, or (selective TLS mode) TLS required. */
function refusedReply(option: number, name: string, admission: Admission & { ok: false }): OptionResult {
  const result =
    admission.answer === 'tls-required'
      ? errorReply(option, Rep.ERR_TLS_REQD, `export "${name}" requires TLS`)
      : errorReply(option, Rep.ERR_UNKNOWN, `no export named "${name}"`);
  return { ...result, ...refusal(admission) } as OptionResult;
}

function list(session: Session, data: Buffer, registry: ExportRegistry): OptionResult {
  // With data, only the error: sending the list too would desynchronise the client.
  if (data.length !== 0) return errorReply(Opt.LIST, Rep.ERR_INVALID, 'LIST takes no data');
  const replies = registry.visible(clientView(session)).map((e) => reply(Opt.LIST, Rep.SERVER, encodeServerEntry(e.name, e.description)));
  replies.push(reply(Opt.LIST, Rep.ACK));
  return { kind: 'continue', replies };
}

function infoOrGo(session: Session, option: number, data: Buffer, registry: ExportRegistry): OptionResult {
  const request = parseInfoRequest(data);
  if (!request.ok) return errorReply(option, Rep.ERR_INVALID, request.message);
  const admission = registry.open(request.value.name, clientView(session));
  if (!admission.ok) return refusedReply(option, request.value.name, admission);
  const exp = admission.export;

  const flags = transmissionFlags(exp.device, session.structured || session.extended);
  const replies = [reply(option, Rep.INFO, encodeInfoExport(exp.device.size, flags))];
  const asked = new Set(request.value.infos);
  if (asked.has(Info.NAME)) replies.push(reply(option, Rep.INFO, encodeInfoString(Info.NAME, exp.name)));
  if (asked.has(Info.DESCRIPTION) && exp.description !== '') {
    replies.push(reply(option, Rep.INFO, encodeInfoString(Info.DESCRIPTION, exp.description)));
  }
  // Sent even when not asked for: clients ignore info they did not request (protocol.md §2).
  replies.push(reply(option, Rep.INFO, blockSizeInfo(exp)));
  replies.push(reply(option, Rep.ACK));
  if (option === Opt.INFO) return { kind: 'continue', replies };
  return { kind: 'transmission', replies, export: exp };
}

function structuredReply(session: Session, data: Buffer): OptionResult {
  if (data.length !== 0) return errorReply(Opt.STRUCTURED_REPLY, Rep.ERR_INVALID, 'STRUCTURED_REPLY takes no data');
  if (session.structured || session.extended) {
    return errorReply(Opt.STRUCTURED_REPLY, Rep.ERR_INVALID, 'structured replies were already negotiated');
  }
  session.structured = true;
  return { kind: 'continue', replies: [reply(Opt.STRUCTURED_REPLY, Rep.ACK)] };
}

function extendedHeaders(session: Session, data: Buffer): OptionResult {
  if (data.length !== 0) return errorReply(Opt.EXTENDED_HEADERS, Rep.ERR_INVALID, 'EXTENDED_HEADERS takes no data');
  if (session.extended) return errorReply(Opt.EXTENDED_HEADERS, Rep.ERR_INVALID, 'extended headers were already negotiated');
  // Extended headers supersede structured replies and imply them for every reply.
  session.extended = true;
  session.structured = true;
  return { kind: 'continue', replies: [reply(Opt.EXTENDED_HEADERS, Rep.ACK)] };
}

function metaContext(session: Session, option: number, data: Buffer, registry: ExportRegistry): OptionResult {
  const isSet = option === Opt.SET_META_CONTEXT;
  // SET replaces the whole selection, even when it then fails.
  if (isSet) session.meta = null;
  if (isSet && !session.structured) {
    return errorReply(option, Rep.ERR_INVALID, 'SET_META_CONTEXT needs structured replies first');
  }
  const request = parseMetaContextRequest(data);
  if (!request.ok) return errorReply(option, Rep.ERR_INVALID, request.message);
  const { exportName: name, queries } = request.value;
  const admission = registry.open(name, clientView(session));
  if (!admission.ok) return refusedReply(option, name, admission);
  const supported = contextsFor(admission.export.device, registry.onlyDirtyBitmap);

  const replies: Buffer[] = [];
  if (isSet) {
    const ids = new Map<string, number>();
    for (const context of selectContexts(queries, supported)) {
      const id = session.nextContextId++;
      ids.set(context, id);
      replies.push(reply(option, Rep.META_CONTEXT, encodeMetaContextEntry(id, context)));
    }
    session.meta = { exportName: name, ids };
  } else {
    for (const context of listContexts(queries, supported)) {
      replies.push(reply(option, Rep.META_CONTEXT, encodeMetaContextEntry(0, context)));
    }
  }
  replies.push(reply(option, Rep.ACK));
  return { kind: 'continue', replies };
}
