// ByteQueue.takeViews: the bytes come out as views of the chunks they arrived in (no copy), in
// order, however the input was split, and the queue goes on from exactly after them.
import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/protocol/framer.ts';

describe('ByteQueue.takeViews', () => {
  const input = Buffer.from(Array.from({ length: 64 }, (_, i) => i));

  it.each([1, 3, 7, 16, 64])('takes any prefix as views of chunks of %i bytes', (size) => {
    for (let n = 0; n <= input.length; n++) {
      const q = new ByteQueue();
      const chunks: Buffer[] = [];
      for (let at = 0; at < input.length; at += size) chunks.push(input.subarray(at, at + size));
      for (const c of chunks) q.push(c);
      const out: Buffer[] = [];
      q.takeViews(n, out);
      expect(Buffer.concat(out).equals(input.subarray(0, n))).toBe(true);
      // Views share memory with the queued chunks: nothing was copied.
      for (const v of out) expect(v.buffer).toBe(input.buffer);
      expect(q.length).toBe(input.length - n);
      expect(q.peek(input.length).equals(input.subarray(n))).toBe(true);
    }
  });
});
