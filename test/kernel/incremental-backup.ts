// The host side of the kernel rig's incremental-backup scenario (issue 15): an incremental backup
// the way backup tools make one from iomapd, with real NBD clients. A full copy of snapshot FROM
// with nbdcopy, then only the ranges `qemu:dirty-bitmap:FROM` marks on the export of snapshot TO,
// copied over it with libnbd (Python). The copy is then compared with TO byte for byte, and the
// dirty ranges with `iomapd diff IMAGE FROM TO`.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { pythonWithNbd } from '../interop/harness.ts';
import { cli, tail } from './kernel-daemon.ts';

/** Bounds for the host's copies (a 1 GiB volume, mostly holes, over loopback). */
const COPY_TIMEOUT_MS = 180_000;

// argv: URI of TO, bitmap name, file. Prints one JSON line: the dirty ranges, the bytes copied and
// whether the file equals TO afterwards (compared in 4 MiB pieces).
const INCREMENTAL = String.raw`
import json, nbd, sys
uri, bitmap, path = sys.argv[1], sys.argv[2], sys.argv[3]
h = nbd.NBD()
h.add_meta_context(bitmap)
h.connect_uri(uri)
if not h.can_meta_context(bitmap):
    raise SystemExit('the server does not offer ' + bitmap)
size = h.get_size()
dirty = []
pos = 0
while pos < size:
    reached = []
    def extents(context, offset, entries, err):
        if context == bitmap:
            for k in range(0, len(entries), 2):
                if entries[k + 1] & 1:
                    if dirty and dirty[-1][0] + dirty[-1][1] == offset:
                        dirty[-1][1] += entries[k]
                    else:
                        dirty.append([offset, entries[k]])
                offset += entries[k]
            reached.append(offset)
        return 0
    h.block_status(size - pos, pos, extents)
    pos = reached[-1]
copied = 0
CHUNK = 4 << 20
with open(path, 'r+b') as f:
    for off, length in dirty:
        for at in range(off, off + length, CHUNK):
            n = min(CHUNK, off + length - at)
            f.seek(at)
            f.write(h.pread(n, at))
            copied += n
differs = []
with open(path, 'rb') as f:
    for at in range(0, size, CHUNK):
        n = min(CHUNK, size - at)
        if f.read(n) != h.pread(n, at):
            differs.append(at)
h.shutdown()
print(json.dumps({'size': size, 'dirty': dirty, 'copied': copied, 'differs': differs[:20]}))
`;

function run(cmd: string, args: readonly string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), COPY_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

async function runOk(cmd: string, args: readonly string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`$ ${cmd} ${args.join(' ')}\nexited ${r.code}\n${tail(r.out, 40)}`);
  return r.out;
}

export interface IncrementalBackup {
  /** The volume's size: the copy's. */
  size: number;
  /** Bytes the full copy of FROM holds as data (not holes). */
  fullDataBytes: number;
  /** Bytes `qemu:dirty-bitmap:FROM` marked on TO, and copied. */
  dirtyBytes: number;
  ms: { full: number; incremental: number };
}

/**
 * Makes FILE a copy of TO from a full copy of FROM and TO's dirty ranges, on the daemon at
 * 127.0.0.1:port; throws unless the file then equals TO byte for byte and the dirty ranges are
 * those of `iomapd diff IMAGE FROM TO`.
 */
export async function incrementalBackup(image: string, port: number, from: string, to: string, file: string): Promise<IncrementalBackup> {
  const python = pythonWithNbd();
  if (python === null) throw new Error('no python3 with the nbd module (python3-libnbd) for the incremental copy');
  const uri = (name: string) => `nbd://127.0.0.1:${port}/${name}`;
  let t = Date.now();
  await writeFile(file, '');
  await runOk('nbdcopy', [uri(from), file]);
  const full = Date.now() - t;
  // The copy stays sparse: what du counts is the data of FROM (nbdcopy skips holes and zeros).
  const fullDataBytes = Number((await runOk('du', ['--block-size=1', file])).split('\t')[0]);

  t = Date.now();
  const script = `${file}.incremental.py`;
  await writeFile(script, INCREMENTAL);
  const out = await runOk(python, [script, uri(to), `qemu:dirty-bitmap:${from}`, file]);
  const incremental = Date.now() - t;
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as { size: number; dirty: [number, number][]; copied: number; differs: number[] };
  if (r.differs.length > 0) throw new Error(`the copy of ${from} plus the dirty ranges of ${to} differs from ${to} at ${r.differs.join(', ')} (4 MiB pieces)`);

  const diff = JSON.parse(await cli(['diff', image, from, to, '--json'])) as { ranges: { offset: number; length: number }[] };
  const merged: [number, number][] = [];
  for (const x of diff.ranges) {
    const last = merged.at(-1);
    if (last && last[0] + last[1] === x.offset) last[1] += x.length;
    else merged.push([x.offset, x.length]);
  }
  if (JSON.stringify(merged) !== JSON.stringify(r.dirty)) {
    throw new Error(`qemu:dirty-bitmap:${from} on ${to} marks ${JSON.stringify(r.dirty).slice(0, 400)}, iomapd diff says ${JSON.stringify(merged).slice(0, 400)}`);
  }
  return { size: r.size, fullDataBytes, dirtyBytes: r.copied, ms: { full, incremental } };
}

/** e2fsck -fn on a filesystem image file on the host: its last line; throws unless clean. */
export async function fsckOnHost(file: string): Promise<string> {
  const r = await run('/usr/sbin/e2fsck', ['-f', '-n', file]);
  if (r.code !== 0) throw new Error(`e2fsck -fn ${file} exited ${r.code}:\n${tail(r.out, 30)}`);
  return r.out.trim().split('\n').at(-1)!;
}

/** nbdcopy FILE into the (new, empty) volume NAME's export. */
export async function restoreInto(port: number, file: string, name: string): Promise<void> {
  await runOk('nbdcopy', [file, `nbd://127.0.0.1:${port}/${name}`]);
}
