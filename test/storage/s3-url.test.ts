// The s3://BUCKET/PREFIX parser: accepted names and their parts, and a clear BAD_ARGUMENT for each
// malformed one.
import { describe, expect, it } from 'vitest';
import { formatS3Url, parseS3Url } from '../../src/storage/s3/s3-url.ts';
import { IomapdError } from '../../src/util/errors.ts';

describe('parseS3Url', () => {
  it.each([
    ['s3://bucket/disk', 'bucket', 'disk/'],
    ['s3://my.bucket-1/images/disk1', 'my.bucket-1', 'images/disk1/'],
    ['s3://abc/a/b/c/', 'abc', 'a/b/c/'],
    ['s3://abc/ünïcode name', 'abc', 'ünïcode name/'],
  ])('%s -> bucket %s, prefix %s', (url, bucket, prefix) => {
    expect(parseS3Url(url)).toEqual({ bucket, prefix });
    expect(parseS3Url(formatS3Url({ bucket, prefix }))).toEqual({ bucket, prefix });
  });

  it.each([
    ['bucket/disk', 'does not start with s3://'],
    ['http://bucket/disk', 'does not start with s3://'],
    ['s3://', 'the bucket is missing'],
    ['s3:///disk', 'the bucket is missing'],
    ['s3://bucket', 'the prefix is missing'],
    ['s3://bucket/', 'the prefix is missing'],
    ['s3://Bucket/disk', 'not a valid bucket name'],
    ['s3://ab/disk', 'not a valid bucket name'],
    [`s3://${'a'.repeat(64)}/disk`, 'not a valid bucket name'],
    ['s3://-bucket/disk', 'not a valid bucket name'],
    ['s3://bu..cket/disk', 'not a valid bucket name'],
    ['s3://192.168.1.1/disk', 'not a valid bucket name'],
    ['s3://key:secret@bucket/disk', 'credentials do not go in the URL'],
    ['s3://bucket:9000/disk', 'the endpoint does not go in the URL'],
    ['s3://bucket/disk?versionId=1', 'query strings and fragments'],
    ['s3://bucket/disk#x', 'query strings and fragments'],
    ['s3://bucket/a//b', 'empty segment'],
    ['s3://bucket/a/../b', "'.' or '..' segment"],
    ['s3://bucket/./b', "'.' or '..' segment"],
    ['s3://bucket/a\nb', 'control character'],
    [`s3://bucket/${'p'.repeat(513)}`, 'longer than 512 bytes'],
  ])('%j is BAD_ARGUMENT: %s', (url, why) => {
    let caught: unknown;
    try {
      parseS3Url(url);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(IomapdError);
    expect((caught as IomapdError).code).toBe('BAD_ARGUMENT');
    expect((caught as IomapdError).message).toContain(why);
    expect((caught as IomapdError).message).toContain('expected s3://BUCKET/PREFIX');
  });

  it('never echoes credentials put in the URL', () => {
    for (const url of ['s3://AKIAEXAMPLE:s3cr3tS3cr3t@bucket/disk', 'http://AKIAEXAMPLE:s3cr3tS3cr3t@host/bucket/disk']) {
      let message = '';
      try {
        parseS3Url(url);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(/^bad object-store image name '[a-z0-9]+:\/\/\*\*\*@/);
      expect(message).not.toContain('s3cr3tS3cr3t');
      expect(message).not.toContain('AKIAEXAMPLE');
    }
  });
});
