// The transmission flags an export advertises: derived from the device's capabilities and what
// this connection negotiated, in this one place.
import { TxFlag } from '../protocol/constants.ts';
import type { BlockDevice } from '../engine/block-device.ts';

export function transmissionFlags(device: BlockDevice, structured: boolean): number {
  const caps = device.capabilities;
  const writable = !device.readOnly;
  let flags = TxFlag.HAS_FLAGS;
  if (device.readOnly) flags |= TxFlag.READ_ONLY;
  if (caps.flush) flags |= TxFlag.SEND_FLUSH;
  // The kernel only sends FUA when FLUSH is advertised too.
  if (caps.flush && caps.fua) flags |= TxFlag.SEND_FUA;
  if (caps.rotational) flags |= TxFlag.ROTATIONAL;
  if (writable && caps.trim) flags |= TxFlag.SEND_TRIM;
  if (writable && caps.writeZeroes) {
    flags |= TxFlag.SEND_WRITE_ZEROES;
    if (caps.fastZero) flags |= TxFlag.SEND_FAST_ZERO;
  }
  if (structured) flags |= TxFlag.SEND_DF;
  if (caps.multiConn) flags |= TxFlag.CAN_MULTI_CONN;
  if (caps.cache) flags |= TxFlag.SEND_CACHE;
  return flags;
}
