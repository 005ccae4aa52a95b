// The PSK file parser and the allow-list parsers: what they accept, and that every refusal names
// the file and line but never a key.
import { describe, expect, it } from 'vitest';
import { parseAccessFile, parseAllowOptions } from '../../../src/server/access.ts';
import { parsePskFile } from '../../../src/server/tls/psk-file.ts';
import { splitSubjectAltName } from '../../../src/server/tls/identity.ts';

const KEY = 'de8278a040ac97862dc058aca53e48d9';

describe('parsePskFile', () => {
  it("reads psktool's lines, skipping blank ones and CRs", () => {
    const keys = parsePskFile(`alice:${KEY}\r\n\nbob:00FF\n`, 'f');
    expect([...keys.keys()]).toEqual(['alice', 'bob']);
    expect(keys.get('alice')!.toString('hex')).toBe(KEY);
    expect(keys.get('bob')!.toString('hex')).toBe('00ff');
  });

  it.each([
    ['no colon', `alice${KEY}`, /f line 1: expected IDENTITY:HEXKEY/],
    ['empty identity', `:${KEY}`, /f line 1: expected IDENTITY:HEXKEY/],
    ['odd hex', `alice:${KEY}a`, /f line 1: the key of "alice" is not an even number of hex digits/],
    ['not hex', 'alice:zz', /not an even number of hex digits/],
    ['empty key', 'alice:', /not an even number of hex digits/],
    ['duplicate identity', `alice:${KEY}\nalice:00`, /f line 2: identity "alice" appears twice/],
    ['no keys at all', '\n\n', /f holds no keys/],
  ])('refuses %s', (_what, text, message) => {
    expect(() => parsePskFile(text, 'f')).toThrow(message);
    try {
      parsePskFile(text, 'f');
    } catch (err) {
      expect((err as Error).message).not.toContain(KEY);
      expect((err as { code?: string }).code).toBe('BAD_ARGUMENT');
    }
  });
});

describe('allow-lists', () => {
  it('--allow joins repeated exports; the access file skips comments and blank lines', () => {
    const a = parseAllowOptions(['disk=cn:alice,psk:bob', 'disk=email:c@d', 'other=ip:127.0.0.1']);
    expect([...a.allowed('disk')!]).toEqual(['cn:alice', 'psk:bob', 'email:c@d']);
    expect(a.allowed('nowhere')).toBeUndefined();
    const f = parseAccessFile('# comment\n\ndisk  cn:alice   uri:https://x/y # trailing\nother dns:h\n', 'acl');
    expect([...f.allowed('disk')!]).toEqual(['cn:alice', 'uri:https://x/y']);
    expect(f.exports).toEqual(['disk', 'other']);
  });

  it.each([
    [['disk'], /expected EXPORT=IDENTITY/],
    [['disk='], /names no identity/],
    [['disk=alice'], /is not KIND:VALUE/],
    [['disk=token:x'], /is not KIND:VALUE/],
    [['disk=cn:'], /is not KIND:VALUE/],
  ])('--allow %j is refused', (values, message) => {
    expect(() => parseAllowOptions(values)).toThrow(message);
  });

  it('an access-file line with no identity names its line', () => {
    expect(() => parseAccessFile('a cn:x\nb\n', 'acl')).toThrow(/acl line 2: export "b" names no identity/);
  });
});

describe('splitSubjectAltName', () => {
  it("splits Node's string, keeping quoted commas", () => {
    expect(splitSubjectAltName('DNS:a.example, email:x@y, IP Address:127.0.0.1, URI:"https://h/a, b"')).toEqual([
      { kind: 'DNS', value: 'a.example' },
      { kind: 'email', value: 'x@y' },
      { kind: 'IP Address', value: '127.0.0.1' },
      { kind: 'URI', value: 'https://h/a, b' },
    ]);
    expect(splitSubjectAltName('')).toEqual([]);
  });
});
