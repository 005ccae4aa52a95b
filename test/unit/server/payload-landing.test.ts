// Where a request's payload lands (src/server/payload-landing.ts): small payloads stay views of the
// bytes they arrived in, split ones are gathered once, large ones get their own buffer the socket
// reads into, and rejected ones are dropped without disturbing the bytes after them.
import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/protocol/framer.ts';
import { PayloadLanding } from '../../../src/server/payload-landing.ts';

const bytes = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

describe('PayloadLanding', () => {
  it('a small payload in one chunk is a view of that chunk, not a copy', () => {
    const landing = new PayloadLanding();
    const chunk = bytes(4096 + 10, 1);
    const queue = new ByteQueue();
    queue.push(chunk);
    landing.expect(4096, true, true);
    expect(landing.directTarget()).toBeNull();
    expect(landing.collect(queue)).toBe(true);
    const payload = landing.take()!;
    expect(payload.buffer).toBe(chunk.buffer);
    expect(payload.equals(chunk.subarray(0, 4096))).toBe(true);
    expect(queue.length).toBe(10);
  });

  it('a payload split over chunks arrives whole once every piece is there', () => {
    const landing = new PayloadLanding();
    const data = bytes(10_000, 2);
    const queue = new ByteQueue();
    landing.expect(data.length, true, true);
    expect(landing.collect(queue)).toBe(false);
    queue.push(data.subarray(0, 3000));
    expect(landing.collect(queue)).toBe(false);
    queue.push(Buffer.concat([data.subarray(3000), Buffer.from('next')]));
    expect(landing.collect(queue)).toBe(true);
    expect(landing.take()!.equals(data)).toBe(true);
    expect(queue.take(4).toString()).toBe('next');
  });

  it('a rejected payload is dropped as it arrives and leaves the next bytes in place', () => {
    const landing = new PayloadLanding();
    const queue = new ByteQueue();
    landing.expect(200_000, false, true);
    expect(landing.directTarget()).toBeNull();
    expect(landing.lastWasDirect).toBe(false);
    queue.push(bytes(150_000, 3));
    expect(landing.collect(queue)).toBe(false);
    expect(queue.length).toBe(0);
    queue.push(Buffer.concat([bytes(50_000, 4), Buffer.from('hdr')]));
    expect(landing.collect(queue)).toBe(true);
    expect(landing.take()).toBeNull();
    expect(queue.take(3).toString()).toBe('hdr');
  });

  it('a large payload lands in its own buffer: read straight into, and from the queue at the right place', () => {
    const landing = new PayloadLanding();
    const data = bytes(128 * 1024, 5);
    const queue = new ByteQueue();
    landing.expect(data.length, true, true);
    expect(landing.lastWasDirect).toBe(true);
    // The first bytes came in the same read as the header, through the queue.
    queue.push(data.subarray(0, 1000));
    expect(landing.collect(queue)).toBe(false);
    // The socket then reads straight into the rest, in two reads.
    const rest = landing.directTarget()!;
    expect(rest.length).toBe(data.length - 1000);
    data.copy(rest, 0, 1000, 60_000);
    landing.receivedDirect(59_000);
    const last = landing.directTarget()!;
    expect(last.length).toBe(data.length - 60_000);
    data.copy(last, 0, 60_000);
    landing.receivedDirect(data.length - 60_000);
    expect(landing.directTarget()).toBeNull();
    expect(landing.collect(queue)).toBe(true);
    const payload = landing.take()!;
    expect(payload.equals(data)).toBe(true);
    expect(payload.buffer).toBe(rest.buffer);
  });

  it('no own buffer without direct reads, for small payloads, or for requests without one', () => {
    const landing = new PayloadLanding();
    landing.expect(128 * 1024, true, false);
    expect(landing.directTarget()).toBeNull();
    expect(landing.lastWasDirect).toBe(false);
    landing.expect(64 * 1024 - 1, true, true);
    expect(landing.lastWasDirect).toBe(false);
    landing.expect(64 * 1024, true, true);
    expect(landing.lastWasDirect).toBe(true);
    landing.take();
    // The header after a large WRITE decides afresh: a READ has no payload.
    landing.expect(0, true, true);
    expect(landing.lastWasDirect).toBe(false);
    expect(landing.collect(new ByteQueue())).toBe(true);
    expect(landing.take()).toBeNull();
  });
});
