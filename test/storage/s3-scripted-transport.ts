// A strict scripted S3Transport for unit tests of the S3 store without a network: each send must be
// the next expected command (its class and input checked), and gets that step's reply: an output
// object, an error shaped like the SDK's (S3ServiceException with $metadata) or Node's (code,
// syscall), or 'hang' (never answers; only the abort signal ends it). A send past the script fails.
import { S3ServiceException } from '@aws-sdk/client-s3';
import type { S3Transport } from '../../src/storage/s3/s3-object-store.ts';

type Command = Parameters<S3Transport['send']>[0];

export interface Step {
  /** The command class's name: 'PutObjectCommand', 'GetObjectCommand', ... */
  readonly command: string;
  /** Fields the command's input must have (compared with toEqual semantics by the caller). */
  readonly input?: Readonly<Record<string, unknown>>;
  readonly reply: unknown;
}

export const HANG = Symbol('hang');

export class ScriptedTransport implements S3Transport {
  readonly sent: { command: string; input: Record<string, unknown> }[] = [];
  destroyed = false;
  private readonly steps: Step[];

  constructor(steps: Step[]) {
    this.steps = [...steps];
  }

  get remaining(): number {
    return this.steps.length;
  }

  async send(command: Command, options: { abortSignal: AbortSignal }): Promise<unknown> {
    const name = command.constructor.name;
    const input: Record<string, unknown> = { ...command.input };
    this.sent.push({ command: name, input });
    const step = this.steps.shift();
    if (step === undefined) throw new Error(`unexpected ${name} ${JSON.stringify(input)}: the script has ended`);
    if (step.command !== name) throw new Error(`expected ${step.command}, got ${name} ${JSON.stringify(input)}`);
    for (const [k, v] of Object.entries(step.input ?? {})) {
      const got = input[k];
      const same = Buffer.isBuffer(v) ? Buffer.isBuffer(got) && v.equals(got) : JSON.stringify(got) === JSON.stringify(v);
      if (!same) throw new Error(`${name}: input ${k} is ${JSON.stringify(got)}, expected ${JSON.stringify(v)}`);
    }
    if (step.reply === HANG) {
      return new Promise((_, reject) => options.abortSignal.addEventListener('abort', () => reject(abortError()), { once: true }));
    }
    if (step.reply instanceof Error) throw step.reply;
    return step.reply;
  }

  destroy(): void {
    this.destroyed = true;
  }
}

/** An error as the SDK throws it for an S3 error response. */
export function s3Error(name: string, status: number, message = `${name} message`): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status, requestId: 'tx000-test', attempts: 1, totalRetryDelay: 0 },
    message,
  });
}

/** A socket error as Node reports it. */
export function netError(code: string, syscall = 'read'): NodeJS.ErrnoException {
  return Object.assign(new Error(`${syscall} ${code}`), { code, syscall, errno: -1 });
}

function abortError(): Error {
  return Object.assign(new Error('The operation was aborted'), { name: 'AbortError' });
}

/** A GetObject output with a body, as the SDK gives it. */
export function getOutput(body: Buffer, etag: string, contentRange?: string): unknown {
  return {
    $metadata: { httpStatusCode: contentRange ? 206 : 200 },
    ETag: `"${etag}"`,
    ContentLength: body.length,
    ContentRange: contentRange,
    Body: { transformToByteArray: async () => new Uint8Array(body) },
  };
}
