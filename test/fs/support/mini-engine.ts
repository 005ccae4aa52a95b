// A minimal engine over the store's begin/end contract, for tests only (the real engine is
// src/engine). Sequential; handles 512-aligned sub-block writes with zero pads (UNWRITTEN) and
// copy-up (SHARED), so tests exercise every mapping type the store hands out.
import type { ImageStore } from '../../../src/fs/image-store.ts';
import { MappingFlags } from '../../../src/fs/mapping.ts';

export async function writeBytes(store: ImageStore, vol: string, pos: number, data: Buffer): Promise<void> {
  const B = store.blockSize;
  const end = pos + data.length;
  let off = pos;
  while (off < end) {
    const m = await store.begin(vol, off, end - off, 'write');
    if (m.type === 'inline') {
      store.writeInline(m, off, data.subarray(off - pos));
      await store.end(m, m.length);
      return;
    }
    const segEnd = Math.min(end, m.offset + m.length);
    const piece = data.subarray(off - pos, segEnd - pos);
    try {
      if (m.type === 'mapped' && !(m.flags & MappingFlags.SHARED)) {
        await store.writeData(m.physical + (off - m.offset), piece);
        await store.end(m, segEnd - m.offset);
      } else {
        const blkEnd = Math.ceil(segEnd / B) * B;
        const buf = Buffer.alloc(blkEnd - m.offset);
        if (m.type === 'mapped') await store.readData(m.physical, buf); // copy-up
        piece.copy(buf, off - m.offset);
        const target = m.flags & MappingFlags.SHARED ? m.cowPhysical : m.physical;
        await store.writeData(target, buf);
        await store.end(m, buf.length);
      }
    } catch (err) {
      await store.end(m, 0, err);
      throw err;
    }
    off = segEnd;
  }
}

export async function readBytes(store: ImageStore, vol: string, pos: number, len: number): Promise<Buffer> {
  const out = Buffer.alloc(len);
  let off = pos;
  const end = pos + len;
  while (off < end) {
    const m = await store.begin(vol, off, end - off, 'read');
    const segEnd = Math.min(end, m.offset + m.length);
    try {
      if (m.type === 'mapped') await store.readData(m.physical + (off - m.offset), out.subarray(off - pos, segEnd - pos));
      else if (m.type === 'inline') m.inline!.copy(out, off - pos, off, segEnd);
      // hole and unwritten read as zeros: out is already zero
    } finally {
      await store.end(m, 0);
    }
    off = segEnd;
  }
  return out;
}

/** ZERO or TRIM over a block-aligned range (512-aligned for inline volumes). */
export async function punch(store: ImageStore, vol: string, pos: number, len: number, intent: 'zero' | 'trim', noHole = false): Promise<void> {
  let off = pos;
  const end = pos + len;
  while (off < end) {
    const m = await store.begin(vol, off, end - off, intent, { noHole });
    await store.end(m, m.type === 'inline' ? len : m.length);
    if (m.type === 'inline') return;
    off = m.offset + m.length;
  }
}
