// The write gate of one volume (semantics K2): write-type requests pass it on entry and leave
// after their completion stage; a structural operation (snapshot, clone, delete, resize) closes
// it, waits for the requests inside to leave, runs, and opens it again. A snapshot taken this way
// holds exactly the writes replied before it.
//
// Lock order: write gate, then range lock, then the store (whose begin/end never wait on us).
export class WriteGate {
  /** Write-type requests between entry and the end of their completion stage. */
  private inFlight = 0;
  /** Set while a structural operation runs: new write-type requests wait for it. */
  private closed: Promise<void> | null = null;
  private idle: (() => void) | null = null;

  /** Enters a write-type request now if no structural operation is under way; false otherwise. */
  tryEnter(): boolean {
    if (this.closed) return false;
    this.inFlight++;
    return true;
  }

  /** Enters a write-type request (waits while a structural operation drains the volume). */
  async enter(): Promise<void> {
    while (this.closed) await this.closed;
    this.inFlight++;
  }

  leave(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.idle) this.idle();
  }

  /** Runs `op` with the volume drained: new requests wait, in-flight ones finish first. */
  async drained<T>(op: () => Promise<T>): Promise<T> {
    while (this.closed) await this.closed;
    let open!: () => void;
    this.closed = new Promise<void>((r) => (open = r));
    try {
      if (this.inFlight > 0) await new Promise<void>((r) => (this.idle = r));
      this.idle = null;
      return await op();
    } finally {
      this.closed = null;
      open();
    }
  }
}
