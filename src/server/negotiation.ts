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
import type { Export, ExportRegistry } from './export-registry.ts';
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
}

export const newSession = (noZeroes: boolean): Session => ({
  noZeroes,
  structured: false,
  extended: false,
  meta: null,
  nextContextId: 1,
});

export type OptionResult =
  | { readonly kind: 'continue'; readonly replies: Buffer[] }
  | { readonly kind: 'close'; readonly replies: Buffer[]; readonly reason: string }
  | { readonly kind: 'transmission'; readonly replies: Buffer[]; readonly export: Export };

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
  switch (option) {
    case Opt.EXPORT_NAME:
      return exportName(session, data, registry);
    case Opt.ABORT:
      return { kind: 'close', replies: [reply(option, Rep.ACK)], reason: 'client aborted' };
    case Opt.LIST:
      return list(data, registry);
    case Opt.STARTTLS:
      if (data.length !== 0) return errorReply(option, Rep.ERR_INVALID, 'STARTTLS takes no data');
      return errorReply(option, Rep.ERR_UNSUP, 'TLS is not configured on this server');
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
  const exp = registry.find(name);
  if (exp === undefined) return { kind: 'close', replies: [], reason: `unknown export "${name}"` };
  const flags = transmissionFlags(exp.device, session.structured);
  return { kind: 'transmission', replies: [encodeExportNameReply(exp.device.size, flags, session.noZeroes)], export: exp };
}

function list(data: Buffer, registry: ExportRegistry): OptionResult {
  // With data, only the error: sending the list too would desynchronise the client.
  if (data.length !== 0) return errorReply(Opt.LIST, Rep.ERR_INVALID, 'LIST takes no data');
  const replies = registry.list().map((e) => reply(Opt.LIST, Rep.SERVER, encodeServerEntry(e.name, e.description)));
  replies.push(reply(Opt.LIST, Rep.ACK));
  return { kind: 'continue', replies };
}

function infoOrGo(session: Session, option: number, data: Buffer, registry: ExportRegistry): OptionResult {
  const request = parseInfoRequest(data);
  if (!request.ok) return errorReply(option, Rep.ERR_INVALID, request.message);
  const exp = registry.find(request.value.name);
  if (exp === undefined) return errorReply(option, Rep.ERR_UNKNOWN, `no export named "${request.value.name}"`);

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
  const exp = registry.find(name);
  if (exp === undefined) return errorReply(option, Rep.ERR_UNKNOWN, `no export named "${name}"`);
  const supported = contextsFor(exp.device);

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
