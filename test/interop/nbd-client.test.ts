// nbd-client (the kernel client's userspace half) against iomapd: its handshake and LIST work
// without the kernel module. Attaching a device needs a kernel with nbd: see test/kernel.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeRun, requireTool, run, withIomapd } from './harness.ts';

const NBD_CLIENT = existsSync('/usr/sbin/nbd-client') ? '/usr/sbin/nbd-client' : 'nbd-client';

describe('nbd-client', () => {
  it('lists the exports over TCP (fixed newstyle, LIST, ABORT)', async (ctx) => {
    requireTool(ctx, 'nbd-client');
    await withIomapd({ transport: 'tcp', exportName: 'disk1' }, async (server) => {
      const { hostname, port } = new URL(server.uri);
      const r = await run(NBD_CLIENT, ['-l', hostname, port]);
      expect(r.code, describeRun(r, server)).toBe(0);
      expect(r.stdout.split('\n').map((l) => l.trim())).toContain('disk1');
      // nbd-client may exit before the server has logged the ABORT: wait for it, bounded.
      for (let i = 0; i < 50 && !server.output().includes('"reason":"client aborted"'); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(server.output()).toContain('"reason":"client aborted"');
    });
  });
});
