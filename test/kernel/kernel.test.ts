// A real Linux kernel attaches iomapd: Debian's 6.1 kernel under QEMU (TCG), its nbd driver set up
// by nbd-client, against a fresh 1 GiB iomapd image per scenario (`iomapd create`, served whole;
// issue 5; the rig is scripts/rig, the guest side test/kernel/guest, docs/KERNEL-RIG.md says what
// this proves). Scenario 1 also runs against a raw file, so that the raw backend stays covered
// by a kernel client. Scenario 9 is issue 15's incremental backup (test/kernel/incremental-backup.ts
// is its host side). Scenario 10 is issue 14's: ext4, a snapshot and a clone on an image kept in a
// bucket of the local Ceph (test/kernel/frozen-snapshot.ts is the host side it shares with 7).
// After each scenario the daemon stops and the image must pass `iomapd check`.
//
// The scenarios run one after the other in this one file: each boots its own guest, and two
// TCG guests at once on a 2-core machine would only slow each other down.
import { copyFileSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { localCeph, testBucket } from '../support/ceph.ts';
import { makeTlsFixtures } from '../support/tls-fixtures.ts';
import { assertGuestPassed, checkPatternsOnHost, describeCounts, explain, typesIn } from './checks.ts';
import { frozenSnapshotScenario } from './frozen-snapshot.ts';
import { IMAGE, cli, totals, withDaemon } from './kernel-daemon.ts';
import type { Backend, ImageInfo, KernelDaemon, MapExtent } from './kernel-daemon.ts';
import { type IncrementalBackup, fsckOnHost, incrementalBackup, restoreInto } from './incremental-backup.ts';
import { BUILD_TIMEOUT_MS, ensureRig, parseRanges, requireRig, runGuest } from './rig.ts';
import type { GuestRun, RigStatus } from './rig.ts';

/** Vitest's bound for one scenario: the guest's own bound plus the rig's grace and the daemon's. */
function testTimeout(guestSec: number): number {
  return (guestSec + 150) * 1000;
}

const MiB = 1 << 20;

let rig: RigStatus | undefined;

beforeAll(async () => {
  rig = await ensureRig();
  if (rig.ok) console.log(`[kernel] rig ready in ${(rig.ms / 1000).toFixed(1)} s`);
}, BUILD_TIMEOUT_MS + 30_000);

/** Fails with the console and daemon logs attached unless `ok`. */
function check(ok: boolean, run: GuestRun, daemon: KernelDaemon, what: string): void {
  if (!ok) throw new Error(explain(run, daemon, what));
}

/** Throws unless every byte of the range has one of the types. */
function requireTypes(map: readonly MapExtent[], r: { kind: string; offset: number; length: number }, want: MapExtent['type'], when: string): void {
  const types = typesIn(map, r.offset, r.length);
  if (types.size !== 1 || !types.has(want)) {
    const rows = map
      .filter((e) => e.offset < r.offset + r.length && r.offset < e.offset + e.length)
      .slice(0, 12)
      .map((e) => `  ${e.offset}+${e.length} ${e.type}${e.shared ? ' shared' : ''}`);
    throw new Error(`${when}: ${r.kind} range ${r.offset}+${r.length} should be all ${want} in \`iomapd map\`, it has ${[...types].join(', ')}:\n${rows.join('\n')}`);
  }
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

describe('kernel nbd client (Linux 6.1 in QEMU) against iomapd', () => {
  describe.each<[string, Backend]>([
    ['1. image', 'image'],
    ['1. raw file', 'raw'],
  ])('%s', (_label, backend) => {
    it('-b 512 and -b 4096: O_DIRECT patterns read back in the guest and found on the host', async (ctx) => {
      requireRig(ctx, rig);
      await withDaemon(`blocksizes-${backend}`, backend, async (daemon) => {
        const run = await runGuest({ name: `blocksizes-${backend}`, scenario: 'blocksizes.sh', daemon, timeoutSec: 150 });
        assertGuestPassed(run, daemon);
        console.log(describeCounts(run));
        check(run.patterns.length >= 8, run, daemon, `expected 8 patterns, the guest reported ${run.patterns.length}`);
        // Three attaches: -b 512, -b 4096, -b 512 again.
        check(run.connections.length === 3, run, daemon, `expected 3 connections, got ${run.connections.length}`);
        for (const c of run.connections) expect(c.requests.DISC, `conn ${c.conn} ended without DISC`).toBe(1);
        const sum = totals(run.connections);
        // O_DIRECT|O_SYNC writes arrive as WRITE+FUA; conv=fsync as FLUSH.
        expect(sum.FUA ?? 0).toBeGreaterThan(0);
        expect(sum.FLUSH ?? 0).toBeGreaterThan(0);
        // Stops the daemon; the raw file, or the image's volume through its extent map.
        await checkPatternsOnHost(run, daemon);
      });
    }, testTimeout(150));
  });

  describe.each([
    ['2. ext4', 'ext4', 'e2fsck -fn'],
    ['3. xfs', 'xfs', 'xfs_repair -n'],
    ['3. btrfs', 'btrfs', 'btrfs check'],
  ])('%s', (_label, fs, checker) => {
    it(`mkfs, a tree of files, sync, umount, ${checker} clean, reconnect, checksums verified`, async (ctx) => {
      requireRig(ctx, rig);
      await withDaemon(fs, 'image', async (daemon) => {
        const run = await runGuest({ name: `fs-${fs}`, scenario: 'filesystem.sh', env: { FS: fs }, daemon, timeoutSec: 200 });
        assertGuestPassed(run, daemon);
        console.log(describeCounts(run));
        check(run.connections.length === 2, run, daemon, `expected 2 connections, got ${run.connections.length}`);
        const [first] = run.connections;
        // Journal commits and superblock writes carry FUA; sync and journal preflushes send FLUSH.
        expect(first!.requests.FUA ?? 0, 'FUA while writing the filesystem').toBeGreaterThan(0);
        expect(first!.requests.FLUSH ?? 0, 'FLUSH while writing the filesystem').toBeGreaterThan(0);
        // mkfs discards the whole device first.
        expect(first!.requests.TRIM ?? 0, 'TRIM from mkfs').toBeGreaterThan(0);
      });
    }, testTimeout(200));
  });

  it('4. fio direct=1: random writes with verify=crc32c, verify_only after reconnecting, random reads', async (ctx) => {
    requireRig(ctx, rig);
    await withDaemon('fio', 'image', async (daemon) => {
      const run = await runGuest({ name: 'fio', scenario: 'fio.sh', env: { JOBS: '1' }, daemon, timeoutSec: 200 });
      assertGuestPassed(run, daemon);
      console.log(describeCounts(run));
      const sum = totals(run.connections);
      expect(sum.WRITE ?? 0).toBeGreaterThan(1000);
      expect(sum.READ ?? 0).toBeGreaterThan(1000);
      expect(sum.FLUSH ?? 0, 'fsync=32 sends FLUSH').toBeGreaterThan(0);
      expect(sum.FUA ?? 0, 'sync=1 with direct=1 sends WRITE+FUA').toBeGreaterThan(0);
    });
  }, testTimeout(200));

  describe('5. two connections (nbd-client -C 2)', () => {
    it('fio with verify across both connections; FLUSH and FUA arrive', async (ctx) => {
      requireRig(ctx, rig);
      await withDaemon('fio-multiconn', 'image', async (daemon) => {
        const run = await runGuest({
          name: 'fio-multiconn',
          scenario: 'fio.sh',
          env: { JOBS: '2', NBD_OPTS: '-C 2' },
          daemon,
          timeoutSec: 240,
        });
        assertGuestPassed(run, daemon);
        console.log(describeCounts(run));
        // Two attaches of two connections each.
        check(run.connections.length === 4, run, daemon, `expected 4 connections, got ${run.connections.length}`);
        const writers = run.connections.slice(0, 2);
        for (const c of writers) expect(c.requests.WRITE ?? 0, `conn ${c.conn} got no writes`).toBeGreaterThan(0);
        const sum = totals(writers);
        expect(sum.FLUSH ?? 0).toBeGreaterThan(0);
        expect(sum.FUA ?? 0).toBeGreaterThan(0);
      });
    }, testTimeout(240));

    it('ext4 on two connections: journal FUA and FLUSH spread across them; fsck clean, checksums verified', async (ctx) => {
      requireRig(ctx, rig);
      await withDaemon('ext4-multiconn', 'image', async (daemon) => {
        const run = await runGuest({
          name: 'ext4-multiconn',
          scenario: 'filesystem.sh',
          env: { FS: 'ext4', NBD_OPTS: '-C 2' },
          daemon,
          timeoutSec: 200,
        });
        assertGuestPassed(run, daemon);
        console.log(describeCounts(run));
        check(run.connections.length === 4, run, daemon, `expected 4 connections, got ${run.connections.length}`);
        const sum = totals(run.connections.slice(0, 2));
        expect(sum.FLUSH ?? 0).toBeGreaterThan(0);
        expect(sum.FUA ?? 0).toBeGreaterThan(0);
      });
    }, testTimeout(200));
  });

  it('6. fstrim and blkdiscard: the ranges become holes in `iomapd map`, `iomapd info` shows the space back', async (ctx) => {
    requireRig(ctx, rig);
    await withDaemon('discard', 'image', async (daemon) => {
      let written: ImageInfo | undefined;
      let discarded: ImageInfo | undefined;
      let expectedBytes = 0;
      const run = await runGuest({
        name: 'discard',
        scenario: 'discard.sh',
        daemon,
        timeoutSec: 200,
        hostSteps: {
          // Everything written and flushed: the deleted-to-be files and the raw regions are mapped.
          async written(text) {
            written = await daemon.info();
            const map = await daemon.map('default');
            const ranges = parseRanges(text);
            if (!ranges.some((r) => r.kind === 'doomed')) throw new Error('the guest named no blocks of the files it is going to delete');
            for (const r of ranges) if (r.kind === 'doomed' || r.kind === 'written') requireTypes(map, r, 'mapped', 'after writing');
          },
          // Deleted, fstrim'd, blkdiscard'ed and flushed: those ranges are holes, their space free.
          async discarded(text) {
            discarded = await daemon.info();
            const map = await daemon.map('default');
            const ranges = parseRanges(text);
            for (const r of ranges) {
              if (r.kind === 'doomed' || r.kind === 'discarded') requireTypes(map, r, 'hole', 'after fstrim and blkdiscard');
              if (r.kind === 'kept') requireTypes(map, r, 'mapped', 'after fstrim and blkdiscard');
            }
            expectedBytes = ranges.filter((r) => r.kind === 'doomed' || r.kind === 'discarded').reduce((n, r) => n + r.length, 0);
            const B = discarded.blockSize;
            const gained = (discarded.freeBlocks - written!.freeBlocks) * B;
            // The guest writes a little between the two looks (journal, directory, superblock);
            // the trims' space must be free, not merely pending, once the FLUSH committed them.
            if (gained < expectedBytes - 4 * MiB) {
              throw new Error(
                `\`iomapd info\` shows ${mib(gained)} more free space after the discards (free blocks ${written!.freeBlocks} -> ${discarded.freeBlocks}, pending ${discarded.pendingFreeBlocks}), expected about ${mib(expectedBytes)}`,
              );
            }
          },
        },
      });
      assertGuestPassed(run, daemon);
      console.log(describeCounts(run));
      const B = written!.blockSize;
      console.log(
        `  space: free ${mib(written!.freeBlocks * B)} after writing, ${mib(discarded!.freeBlocks * B)} after the discards (+${mib((discarded!.freeBlocks - written!.freeBlocks) * B)}; ${mib(expectedBytes)} trimmed or discarded; pending ${discarded!.pendingFreeBlocks} blocks, uncommitted ops ${discarded!.uncommittedOps})`,
      );
      check(run.hostSteps.length === 2, run, daemon, `expected host steps "written" and "discarded", got ${run.hostSteps.map((h) => h.name).join(', ')}`);
      check(run.connections.length === 2, run, daemon, `expected 2 connections (-b 4096, -b 512), got ${run.connections.length}`);
      const sum = totals(run.connections);
      expect(sum.TRIM ?? 0, 'TRIM from mkfs, fstrim and blkdiscard').toBeGreaterThan(2);
      expect(sum.FLUSH ?? 0).toBeGreaterThan(0);
      expect(sum.FUA ?? 0).toBeGreaterThan(0);
      expect(run.connections[1]!.requests.TRIM ?? 0, 'TRIM from the 512-byte blkdiscard').toBeGreaterThan(0);
    });
  }, testTimeout(200));

  it('7. snapshot of a frozen, mounted ext4 through the control channel; the clone attached: fsck clean, the files of the freeze', async (ctx) => {
    requireRig(ctx, rig);
    await withDaemon('snapshot', 'image', (daemon) => frozenSnapshotScenario(daemon, 'snapshot', '-C 2', 2, 240));
  }, testTimeout(240));

  it('8. TLS: --tls require --tls-verify-peer on a require-tls volume; plain and certificate-less clients refused; ext4 over TLS, fsck clean, checksums verified', async (ctx) => {
    requireRig(ctx, rig);
    const tls = makeTlsFixtures();
    try {
      // The guest gets the CA and alice's certificate and key under the names tls.sh expects.
      const pki = join(tls.dir, 'guest');
      mkdirSync(pki);
      copyFileSync(tls.caCert, join(pki, 'ca-cert.pem'));
      copyFileSync(tls.clients.alice.cert, join(pki, 'client-cert.pem'));
      copyFileSync(tls.clients.alice.key, join(pki, 'client-key.pem'));
      const files = ['ca-cert.pem', 'client-cert.pem', 'client-key.pem'].map((f) => join(pki, f));
      const nbdOpts = '-enable-tls -certfile /run/rig/files/client-cert.pem -keyfile /run/rig/files/client-key.pem -cacertfile /run/rig/files/ca-cert.pem -tlshostname localhost';
      await withDaemon(
        'tls',
        'image',
        async (daemon) => {
          const run = await runGuest({ name: 'tls', scenario: ['tls.sh', 'filesystem.sh'], env: { FS: 'ext4', NBD_OPTS: nbdOpts }, files, daemon, timeoutSec: 240 });
          assertGuestPassed(run, daemon);
          console.log(describeCounts(run));
          // Only the two TLS attaches negotiated: the refused clients never reached an export.
          check(run.connections.length === 2, run, daemon, `expected 2 connections, got ${run.connections.length}`);
          const negotiated = daemon
            .output()
            .split('\n')
            .filter((l) => l.includes('"msg":"negotiated"'));
          check(negotiated.length === 2 && negotiated.every((l) => l.includes('cn:alice')), run, daemon, `both negotiated lines should name the TLS identity cn:alice:\n${negotiated.join('\n')}`);
          // The certificate-less client was refused by --tls-verify-peer, not by anything else.
          check(daemon.output().includes('"reason":"client certificate refused: no certificate presented"'), run, daemon, 'no connection closed for a missing client certificate');
          const [first] = run.connections;
          expect(first!.requests.FUA ?? 0, 'FUA over TLS').toBeGreaterThan(0);
          expect(first!.requests.FLUSH ?? 0, 'FLUSH over TLS').toBeGreaterThan(0);
          expect(first!.requests.TRIM ?? 0, 'TRIM from mkfs over TLS').toBeGreaterThan(0);
        },
        {
          setup: [['volume', 'set', IMAGE, 'default', '--require-tls', 'on']],
          serveArgs: ['--tls', 'require', '--tls-certificates', tls.certDir, '--tls-verify-peer'],
        },
      );
    } finally {
      tls.cleanup();
    }
  }, testTimeout(240));

  it('9. incremental backup of a frozen ext4: full copy of s1 (nbdcopy) plus the qemu:dirty-bitmap:s1 ranges of s2 (libnbd) fscks clean and holds s2\'s files', async (ctx) => {
    requireRig(ctx, rig);
    const dir = await mkdtemp(join(tmpdir(), 'iomapd-kernel-backup-'));
    try {
      await withDaemon('backup', 'image', async (daemon) => {
        let backup: IncrementalBackup | undefined;
        let hostFsck = '';
        const file = join(dir, 'backup.raw');
        const run = await runGuest({
          name: 'backup',
          scenario: 'backup.sh',
          daemon,
          timeoutSec: 300,
          hostSteps: {
            // Each while the filesystem is frozen: its data and a clean journal are on the device.
            s1: async () => void (await cli(['snapshot', daemon.image, 'default', 's1'])),
            s2: async () => void (await cli(['snapshot', daemon.image, 'default', 's2'])),
            // The backup, then the backup served back to the guest as the new volume "restored".
            async restore() {
              backup = await incrementalBackup(daemon.image, daemon.port, 's1', 's2', file);
              hostFsck = await fsckOnHost(file);
              await cli(['volume', 'create', daemon.image, 'restored', '--size', String(backup.size)]);
              await restoreInto(daemon.port, file, 'restored');
            },
          },
        });
        assertGuestPassed(run, daemon);
        console.log(describeCounts(run));
        check(run.hostSteps.length === 3, run, daemon, `expected host steps s1, s2 and restore, got ${run.hostSteps.map((h) => h.name).join(', ')}`);
        const b = backup!;
        console.log(
          `  backup: full copy of s1 ${mib(b.fullDataBytes)} of data in ${b.ms.full} ms; s2's dirty ranges ${mib(b.dirtyBytes)} copied and the copy compared with s2 in ${b.ms.incremental} ms; host e2fsck: ${hostFsck}`,
        );
        // Incremental: the change between the freezes, not the filesystem again.
        expect(b.dirtyBytes).toBeGreaterThan(6 * MiB);
        expect(b.dirtyBytes).toBeLessThan(b.fullDataBytes);
        // The guest's origin (nbdcopy and libnbd on the host connect to s1, s2 and restored too).
        const origin = totals(run.connections.filter((c) => c.export === 'default'));
        expect(origin.FUA ?? 0, 'FUA on the origin').toBeGreaterThan(0);
        expect(origin.FLUSH ?? 0, 'FLUSH on the origin (fsfreeze)').toBeGreaterThan(0);
        expect(run.connections.filter((c) => c.export === 'restored').length, 'connections to the restored backup').toBeGreaterThan(0);
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, testTimeout(300));

  it('10. object store: ext4 on a volume in a bucket of the local Ceph; snapshot and clone of the frozen filesystem, fsck clean, the files of the freeze; the bucket checks clean', async (ctx) => {
    requireRig(ctx, rig);
    const ceph = await localCeph();
    if (ceph === null) return ctx.skip();
    const { bucket, remove } = await testBucket(ceph, 'kernel');
    try {
      await withDaemon('s3-snapshot', 's3', (daemon) => frozenSnapshotScenario(daemon, 's3-snapshot', '', 1, 240), { store: { env: ceph, bucket } });
    } finally {
      await remove();
    }
  }, testTimeout(240));
});
