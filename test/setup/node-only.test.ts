// The node tier's guard holds: in the node project no process starts (not through child_process, execa or src/tools) and
// nothing past loopback is reached; each attempt is reported even when the code under test swallows the error.
import * as childProcess from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { run } from '../../src/tools/index.js';
import { breaches } from './node-only.js';

const HINT = /the node project runs node alone: name the file \*\.tools\.test\.ts/;

/** What the guard recorded during this test, taken so the guard's own afterEach finds nothing left to report. */
const taken = (): string[] => breaches.splice(0);
afterEach(() => expect(breaches).toEqual([]));

describe('the node tier starts no process', () => {
  it('child_process, in every spelling', () => {
    expect(() => childProcess.spawnSync('true')).toThrow(HINT);
    expect(() => childProcess.execFileSync('true')).toThrow(HINT);
    expect(() => childProcess.spawn('true')).toThrow(HINT);
    expect(() => childProcess.exec('true')).toThrow(HINT);
    expect(() => childProcess.fork('x.js')).toThrow(HINT);
    expect(taken()).toHaveLength(5);
  });

  it('execa and src/tools, where the failure could be caught and mistaken for a missing tool', async () => {
    await expect(execa('true')).rejects.toThrow(HINT);
    // A stand-in qemu-img on PATH, so src/tools gets as far as starting it whether or not the host has the real one.
    const bin = mkdtempSync(join(tmpdir(), 'img2vm-node-only-'));
    const path = process.env.PATH;
    try {
      writeFileSync(join(bin, 'qemu-img'), '#!/bin/sh\n', { mode: 0o755 });
      process.env.PATH = bin;
      await run('qemu-img', ['--version']).catch(() => undefined);
    } finally {
      process.env.PATH = path;
      rmSync(bin, { recursive: true, force: true });
    }
    expect(taken().join('\n')).toMatch(/qemu-img/);
  });
});

describe('the node tier reaches loopback only', () => {
  it('connects to its own server on 127.0.0.1 and refuses another address', async () => {
    const server = createServer((s) => s.end('hi'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const said = await new Promise<string>((resolve, reject) => {
        const s = connect(port, '127.0.0.1');
        let got = '';
        s.on('data', (d) => (got += String(d)));
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
      expect(said).toBe('hi');
      let s: Socket | undefined;
      expect(() => (s = connect(443, '192.0.2.1'))).toThrow(/a connection to 192\.0\.2\.1/);
      s?.destroy();
      expect(() => connect('/var/run/docker.sock')).toThrow(/a connection to \/var\/run\/docker\.sock/);
      expect(taken()).toHaveLength(2);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
