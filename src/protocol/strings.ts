// NBD strings: UTF-8, no NUL, at most 4096 bytes (proto.md "Option types"; SHOULD be <= 256).
import { malformed, parsed, type Parsed } from './result.ts';

export const MAX_STRING_BYTES = 4096;

// ignoreBOM: keep a leading U+FEFF. By default TextDecoder strips it, so "\uFEFFdisk" would match "disk".
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes `buf[start, start+len)` as an NBD string, or says why it is not one. */
export function decodeString(buf: Buffer, start: number, len: number, what: string): Parsed<string> {
  if (len > MAX_STRING_BYTES) return malformed(`${what} is ${len} bytes, over the ${MAX_STRING_BYTES}-byte limit`);
  const bytes = buf.subarray(start, start + len);
  if (bytes.includes(0)) return malformed(`${what} contains a NUL byte`);
  try {
    return parsed(utf8.decode(bytes));
  } catch {
    return malformed(`${what} is not valid UTF-8`);
  }
}
