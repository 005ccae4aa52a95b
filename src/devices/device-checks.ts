// Helpers shared by the device backends (OS errors are mapped once, by storageError in
// src/storage/storage.ts). Requests reach a device already validated by the server,
// so a range check failing here is a bug: it throws a plain AssertionError (the server logs it and
// answers EIO), never an IomapdError a client could have caused.
import assert from 'node:assert/strict';

export function assertRange(offset: number, length: number, size: number): void {
  assert.ok(
    Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 &&
      offset + length <= size,
    `device range [${offset}, +${length}) outside a device of ${size} bytes`,
  );
}
