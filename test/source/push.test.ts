// pushOciImage and pushContainerDisk against an in-process fake registry: digests of uploaded blobs and manifest, bearer and basic auth, existing blobs, hostile and failing answers.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunContext } from '../../src/core/context.js';
import type { Img2vmEvent } from '../../src/core/events.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import { containerDiskImage, pushContainerDisk } from '../../src/output/containerdisk.js';
import { pushOciImage, type PushBlob } from '../../src/source/push.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MT = 'application/vnd.oci.image.manifest.v1+json';

interface FakeOptions {
  /** Require a bearer token from /token (optionally only with these basic credentials). */
  bearer?: { user?: string; pass?: string };
  basic?: { user: string; pass: string };
  /** Overrides an answer: return true when handled. */
  hook?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

class FakeRegistry {
  readonly blobs = new Map<string, Buffer>();
  readonly manifests = new Map<string, { type: string; bytes: Buffer }>();
  readonly log: string[] = [];
  readonly scopes: string[] = [];
  private uploads = 0;
  host = '';
  private constructor(
    private readonly server: Server,
    private readonly o: FakeOptions,
  ) {}

  static async start(o: FakeOptions = {}): Promise<FakeRegistry> {
    // eslint-disable-next-line prefer-const -- the handler closes over it before the registry exists
    let reg!: FakeRegistry;
    const server = createServer(
      (req, res) =>
        void reg.handle(req, res).catch((e: unknown) => {
          res.statusCode = 500;
          res.end(String(e));
        }),
    );
    reg = new FakeRegistry(server, o);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    reg.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    return reg;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  private async body(req: IncomingMessage): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of req) parts.push(c as Buffer);
    return Buffer.concat(parts);
  }

  private error(
    res: ServerResponse,
    status: number,
    code: string,
    message: string,
    headers: Record<string, string> = {},
  ) {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify({ errors: [{ code, message }] }));
  }

  private authorized(req: IncomingMessage, res: ServerResponse): boolean {
    const a = req.headers.authorization ?? '';
    if (this.o.bearer) {
      if (a === 'Bearer good-token') return true;
      this.error(res, 401, 'UNAUTHORIZED', 'authentication required', {
        'WWW-Authenticate': `Bearer realm="http://${this.host}/token",service="fake",scope="repository:x:pull"`,
      });
      return false;
    }
    if (this.o.basic) {
      if (a === `Basic ${Buffer.from(`${this.o.basic.user}:${this.o.basic.pass}`).toString('base64')}`) return true;
      this.error(res, 401, 'UNAUTHORIZED', 'authentication required', { 'WWW-Authenticate': 'Basic realm="fake"' });
      return false;
    }
    return true;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', `http://${this.host}`);
    this.log.push(`${req.method} ${url.pathname}`);
    if (url.pathname === '/token') {
      const b = this.o.bearer!;
      this.scopes.push(url.searchParams.get('scope') ?? '');
      if (b.user && req.headers.authorization !== `Basic ${Buffer.from(`${b.user}:${b.pass}`).toString('base64')}`)
        return this.error(res, 401, 'DENIED', 'bad credentials');
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ token: 'good-token', expires_in: 300 }));
      return;
    }
    if (this.o.hook?.(req, res)) return;
    if (!this.authorized(req, res)) return;
    let m: RegExpExecArray | null;
    if ((m = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(url.pathname)) && req.method === 'HEAD') {
      const b = this.blobs.get(`${m[1]}@${m[2]}`);
      res.writeHead(b ? 200 : 404, b ? { 'Content-Length': String(b.length), 'Docker-Content-Digest': m[2] } : {});
      res.end();
      return;
    }
    if ((m = /^\/v2\/(.+)\/blobs\/uploads\/$/.exec(url.pathname)) && req.method === 'POST') {
      await this.body(req);
      const id = ++this.uploads;
      res.writeHead(202, {
        Location: `/v2/${m[1]}/blobs/uploads/${id}?_state=abc%3D%3D`,
        'Docker-Upload-UUID': String(id),
      });
      res.end();
      return;
    }
    if ((m = /^\/v2\/(.+)\/blobs\/uploads\/(\d+)$/.exec(url.pathname)) && req.method === 'PUT') {
      if (url.searchParams.get('_state') !== 'abc==')
        return this.error(res, 400, 'BLOB_UPLOAD_INVALID', 'lost the upload state');
      if (req.headers['content-type'] !== 'application/octet-stream')
        return this.error(res, 400, 'BLOB_UPLOAD_INVALID', 'content type');
      const body = await this.body(req);
      if (Number(req.headers['content-length']) !== body.length) return this.error(res, 400, 'SIZE_INVALID', 'length');
      const digest = url.searchParams.get('digest') ?? '';
      if (sha(body) !== digest) return this.error(res, 400, 'DIGEST_INVALID', `got ${sha(body)}`);
      this.blobs.set(`${m[1]}@${digest}`, body);
      res.writeHead(201, { Location: `/v2/${m[1]}/blobs/${digest}`, 'Docker-Content-Digest': digest });
      res.end();
      return;
    }
    if ((m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname)) && req.method === 'PUT') {
      const body = await this.body(req);
      const j = JSON.parse(body.toString('utf8')) as { config: { digest: string }; layers: { digest: string }[] };
      for (const d of [j.config.digest, ...j.layers.map((l) => l.digest)]) {
        if (!this.blobs.has(`${m[1]}@${d}`)) return this.error(res, 400, 'MANIFEST_BLOB_UNKNOWN', d);
      }
      this.manifests.set(`${m[1]}:${m[2]}`, { type: String(req.headers['content-type']), bytes: body });
      res.writeHead(201, { 'Docker-Content-Digest': sha(body) });
      res.end();
      return;
    }
    this.error(res, 404, 'NOT_FOUND', `${req.method} ${url.pathname}`);
  }
}

let tmp: string;
let ctx: RunContext;
let events: Img2vmEvent[];
let reg: FakeRegistry | undefined;

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-push-'));
  await mkdir(join(tmp, 'work'));
  events = [];
  ctx = {
    work: join(tmp, 'work'),
    signal: new AbortController().signal,
    sink: (e) => events.push(e),
    scope: new Scope(),
    random: createRandom('push'),
  };
});
afterEach(async () => {
  await reg?.close();
  reg = undefined;
  await ctx.scope.close();
  await rm(tmp, { recursive: true, force: true });
});

/** A config in memory, a layer as a file, and a manifest naming both. */
async function image(layerBytes = randomBytes(300 * 1024)) {
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(layerBytes)] } }),
  );
  const layerPath = join(tmp, 'layer.tar');
  await writeFile(layerPath, layerBytes);
  const blobs: PushBlob[] = [
    { digest: sha(config), size: config.length, mediaType: 'application/vnd.oci.image.config.v1+json', bytes: config },
    {
      digest: sha(layerBytes),
      size: layerBytes.length,
      mediaType: 'application/vnd.oci.image.layer.v1.tar',
      path: layerPath,
    },
  ];
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MT,
      config: { mediaType: blobs[0]!.mediaType, digest: blobs[0]!.digest, size: blobs[0]!.size },
      layers: [{ mediaType: blobs[1]!.mediaType, digest: blobs[1]!.digest, size: blobs[1]!.size }],
    }),
  );
  return { blobs, manifest: { bytes: manifest, mediaType: MT }, config, layerBytes };
}

async function dockerConfig(host: string, user: string, pass: string): Promise<NodeJS.ProcessEnv> {
  const dir = join(tmp, 'docker');
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${pass}`).toString('base64') } } }),
  );
  return { DOCKER_CONFIG: dir };
}

describe('pushOciImage', () => {
  it('uploads every blob (file streamed, bytes in memory) and the manifest, and returns its digest', async () => {
    reg = await FakeRegistry.start();
    const img = await image();
    const r = await pushOciImage(`${reg.host}/team/disk:1.0`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } });
    expect(r).toEqual({ ref: `${reg.host}/team/disk:1.0`, digest: sha(img.manifest.bytes) });
    expect(reg.blobs.get(`team/disk@${sha(img.config)}`)).toEqual(img.config);
    expect(reg.blobs.get(`team/disk@${sha(img.layerBytes)}`)).toEqual(img.layerBytes);
    const m = reg.manifests.get('team/disk:1.0')!;
    expect(m.type).toBe(MT);
    expect(sha(m.bytes)).toBe(r.digest);
    expect(reg.log.filter((l) => l.startsWith('POST'))).toHaveLength(2);
  });

  it('defaults the tag to latest', async () => {
    reg = await FakeRegistry.start();
    const img = await image(randomBytes(10));
    const r = await pushOciImage(`${reg.host}/disk`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } });
    expect(r.ref).toBe(`${reg.host}/disk:latest`);
    expect(reg.manifests.has('disk:latest')).toBe(true);
  });

  it('skips blobs the repository already has', async () => {
    reg = await FakeRegistry.start();
    const img = await image();
    await pushOciImage(`${reg.host}/team/disk:1`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } });
    reg.log.length = 0;
    const r = await pushOciImage(`${reg.host}/team/disk:2`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } });
    expect(reg.log.filter((l) => l.startsWith('POST') || l.includes('/uploads/'))).toEqual([]);
    expect(reg.log.filter((l) => l.startsWith('HEAD'))).toHaveLength(2);
    expect(sha(reg.manifests.get('team/disk:2')!.bytes)).toBe(r.digest);
    expect(events.some((e) => e.type === 'log' && /already in/.test(e.message))).toBe(true);
  });

  it('gets a bearer token in the pull,push scope with the docker config credentials', async () => {
    reg = await FakeRegistry.start({ bearer: { user: 'u', pass: 'p' } });
    const img = await image();
    const env = await dockerConfig(reg.host, 'u', 'p');
    const r = await pushOciImage(`${reg.host}/team/disk:1.0`, img.blobs, img.manifest, ctx, { env });
    expect(sha(reg.manifests.get('team/disk:1.0')!.bytes)).toBe(r.digest);
    expect(reg.scopes).toEqual(['repository:team/disk:pull,push']);
    expect(reg.blobs.get(`team/disk@${sha(img.layerBytes)}`)).toEqual(img.layerBytes);
  });

  it('gets an anonymous bearer token', async () => {
    reg = await FakeRegistry.start({ bearer: {} });
    const img = await image(randomBytes(1000));
    await pushOciImage(`${reg.host}/anon/disk:x`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } });
    expect(reg.manifests.has('anon/disk:x')).toBe(true);
    expect(reg.scopes).toEqual(['repository:anon/disk:pull,push']);
  });

  it('answers basic auth with the docker config credentials, and says to log in without them', async () => {
    reg = await FakeRegistry.start({ basic: { user: 'u', pass: 'p' } });
    const img = await image(randomBytes(1000));
    await pushOciImage(`${reg.host}/b/disk:1`, img.blobs, img.manifest, ctx, {
      env: await dockerConfig(reg.host, 'u', 'p'),
    });
    expect(reg.manifests.has('b/disk:1')).toBe(true);
    await expect(
      pushOciImage(`${reg.host}/b/disk:2`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } }),
    ).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringContaining(`registry ${reg.host} refused the push to b/disk`),
      hint: `log in with docker login ${reg.host}, or check the repository name`,
    });
  });

  it('turns a refused token and a 403 into usage errors', async () => {
    reg = await FakeRegistry.start({ bearer: { user: 'u', pass: 'p' } });
    const img = await image(randomBytes(1000));
    await expect(
      pushOciImage(`${reg.host}/t/disk:1`, img.blobs, img.manifest, ctx, {
        env: await dockerConfig(reg.host, 'u', 'wrong'),
      }),
    ).rejects.toMatchObject({ kind: 'usage', message: expect.stringMatching(/refused the push to t\/disk/) });
    await reg.close();
    reg = await FakeRegistry.start({
      hook: (req, res) => {
        if (req.method !== 'POST') return false;
        res.writeHead(403, { 'Content-Type': 'application/json' });
        res.end(
          JSON.stringify({ errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] }),
        );
        return true;
      },
    });
    await expect(
      pushOciImage(`${reg.host}/t/disk:1`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } }),
    ).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringMatching(
        /refused the push to t\/disk: .*403.*DENIED: requested access to the resource is denied/,
      ),
    });
  });

  it('reports other failures as toolFailed with the status and what the registry said', async () => {
    reg = await FakeRegistry.start({
      hook: (req, res) => {
        if (req.method !== 'PUT' || !req.url?.includes('/manifests/')) return false;
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_INVALID', message: 'manifest invalid' }] }));
        return true;
      },
    });
    const img = await image(randomBytes(1000));
    await expect(
      pushOciImage(`${reg.host}/f/disk:1`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } }),
    ).rejects.toMatchObject({
      kind: 'toolFailed',
      message: expect.stringMatching(/HTTP 400 \(MANIFEST_INVALID: manifest invalid\)/),
    });
  });

  it('retries a 503 on the upload with a new session', async () => {
    let failed = 0;
    reg = await FakeRegistry.start({
      hook: (req, res) => {
        if (req.method !== 'PUT' || !req.url?.includes('/uploads/') || failed++ > 0) return false;
        req.resume();
        res.writeHead(503);
        res.end();
        return true;
      },
    });
    const img = await image(randomBytes(5000));
    await pushOciImage(`${reg.host}/r/disk:1`, img.blobs, img.manifest, ctx, { env: { HOME: tmp }, backoffMs: 1 });
    expect(reg.manifests.has('r/disk:1')).toBe(true);
    expect(reg.log.filter((l) => l.startsWith('POST'))).toHaveLength(3);
  });

  it('refuses an upload Location on another host', async () => {
    reg = await FakeRegistry.start({
      hook: (req, res) => {
        if (req.method !== 'POST') return false;
        res.writeHead(202, { Location: 'http://127.0.0.2:1/v2/x/blobs/uploads/1' });
        res.end();
        return true;
      },
    });
    const img = await image(randomBytes(1000));
    await expect(
      pushOciImage(`${reg.host}/h/disk:1`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } }),
    ).rejects.toMatchObject({ kind: 'toolFailed', message: expect.stringMatching(/another host/) });
  });

  it('accepts an absolute Location on the same host', async () => {
    reg = await FakeRegistry.start({
      hook: (req, res) => {
        if (req.method !== 'POST') return false;
        req.resume();
        const repo = /^\/v2\/(.+)\/blobs\/uploads\/$/.exec(req.url!)![1];
        res.writeHead(202, { Location: `http://${reg!.host}/v2/${repo}/blobs/uploads/7?_state=abc%3D%3D` });
        res.end();
        return true;
      },
    });
    const img = await image(randomBytes(1000));
    await pushOciImage(`${reg.host}/abs/disk:1`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } });
    expect(reg.manifests.has('abs/disk:1')).toBe(true);
  });

  it('refuses a Docker-Content-Digest that differs from the manifest', async () => {
    reg = await FakeRegistry.start({
      hook: (req, res) => {
        if (req.method !== 'PUT' || !req.url?.includes('/manifests/')) return false;
        req.resume();
        res.writeHead(201, { 'Docker-Content-Digest': `sha256:${'0'.repeat(64)}` });
        res.end();
        return true;
      },
    });
    const img = await image(randomBytes(1000));
    await expect(
      pushOciImage(`${reg.host}/d/disk:1`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } }),
    ).rejects.toMatchObject({
      kind: 'toolFailed',
      message: expect.stringMatching(/stored the manifest .* as sha256:0+, not/),
    });
  });

  it('refuses digest references, and blobs whose size is not what they declare', async () => {
    reg = await FakeRegistry.start();
    const img = await image(randomBytes(1000));
    await expect(
      pushOciImage(`${reg.host}/x@sha256:${'a'.repeat(64)}`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } }),
    ).rejects.toMatchObject({ kind: 'usage' });
    const bad = [{ ...img.blobs[1]!, size: 5 }];
    await expect(pushOciImage(`${reg.host}/x:1`, bad, img.manifest, ctx, { env: { HOME: tmp } })).rejects.toMatchObject(
      { kind: 'internal' },
    );
    expect(reg.log).toEqual([]);
  });

  it('says when the registry is not there', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const img = await image(randomBytes(100));
    await expect(
      pushOciImage(`127.0.0.1:${port}/x:1`, img.blobs, img.manifest, ctx, { env: { HOME: tmp } }),
    ).rejects.toMatchObject({ kind: 'toolFailed', hint: 'is the registry running on that port?' });
  });
});

describe('pushContainerDisk', () => {
  it("an arm64 disk's containerDisk says arm64 in its config and its index platform", async () => {
    const qcow2 = join(tmp, 'arm.qcow2');
    await writeFile(qcow2, randomBytes(4096));
    const img = await containerDiskImage(qcow2, ctx.work, 0, undefined, 'arm64');
    const config = img.blobs.find((b) => b.mediaType.includes('config')) as { bytes: Buffer };
    expect(JSON.parse(config.bytes.toString('utf8'))).toMatchObject({ architecture: 'arm64', os: 'linux' });
    type Index = { manifests: { platform: unknown }[] };
    expect((img.index as Index).manifests[0]!.platform).toEqual({ architecture: 'arm64', os: 'linux' });
    const amd = await containerDiskImage(qcow2, ctx.work, 0);
    expect((amd.index as Index).manifests[0]!.platform).toEqual({ architecture: 'amd64', os: 'linux' });
  });

  it('pushes the same image the archive holds: /disk/disk.qcow2 owned 107:107', async () => {
    reg = await FakeRegistry.start();
    const qcow2 = join(tmp, 'x.qcow2');
    const content = randomBytes(200 * 1024);
    await writeFile(qcow2, content);
    const r = await pushContainerDisk(qcow2, `${reg.host}/kubevirt/disk:v1`, ctx, 0, { env: { HOME: tmp } });
    const img = await containerDiskImage(qcow2, ctx.work, 0);
    expect(r.digest).toBe(img.manifest.digest);
    const m = JSON.parse(reg.manifests.get('kubevirt/disk:v1')!.bytes.toString('utf8')) as {
      layers: { digest: string; mediaType: string }[];
    };
    expect(m.layers).toHaveLength(1);
    const layer = reg.blobs.get(`kubevirt/disk@${m.layers[0]!.digest}`)!;
    const entries: { name: string; uid?: number; gid?: number; body: Buffer }[] = [];
    const x = tar.extract();
    x.on('entry', (h, stream, next) => {
      const parts: Buffer[] = [];
      stream.on('data', (c) => parts.push(c as Buffer)); // streamx types its chunks as unknown; tar-stream gives Buffers
      stream.on('end', () => {
        entries.push({ name: h.name, uid: h.uid, gid: h.gid, body: Buffer.concat(parts) });
        next();
      });
    });
    await new Promise<void>((res, rej) => {
      x.on('finish', res);
      x.on('error', rej);
      Readable.from([layer]).pipe(x);
    });
    expect(entries.map((e) => [e.name, e.uid, e.gid])).toEqual([
      ['disk/', 107, 107],
      ['disk/disk.qcow2', 107, 107],
    ]);
    expect(entries[1]!.body.equals(content)).toBe(true);
  });
});
