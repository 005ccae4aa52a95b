// Test-only byte helpers. Fixtures are written by hand as hex (or built with `bytes()`, the tests'
// byte builder with its own big-endian arithmetic), so the codec's encoders never produce the
// fixtures its decoders read.
import { expect } from 'vitest';
import { ByteQueue } from '../../../src/protocol/framer.ts';
import type { Decoded } from '../../../src/protocol/result.ts';
import { wire } from '../../support/wire.ts';

/** Hex to bytes. Whitespace, `_` and `|` are ignored so fixtures can be laid out field by field. */
export function hex(text: string): Buffer {
  const clean = text.replace(/[\s_|]/g, '');
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(clean)) throw new Error(`bad hex fixture: ${text}`);
  return Buffer.from(clean, 'hex');
}

export const toHex = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');

/** The hex of a string's UTF-8 bytes (for names inside fixtures). */
export const utf8Hex = (text: string): string => Buffer.from(text, 'utf8').toString('hex');

/** `n` zero bytes as hex. */
export const zeroHex = (n: number): string => '00'.repeat(n);

/** The tests' one byte builder (test/support/wire.ts), which shares no code with the codec. */
export const bytes = wire;

type Decoder<T> = (buf: Buffer) => Decoded<T>;

/**
 * Runs `decode` over a fixture in every way the connection could meet it: whole, with trailing bytes,
 * as every proper prefix (must ask for more, never throw or fail), byte by byte through a ByteQueue,
 * and split into two (or, for short fixtures, three) socket chunks at every offset.
 */
export function checkDecodes<T>(decode: Decoder<T>, fixture: Buffer, value: T): void {
  const whole = decode(fixture);
  expect(whole).toEqual({ ok: true, value, used: fixture.length });

  // Bytes after the structure belong to the next message: never consumed.
  const trailing = decode(Buffer.concat([fixture, hex('deadbeefcafe')]));
  expect(trailing).toEqual({ ok: true, value, used: fixture.length });

  for (let p = 0; p < fixture.length; p++) {
    const r = decode(fixture.subarray(0, p));
    expect(r.ok, `prefix of ${p} bytes`).toBe(false);
    if (r.ok) continue;
    expect(r.more, `prefix of ${p} bytes must ask for more, not fail`).toBeTypeOf('number');
    // `more` is a lower bound: never more than the rest of the structure.
    expect(r.more!).toBeGreaterThan(0);
    expect(r.more!).toBeLessThanOrEqual(fixture.length - p);
  }

  // Byte by byte: exactly one success, on the last byte.
  const q = new ByteQueue();
  for (let i = 0; i < fixture.length; i++) {
    q.push(fixture.subarray(i, i + 1));
    const r = decode(q.peek(q.length));
    if (i < fixture.length - 1) {
      expect(r.ok).toBe(false);
      expect(r.ok === false && r.more !== undefined, `byte ${i}: more, not an error`).toBe(true);
    } else {
      expect(r).toEqual({ ok: true, value, used: fixture.length });
      if (r.ok) q.skip(r.used);
    }
  }
  expect(q.length).toBe(0);

  for (const chunks of splits(fixture)) {
    const sq = new ByteQueue();
    for (const c of chunks) sq.push(c);
    sq.push(hex('ff')); // the start of the next message
    const r = decode(sq.peek(sq.length));
    expect(r).toEqual({ ok: true, value, used: fixture.length });
    if (r.ok) sq.skip(r.used);
    expect(toHex(sq.drain())).toBe('ff');
  }
}

/** Every two-way split, and for fixtures up to 40 bytes every three-way split. */
function* splits(b: Buffer): Generator<Buffer[]> {
  for (let i = 0; i <= b.length; i++) yield [b.subarray(0, i), b.subarray(i)];
  if (b.length > 40) return;
  for (let i = 0; i <= b.length; i++) {
    for (let j = i; j <= b.length; j++) yield [b.subarray(0, i), b.subarray(i, j), b.subarray(j)];
  }
}

/** Expects a protocol error of `kind` from the whole fixture; its prefixes may ask for more or fail the same way. */
export function checkRejects<T>(decode: Decoder<T>, fixture: Buffer, kind: string): void {
  const whole = decode(fixture);
  expect(whole.ok).toBe(false);
  if (whole.ok) return;
  expect(whole.more).toBeUndefined();
  expect('error' in whole && whole.error.kind).toBe(kind);
  for (let p = 0; p < fixture.length; p++) {
    const r = decode(fixture.subarray(0, p));
    expect(r.ok, `prefix of ${p} bytes`).toBe(false);
    if (r.ok || r.more !== undefined) continue;
    expect(r.error.kind, `prefix of ${p} bytes`).toBe(kind);
  }
}
