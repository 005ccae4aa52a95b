// Test-only Storage wrapper that holds chosen reads or writes until the test releases them, so a
// sub-I/O stays "in flight" for as long as a test needs (semantics §9 cases 22, 28, 31). A held
// call reaches the inner storage only after its release, so a held read copies whatever the
// storage holds at that moment: a block reused while the read was held would show.
import { PassThroughStorage } from './pass-through-storage.ts';

export type GatedOp = 'read' | 'write';

export interface Hold {
  /** Calls that matched and are waiting (or waited) at this hold. */
  readonly held: number;
  /** Lets every held and future matching call through. */
  release(): void;
}

interface Rule {
  op: GatedOp;
  match: (offset: number, length: number) => boolean;
  gate: Promise<void>;
  open: () => void;
  held: number;
  released: boolean;
}

export class GatedStorage extends PassThroughStorage {
  private rules: Rule[] = [];


  /** Holds every `op` whose byte range [offset, offset + length) satisfies `match` until release. */
  hold(op: GatedOp, match: (offset: number, length: number) => boolean): Hold {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const rule: Rule = { op, match, gate, open, held: 0, released: false };
    this.rules.push(rule);
    return {
      get held() {
        return rule.held;
      },
      release: () => {
        rule.released = true;
        open();
      },
    };
  }

  /** Holds `op` calls that overlap [from, to) (absolute storage offsets). */
  holdRange(op: GatedOp, from: number, to: number): Hold {
    return this.hold(op, (offset, length) => offset < to && from < offset + length);
  }

  /** Releases every hold (for cleanup). */
  releaseAll(): void {
    for (const r of this.rules) {
      r.released = true;
      r.open();
    }
  }

  private async wait(op: GatedOp, offset: number, length: number): Promise<void> {
    for (const r of this.rules) {
      if (r.op !== op || r.released || !r.match(offset, length)) continue;
      r.held++;
      await r.gate;
    }
  }

  override async read(buf: Buffer, offset: number): Promise<void> {
    await this.wait('read', offset, buf.length);
    return super.read(buf, offset);
  }

  override async write(buf: Buffer, offset: number): Promise<void> {
    await this.wait('write', offset, buf.length);
    return super.write(buf, offset);
  }

}
