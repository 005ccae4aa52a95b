// How the S3 client is configured from the environment: path-style addressing (asked for, or
// automatic where virtual-host style cannot work) and the endpoint as it may be printed.
import { describe, expect, it } from 'vitest';
import { describeEndpoint, pathStyleFrom } from '../../src/storage/s3/s3-client-config.ts';

describe('pathStyleFrom', () => {
  it.each([
    [{ AWS_ENDPOINT_URL: 'http://127.0.0.1:7480' }, true],
    [{ AWS_ENDPOINT_URL: 'http://localhost:9000' }, true],
    [{ AWS_ENDPOINT_URL: 'http://[::1]:9000' }, true],
    [{ AWS_ENDPOINT_URL: 'https://s3.example.com' }, false],
    [{ AWS_ENDPOINT_URL: 'https://s3.example.com', AWS_ENDPOINT_URL_S3: 'http://10.0.0.5' }, true],
    [{}, false],
    [{ AWS_ENDPOINT_URL: 'https://s3.example.com', IOMAPD_S3_PATH_STYLE: '1' }, true],
    [{ AWS_ENDPOINT_URL: 'http://127.0.0.1:7480', IOMAPD_S3_PATH_STYLE: '0' }, false],
    [{ IOMAPD_S3_PATH_STYLE: 'true' }, true],
  ])('%j -> %s', (env, expected) => {
    expect(pathStyleFrom(env)).toBe(expected);
  });

  it('refuses a value it does not understand', () => {
    expect(() => pathStyleFrom({ IOMAPD_S3_PATH_STYLE: 'yes' })).toThrow(/IOMAPD_S3_PATH_STYLE must be 1 or 0/);
  });
});

describe('describeEndpoint', () => {
  it('prints scheme, host, port and path only', () => {
    expect(describeEndpoint({ AWS_ENDPOINT_URL: 'http://127.0.0.1:7480' })).toBe('http://127.0.0.1:7480');
    expect(describeEndpoint({ AWS_ENDPOINT_URL: 'https://user:s3cr3t@s3.example.com/base?token=s3cr3t' })).toBe('https://s3.example.com/base');
    expect(describeEndpoint({})).toBe('the default AWS S3 endpoint');
    expect(() => describeEndpoint({ AWS_ENDPOINT_URL: 'not a url s3cr3t' })).toThrow(/^AWS_ENDPOINT_URL is not a URL$/);
  });
});
