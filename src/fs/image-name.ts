// Where an image name leads: a path is an image file, `s3://BUCKET/PREFIX` an image in an
// S3-compatible bucket (endpoint and credentials from the AWS SDK's standard sources, never from the
// name, so the name is safe to print).
import { describeEndpoint } from '../storage/s3/s3-client-config.ts';
import { formatS3Url, parseS3Url } from '../storage/s3/s3-url.ts';

export type ImageName =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'object'; readonly url: string };

export function isObjectImageName(name: string): boolean {
  return /^s3:\/\//i.test(name);
}

/** Classifies (and, for `s3://`, validates) an image name; a bad URL is BAD_ARGUMENT. */
export function resolveImageName(name: string): ImageName {
  if (!isObjectImageName(name)) return { kind: 'file', path: name };
  return { kind: 'object', url: formatS3Url(parseS3Url(name)) };
}

/** What tells two bucket images apart on this host: the URL and the endpoint it resolves to (no secret). */
export function objectImageIdentity(url: string, env: NodeJS.ProcessEnv = process.env): string {
  return `${formatS3Url(parseS3Url(url))} at ${describeEndpoint(env)}`;
}
