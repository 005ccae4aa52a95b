// Helpers shared by the device backends. Requests reach a device already validated by the server,
// so a range check failing here is a bug: it throws a plain AssertionError (the server logs it and
// answers EIO), never an IomapdError a client could have caused.
import assert from 'node:assert/strict';
import { IomapdError } from '../util/errors.ts';

export function assertRange(offset: number, length: number, size: number): void {
  assert.ok(
    Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 &&
      offset + length <= size,
    `device range [${offset}, +${length}) outside a device of ${size} bytes`,
  );
}

const NO_SPACE_CODES = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/** Turns a Node file-system error into iomapd's registry: out of space, or IO with the cause. */
export function fsError(err: unknown, what: string): IomapdError {
  if (err instanceof IomapdError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const detail = err instanceof Error ? err.message : String(err);
  if (code !== undefined && NO_SPACE_CODES.has(code)) {
    return new IomapdError('NO_SPACE', `${what}: ${detail}`, { cause: err });
  }
  return new IomapdError('IO', `${what}: ${detail}`, { cause: err });
}
