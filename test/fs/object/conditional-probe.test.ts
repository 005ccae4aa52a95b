// The start-up probe: read-write service needs a store that honours If-None-Match: * and If-Match;
// one that accepts the headers and ignores them (s3rver) is refused with STORE_UNSUPPORTED before
// anything is written, and may still be opened read-only.
import { describe, expect, it } from 'vitest';
import { ObjectImageStore } from '../../../src/fs/object/object-image-store.ts';
import { probeConditionalWrites } from '../../../src/fs/object/conditional-probe.ts';
import { FakeObjectStore } from '../../support/fake-object-store.ts';
import { SMALL, createSmall, openSmall } from './helpers.ts';

describe('conditional-write probe', () => {
  it('passes on a store that honours both preconditions and leaves nothing behind', async () => {
    const s = new FakeObjectStore();
    await probeConditionalWrites(s);
    expect(s.keys()).toEqual([]);
  });

  for (const header of ['If-None-Match', 'If-Match'] as const) {
    it(`refuses read-write service where ${header} is ignored, before touching the image`, async () => {
      const s = new FakeObjectStore();
      const a = await createSmall(s);
      await a.createVolume('v', 1 << 20);
      await a.close();
      const keys = s.keys();
      s.ignorePrecondition(header);
      await expect(probeConditionalWrites(s)).rejects.toMatchObject({ code: 'STORE_UNSUPPORTED', message: expect.stringContaining(header) });
      await expect(openSmall(s)).rejects.toMatchObject({ code: 'STORE_UNSUPPORTED' });
      expect(s.keys()).toEqual(keys);
      const ro = await ObjectImageStore.open(s, { ...SMALL, readOnly: true });
      expect(ro.listVolumes().map((v) => v.name)).toEqual(['v']);
    });
  }

  it('turns a store that is down into STORE_UNAVAILABLE, not STORE_UNSUPPORTED', async () => {
    const s = new FakeObjectStore();
    s.goDown();
    await expect(probeConditionalWrites(s)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
  });
});
