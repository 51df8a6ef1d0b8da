// Runs the built `run`/`test` subcommands in a child process, so end-to-end tests can signal it like a user would.
// Usage: node test/vm/cli-child.mjs test DISK [options]   (needs `npx tsc -p .` first: it imports dist/)
import { Command } from 'commander';
import { addVmCommands } from '../../dist/cli/vm-commands.js';

const program = new Command().name('img2vm').exitOverride();
addVmCommands(program);
try {
  await program.parseAsync(process.argv.slice(2), { from: 'user' });
  process.exitCode = 0;
} catch (e) {
  // The same mapping as src/cli/main.ts, which this child stands in for.
  process.stderr.write(`img2vm: error: ${e?.message ?? e}\n`);
  if (e?.hint) process.stderr.write(`  hint: ${e.hint}\n`);
  process.exitCode = typeof e?.exitCode === 'number' ? e.exitCode : 1;
}
