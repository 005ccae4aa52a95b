// S3ObjectStore against a real S3 store: Ceph's radosgw from scripts/ceph/local-ceph (started here
// when it is not running). Every ObjectStore method's semantics, both preconditions under a race,
// the configuration errors in bounded time without a secret in any message, and the probe.
import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObjectConflict, type ObjectInfo } from '../../src/storage/object-store.ts';
import { PROBE_KEY_PREFIX, probeConditionalWrites } from '../../src/storage/s3/conditional-probe.ts';
import { S3ObjectStore } from '../../src/storage/s3/s3-object-store.ts';
import { IomapdError } from '../../src/util/errors.ts';
import { localCeph, testBucket } from '../support/ceph.ts';

const ceph = await localCeph();
const env = ceph ?? {};
// Small, so that the error tests end quickly; still several attempts with backoff.
const RETRY = { maxAttempts: 4, baseDelayMs: 20, maxDelayMs: 200, budgetMs: 2_000, attemptTimeoutMs: 500 };

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of it) out.push(o);
  return out;
}

/** The error `promise` rejects with, and how long it took. */
async function failure(promise: Promise<unknown>): Promise<{ err: IomapdError; ms: number }> {
  const start = performance.now();
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(IomapdError);
    return { err: err as IomapdError, ms: performance.now() - start };
  }
  throw new Error('expected a rejection');
}

describe.skipIf(ceph === null)('S3ObjectStore on the local Ceph', { timeout: 30_000 }, () => {
  let bucket = '';
  let remove: () => Promise<void> = async () => {};
  let store: S3ObjectStore;
  /** Every message an error test saw, checked for secrets at the end. */
  const messages: string[] = [];

  beforeAll(async () => {
    ({ bucket, remove } = await testBucket(env, 's3-store'));
    store = await S3ObjectStore.connect(`s3://${bucket}/images/one`, { env, retry: RETRY });
  }, 60_000);
  afterAll(async () => {
    store?.close();
    await remove();
  }, 60_000);

  it('names itself by URL and endpoint', () => {
    expect(store.description).toBe(`s3://${bucket}/images/one at ${env.AWS_ENDPOINT_URL}`);
  });

  it('putIfAbsent creates a key once; a second create loses and leaves the first body', async () => {
    const a = Buffer.from('first body');
    const etag = await store.putIfAbsent('create-once', a);
    expect(etag).toBe(md5(a)); // unquoted
    await expect(store.putIfAbsent('create-once', Buffer.from('second'))).rejects.toBeInstanceOf(ObjectConflict);
    const got = await store.get('create-once');
    expect(got).toEqual({ body: a, etag });
  });

  it('two concurrent putIfAbsent of one key: exactly one wins, and its body is stored', async () => {
    for (let round = 0; round < 8; round++) {
      const key = `race-absent-${round}`;
      const bodies = [Buffer.from(`writer A ${round}`), Buffer.from(`writer B ${round}`)];
      const results = await Promise.allSettled(bodies.map((b) => store.putIfAbsent(key, b)));
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(won).toHaveLength(1);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason).toBeInstanceOf(ObjectConflict);
      expect((await store.get(key))?.body).toEqual(bodies[won[0]!]);
    }
  });

  it('putIfMatch replaces only while the etag is current; a wrong etag or an absent key loses', async () => {
    const v1 = Buffer.from('version 1');
    const e1 = await store.putIfAbsent('cas', v1);
    await expect(store.putIfMatch('cas', Buffer.from('x'), md5(Buffer.from('not it')))).rejects.toBeInstanceOf(ObjectConflict);
    const v2 = Buffer.from('version 2');
    const e2 = await store.putIfMatch('cas', v2, e1);
    expect(e2).toBe(md5(v2));
    // The old etag is stale now, quoted or not.
    await expect(store.putIfMatch('cas', Buffer.from('v3'), e1)).rejects.toBeInstanceOf(ObjectConflict);
    await expect(store.putIfMatch('cas', Buffer.from('v3'), `"${e1}"`)).rejects.toBeInstanceOf(ObjectConflict);
    expect((await store.get('cas'))?.body).toEqual(v2);
    await expect(store.putIfMatch('cas-absent', v1, e1)).rejects.toBeInstanceOf(ObjectConflict);
    expect(await store.head('cas-absent')).toBeNull();
  });

  it('two concurrent putIfMatch from one etag: exactly one wins', async () => {
    for (let round = 0; round < 8; round++) {
      const key = `race-match-${round}`;
      const etag = await store.putIfAbsent(key, Buffer.from('base'));
      const bodies = [Buffer.from(`next A ${round}`), Buffer.from(`next B ${round}`)];
      const results = await Promise.allSettled(bodies.map((b) => store.putIfMatch(key, b, etag)));
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(won).toHaveLength(1);
      expect((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(ObjectConflict);
      expect((await store.get(key))?.body).toEqual(bodies[won[0]!]);
    }
  });

  it('get reads the whole object or exact byte ranges; past the end is OUT_OF_RANGE; absent is null', async () => {
    const body = Buffer.alloc(100_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 8)) & 0xff;
    const etag = await store.putIfAbsent('ranges', body);
    expect(await store.get('ranges')).toEqual({ body, etag });
    for (const [offset, length] of [[0, 1], [99_999, 1], [4096, 8192], [1, 99_999], [0, 100_000], [50_000, 0], [100_000, 0]] as const) {
      const got = await store.get('ranges', { offset, length });
      expect(got?.etag).toBe(etag);
      expect(got?.body).toEqual(body.subarray(offset, offset + length));
    }
    expect((await failure(store.get('ranges', { offset: 99_990, length: 20 }))).err.code).toBe('OUT_OF_RANGE');
    expect((await failure(store.get('ranges', { offset: 200_000, length: 1 }))).err.code).toBe('OUT_OF_RANGE');
    expect(await store.get('no-such-key')).toBeNull();
    expect(await store.get('no-such-key', { offset: 0, length: 10 })).toBeNull();
  });

  it('head gives size and etag; absent is null', async () => {
    const body = Buffer.from('head me');
    const etag = await store.putIfAbsent('head', body);
    expect(await store.head('head')).toEqual({ key: 'head', size: body.length, etag });
    expect(await store.head('head-absent')).toBeNull();
  });

  it('list pages through more keys than one page, in order, relative to the prefix, and only under it', async () => {
    const paged = S3ObjectStore.create(`s3://${bucket}/images/lister`, { env, retry: RETRY, listPageSize: 7 });
    const sibling = S3ObjectStore.create(`s3://${bucket}/images/lister-other`, { env, retry: RETRY });
    try {
      const keys = Array.from({ length: 23 }, (_, i) => `seg/${String(i).padStart(4, '0')}`);
      await Promise.all(keys.map((k) => paged.putIfAbsent(k, Buffer.from(k))));
      await paged.putIfAbsent('manifest', Buffer.from('m'));
      await sibling.putIfAbsent('seg/0000', Buffer.from('not the lister image'));
      const listed = await collect(paged.list('seg/'));
      expect(listed.map((o) => o.key)).toEqual(keys);
      expect(listed.every((o) => o.size === 8 && o.etag === md5(Buffer.from(o.key)))).toBe(true);
      expect((await collect(paged.list(''))).map((o) => o.key)).toEqual(['manifest', ...keys]);
      expect(await collect(paged.list('nothing/'))).toEqual([]);
    } finally {
      paged.close();
      sibling.close();
    }
  });

  it('delete removes a key; deleting an absent key succeeds', async () => {
    await store.putIfAbsent('doomed', Buffer.from('x'));
    await store.delete('doomed');
    expect(await store.head('doomed')).toBeNull();
    await store.delete('doomed');
    await store.delete('never-was');
    // A deleted key can be created again.
    await store.putIfAbsent('doomed', Buffer.from('again'));
  });

  it('the conditional-write probe passes on Ceph and leaves no probe key behind', async () => {
    await probeConditionalWrites(store);
    expect(await collect(store.list(PROBE_KEY_PREFIX.split('/')[0]!))).toEqual([]);
  });

  it('a bucket that does not exist is STORE_CONFIG naming the endpoint and bucket, at once', async () => {
    const { err, ms } = await failure(S3ObjectStore.connect('s3://iomapd-no-such-bucket/img', { env, retry: RETRY }));
    messages.push(err.message);
    expect(err.code).toBe('STORE_CONFIG');
    expect(err.message).toContain("bucket 'iomapd-no-such-bucket' does not exist");
    expect(err.message).toContain(env.AWS_ENDPOINT_URL!);
    expect(ms).toBeLessThan(2_000);
  });

  it('a prefix that holds nothing is STORE_CONFIG when an existing image is required', async () => {
    const { err } = await failure(S3ObjectStore.connect(`s3://${bucket}/images/none`, { env, retry: RETRY, requirePrefix: true }));
    messages.push(err.message);
    expect(err.code).toBe('STORE_CONFIG');
    expect(err.message).toContain(`no image at s3://${bucket}/images/none`);
    const existing = await S3ObjectStore.connect(`s3://${bucket}/images/one`, { env, retry: RETRY, requirePrefix: true });
    existing.close();
  });

  it('a wrong secret or access key is STORE_CONFIG, fast, and no message carries a key or secret', async () => {
    const wrongSecret = { ...env, AWS_SECRET_ACCESS_KEY: 'wrongSecretwrongSecretwrongSecretwrong12' };
    const wrongKey = { ...env, AWS_ACCESS_KEY_ID: 'AKIAWRONGWRONGWRONG1' };
    for (const bad of [wrongSecret, wrongKey]) {
      const { err, ms } = await failure(S3ObjectStore.connect(`s3://${bucket}/images/one`, { env: bad, retry: RETRY }));
      messages.push(err.message, String(err), err.stack ?? '');
      expect(err.code).toBe('STORE_CONFIG');
      expect(err.message).toContain(`refused access to bucket '${bucket}'`);
      expect(err.message).toContain(env.AWS_ENDPOINT_URL!);
      expect(ms).toBeLessThan(2_000);
      // And in service (a store made without the connect check): the same refusal per operation.
      const unchecked = S3ObjectStore.create(`s3://${bucket}/images/one`, { env: bad, retry: RETRY });
      const ops = [() => unchecked.get('cas'), () => unchecked.putIfAbsent('k', Buffer.from('x')), () => collect(unchecked.list(''))];
      for (const op of ops) {
        const f = await failure(op());
        messages.push(f.err.message, String(f.err), f.err.stack ?? '');
        expect(f.err.code).toBe('STORE_CONFIG');
      }
      unchecked.close();
    }
  });

  describe('an endpoint that does not answer', () => {
    let refusedPort = 0;
    let silent: Server;
    const held: Socket[] = [];
    beforeAll(async () => {
      const probe = createServer();
      await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
      refusedPort = (probe.address() as { port: number }).port;
      await new Promise((r) => probe.close(r));
      // Accepts connections and never answers: every attempt must time out.
      silent = createServer((s) => held.push(s));
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    });
    afterAll(async () => {
      for (const s of held) s.destroy();
      await new Promise((r) => silent.close(r));
    });

    it('refused connections: STORE_CONFIG at connect, STORE_UNAVAILABLE in service, both within the budget', async () => {
      const dead = { ...env, AWS_ENDPOINT_URL: `http://127.0.0.1:${refusedPort}` };
      const c = await failure(S3ObjectStore.connect(`s3://${bucket}/images/one`, { env: dead, retry: RETRY }));
      messages.push(c.err.message);
      expect(c.err.code).toBe('STORE_CONFIG');
      expect(c.err.message).toMatch(new RegExp(`127\\.0\\.0\\.1:${refusedPort} does not answer .*ECONNREFUSED`));
      expect(c.ms).toBeLessThan(RETRY.budgetMs + 1_000);
      const s = S3ObjectStore.create(`s3://${bucket}/images/one`, { env: dead, retry: RETRY });
      const g = await failure(s.get('cas'));
      messages.push(g.err.message);
      expect(g.err.code).toBe('STORE_UNAVAILABLE');
      expect(g.err.message).toContain(`get of cas on s3://${bucket}/images/one at http://127.0.0.1:${refusedPort}`);
      s.close();
    });

    it('a silent endpoint: every attempt times out, STORE_UNAVAILABLE within the budget', async () => {
      const port = (silent.address() as { port: number }).port;
      const quiet = { ...env, AWS_ENDPOINT_URL: `http://127.0.0.1:${port}` };
      const s = S3ObjectStore.create(`s3://${bucket}/images/one`, { env: quiet, retry: RETRY });
      const g = await failure(s.putIfAbsent('k', Buffer.from('x')));
      messages.push(g.err.message);
      expect(g.err.code).toBe('STORE_UNAVAILABLE');
      expect(g.err.message).toMatch(/no answer within \d+ ms/);
      expect(g.ms).toBeLessThan(RETRY.budgetMs + 1_000);
      expect(held.length).toBeGreaterThanOrEqual(2); // it did retry
      s.close();
    });
  });

  it('no error message above carries the access key or the secret', () => {
    expect(messages.length).toBeGreaterThanOrEqual(10);
    for (const m of messages) {
      expect(m).not.toContain(env.AWS_SECRET_ACCESS_KEY!);
      expect(m).not.toContain(env.AWS_ACCESS_KEY_ID!);
      expect(m).not.toContain('wrongSecretwrongSecret');
      expect(m).not.toContain('AKIAWRONGWRONGWRONG1');
    }
  });
});
