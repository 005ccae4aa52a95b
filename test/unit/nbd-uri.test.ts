// NBD URIs for import/export: the forms libnbd and qemu accept, and a clear error for the rest.
import { describe, expect, it } from 'vitest';
import { formatNbdAddress, looksLikeNbdUri, parseNbdUri } from '../../src/client/nbd-uri.ts';

describe('parseNbdUri', () => {
  it.each([
    ['nbd://127.0.0.1', { kind: 'tcp', host: '127.0.0.1', port: 10809, exportName: '' }],
    ['nbd://localhost:10900/vm%201', { kind: 'tcp', host: 'localhost', port: 10900, exportName: 'vm 1' }],
    ['nbd://[::1]:7/x', { kind: 'tcp', host: '::1', port: 7, exportName: 'x' }],
    ['nbd+unix:///disk?socket=/tmp/n.sock', { kind: 'unix', path: '/tmp/n.sock', exportName: 'disk' }],
    ['nbd+unix://?socket=/tmp/n.sock', { kind: 'unix', path: '/tmp/n.sock', exportName: '' }],
  ])('%s', (uri, want) => {
    expect(parseNbdUri(uri)).toEqual(want);
    expect(parseNbdUri(formatNbdAddress(parseNbdUri(uri)))).toEqual(want);
  });

  it.each([
    ['nbd://', 'BAD_ARGUMENT'],
    ['nbd://[bad/x', 'BAD_ARGUMENT'],
    ['nbd+unix:///x', 'BAD_ARGUMENT'],
    ['nbd+unix://host/x?socket=/s', 'BAD_ARGUMENT'],
    ['nbd+vsock:///x', 'BAD_ARGUMENT'],
    ['nbds://h/x', 'NOT_SUPPORTED'],
    ['nbds+unix:///x?socket=/s', 'NOT_SUPPORTED'],
  ])('refuses %s with %s', (uri, code) => {
    expect(() => parseNbdUri(uri)).toThrow(expect.objectContaining({ code }));
  });

  it('tells URIs from file names', () => {
    expect(looksLikeNbdUri('nbd+unix:///x')).toBe(true);
    expect(looksLikeNbdUri('NBD://h')).toBe(true);
    expect(looksLikeNbdUri('disk.raw')).toBe(false);
    expect(looksLikeNbdUri('./nbd:thing')).toBe(false);
  });
});
