// --min-block-size: with 1, libnbd programs that pick any byte offset and length (as libnbd's own
// multi-connection tests do) are served, on an image (buffered and O_DIRECT), a raw file and
// memory; 512 (the default) and 4096 advertise and enforce their granularity (EINVAL).
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Daemon, MAIN, NODE } from '../support/daemon.ts';
import { BYTE_RANGES, advertisedMinimum } from './byte-ranges.ts';
import { pythonWithNbd, requireTool, runOk } from './harness.ts';

// Requests at the granularity below the advertised minimum, sent anyway (strict mode off).
const BELOW_MINIMUM = String.raw`
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.set_strict_mode(0)
step = int(sys.argv[2])
for what, fn in [('write', lambda: h.pwrite(bytes(step), step)), ('read', lambda: h.pread(step, step)),
                 ('zero', lambda: h.zero(step, step)), ('trim', lambda: h.trim(step, step))]:
    try:
        fn()
        sys.exit('%s of %d bytes at %d succeeded' % (what, step, step))
    except nbd.Error as e:
        assert e.errno == 'EINVAL', (what, e.errno)
h.pwrite(bytes(4096), 4096)
assert h.pread(4096, 4096) == bytes(4096)
print('ok')
`;

const CONNS = 4;
const OPS = Number(process.env.IOMAPD_BYTE_OPS ?? 3000);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-bytes-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function image(): string {
  const path = join(dir, 'disk.iomapd');
  const r = spawnSync(NODE, [MAIN, 'create', path, '--size', '16M', '--volume', 'default'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return path;
}

const TARGETS: Record<string, () => string[]> = {
  image: () => [image()],
  'image, --cache none': () => [image(), '--cache', 'none'],
  'raw file': () => [join(dir, 'disk.raw'), '--raw', '--size', '1M'],
  memory: () => ['--size', '1M'],
};

describe('--min-block-size 1: byte-granular clients', () => {
  for (const [name, args] of Object.entries(TARGETS)) {
    it(`serves random byte ranges over ${CONNS} connections (${name})`, async (ctx) => {
      requireTool(ctx, 'python3-nbd', 'nbdinfo');
      const serveArgs = args();
      const daemon = await Daemon.start([...serveArgs, '--listen', '127.0.0.1:0', '--min-block-size', '1']);
      try {
        expect(await advertisedMinimum(daemon.uri)).toBe(1);
        const r = await runOk(pythonWithNbd()!, ['-c', BYTE_RANGES, daemon.uri, String(CONNS), String(OPS), '16'], { timeoutMs: 120_000 });
        expect(r.stdout).toMatch(/^minimum 1$/m);
        expect(r.stdout.trim().split('\n').at(-1)).toBe('ok');
        if (name.includes('none')) expect(daemon.output()).toContain('image opened with O_DIRECT');
      } finally {
        await daemon.stop();
      }
      if (name.startsWith('image')) await runOk(NODE, [MAIN, 'check', serveArgs[0]!]);
    }, 180_000);
  }
});

describe('--min-block-size 512 and 4096', () => {
  for (const [minimum, below] of [
    ['512', 1],
    ['4096', 512],
  ] as const) {
    for (const name of ['image', 'raw file'] as const) {
      it(`advertises ${minimum} and refuses ${below}-byte granularity with EINVAL (${name})`, async (ctx) => {
        requireTool(ctx, 'python3-nbd', 'nbdinfo');
        const extra = minimum === '512' ? [] : ['--min-block-size', minimum]; // 512 is the default
        const daemon = await Daemon.start([...TARGETS[name]!(), '--listen', '127.0.0.1:0', ...extra]);
        try {
          expect(await advertisedMinimum(daemon.uri)).toBe(Number(minimum));
          const r = await runOk(pythonWithNbd()!, ['-c', BELOW_MINIMUM, daemon.uri, String(below)]);
          expect(r.stdout.trim()).toBe('ok');
        } finally {
          await daemon.stop();
        }
      }, 60_000);
    }
  }
});
