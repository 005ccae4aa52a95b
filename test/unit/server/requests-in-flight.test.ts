// Requests in flight (src/server/requests-in-flight.ts): each is answered once, with its reply or
// its error as an NBD errno; the per-connection limits (count, bytes held) and the server-wide
// budget hold reading back, and the budget wakes a waiting connection once a slot frees up.
import { describe, expect, it } from 'vitest';
import type { BlockDevice } from '../../../src/engine/block-device.ts';
import { Cmd, NbdErr } from '../../../src/protocol/constants.ts';
import type { DispatchContext, Reply } from '../../../src/server/dispatch.ts';
import { Limits } from '../../../src/server/limits.ts';
import { RequestBudget } from '../../../src/server/request-budget.ts';
import { heldBytes, RequestsInFlight } from '../../../src/server/requests-in-flight.ts';
import type { ValidRequest } from '../../../src/server/validate.ts';
import { IomapdError } from '../../../src/util/errors.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { workInFlight } from '../../../src/util/work-in-flight.ts';

const req = (type: number, length: number, cookie = 1n): ValidRequest => ({ type, flags: 0, cookie, offset: 0, length, wireOffset: 0n });
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A device whose flushes and writes wait until the test settles them, one by one. */
function heldDevice(): { ctx: DispatchContext; pending: { resolve: () => void; reject: (e: unknown) => void }[] } {
  const pending: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  const wait = (): Promise<void> => new Promise((resolve, reject) => pending.push({ resolve, reject }));
  const device = { flush: wait, write: wait } as unknown as BlockDevice;
  return { ctx: { device, style: 'simple', contexts: new Map(), metrics: null }, pending };
}

/** The errno of a simple reply. */
const errnoOf = (reply: Reply): number => reply[0]!.readUInt32BE(4);

describe('RequestsInFlight', () => {
  it('counts what a request holds: its payload, or its READ reply', () => {
    expect(heldBytes(req(Cmd.WRITE, 4096), Buffer.alloc(4096))).toBe(4096);
    expect(heldBytes(req(Cmd.READ, 8192), null)).toBe(8192);
    expect(heldBytes(req(Cmd.TRIM, 1 << 20), null)).toBe(0);
  });

  it('answers each request once and is at its limit at the per-connection count until one is answered', async () => {
    const { ctx, pending } = heldDevice();
    const budget = new RequestBudget(100);
    const replies: Reply[] = [];
    const r = new RequestsInFlight(2, budget, () => {}, (reply) => replies.push(reply));
    r.start(ctx, req(Cmd.FLUSH, 0, 1n), null, silentLogger);
    expect(r.atLimit()).toBe(false);
    r.start(ctx, req(Cmd.FLUSH, 0, 2n), null, silentLogger);
    expect(r.count).toBe(2);
    expect(budget.inFlight).toBe(2);
    expect(r.atLimit()).toBe(true);
    pending[0]!.resolve();
    await settle();
    expect(replies).toHaveLength(1);
    expect(errnoOf(replies[0]!)).toBe(0);
    expect(replies[0]![0]!.readBigUInt64BE(8)).toBe(1n);
    expect(r.count).toBe(1);
    expect(budget.inFlight).toBe(1);
    expect(r.atLimit()).toBe(false);
  });

  it('the reply goes out before the server-wide slot is given back', async () => {
    const { ctx, pending } = heldDevice();
    const budget = new RequestBudget(100);
    const seen: number[] = [];
    const r = new RequestsInFlight(10, budget, () => {}, () => seen.push(budget.inFlight));
    r.start(ctx, req(Cmd.FLUSH, 0), null, silentLogger);
    pending[0]!.resolve();
    await settle();
    expect(seen).toEqual([1]);
    expect(budget.inFlight).toBe(0);
  });

  it('counts requests from a Unix-socket client apart, process-wide, until each is answered', async () => {
    const { ctx, pending } = heldDevice();
    const budget = new RequestBudget(100);
    const before = { ...workInFlight };
    const unix = new RequestsInFlight(10, budget, () => {}, () => {}, true);
    const tcp = new RequestsInFlight(10, budget, () => {}, () => {}, false);
    unix.start(ctx, req(Cmd.FLUSH, 0, 1n), null, silentLogger);
    tcp.start(ctx, req(Cmd.FLUSH, 0, 2n), null, silentLogger);
    expect(workInFlight.requests - before.requests).toBe(2);
    expect(workInFlight.overUnixSockets - before.overUnixSockets).toBe(1);
    pending[0]!.reject(new IomapdError('IO', 'failed')); // an error answers it too
    await settle();
    expect(workInFlight.overUnixSockets).toBe(before.overUnixSockets);
    pending[1]!.resolve();
    await settle();
    expect(workInFlight).toEqual(before);
  });

  it('is at its limit when its requests hold too many bytes', async () => {
    const { ctx, pending } = heldDevice();
    const r = new RequestsInFlight(100, new RequestBudget(100), () => {}, () => {});
    // Never touched: its pages are never committed.
    const payload = Buffer.allocUnsafeSlow(Limits.maxInFlightBytesPerConnection);
    r.start(ctx, req(Cmd.WRITE, payload.length), payload, silentLogger);
    expect(r.atLimit()).toBe(true);
    pending[0]!.resolve();
    await settle();
    expect(r.atLimit()).toBe(false);
  });

  it('a device error becomes its NBD errno; an unknown one becomes EIO', async () => {
    const { ctx, pending } = heldDevice();
    const replies: Reply[] = [];
    const r = new RequestsInFlight(10, new RequestBudget(10), () => {}, (reply) => replies.push(reply));
    r.start(ctx, req(Cmd.FLUSH, 0), null, silentLogger);
    r.start(ctx, req(Cmd.FLUSH, 0), null, silentLogger);
    pending[0]!.reject(new IomapdError('NO_SPACE'));
    pending[1]!.reject(new Error('a bug'));
    await settle();
    expect(replies.map(errnoOf)).toEqual([NbdErr.ENOSPC, NbdErr.EIO]);
    expect(r.count).toBe(0);
  });

  it('waits for the server-wide budget and is woken once when a slot frees up', async () => {
    const { ctx, pending } = heldDevice();
    const budget = new RequestBudget(2);
    let wakes = 0;
    const a = new RequestsInFlight(10, budget, () => wakes++, () => {});
    const b = new RequestsInFlight(10, budget, () => {}, () => {});
    a.start(ctx, req(Cmd.FLUSH, 0), null, silentLogger);
    b.start(ctx, req(Cmd.FLUSH, 0), null, silentLogger);
    expect(a.atLimit()).toBe(true);
    expect(a.atLimit()).toBe(true); // asking twice still wakes once
    pending[1]!.resolve();
    await settle();
    expect(wakes).toBe(1);
    expect(a.atLimit()).toBe(false);
  });

  it('a connection that stops waiting is not woken', async () => {
    const { ctx, pending } = heldDevice();
    const budget = new RequestBudget(1);
    let wakes = 0;
    const a = new RequestsInFlight(10, budget, () => wakes++, () => {});
    const b = new RequestsInFlight(10, budget, () => {}, () => {});
    b.start(ctx, req(Cmd.FLUSH, 0), null, silentLogger);
    expect(a.atLimit()).toBe(true);
    a.stopWaiting();
    pending[0]!.resolve();
    await settle();
    expect(wakes).toBe(0);
  });
});
