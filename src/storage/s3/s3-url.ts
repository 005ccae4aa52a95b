// The name of an object-store image: `s3://BUCKET/PREFIX`. The bucket follows S3's naming rules;
// the prefix is one or more `/`-separated segments under which the image's objects live (keys are
// PREFIX/KEY). Endpoint, region and credentials never go in the URL: they come from the SDK's
// standard sources (environment, shared config files), so the name is safe to log.
import { fail } from '../../util/errors.ts';

export interface S3ImageUrl {
  readonly bucket: string;
  /** The key prefix with one trailing `/` (`images/disk1/`). */
  readonly prefix: string;
}

// S3 keys are at most 1024 bytes; leave room for the image's own key names under the prefix.
const MAX_PREFIX_BYTES = 512;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function parseS3Url(url: string): S3ImageUrl {
  // Whatever someone put before an '@' may be a key or secret: never echo it.
  const shown = url.replace(/^([a-z0-9]+:\/\/)[^/]*@/i, '$1***@');
  const bad = (why: string): never => fail('BAD_ARGUMENT', `bad object-store image name '${shown}': ${why} (expected s3://BUCKET/PREFIX)`);
  if (!url.startsWith('s3://')) bad('it does not start with s3://');
  const rest = url.slice('s3://'.length);
  if (/[?#]/.test(rest)) bad('query strings and fragments are not accepted');
  if (/[\u0000-\u001f\u007f]/.test(rest)) bad('it contains a control character');
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  if (bucket.includes('@')) bad('credentials do not go in the URL (use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)');
  if (bucket.includes(':')) bad('the endpoint does not go in the URL (use AWS_ENDPOINT_URL)');
  if (bucket === '') bad('the bucket is missing');
  if (!BUCKET.test(bucket) || bucket.includes('..') || /^\d+\.\d+\.\d+\.\d+$/.test(bucket)) {
    bad(`'${bucket}' is not a valid bucket name (3-63 lowercase letters, digits, dots and hyphens)`);
  }
  const path = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/$/, '');
  if (path === '') bad('the prefix is missing: an image lives under its own prefix in the bucket');
  const segments = path.split('/');
  if (segments.some((s) => s === '')) bad('the prefix has an empty segment (//)');
  if (segments.some((s) => s === '.' || s === '..')) bad("the prefix has a '.' or '..' segment");
  if (Buffer.byteLength(path) > MAX_PREFIX_BYTES) bad(`the prefix is longer than ${MAX_PREFIX_BYTES} bytes`);
  return { bucket, prefix: `${path}/` };
}

export function formatS3Url(url: S3ImageUrl): string {
  return `s3://${url.bucket}/${url.prefix.replace(/\/$/, '')}`;
}
