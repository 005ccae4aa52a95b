import type { Command } from 'commander';
import { registerServe } from './serve.ts';

/** Every subcommand, in the order `--help` lists them. */
export function registerCommands(program: Command): void {
  registerServe(program);
}
