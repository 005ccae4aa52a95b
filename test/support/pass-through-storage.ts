// A Storage that hands every call to another one. Test wrappers extend it and override only the
// calls they hold, slow down or record.
import type { Storage } from '../../src/storage/storage.ts';

export class PassThroughStorage implements Storage {
  readonly inner: Storage;

  constructor(inner: Storage) {
    this.inner = inner;
  }

  read(buf: Buffer, offset: number): Promise<void> {
    return this.inner.read(buf, offset);
  }

  write(buf: Buffer, offset: number): Promise<void> {
    return this.inner.write(buf, offset);
  }

  sync(): Promise<void> {
    return this.inner.sync();
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  resize(size: number): Promise<void> {
    return this.inner.resize(size);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
