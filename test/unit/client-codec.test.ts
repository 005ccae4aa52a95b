// The NBD client's codec against bytes written by hand from doc/proto.md: each row decodes whole,
// byte by byte (needing more until the last byte) and split at every offset; bad magic is a typed
// error, never a throw. Encoders are compared as hex.
import { describe, expect, it } from 'vitest';
import {
  decodeGreeting,
  decodeOptionReply,
  decodeReplyHeader,
  encodeOption,
  encodeRequest,
  goData,
  metaContextData,
} from '../../src/client/client-codec.ts';
import type { Decoded } from '../../src/protocol/result.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function decodesOnlyWhole<T>(decode: (b: Buffer) => Decoded<T>, bytes: Buffer, want: T): void {
  for (let cut = 0; cut < bytes.length; cut++) {
    const r = decode(bytes.subarray(0, cut));
    expect(r.ok, `cut at ${cut}`).toBe(false);
    expect((r as { more?: number }).more, `cut at ${cut}`).toBeGreaterThan(0);
  }
  const whole = decode(Buffer.concat([bytes, hex('ff ff')])); // trailing bytes are left alone
  expect(whole).toEqual({ ok: true, value: want, used: bytes.length });
}

describe('client codec', () => {
  it('decodes the greeting', () => {
    decodesOnlyWhole(decodeGreeting, hex('4e42444d41474943 49484156454f5054 0003'), { handshakeFlags: 3 });
    const bad = decodeGreeting(hex('4e42444d41474943 00420281861253 00 0003'));
    expect(bad.ok === false && bad.more === undefined && bad.error.kind).toBe('bad-magic');
  });

  it('decodes option replies', () => {
    const ack = hex('0003e889045565a9 00000007 00000001 00000000');
    decodesOnlyWhole(decodeOptionReply, ack, { option: 7, type: 1, data: Buffer.alloc(0) });
    const info = hex('0003e889045565a9 00000007 00000003 0000000c 0000 0000000000100000 014d');
    decodesOnlyWhole(decodeOptionReply, info, { option: 7, type: 3, data: hex('0000 0000000000100000 014d') });
    const r = decodeOptionReply(hex('1003e889045565a9 00000007 00000001 00000000'));
    expect(r.ok === false && r.more === undefined && r.error.kind).toBe('bad-magic');
  });

  it('decodes simple and structured reply headers', () => {
    decodesOnlyWhole(decodeReplyHeader, hex('67446698 00000005 0000000000000009'), { kind: 'simple', error: 5, cookie: 9n });
    decodesOnlyWhole(decodeReplyHeader, hex('668e33ef 0001 0005 000000000000000a 00000014'), {
      kind: 'structured',
      flags: 1,
      type: 5,
      cookie: 10n,
      length: 20,
    });
    const r = decodeReplyHeader(hex('6e8a278c 0000 0000 0000000000000000 0000000000000000 0000000000000000'));
    expect(r.ok === false && r.more === undefined && r.error.kind).toBe('bad-magic'); // extended replies were never asked for
  });

  it('encodes options and requests', () => {
    expect(encodeOption(8).toString('hex')).toBe('49484156454f5054' + '00000008' + '00000000');
    expect(metaContextData('vm', ['base:allocation']).toString('hex')).toBe(
      '00000002' + Buffer.from('vm').toString('hex') + '00000001' + '0000000f' + Buffer.from('base:allocation').toString('hex'),
    );
    expect(goData('', [3]).toString('hex')).toBe('00000000' + '0001' + '0003');
    expect(encodeRequest(0, 7, 3n, 2 ** 40, 4096).toString('hex')).toBe('25609513' + '0000' + '0007' + '0000000000000003' + '0000010000000000' + '00001000');
  });
});
