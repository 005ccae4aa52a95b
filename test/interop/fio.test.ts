// fio's nbd engine (libnbd) against iomapd: two jobs, so two connections, each writing its own
// 16 MiB range with random block sizes and queue depth 16, FLUSH every 32 writes, then reading
// it all back and checking crc32c checksums.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MiB, VARIANTS, describeRun, requireTool, run, withIomapd } from './harness.ts';
import { expectFioVerified, fioVerifyArgs } from './fio-verify.ts';

describe.each(VARIANTS)('fio nbd engine over $transport ($backend)', ({ transport, backend }) => {
  it('writes and verifies (crc32c) disjoint ranges from two jobs', async (ctx) => {
    requireTool(ctx, 'fio');
    await withIomapd({ transport, backend, size: '64M' }, async (server) => {
      const output = join(server.dir, 'fio.json');
      const r = await run('fio', fioVerifyArgs('interop', server.uri, 16 * MiB, output), { cwd: server.dir }); // fio leaves its verify state files in the working directory
      const failure = `fio failed\n${describeRun(r, server)}`;
      expect(r.code, failure).toBe(0);
      expect(r.stderr + r.stdout, failure).not.toMatch(/verify|bad magic|crc32c|error/i);

      await expectFioVerified(output, 16 * MiB, failure);
    });
  });
});
