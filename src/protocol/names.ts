// Wire names for logs, derived from the constant tables so they never drift.
import { Cmd, CmdFlag, NbdErr, Opt, Rep, ReplyType, TxFlag } from './constants.ts';

function invert(table: Record<string, number>): Map<number, string> {
  return new Map(Object.entries(table).map(([name, value]) => [value, name]));
}

function flagNames(table: Record<string, number>, bits: number): string[] {
  const names: string[] = [];
  let rest = bits;
  for (const [name, value] of Object.entries(table)) {
    if ((bits & value) !== 0) {
      names.push(name);
      rest &= ~value;
    }
  }
  if (rest !== 0) names.push(`0x${rest.toString(16)}`);
  return names;
}

const optNames = invert(Opt);
const repNames = invert(Rep);
const cmdNames = invert(Cmd);
const errNames = invert(NbdErr);
const replyTypeNames = invert(ReplyType);

const named = (map: Map<number, string>, value: number): string =>
  map.get(value) ?? `UNKNOWN(${value})`;

export const optName = (opt: number): string => named(optNames, opt);
export const repName = (rep: number): string => named(repNames, rep);
export const cmdName = (cmd: number): string => named(cmdNames, cmd);
export const errName = (err: number): string => (err === 0 ? 'OK' : named(errNames, err));
export const replyTypeName = (type: number): string => named(replyTypeNames, type);
export const cmdFlagNames = (flags: number): string[] => flagNames(CmdFlag, flags);
export const txFlagNames = (flags: number): string[] => flagNames(TxFlag, flags);
