// Setup of the node project: a test there that starts a host program or reaches past loopback fails, so the tier cannot drift.
import * as childProcess from 'node:child_process';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { resolve, sep } from 'node:path';
import { afterEach } from 'vitest';

/** What tests of this file broke the tier's rule with; reported after each test even when the code under test caught the throw. */
export const breaches: string[] = [];

const HINT = 'the node project runs node alone: name the file *.tools.test.ts (host programs) or *.boot.test.ts (QEMU)';

function refuse(what: string): never {
  const msg = `${what}: ${HINT}`;
  breaches.push(msg);
  throw new Error(msg);
}

// The builtin's CommonJS object is what its ESM named exports mirror: patch it, then sync, and `import { spawn }` in execa,
// src/tools or a test sees the refusal as well.
const cp = createRequire(import.meta.url)('node:child_process') as Record<string, unknown>;
for (const name of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork'] as const) {
  cp[name] = (file: unknown) => refuse(`child_process.${name}(${String(file)})`);
}
// What every spawn ends in, for a library that makes its own ChildProcess (the method is Node's, not in its types).
(childProcess.ChildProcess.prototype as unknown as { spawn: (o: { file?: string }) => never }).spawn = (o) =>
  refuse(`ChildProcess#spawn(${String(o?.file)})`);
syncBuiltinESMExports();

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1|::ffff:127(\.\d{1,3}){3})$/i;
const TMP = resolve(tmpdir()) + sep;

/** Where a Socket#connect call goes: a unix socket path or a TCP host (Node's own default host is localhost). */
function target(args: unknown[]): { path: string } | { host: string } {
  let [first, second] = args;
  if (Array.isArray(first)) [first, second] = first; // net's internal normalised form: [options, callback]
  if (typeof first === 'string' && !/^\d+$/.test(first)) return { path: first };
  if (first && typeof first === 'object') {
    const o = first as { path?: unknown; host?: unknown };
    if (typeof o.path === 'string') return { path: o.path };
    return { host: typeof o.host === 'string' ? o.host : 'localhost' };
  }
  return { host: typeof second === 'string' ? second : 'localhost' };
}

const connect = Socket.prototype.connect;
Socket.prototype.connect = function (this: Socket, ...args: unknown[]) {
  const t = target(args);
  if ('path' in t ? !resolve(t.path).startsWith(TMP) : !LOOPBACK.test(t.host)) {
    refuse(
      `a connection to ${'path' in t ? t.path : t.host} (only loopback and sockets under ${tmpdir()} are the test's own)`,
    );
  }
  return (connect as (...a: unknown[]) => Socket).apply(this, args);
} as typeof Socket.prototype.connect;

afterEach(() => {
  const found = breaches.splice(0);
  if (found.length) throw new Error(`this test broke the node tier's rule:\n${found.join('\n')}`);
});
