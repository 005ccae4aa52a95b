import { IomapdError } from '../util/errors.ts';

/** Prints an error the way every CLI command does (`iomapd: CODE: message` on stderr) and exits 1. */
export function reportAndExit(err: unknown): never {
  if (err instanceof IomapdError) {
    process.stderr.write(`iomapd: ${err.code}: ${err.message}\n`);
  } else {
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`iomapd: ${e?.code ?? 'ERROR'}: ${e?.message ?? String(err)}\n`);
  }
  process.exit(1);
}
