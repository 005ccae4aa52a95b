#!/usr/bin/env node
// iomapd's command line: parses arguments, wires the library together, prints. No logic of its own.
import './threadpool.ts'; // first: sizes the I/O thread pool before anything starts it
import { Command, CommanderError } from 'commander';
import { registerCommands } from './commands.ts';
import { reportAndExit } from './report.ts';

const program = new Command('iomapd')
  .description('A userspace block-device daemon serving volumes over NBD')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

registerCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  reportAndExit(err);
}
