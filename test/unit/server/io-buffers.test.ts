// Who gives pooled buffers back (src/server/io-buffers.ts): a reply buffer comes back only once the
// socket has sent it, never after a failed write; buffers not from the pool are written as they are.
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { payloadDone, takePayloadBuffer, takeReplyBuffer, writeReply } from '../../../src/server/io-buffers.ts';

/** A socket whose write calls back at once with `err`, recording what it was given. */
function fakeSocket(err: Error | null): { socket: Socket; written: Buffer[]; callbacks: number } {
  const out = { written: [] as Buffer[], callbacks: 0, socket: null as unknown as Socket };
  out.socket = {
    write(buf: Buffer, cb?: (err?: Error | null) => void): boolean {
      out.written.push(buf);
      if (cb !== undefined) {
        out.callbacks++;
        cb(err);
      }
      return true;
    },
  } as unknown as Socket;
  return out;
}

// Sizes no other test in this process uses, so the shared pool's other buffers do not interfere.
describe('io-buffers', () => {
  it('a sent reply buffer goes back to the pool', () => {
    const size = 40_961;
    const buf = takeReplyBuffer(size);
    const s = fakeSocket(null);
    writeReply(s.socket, buf);
    expect(s.written).toEqual([buf]);
    expect(takeReplyBuffer(size)).toBe(buf);
  });

  it('a reply buffer whose write failed is never given back', () => {
    const size = 40_963;
    const buf = takeReplyBuffer(size);
    writeReply(fakeSocket(new Error('EPIPE')).socket, buf);
    expect(takeReplyBuffer(size)).not.toBe(buf);
  });

  it('a buffer not from the pool is written without a callback', () => {
    const s = fakeSocket(null);
    const header = Buffer.alloc(16);
    writeReply(s.socket, header);
    expect(s.written).toEqual([header]);
    expect(s.callbacks).toBe(0);
  });

  it('a payload its request is done with is reused', () => {
    const size = 40_967;
    const buf = takePayloadBuffer(size);
    payloadDone(buf);
    expect(takePayloadBuffer(size)).toBe(buf);
  });
});
