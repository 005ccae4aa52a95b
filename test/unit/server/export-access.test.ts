// The one access decision (ExportRegistry.open), as a table: TLS mode x export (plain, requireTls,
// allow-listed) x client (plain, TLS with an identity on or off the list).
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../../src/devices/memory-device.ts';
import { parseAllowOptions } from '../../../src/server/access.ts';
import { ExportRegistry, type ClientView, type TlsMode } from '../../../src/server/export-registry.ts';

function registry(mode: TlsMode): ExportRegistry {
  const r = new ExportRegistry();
  const device = new MemoryDevice({ size: 4096 });
  r.add({ name: 'open', description: '', device });
  r.add({ name: 'tls', description: '', device, requireTls: true });
  r.add({ name: 'listed', description: '', device });
  const access = parseAllowOptions(['listed=cn:alice']);
  r.policy = { tlsMode: mode, access: () => access };
  return r;
}

const plain: ClientView = { tls: false, identities: [] };
const alice: ClientView = { tls: true, identities: ['cn:alice', 'email:a@x'] };
const bob: ClientView = { tls: true, identities: ['psk:bob'] };

const answer = (r: ExportRegistry, name: string, c: ClientView): string => {
  const a = r.open(name, c);
  return a.ok ? 'ok' : a.answer;
};

describe('ExportRegistry.open', () => {
  it.each([
    // mode, export, client, answer
    ['off', 'open', plain, 'ok'],
    ['off', 'tls', plain, 'unknown'], // NOTLS mode never says TLS_REQD
    ['on', 'open', plain, 'ok'],
    ['on', 'tls', plain, 'tls-required'],
    ['on', 'tls', bob, 'ok'],
    ['on', 'listed', plain, 'unknown'],
    ['on', 'listed', bob, 'unknown'],
    ['on', 'listed', alice, 'ok'],
    ['require', 'listed', alice, 'ok'],
    ['require', 'nothing', alice, 'unknown'],
  ] as const)('%s: %s for %j is %s', (mode, name, client, expected) => {
    expect(answer(registry(mode), name, client)).toBe(expected);
  });

  it('a refusal carries the export (to log); an unknown name does not', () => {
    const r = registry('on');
    const refused = r.open('listed', bob);
    expect(!refused.ok && refused.export?.name).toBe('listed');
    const unknown = r.open('nothing', bob);
    expect(!unknown.ok && unknown.export).toBeUndefined();
  });

  it('LIST shows each client only what it may open', () => {
    const r = registry('on');
    expect(r.visible(plain).map((e) => e.name)).toEqual(['open']);
    expect(r.visible(bob).map((e) => e.name)).toEqual(['open', 'tls']);
    expect(r.visible(alice).map((e) => e.name)).toEqual(['open', 'tls', 'listed']);
  });
});
