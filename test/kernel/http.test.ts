// The archive HTTP client against local servers: redirects bounded, http(s)-only and never from https to http, certificates it cannot verify named, retries of transient failures, resumed downloads, size limits, idle timeouts.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { downloadFile, getBuffer, HttpError } from '../../src/kernel/http.js';
import { TEST_TLS_CERT, TEST_TLS_KEY } from '../../fixtures/tls.js';
import { testEnv, type TestEnv } from './helpers.js';

let server: Server;
let base: string;
let handler: (req: IncomingMessage, res: ServerResponse) => void;
let env: TestEnv;
const fast = { tries: 3, backoffMs: 1, idleTimeoutMs: 2000 };

beforeEach(async () => {
  env = await testEnv();
  server = createServer((req, res) => handler(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await env.close();
});

const BODY = Buffer.from('x'.repeat(10_000) + 'end');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('getBuffer', () => {
  it('follows a few redirects, relative ones included', async () => {
    handler = (req, res) => {
      if (req.url === '/a') res.writeHead(301, { location: '/b' }).end();
      else if (req.url === '/b') res.writeHead(302, { location: `${base}/c` }).end();
      else res.end('ok');
    };
    expect((await getBuffer(`${base}/a`, 100, fast)).toString()).toBe('ok');
  });

  it('refuses endless redirects and redirects to other schemes', async () => {
    handler = (req, res) => {
      if (req.url === '/loop') res.writeHead(302, { location: '/loop' }).end();
      else res.writeHead(302, { location: 'file:///etc/passwd' }).end();
    };
    await expect(getBuffer(`${base}/loop`, 100, fast)).rejects.toMatchObject({
      reason: 'protocol',
      message: expect.stringMatching(/redirects more than 5 times/),
    });
    await expect(getBuffer(`${base}/file`, 100, fast)).rejects.toMatchObject({
      reason: 'protocol',
      message: expect.stringMatching(/redirects to a file: URL/),
    });
  });

  it('retries 5xx and broken connections, then succeeds', async () => {
    let n = 0;
    handler = (_req, res) => {
      n++;
      if (n === 1) res.writeHead(503).end();
      else if (n === 2) res.socket?.destroy();
      else res.end('third time');
    };
    expect((await getBuffer(`${base}/x`, 100, fast)).toString()).toBe('third time');
    expect(n).toBe(3);
  });

  it('gives up after its attempts, as unreachable', async () => {
    handler = (_req, res) => res.writeHead(500).end();
    await expect(getBuffer(`${base}/x`, 100, fast)).rejects.toMatchObject({
      reason: 'unreachable',
      message: expect.stringMatching(/HTTP 500 .*gave up after 3 attempts/),
    });
  });

  it('does not retry 404, nor other client errors', async () => {
    let n = 0;
    handler = (req, res) => {
      n++;
      res.writeHead(req.url === '/gone' ? 404 : 403).end();
    };
    await expect(getBuffer(`${base}/gone`, 100, fast)).rejects.toMatchObject({ reason: 'notFound', status: 404 });
    await expect(getBuffer(`${base}/denied`, 100, fast)).rejects.toMatchObject({ reason: 'protocol', status: 403 });
    expect(n).toBe(2);
  });

  it('refuses bodies over the limit, declared or not', async () => {
    handler = (req, res) => {
      if (req.url === '/declared') res.writeHead(200, { 'content-length': 1000 }).end(Buffer.alloc(1000));
      else {
        res.writeHead(200);
        res.write(Buffer.alloc(600));
        res.end(Buffer.alloc(600));
      }
    };
    await expect(getBuffer(`${base}/declared`, 999, fast)).rejects.toMatchObject({
      reason: 'protocol',
      message: expect.stringMatching(/1000 bytes, more than the 999/),
    });
    await expect(getBuffer(`${base}/chunked`, 999, fast)).rejects.toMatchObject({
      reason: 'protocol',
      message: expect.stringMatching(/more than the 999 bytes/),
    });
  });

  it('drops a server that goes silent and tries again', async () => {
    let n = 0;
    handler = (_req, res) => {
      if (++n === 1) return; // never answers
      res.end('awake');
    };
    expect((await getBuffer(`${base}/x`, 100, { ...fast, idleTimeoutMs: 200 })).toString()).toBe('awake');
    expect(n).toBe(2);
  });

  it('says unreachable at once when nothing listens', async () => {
    const port = (server.address() as AddressInfo).port;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await expect(getBuffer(`http://127.0.0.1:${port}/x`, 100, fast)).rejects.toMatchObject({
      reason: 'unreachable',
      message: expect.stringMatching(/ECONNREFUSED/),
    });
    server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
});

describe('downloadFile', () => {
  it('resumes a download that breaks off, with a Range request', async () => {
    const ranges: (string | undefined)[] = [];
    handler = (req, res) => {
      ranges.push(req.headers.range);
      if (!req.headers.range) {
        res.writeHead(200, { 'content-length': BODY.length });
        res.write(BODY.subarray(0, 4000), () => res.socket?.destroy());
        return;
      }
      const from = Number(/bytes=(\d+)-/.exec(req.headers.range)![1]);
      res
        .writeHead(206, {
          'content-length': BODY.length - from,
          'content-range': `bytes ${from}-${BODY.length - 1}/${BODY.length}`,
        })
        .end(BODY.subarray(from));
    };
    const file = join(env.dir, 'f');
    const progress: number[] = [];
    expect(
      await downloadFile(`${base}/f`, file, { ...fast, size: BODY.length, onProgress: (d) => progress.push(d) }),
    ).toBe(sha(BODY));
    expect((await readFile(file)).equals(BODY)).toBe(true);
    expect(ranges[0]).toBeUndefined();
    expect(ranges[1]).toMatch(/^bytes=\d+-$/);
    expect(progress.at(-1)).toBe(BODY.length);
  });

  it('starts over when the server ignores the Range request', async () => {
    let n = 0;
    handler = (_req, res) => {
      res.writeHead(200, { 'content-length': BODY.length });
      if (++n === 1) res.write(BODY.subarray(0, 3000), () => res.socket?.destroy());
      else res.end(BODY);
    };
    const file = join(env.dir, 'f');
    expect(await downloadFile(`${base}/f`, file, { ...fast, size: BODY.length })).toBe(sha(BODY));
    expect((await readFile(file)).equals(BODY)).toBe(true);
  });

  it('refuses a file larger than the index says, as soon as it shows', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-length': BODY.length }).end(BODY);
    await expect(downloadFile(`${base}/f`, join(env.dir, 'f'), { ...fast, size: 100 })).rejects.toThrow(HttpError);
    await expect(downloadFile(`${base}/f`, join(env.dir, 'f'), { ...fast, size: 100 })).rejects.toThrow(
      /is 10003 bytes, but the index says 100/,
    );
    handler = (_req, res) => {
      res.writeHead(200);
      res.end(BODY);
    };
    await expect(downloadFile(`${base}/f`, join(env.dir, 'f'), { ...fast, size: 100 })).rejects.toThrow(
      /more than the 100 bytes the index says/,
    );
  });
});

describe('https', () => {
  let tlsServer: import('node:https').Server;
  let tlsBase: string;
  let cert: string;
  let connections = 0;

  beforeEach(async () => {
    // A certificate of our own for 127.0.0.1: trusted only where a test passes it as the CA.
    cert = TEST_TLS_CERT;
    const { createServer: createHttpsServer } = await import('node:https');
    connections = 0;
    tlsServer = createHttpsServer({ key: TEST_TLS_KEY, cert }, (req, res) => handler(req, res));
    tlsServer.on('connection', () => connections++);
    await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
    tlsBase = `https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    tlsServer.closeAllConnections();
    await new Promise<void>((r) => tlsServer.close(() => r()));
  });

  it('works with a certificate it can verify', async () => {
    handler = (_req, res) => res.end('secure');
    expect((await getBuffer(`${tlsBase}/x`, 100, { ...fast, ca: cert })).toString()).toBe('secure');
  });

  it('names a certificate it cannot verify, at the first attempt, and tries nothing else', async () => {
    let served = 0;
    handler = (_req, res) => {
      served++;
      res.end('should not be read');
    };
    await expect(getBuffer(`${tlsBase}/x`, 100, fast)).rejects.toMatchObject({
      reason: 'tls',
      message: expect.stringMatching(
        /cannot verify the TLS certificate of 127\.0\.0\.1:\d+ \(DEPTH_ZERO_SELF_SIGNED_CERT\)/,
      ),
    });
    expect(connections).toBe(1);
    expect(served).toBe(0);
  });

  it('refuses a redirect from https to plain http', async () => {
    // One handler serves both servers: /secure on the https one, /plain on the http one.
    let plain = 0;
    handler = (req, res) => {
      if (req.url === '/secure') res.writeHead(302, { location: `${base}/plain` }).end();
      else {
        plain++;
        res.end('plain');
      }
    };
    await expect(getBuffer(`${tlsBase}/secure`, 100, { ...fast, ca: cert })).rejects.toMatchObject({
      reason: 'protocol',
      message: expect.stringMatching(/redirects to plain http \(http:\/\/127\.0\.0\.1:\d+\/plain\)/),
    });
    expect(plain).toBe(0);
  });
});
