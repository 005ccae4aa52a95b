// The control channel's check op in process: a daemon's parts (image, engine, registry, NbdServer,
// ControlServer) here, the check asked through RemoteAdmin. A write in flight (blocks allocated,
// not yet linked) does not make the check of the copy report a leak; damage in the live metadata
// is reported (checked in place then), in the words and form `iomapd check` prints; an idle image is checked by LocalAdmin.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkText } from '../../src/cli/check-command.ts';
import { ControlServer, controlPath } from '../../src/control/control-server.ts';
import { DaemonAdmin } from '../../src/control/daemon-admin.ts';
import { LocalAdmin } from '../../src/control/local-admin.ts';
import { RemoteAdmin } from '../../src/control/remote-admin.ts';
import { ServedImage } from '../../src/control/served-image.ts';
import { createImageFile } from '../../src/fs/image-file.ts';
import type { ImageStore } from '../../src/fs/image-store.ts';
import { ExportRegistry } from '../../src/server/export-registry.ts';
import { NbdServer } from '../../src/server/nbd-server.ts';
import { silentLogger } from '../../src/util/log.ts';
import { writeBytes } from '../fs/support/mini-engine.ts';

const B = 4096;
let dir: string;
let image: string;
let store: ImageStore;
let served: ServedImage;
let server: NbdServer;
let control: ControlServer;
let remote: RemoteAdmin;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-served-check-'));
  image = join(dir, 'img.iomapd');
  store = await createImageFile(image, { dataBytes: 4 << 20 });
  await store.createVolume('vol', 1 << 20);
  for (let i = 0; i < 8; i++) await writeBytes(store, 'vol', 2 * i * B, Buffer.alloc(B, i + 1));
  await store.snapshot('vol', 's1');
  served = new ServedImage(store);
  const registry = new ExportRegistry();
  registry.add({ name: 'vol', description: '', device: served.engine.device('vol') });
  server = new NbdServer(registry, silentLogger);
  const reload = async () => ({ tls: 'off' as const, restrictedExports: 0 });
  const admin = new DaemonAdmin({ image: served, registry, server, description: '', tls: false, log: silentLogger, reload });
  control = await ControlServer.listen(controlPath(image), admin, silentLogger);
  remote = await RemoteAdmin.connect(controlPath(image));
});

afterEach(async () => {
  await remote.close();
  await control.close();
  await server.shutdown(2000);
  await served.close();
  await rm(dir, { recursive: true, force: true });
});

describe('check of a served image', () => {
  it('is clean with a write in flight, and commits what was applied first', async () => {
    // A copy-on-write of a shared block and a fresh allocation, begun and not ended.
    const cow = await store.begin('vol', 0, B, 'write');
    const fresh = await store.begin('vol', 101 * B, 2 * B, 'write');
    expect(store.uncommitted).toBeGreaterThan(0);
    const r = await remote.check();
    expect(r.errors).toEqual([]);
    const extents = () => store.volume('vol').extents + store.volume('s1').extents;
    expect(r).toMatchObject({ volumes: 2, extents: extents(), repaired: false, unreadable: false });
    expect(r).not.toHaveProperty('heldMs');
    expect(r.notes.at(-1)).toMatch(/^served image: checked a copy of the metadata after a commit; requests waited [\d.]+ ms$/);
    expect(store.uncommitted).toBe(0);
    await store.end(cow, B);
    await store.end(fresh, 2 * B);
    const after = await remote.check();
    expect(after.errors).toEqual([]);
    expect(after.extents).toBe(extents());
    expect(checkText(after)).toMatch(/\nclean: 2 volumes, \d+ extents, \d+ used and \d+ free blocks\n$/);
  });

  it('reports damage in the live metadata as the offline check prints it', async () => {
    store.meta.freeBlocks += 3;
    try {
      const r = await remote.check();
      expect(r.errors).toEqual([`free-block counter is ${store.meta.freeBlocks}, free runs hold ${store.meta.freeBlocks - 3}`]);
      expect(r.notes).toContain(`served image: the copy of the metadata did not check clean (its free blocks ${store.meta.freeBlocks - 3}, the live ${store.meta.freeBlocks}), so the live metadata was checked in place`);
      expect(r.notes.at(-1)).toMatch(/^served image: checked the live metadata after a commit; requests waited [\d.]+ ms$/);
      const text = checkText(r);
      expect(text).toContain(`\nerror: free-block counter is ${store.meta.freeBlocks}`);
      expect(text).toMatch(/\n1 problem\(s\): 2 volumes, 16 extents, \d+ used and \d+ free blocks\n$/);
    } finally {
      store.meta.freeBlocks -= 3;
    }
    expect((await remote.check()).errors).toEqual([]);
  });

  it('reports damage the checker of the copy finds, checked again in place', async () => {
    // A block volume vol maps, also listed as free (the counter agrees, so only the walk finds it).
    const used = [...store.meta.volumes.values()].find((v) => v.name === 'vol')!.map.entries().next().value!;
    const phys = used.v.phys;
    store.meta.putFree(phys, 1);
    try {
      const r = await remote.check();
      expect(r.errors).toContain(`blocks ${phys}.. are both free and in use`);
      expect(r.notes).toContain(`served image: the copy of the metadata did not check clean (blocks ${phys}.. are both free and in use), so the live metadata was checked in place`);
    } finally {
      store.meta.takeFree(phys, 1);
    }
    expect((await remote.check()).errors).toEqual([]);
  });
});

describe('check of an idle image through LocalAdmin', () => {
  it('is the offline check, read-only', async () => {
    await remote.close();
    await control.close();
    await server.shutdown(2000);
    await served.close();
    const local = await LocalAdmin.open(image, true);
    try {
      const r = await local.check();
      expect(r).toMatchObject({ errors: [], volumes: 2, extents: 16, repaired: false, unreadable: false });
    } finally {
      await local.close();
    }
    // afterEach closes these again: each close is idempotent.
  });
});
