import type { Command } from 'commander';
import { registerImageCommands } from './image-commands.ts';
import { registerImportExport } from './import-export.ts';
import { registerObjectCommands } from './object-commands.ts';
import { registerServe } from './serve.ts';

/** Every subcommand, in the order `--help` lists them. */
export function registerCommands(program: Command): void {
  registerServe(program);
  registerImageCommands(program);
  registerImportExport(program);
  registerObjectCommands(program);
}
