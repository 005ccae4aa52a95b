// Dispatch: turns a validated request into device calls and builds its reply. Wire flags become
// device options here and nowhere else. Errors are thrown; the connection maps them to errnos.
import { Cmd, CmdFlag, IOMAPD_MAPPING, StateFlag } from '../protocol/constants.ts';
import {
  encodeBlockStatusChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeOffsetHoleChunk,
  type HeaderStyle,
  type StatusExtent,
} from '../protocol/transmission.ts';
import type { BlockDevice, DeviceExtent } from '../engine/block-device.ts';
import { backupExtents, isBackupContext } from './backup-contexts.ts';
import { replyUnused } from './io-buffers.ts';
import type { RequestMetrics } from './request-metrics.ts';
import { allocReadReply, chunkTarget, finishReadReply, successReply } from './replies.ts';
import type { ValidRequest } from './validate.ts';

/** What dispatch needs of the connection it serves. */
export interface DispatchContext {
  readonly device: BlockDevice;
  readonly style: HeaderStyle;
  /** Selected meta contexts for this export, by name, with their ids. */
  readonly contexts: ReadonlyMap<string, number>;
  /** The export's request metrics (`serve --metrics`); null when nobody scrapes them. */
  readonly metrics: RequestMetrics | null;
}

/** The reply buffers for one request, to be written as a unit. */
export type Reply = Buffer[];

export async function dispatch(ctx: DispatchContext, req: ValidRequest, payload: Buffer | null): Promise<Reply> {
  const { device } = ctx;
  const fua = (req.flags & CmdFlag.FUA) !== 0;
  switch (req.type) {
    case Cmd.READ:
      return read(ctx, req);
    case Cmd.WRITE:
      if (req.length > 0) await device.write(payload!, req.offset, { fua });
      break;
    case Cmd.FLUSH:
      await device.flush();
      break;
    case Cmd.TRIM:
      if (req.length > 0) await device.trim(req.offset, req.length, { fua });
      break;
    case Cmd.WRITE_ZEROES:
      if (req.length > 0) {
        await device.zero(req.offset, req.length, {
          fua,
          mayTrim: (req.flags & CmdFlag.NO_HOLE) === 0,
          fast: (req.flags & CmdFlag.FAST_ZERO) !== 0,
        });
      }
      break;
    case Cmd.CACHE:
      if (req.length > 0) await device.cache(req.offset, req.length);
      break;
    case Cmd.BLOCK_STATUS:
      return blockStatus(ctx, req);
    default:
      // Validation admits no other command.
      throw new Error(`dispatch reached with command ${req.type}`);
  }
  return [successReply(ctx.style, req)];
}

async function read(ctx: DispatchContext, req: ValidRequest): Promise<Reply> {
  const { style, device } = ctx;
  if (req.length === 0) return [style === 'simple' ? successReply(style, req) : encodeNoneChunk(chunkTarget(style, req))];
  const { reply, data } = allocReadReply(style, req);
  // Plain data the device can read at once (no hole to report): no block status, no await.
  if (device.readNow?.(data, req.offset)) return [finishReadReply(style, req, reply)];
  const sparseOk = style !== 'simple' && device.capabilities.sparse && (req.flags & CmdFlag.DF) === 0;
  if (sparseOk) {
    const extents = await coverRange(device, req.offset, req.length);
    if (extents.some((e) => e.zero)) {
      replyUnused(reply);
      return sparseRead(ctx, req, extents);
    }
  }
  await device.read(data, req.offset);
  return [finishReadReply(style, req, reply)];
}

/** Block status for the whole range (devices may answer a prefix; ask again for the rest). */
async function coverRange(device: BlockDevice, offset: number, length: number): Promise<DeviceExtent[]> {
  const out: DeviceExtent[] = [];
  let at = offset;
  const end = offset + length;
  while (at < end) {
    const extents = await device.blockStatus(at, end - at);
    if (extents.length === 0) throw new Error('blockStatus returned no extents');
    for (const e of extents) {
      const len = Math.min(e.length, end - at);
      out.push({ length: len, hole: e.hole, zero: e.zero });
      at += len;
      if (at >= end) break;
    }
  }
  return out;
}

/** A structured READ as OFFSET_DATA chunks for data and OFFSET_HOLE chunks for zero runs. */
async function sparseRead(ctx: DispatchContext, req: ValidRequest, extents: DeviceExtent[]): Promise<Reply> {
  const style = ctx.style as 'structured' | 'extended';
  const target = chunkTarget(style, req);
  const reply: Buffer[] = [];
  const reads: Promise<void>[] = [];
  let at = req.offset;
  extents.forEach((e, i) => {
    const done = i === extents.length - 1;
    if (e.zero) {
      reply.push(encodeOffsetHoleChunk(target, BigInt(at), e.length, done));
    } else {
      const data = Buffer.allocUnsafe(e.length);
      reply.push(encodeOffsetDataHeader(target, BigInt(at), e.length, done), data);
      reads.push(ctx.device.read(data, at));
    }
    at += e.length;
  });
  await Promise.all(reads);
  return reply;
}

/** The largest extent length a 32-bit descriptor can carry, kept a multiple of 4096. */
const MAX_NARROW_EXTENT = 0x1_0000_0000 - 4096;

/**
 * One BLOCK_STATUS chunk per selected context, each from its own extents (so their lengths may
 * differ), in id order, DONE on the last. REQ_ONE limits each chunk to one descriptor.
 */
async function blockStatus(ctx: DispatchContext, req: ValidRequest): Promise<Reply> {
  const { style } = ctx;
  if (req.length === 0 || style === 'simple') return [successReply(style, req)];
  const reqOne = (req.flags & CmdFlag.REQ_ONE) !== 0;
  const answers = await Promise.all(
    [...ctx.contexts].map(async ([name, id]) => ({ id, extents: clampExtents(await contextExtents(ctx.device, name, req), req.length, style, reqOne) })),
  );
  const target = chunkTarget(style, req);
  return answers.map((a, i) => encodeBlockStatusChunk(target, a.id, a.extents, i === answers.length - 1));
}

/** A context's raw answer as wire descriptors (flags in that context's own terms). */
async function contextExtents(device: BlockDevice, context: string, req: ValidRequest): Promise<StatusExtent[]> {
  if (context === IOMAPD_MAPPING) {
    // Selection only offers this context for devices that have it (meta-contexts.ts).
    if (device.mappingStatus === undefined) throw new Error('iomapd:mapping selected for a device without mappingStatus');
    return device.mappingStatus(req.offset, req.length);
  }
  if (isBackupContext(context)) return backupExtents(device, context, req.offset, req.length);
  const raw = await device.blockStatus(req.offset, req.length);
  return raw.map((e) => ({ length: e.length, flags: (e.hole ? StateFlag.HOLE : 0) | (e.zero ? StateFlag.ZERO : 0) }));
}

/** Keeps descriptors inside the request (REQ_ONE: one) and within 32 bits for structured replies. */
function clampExtents(raw: readonly StatusExtent[], requested: number, style: HeaderStyle, reqOne: boolean): StatusExtent[] {
  const extents: StatusExtent[] = [];
  let covered = 0;
  for (const e of raw) {
    let length = Math.min(e.length, requested - covered);
    if (style === 'structured') length = Math.min(length, MAX_NARROW_EXTENT);
    if (length <= 0) break;
    extents.push({ length, flags: e.flags });
    covered += length;
    // A clamped extent ends the answer: the client asks again from where it stops.
    if (reqOne || length < e.length) break;
  }
  return extents;
}
