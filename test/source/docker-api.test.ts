// Image names in Docker Engine API paths: encoded so that "?", "#" and ".." cannot reach another endpoint or a query.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerClient, imagePath } from '../../src/source/docker-api.js';

let dir: string;
let server: Server;
const paths: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'img2vm-daemon-'));
  // A daemon on a unix socket that records each request path and knows no image.
  server = createServer((req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end('{"message":"No such image"}');
  });
  await new Promise<void>((r) => server.listen(join(dir, 'docker.sock'), r));
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

describe('imagePath', () => {
  it('encodes each part, keeping the slashes between them', () => {
    expect(imagePath('registry.lan:5000/team/app:v1')).toBe('registry.lan%3A5000/team/app%3Av1');
    expect(imagePath('app@sha256:ab')).toBe('app%40sha256%3Aab');
    expect(imagePath('a?b#c%d e')).toBe('a%3Fb%23c%25d%20e');
  });

  it('refuses dot segments, empty parts and control characters', () => {
    for (const bad of ['..', '../../containers/x', 'a/./b', 'a//b', '/a', 'a/', '', 'a\nb']) {
      expect(() => imagePath(bad), bad).toThrow(/invalid image name for the Docker daemon/);
    }
    expect(imagePath('..a/b..')).toBe('..a/b..');
  });
});

describe('DockerClient requests', () => {
  const client = () => new DockerClient({ socketPath: join(dir, 'docker.sock') });

  it('a name with ? and # stays one path: the daemon sees no query and no fragment', async () => {
    paths.length = 0;
    expect(await client().inspect('evil?force=1#x')).toBeUndefined();
    await client().removeImage('evil?force=1#x');
    expect(paths).toEqual(['/v1.41/images/evil%3Fforce%3D1%23x/json', '/v1.41/images/evil%3Fforce%3D1%23x?noprune=0']);
  });

  it("a build for another architecture's image names its platform; a native one leaves the daemon's default", async () => {
    paths.length = 0;
    const labels = {};
    await expect(
      client().build(Readable.from([]), { tag: 'img2vm-cache:ab', labels, platform: 'linux/arm64' }),
    ).rejects.toThrow();
    await expect(client().build(Readable.from([]), { tag: 'img2vm-cache:cd', labels })).rejects.toThrow();
    const queries = paths.map((p) => new URL(p, 'http://d').searchParams);
    expect(queries.map((q) => q.get('platform'))).toEqual(['linux/arm64', null]);
    expect(queries.map((q) => q.get('t'))).toEqual(['img2vm-cache:ab', 'img2vm-cache:cd']);
  });

  it('a name with .. is refused before anything reaches the daemon', async () => {
    paths.length = 0;
    await expect(client().inspect('../../containers/json')).rejects.toMatchObject({ kind: 'usage' });
    await expect(client().tag('..', 'repo', 'tag')).rejects.toMatchObject({ kind: 'usage' });
    expect(paths).toEqual([]);
  });
});
