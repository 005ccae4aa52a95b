// Before read-write service: does the store honour the two preconditions the image's single-writer
// rules stand on? If-None-Match: * (a second create of a key must lose) and If-Match (a replace with
// a wrong etag must lose, with the right one must win). A store that ignores either would let two
// writers both believe they advanced the manifest, so iomapd refuses with STORE_UNSUPPORTED.
// Works on any ObjectStore; its key is unique per run, under `probe/`, and is deleted afterwards.
import { randomBytes } from 'node:crypto';
import { IomapdError } from '../../util/errors.ts';
import { ObjectConflict, type ObjectStore } from '../object-store.ts';

export const PROBE_KEY_PREFIX = 'probe/conditional-';

export async function probeConditionalWrites(store: ObjectStore): Promise<void> {
  const key = `${PROBE_KEY_PREFIX}${randomBytes(8).toString('hex')}`;
  const unsupported = (what: string) =>
    new IomapdError('STORE_UNSUPPORTED', `${store.description} ${what}; read-write service needs conditional writes`);
  const [first, second, third] = ['first', 'second', 'third'].map((s) => Buffer.from(`iomapd conditional-write probe: ${s}\n`));
  let failure: unknown;
  try {
    const etag = await store.putIfAbsent(key, first!);
    if (!(await loses(() => store.putIfAbsent(key, second!)))) throw unsupported('ignores If-None-Match: * (a second create of one key succeeded)');
    const wrong = etag === 'a'.repeat(32) ? 'b'.repeat(32) : 'a'.repeat(32);
    if (!(await loses(() => store.putIfMatch(key, second!, wrong)))) throw unsupported('ignores If-Match (a replace with a wrong etag succeeded)');
    try {
      await store.putIfMatch(key, third!, etag);
    } catch (err) {
      if (err instanceof ObjectConflict) throw unsupported(`refuses If-Match with the object's own etag ${etag}`);
      throw err;
    }
    const now = await store.get(key);
    if (now === null || !now.body.equals(third!)) throw unsupported('did not store a replace that If-Match allowed');
  } catch (err) {
    failure = err;
  }
  try {
    await store.delete(key);
  } catch (err) {
    failure ??= err;
  }
  if (failure !== undefined) throw failure;
}

/** True when the write lost with ObjectConflict; any other error is thrown as it is. */
async function loses(write: () => Promise<string>): Promise<boolean> {
  try {
    await write();
    return false;
  } catch (err) {
    if (err instanceof ObjectConflict) return true;
    throw err;
  }
}
