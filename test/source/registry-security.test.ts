// Where registry credentials may go: the registry itself and HTTPS token services only; never dropping TLS on a redirect.
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type RequestListener,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { mayReceiveCredentials, type Credentials } from '../../src/source/auth.js';
import { RegistryClient } from '../../src/source/registry.js';
import { TEST_TLS_CERT, TEST_TLS_KEY } from '../../fixtures/tls.js';

// One self-signed certificate for 127.0.0.1 and localhost: the two count as different hosts.
const tls = { key: TEST_TLS_KEY, cert: TEST_TLS_CERT };
const servers: Server[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

interface Seen {
  url: string;
  authorization?: string;
}

/** A server on 127.0.0.1 that logs each request; https: with the test certificate. */
async function serve(
  https: boolean,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const listener: RequestListener = (req, res) => {
    seen.push({ url: req.url ?? '', authorization: req.headers.authorization });
    handler(req, res);
  };
  const s = https ? createHttpsServer(tls, listener) : createHttpServer(listener);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return { port: (s.address() as AddressInfo).port, seen };
}

const MANIFEST = Buffer.from('{"schemaVersion":2}');
function manifest(res: ServerResponse): void {
  res.writeHead(200, {
    'Content-Type': 'application/vnd.oci.image.manifest.v1+json',
    'Content-Length': MANIFEST.length,
  });
  res.end(MANIFEST);
}

/** A registry that wants a bearer token from `realm` and accepts any token. */
function bearerRegistry(realm: () => string) {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (!req.headers.authorization?.startsWith('Bearer ')) {
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${realm()}",service="test"` });
      return res.end();
    }
    manifest(res);
  };
}

function tokenService(req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ token: 'tok', expires_in: 300 }));
}

const CREDS: Credentials = { username: 'alice', password: 's3cret' };
const BASIC = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;

function client(port: number, https: boolean, creds?: Credentials): RegistryClient {
  return new RegistryClient({
    domain: `127.0.0.1:${port}`,
    plainHttp: !https,
    credentials: async () => creds,
    ca: tls.cert,
    tries: 1,
    backoffMs: 1,
  });
}

describe('token services', () => {
  it('an HTTPS token service on another host gets the credentials', async () => {
    const auth = await serve(true, tokenService);
    const reg = await serve(
      true,
      bearerRegistry(() => `https://localhost:${auth.port}/token`),
    );
    expect((await client(reg.port, true, CREDS).getManifest('app', 'v1')).bytes).toEqual(MANIFEST);
    expect(auth.seen.map((s) => s.authorization)).toEqual([BASIC]);
  });

  it('a plain-HTTP token service on another host gets no credentials: refused with a clear error', async () => {
    const auth = await serve(false, tokenService);
    const reg = await serve(
      true,
      bearerRegistry(() => `http://localhost:${auth.port}/token`),
    );
    await expect(client(reg.port, true, CREDS).getManifest('app', 'v1')).rejects.toMatchObject({
      kind: 'badImage',
      message: `registry 127.0.0.1:${reg.port} names http://localhost:${auth.port} as its token service: img2vm sends credentials to another host only over HTTPS`,
    });
    expect(auth.seen).toEqual([]);
    // Without credentials there is nothing to leak: an anonymous token is fetched.
    expect((await client(reg.port, true).getManifest('app', 'v1')).bytes).toEqual(MANIFEST);
    expect(auth.seen.map((s) => s.authorization)).toEqual([undefined]);
  });

  it('a plain-HTTP registry may name a plain-HTTP token service on its own host, not on another', async () => {
    const auth = await serve(false, tokenService);
    const same = await serve(
      false,
      bearerRegistry(() => `http://127.0.0.1:${auth.port}/token`),
    );
    expect((await client(same.port, false, CREDS).getManifest('app', 'v1')).bytes).toEqual(MANIFEST);
    expect(auth.seen.map((s) => s.authorization)).toEqual([BASIC]);
    const other = await serve(
      false,
      bearerRegistry(() => `http://localhost:${auth.port}/token`),
    );
    await expect(client(other.port, false, CREDS).getManifest('app', 'v1')).rejects.toThrow(/only over HTTPS/);
    expect(auth.seen).toHaveLength(1);
  });

  it("an HTTPS registry's token service on its own host but over plain HTTP gets no credentials", async () => {
    const auth = await serve(false, tokenService);
    const reg = await serve(
      true,
      bearerRegistry(() => `http://127.0.0.1:${auth.port}/token`),
    );
    await expect(client(reg.port, true, CREDS).getManifest('app', 'v1')).rejects.toThrow(/only over HTTPS/);
    expect(auth.seen).toEqual([]);
  });

  it('mayReceiveCredentials', () => {
    const https = new URL('https://reg.example/');
    const http = new URL('http://reg.example:5000/');
    expect(mayReceiveCredentials(new URL('https://auth.example/token'), https)).toBe(true);
    expect(mayReceiveCredentials(new URL('https://auth.example/token'), http)).toBe(true);
    expect(mayReceiveCredentials(new URL('http://auth.example/token'), http)).toBe(false);
    expect(mayReceiveCredentials(new URL('http://REG.example:5001/token'), http)).toBe(true);
    expect(mayReceiveCredentials(new URL('http://reg.example/token'), https)).toBe(false);
    expect(mayReceiveCredentials(new URL('ftp://reg.example/token'), http)).toBe(false);
  });
});

describe('redirects', () => {
  it('an HTTPS registry redirecting to plain HTTP is refused, and the HTTP host is never asked', async () => {
    const plain = await serve(false, (_req, res) => manifest(res));
    const reg = await serve(true, (_req, res) => {
      res.writeHead(307, { Location: `http://127.0.0.1:${plain.port}/v2/app/manifests/v1` });
      res.end();
    });
    await expect(client(reg.port, true).getManifest('app', 'v1')).rejects.toMatchObject({
      kind: 'badImage',
      message: `registry 127.0.0.1:${reg.port} redirected 127.0.0.1:${reg.port}/v2/app/manifests/v1 from HTTPS to plain HTTP (http://127.0.0.1:${plain.port})`,
      hint: expect.stringMatching(/does not give up TLS/),
    });
    expect(plain.seen).toEqual([]);
  });

  it('a token service redirecting to plain HTTP is refused before the credentials move', async () => {
    const plain = await serve(false, tokenService);
    const auth = await serve(true, (_req, res) => {
      res.writeHead(302, { Location: `http://127.0.0.1:${plain.port}/token` });
      res.end();
    });
    const reg = await serve(
      true,
      bearerRegistry(() => `https://localhost:${auth.port}/token`),
    );
    await expect(client(reg.port, true, CREDS).getManifest('app', 'v1')).rejects.toThrow(/from HTTPS to plain HTTP/);
    expect(plain.seen).toEqual([]);
  });

  it('basic credentials go to the registry itself, not to the HTTPS host it redirects to', async () => {
    const cdn = await serve(true, (_req, res) => manifest(res));
    const reg = await serve(true, (req, res) => {
      if (req.headers.authorization !== BASIC) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="test"' });
        return res.end();
      }
      res.writeHead(307, { Location: `https://localhost:${cdn.port}/blob` });
      res.end();
    });
    expect((await client(reg.port, true, CREDS).getManifest('app', 'v1')).bytes).toEqual(MANIFEST);
    expect(reg.seen.map((s) => s.authorization)).toEqual([undefined, BASIC]);
    expect(cdn.seen.map((s) => s.authorization)).toEqual([undefined]);
  });
});
