// Requests in flight and their limits (src/server/requests-in-flight.ts): per connection by count
// and by bytes held, server-wide by the shared budget, which wakes a waiting connection once.
import { describe, expect, it } from 'vitest';
import { Cmd } from '../../../src/protocol/constants.ts';
import { Limits } from '../../../src/server/limits.ts';
import { RequestBudget } from '../../../src/server/request-budget.ts';
import { heldBytes, RequestsInFlight } from '../../../src/server/requests-in-flight.ts';
import type { ValidRequest } from '../../../src/server/validate.ts';

const req = (type: number, length: number): ValidRequest => ({ type, flags: 0, cookie: 1n, offset: 0, length, wireOffset: 0n });

describe('RequestsInFlight', () => {
  it('counts what a request holds: its payload, or its READ reply', () => {
    expect(heldBytes(req(Cmd.WRITE, 4096), Buffer.alloc(4096))).toBe(4096);
    expect(heldBytes(req(Cmd.READ, 8192), null)).toBe(8192);
    expect(heldBytes(req(Cmd.TRIM, 1 << 20), null)).toBe(0);
  });

  it('is at its limit at the per-connection count, and below it again once one is answered', () => {
    const budget = new RequestBudget(100);
    const r = new RequestsInFlight(2, budget, () => {});
    r.begin(0);
    expect(r.atLimit()).toBe(false);
    r.begin(0);
    expect(r.count).toBe(2);
    expect(r.atLimit()).toBe(true);
    r.end(0);
    expect(r.atLimit()).toBe(false);
    // The server-wide slot is held until it is given back.
    expect(budget.inFlight).toBe(2);
    r.giveSlot();
    expect(budget.inFlight).toBe(1);
  });

  it('is at its limit when its requests hold too many bytes', () => {
    const r = new RequestsInFlight(100, new RequestBudget(100), () => {});
    r.begin(Limits.maxInFlightBytesPerConnection - 1);
    expect(r.atLimit()).toBe(false);
    r.begin(1);
    expect(r.atLimit()).toBe(true);
    r.end(1);
    expect(r.atLimit()).toBe(false);
  });

  it('waits for the server-wide budget and is woken once when a slot frees up', () => {
    const budget = new RequestBudget(2);
    let wakes = 0;
    const a = new RequestsInFlight(10, budget, () => wakes++);
    const b = new RequestsInFlight(10, budget, () => {});
    a.begin(0);
    b.begin(0);
    expect(a.atLimit()).toBe(true);
    expect(a.atLimit()).toBe(true); // asking twice still wakes once
    b.end(0);
    b.giveSlot();
    expect(wakes).toBe(1);
    expect(a.atLimit()).toBe(false);
  });

  it('a connection that stops waiting is not woken', () => {
    const budget = new RequestBudget(1);
    let wakes = 0;
    const a = new RequestsInFlight(10, budget, () => wakes++);
    const b = new RequestsInFlight(10, budget, () => {});
    b.begin(0);
    expect(a.atLimit()).toBe(true);
    a.stopWaiting();
    b.end(0);
    b.giveSlot();
    expect(wakes).toBe(0);
  });
});
