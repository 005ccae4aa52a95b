// The start-up probe of a read-write open (issue 14, item 4): fencing and the manifest's CAS rest
// on the store honouring If-None-Match: * and If-Match. Some S3 look-alikes accept both headers and
// ignore them (s3rver), so before taking the writer role we try them on a scratch key and refuse
// read-write service (STORE_UNSUPPORTED) where either is not honoured. Five requests per open.
import { randomBytes } from 'node:crypto';
import { IomapdError } from '../../util/errors.ts';
import { ObjectConflict, type ObjectStore } from '../../storage/object-store.ts';

export const PROBE_PREFIX = 'probe/';

async function loses(attempt: Promise<string>): Promise<boolean> {
  try {
    await attempt;
    return false;
  } catch (err) {
    if (err instanceof ObjectConflict) return true;
    throw err;
  }
}

export async function probeConditionalWrites(store: ObjectStore): Promise<void> {
  const key = `${PROBE_PREFIX}${randomBytes(8).toString('hex')}`;
  const unsupported = (what: string) =>
    new IomapdError('STORE_UNSUPPORTED', `${store.description} does not honour ${what}: read-write service needs conditional writes (open read-only instead)`);
  try {
    const etag = await store.putIfAbsent(key, Buffer.from('iomapd conditional-write probe 1'));
    if (!(await loses(store.putIfAbsent(key, Buffer.from('iomapd conditional-write probe 2'))))) throw unsupported('If-None-Match: *');
    await store.putIfMatch(key, Buffer.from('iomapd conditional-write probe 3'), etag);
    // `etag` is stale now: a store that honours If-Match refuses it.
    if (!(await loses(store.putIfMatch(key, Buffer.from('iomapd conditional-write probe 4'), etag)))) throw unsupported('If-Match');
  } finally {
    await store.delete(key).catch(() => {}); // a leftover probe key is harmless (check lists it)
  }
}
