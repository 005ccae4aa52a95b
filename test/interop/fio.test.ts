// fio's nbd engine (libnbd) against iomapd: two jobs, so two connections, each writing its own
// 16 MiB range with random block sizes and queue depth 16, FLUSH every 32 writes, then reading
// it all back and checking crc32c checksums.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MiB, VARIANTS, describeRun, requireTool, run, withIomapd } from './harness.ts';

interface FioJob {
  jobname: string;
  error: number;
  read: { io_bytes: number };
  write: { io_bytes: number };
  sync?: { total_ios: number };
}

describe.each(VARIANTS)('fio nbd engine over $transport ($backend)', ({ transport, backend }) => {
  it('writes and verifies (crc32c) disjoint ranges from two jobs', async (ctx) => {
    requireTool(ctx, 'fio');
    await withIomapd({ transport, backend, size: '64M' }, async (server) => {
      const output = join(server.dir, 'fio.json');
      const r = await run('fio', [
        '--name=interop',
        '--ioengine=nbd',
        `--uri=${server.uri}`,
        '--numjobs=2',
        '--size=16M',
        '--offset_increment=16M', // job 0: [0, 16M), job 1: [16M, 32M)
        '--rw=randwrite',
        '--bsrange=4k-64k',
        '--iodepth=16',
        '--fsync=32',
        '--verify=crc32c',
        '--do_verify=1',
        '--verify_fatal=1',
        '--output-format=json',
        `--output=${output}`,
      ], { cwd: server.dir }); // fio leaves its verify state files in the working directory
      const failure = `fio failed\n${describeRun(r, server)}`;
      expect(r.code, failure).toBe(0);
      expect(r.stderr + r.stdout, failure).not.toMatch(/verify|bad magic|crc32c|error/i);

      const report = JSON.parse(await readFile(output, 'utf8')) as { jobs: FioJob[] };
      expect(report.jobs, failure).toHaveLength(2);
      for (const job of report.jobs) {
        expect(job.error, `${job.jobname}: fio error\n${failure}`).toBe(0);
        expect(job.write.io_bytes, 'bytes written per job').toBe(16 * MiB);
        expect(job.read.io_bytes, 'bytes read back for verification per job').toBe(16 * MiB);
        expect(job.sync?.total_ios ?? 0, 'flushes per job').toBeGreaterThan(0);
      }
    });
  });
});
