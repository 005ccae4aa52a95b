// psktool's key file: one `identity:hexkey` line per client (GnuTLS's format, which nbdkit and
// qemu read too). Blank lines are skipped. Errors name the file and line, never the key.
import { IomapdError } from '../../util/errors.ts';

/** Longest identity accepted (RFC 4279 allows 2^16-1 bytes; GnuTLS tools stay far below). */
const MAX_IDENTITY_BYTES = 255;
/** OpenSSL refuses PSKs longer than this (PSK_MAX_PSK_LEN). */
const MAX_KEY_BYTES = 512;

/** Parses psktool's format into identity -> key. `source` names the file in errors. */
export function parsePskFile(text: string, source: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (line.trim() === '') continue;
    const where = `${source} line ${i + 1}`;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new IomapdError('BAD_ARGUMENT', `${where}: expected IDENTITY:HEXKEY`);
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1).trim();
    if (Buffer.byteLength(identity) > MAX_IDENTITY_BYTES) throw new IomapdError('BAD_ARGUMENT', `${where}: identity longer than ${MAX_IDENTITY_BYTES} bytes`);
    if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) {
      throw new IomapdError('BAD_ARGUMENT', `${where}: the key of "${identity}" is not an even number of hex digits`);
    }
    if (hex.length / 2 > MAX_KEY_BYTES) throw new IomapdError('BAD_ARGUMENT', `${where}: the key of "${identity}" is longer than ${MAX_KEY_BYTES} bytes`);
    if (keys.has(identity)) throw new IomapdError('BAD_ARGUMENT', `${where}: identity "${identity}" appears twice`);
    keys.set(identity, Buffer.from(hex, 'hex'));
  }
  if (keys.size === 0) throw new IomapdError('BAD_ARGUMENT', `${source} holds no keys`);
  return keys;
}
