// ByteQueue: chunks in, bytes out in order, zero-copy when a structure lies inside one chunk.
// The property tests compare it with a model (one flat Buffer) under random chunkings and operations.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/protocol/framer.ts';
import { hex, toHex } from './bytes.ts';

/** A chunk with its own ArrayBuffer (Buffer.from uses a shared pool), so identity checks mean something. */
function own(bytes: Uint8Array): Buffer {
  const b = Buffer.alloc(bytes.length);
  b.set(bytes);
  return b;
}

function queueOf(...chunks: string[]): ByteQueue {
  const q = new ByteQueue();
  for (const c of chunks) q.push(hex(c));
  return q;
}

describe('ByteQueue', () => {
  it('starts empty', () => {
    const q = new ByteQueue();
    expect(q.length).toBe(0);
    expect(toHex(q.peek(4))).toBe('');
    expect(toHex(q.take(0))).toBe('');
    expect(q.skip(4)).toBe(0);
    expect(toHex(q.drain())).toBe('');
  });

  it('ignores empty chunks', () => {
    const q = queueOf('', '0102', '', '03', '');
    expect(q.length).toBe(3);
    expect(toHex(q.take(3))).toBe('010203');
    expect(q.length).toBe(0);
  });

  it('peek does not consume, and returns at most what is queued', () => {
    const q = queueOf('010203', '0405');
    expect(toHex(q.peek(2))).toBe('0102');
    expect(toHex(q.peek(4))).toBe('01020304');
    expect(toHex(q.peek(99))).toBe('0102030405');
    expect(toHex(q.peek(0))).toBe('');
    expect(q.length).toBe(5);
  });

  it('take crosses chunk boundaries', () => {
    const q = queueOf('01', '0203', '040506', '07');
    expect(toHex(q.take(2))).toBe('0102');
    expect(q.length).toBe(5);
    expect(toHex(q.take(4))).toBe('03040506');
    expect(toHex(q.take(1))).toBe('07');
    expect(q.length).toBe(0);
  });

  it('skip drops within a chunk, to a boundary, and across chunks', () => {
    const q = queueOf('010203', '0405', '060708');
    expect(q.skip(1)).toBe(1); // inside the first chunk
    expect(toHex(q.peek(2))).toBe('0203');
    expect(q.skip(2)).toBe(2); // exactly to the boundary
    expect(toHex(q.peek(1))).toBe('04');
    expect(q.skip(3)).toBe(3); // across a boundary
    expect(toHex(q.peek(9))).toBe('0708');
    expect(q.skip(10)).toBe(2); // more than queued
    expect(q.length).toBe(0);
  });

  it('drain returns everything, including a partly consumed first chunk', () => {
    const q = queueOf('010203', '0405');
    q.skip(2);
    expect(toHex(q.drain())).toBe('030405');
    expect(q.length).toBe(0);
    q.push(hex('ff'));
    expect(toHex(q.drain())).toBe('ff');
  });

  it('peek inside one chunk is a zero-copy view', () => {
    const chunk = own(hex('00112233445566778899'));
    const q = new ByteQueue();
    q.push(chunk);
    q.push(hex('aabb'));
    q.skip(3);
    const view = q.peek(4);
    expect(toHex(view)).toBe('33445566');
    expect(view.buffer).toBe(chunk.buffer);
    expect(view.byteOffset).toBe(chunk.byteOffset + 3);
    chunk[3] = 0xee; // the view sees writes to the chunk
    expect(view[0]).toBe(0xee);
  });

  it('take inside one chunk is a view too', () => {
    const chunk = own(hex('0011223344'));
    const q = new ByteQueue();
    q.push(chunk);
    const taken = q.take(5);
    expect(taken.buffer).toBe(chunk.buffer);
    expect(taken.byteOffset).toBe(chunk.byteOffset);
  });

  it('peek across chunks is a copy that outlives later consumption', () => {
    const a = own(hex('0102'));
    const b = own(hex('0304'));
    const q = new ByteQueue();
    q.push(a);
    q.push(b);
    const copy = q.peek(3);
    expect(toHex(copy)).toBe('010203');
    q.skip(4);
    a[0] = 0xff;
    b[0] = 0xff;
    expect(toHex(copy)).toBe('010203');
  });
});

/** Splits `data` at the given cut points (taken modulo its length, deduplicated). */
function chunk(data: Uint8Array, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (data.length === 0 ? 0 : c % (data.length + 1))))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of [...points, data.length]) {
    out.push(Buffer.from(data.subarray(at, p)));
    at = p;
  }
  return out;
}

describe('ByteQueue properties', () => {
  it('any chunking of any bytes gives the same bytes back, through any take sizes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
        (data, cuts, takes) => {
          const q = new ByteQueue();
          for (const c of chunk(data, cuts)) q.push(c);
          expect(q.length).toBe(data.length);
          const out: Buffer[] = [];
          for (let i = 0; q.length > 0; i++) out.push(q.take(Math.min(takes[i % takes.length]!, q.length)));
          expect(toHex(Buffer.concat(out))).toBe(toHex(data));
        },
      ),
    );
  });

  type Op =
    | { readonly op: 'push'; readonly bytes: Uint8Array }
    | { readonly op: 'peek' | 'take' | 'skip'; readonly n: number }
    | { readonly op: 'drain' };

  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ op: fc.constant('push' as const), bytes: fc.uint8Array({ maxLength: 40 }) }),
    fc.record({ op: fc.constantFrom('peek' as const, 'take' as const, 'skip' as const), n: fc.nat({ max: 80 }) }),
    fc.record({ op: fc.constant('drain' as const) }),
  );

  it('behaves like one flat buffer under any sequence of operations', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const q = new ByteQueue();
        let model = Buffer.alloc(0);
        for (const o of ops) {
          switch (o.op) {
            case 'push':
              q.push(Buffer.from(o.bytes));
              model = Buffer.concat([model, o.bytes]);
              break;
            case 'peek':
              expect(toHex(q.peek(o.n))).toBe(toHex(model.subarray(0, o.n)));
              break;
            case 'take': {
              const n = Math.min(o.n, model.length); // take's contract: n <= length
              expect(toHex(q.take(n))).toBe(toHex(model.subarray(0, n)));
              model = model.subarray(n);
              break;
            }
            case 'skip':
              expect(q.skip(o.n)).toBe(Math.min(o.n, model.length));
              model = model.subarray(o.n);
              break;
            case 'drain':
              expect(toHex(q.drain())).toBe(toHex(model));
              model = Buffer.alloc(0);
              break;
          }
          expect(q.length).toBe(model.length);
        }
      }),
    );
  });

  it('a peek that fits in the first chunk never copies', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 100 }), fc.nat(), fc.nat(), (data, skipRaw, nRaw) => {
        const first = own(data);
        const q = new ByteQueue();
        q.push(first);
        q.push(hex('ff'));
        const skip = skipRaw % first.length;
        q.skip(skip);
        const n = nRaw % (first.length - skip + 1);
        const view = q.peek(n);
        expect(view.buffer).toBe(first.buffer);
        expect(view.byteOffset).toBe(first.byteOffset + skip);
        expect(view.length).toBe(n);
        if (n > 0) {
          first[skip] = first[skip]! ^ 0xff;
          expect(view[0]).toBe(first[skip]);
        }
      }),
    );
  });
});
