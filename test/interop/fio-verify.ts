// The fio job both fio interop files run: two jobs (so two connections), each writing its own
// range with random block sizes at queue depth 16, FLUSH every 32 writes, then reading it all back
// and checking crc32c checksums; and the checks of fio's JSON report.
import { readFile } from 'node:fs/promises';
import { expect } from 'vitest';

interface FioJob {
  jobname: string;
  error: number;
  read: { io_bytes: number };
  write: { io_bytes: number };
  sync?: { total_ios: number };
}

/** fio's arguments for the verify job over `uri`, `perJob` bytes per job, report to `output`. */
export function fioVerifyArgs(name: string, uri: string, perJob: number, output: string): string[] {
  return [
    `--name=${name}`,
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--numjobs=2',
    `--size=${perJob}`,
    `--offset_increment=${perJob}`, // job 0: [0, perJob), job 1: [perJob, 2 perJob)
    '--rw=randwrite',
    '--bsrange=4k-64k',
    '--iodepth=16',
    '--fsync=32',
    '--verify=crc32c',
    '--do_verify=1',
    '--verify_fatal=1',
    '--output-format=json',
    `--output=${output}`,
  ];
}

/** Both jobs wrote and read back `perJob` bytes with no error, and flushed. */
export async function expectFioVerified(output: string, perJob: number, failure: string): Promise<void> {
  const report = JSON.parse(await readFile(output, 'utf8')) as { jobs: FioJob[] };
  expect(report.jobs, failure).toHaveLength(2);
  for (const job of report.jobs) {
    expect(job.error, `${job.jobname}: fio error\n${failure}`).toBe(0);
    expect(job.write.io_bytes, 'bytes written per job').toBe(perJob);
    expect(job.read.io_bytes, 'bytes read back for verification per job').toBe(perJob);
    expect(job.sync?.total_ios ?? 0, 'flushes per job').toBeGreaterThan(0);
  }
}
