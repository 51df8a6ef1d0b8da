// A small Docker Engine API client over the daemon's unix socket: ping, inspect, save, build, tag, remove.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { Img2vmError } from '../core/errors.js';

export interface DockerEndpoint {
  socketPath: string;
}

/** Where the daemon listens: DOCKER_HOST=unix:///path, else the standard socket. */
export function dockerEndpoint(env: NodeJS.ProcessEnv = process.env): DockerEndpoint {
  const host = env.DOCKER_HOST;
  if (!host) return { socketPath: '/var/run/docker.sock' };
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  throw new Img2vmError(
    'daemonUnreachable',
    `DOCKER_HOST=${host} is not supported`,
    'img2vm talks to the daemon over a unix socket: set DOCKER_HOST=unix:///var/run/docker.sock or unset it',
  );
}

/**
 * An image name or id as it goes into an Engine API path: each /-separated part percent-encoded, so "?" or "#"
 * cannot end the path and start a query; "." and ".." parts are refused, since the daemon's router would resolve
 * them into another endpoint.
 */
export function imagePath(name: string): string {
  const parts = name.split('/');
  if (!name || /[\x00-\x1f\x7f]/.test(name) || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new Img2vmError(
      'usage',
      `invalid image name for the Docker daemon: ${JSON.stringify(name)}`,
      'give a name like debian:12, registry.lan/team/app:v1 or an image id',
    );
  }
  return parts.map(encodeURIComponent).join('/');
}

export interface ImageInspect {
  Id: string;
  RepoTags?: string[] | null;
  RepoDigests?: string[] | null;
  Os?: string;
  Architecture?: string;
  Size?: number;
  Config?: {
    Labels?: Record<string, string> | null;
    Env?: string[] | null;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string | null;
    User?: string | null;
  } | null;
  RootFS?: { Type?: string; Layers?: string[] | null } | null;
  GraphDriver?: { Name?: string; Data?: Record<string, string> | null } | null;
}

export class DockerClient {
  constructor(
    readonly endpoint: DockerEndpoint = dockerEndpoint(),
    private readonly signal?: AbortSignal,
  ) {}

  private raw(
    method: string,
    path: string,
    body?: Readable | Buffer,
    headers: Record<string, string> = {},
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        { socketPath: this.endpoint.socketPath, method, path: `/v1.41${path}`, headers, signal: this.signal },
        resolve,
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.name === 'AbortError') return reject(this.signal?.reason ?? err);
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'EACCES') {
          reject(
            new Img2vmError(
              'daemonUnreachable',
              `cannot reach the Docker daemon at ${this.endpoint.socketPath} (${err.code})`,
              err.code === 'EACCES'
                ? 'run as root or add your user to the "docker" group'
                : 'start it (systemctl start docker, or dockerd &), or use another source such as oci-archive:FILE',
              { cause: err },
            ),
          );
        } else reject(err);
      });
      if (body && !Buffer.isBuffer(body)) {
        // pipe() leaves the request open when the body fails; the daemon would wait forever.
        body.on('error', (e) => req.destroy(e));
        body.pipe(req);
      } else req.end(body);
    });
  }

  private async json<T>(method: string, path: string): Promise<{ status: number; body: T }> {
    const res = await this.raw(method, path);
    const text = await readAll(res);
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      /* keep text */
    }
    return { status: res.statusCode ?? 0, body: body as T };
  }

  async ping(): Promise<void> {
    const r = await this.json('GET', '/_ping');
    if (r.status !== 200)
      throw new Img2vmError('daemonUnreachable', `Docker daemon answered ${r.status} to a ping`, 'check dockerd');
  }

  /** Inspects an image; undefined when the daemon does not have it. */
  async inspect(name: string): Promise<ImageInspect | undefined> {
    const r = await this.json<ImageInspect & { message?: string }>('GET', `/images/${imagePath(name)}/json`);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw apiError('inspect image', name, r.status, r.body);
    return r.body;
  }

  /** The image's own layers and config as a `docker save` tar stream. */
  async save(name: string): Promise<IncomingMessage> {
    const res = await this.raw('GET', `/images/get?names=${encodeURIComponent(name)}`);
    if (res.statusCode !== 200) throw apiError('save image', name, res.statusCode ?? 0, await readAll(res));
    return res;
  }

  /**
   * Builds an image from a tar build context; the host network is used because these machines
   * have no bridge. Each line of build output goes to onLine; a build error is thrown.
   */
  async build(
    context: Readable,
    opts: { tag: string; labels: Record<string, string>; platform?: string; onLine?: (l: string) => void },
  ): Promise<void> {
    const q = new URLSearchParams({
      t: opts.tag,
      networkmode: 'host',
      rm: '1',
      forcerm: '1',
      labels: JSON.stringify(opts.labels),
      // Another architecture's base: its steps run under the host's binfmt_misc emulator.
      ...(opts.platform ? { platform: opts.platform } : {}),
    });
    const res = await this.raw('POST', `/build?${q}`, context, { 'Content-Type': 'application/x-tar' });
    if (res.statusCode !== 200) throw apiError('build image', opts.tag, res.statusCode ?? 0, await readAll(res));
    let buf = '';
    let error: string | undefined;
    const tail: string[] = [];
    for await (const chunk of res) {
      buf += String(chunk);
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        let msg: { stream?: string; error?: string; status?: string };
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.error) error = msg.error;
        const text = (msg.stream ?? msg.status ?? '').replace(/\n$/, '');
        for (const l of text.split('\n')) {
          if (!l) continue;
          opts.onLine?.(l);
          tail.push(l);
          if (tail.length > 15) tail.shift();
        }
      }
    }
    if (error) {
      throw new Img2vmError(
        'buildFailed',
        `guest build failed: ${error.trim()}`,
        `last build output:\n${tail.join('\n')}`,
      );
    }
  }

  /**
   * Removes a container at once (killing it), and waits until the daemon has let go of it: a cancelled build's
   * step container must not outlive img2vm. One the daemon is already removing is waited for.
   */
  async removeContainer(id: string, waitMs = 30_000): Promise<void> {
    const path = `/containers/${encodeURIComponent(id)}`;
    const r = await this.json('DELETE', `${path}?force=1&v=1`);
    if (r.status !== 204 && r.status !== 404 && r.status !== 409)
      throw apiError('remove container', id, r.status, r.body);
    for (const t0 = Date.now(); Date.now() - t0 < waitMs;) {
      if ((await this.json('GET', `${path}/json`)).status === 404) return;
      await new Promise((res) => setTimeout(res, 100));
      await this.json('DELETE', `${path}?force=1&v=1`);
    }
  }

  async removeImage(name: string): Promise<void> {
    await this.json('DELETE', `/images/${imagePath(name)}?noprune=0`);
  }

  /**
   * Loads a docker-archive (docker save format) tar; returns the daemon's report lines
   * ("Loaded image ID: sha256:…"). A load error reported in the stream is thrown.
   */
  async load(tar: Readable): Promise<string[]> {
    const res = await this.raw('POST', '/images/load?quiet=1', tar, { 'Content-Type': 'application/x-tar' });
    const text = await readAll(res);
    if (res.statusCode !== 200) throw apiError('load image', 'archive', res.statusCode ?? 0, text);
    const lines: string[] = [];
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let msg: { stream?: string; error?: string; errorDetail?: { message?: string } };
      try {
        msg = JSON.parse(line);
      } catch {
        lines.push(line.trim());
        continue;
      }
      if (msg.error || msg.errorDetail)
        throw apiError('load image', 'archive', 200, msg.errorDetail?.message ?? msg.error);
      if (msg.stream?.trim()) lines.push(msg.stream.trim());
    }
    return lines;
  }

  /** Creates (never starts) a container of an image, to read its file system; no network, a command that is never run. */
  async createContainer(image: string, labels: Record<string, string>): Promise<string> {
    const body = Buffer.from(
      JSON.stringify({
        Image: image,
        Entrypoint: ['/img2vm-never-run'],
        Cmd: [],
        Labels: labels,
        NetworkDisabled: true,
        HostConfig: { NetworkMode: 'none' },
      }),
    );
    const res = await this.raw('POST', '/containers/create', body, { 'Content-Type': 'application/json' });
    const text = await readAll(res);
    if (res.statusCode !== 201) throw apiError('create container of', image, res.statusCode ?? 0, text);
    return (JSON.parse(text) as { Id: string }).Id;
  }

  /** The container's whole file system, the image's layers as the daemon flattened them, as a tar stream. */
  async exportContainer(id: string): Promise<IncomingMessage> {
    const res = await this.raw('GET', `/containers/${encodeURIComponent(id)}/export`);
    if (res.statusCode !== 200) throw apiError('export container', id, res.statusCode ?? 0, await readAll(res));
    return res;
  }

  /** A tar of one path of the container's file system; undefined when it does not exist. */
  async archive(id: string, path: string): Promise<IncomingMessage | undefined> {
    const res = await this.raw('GET', `/containers/${encodeURIComponent(id)}/archive?path=${encodeURIComponent(path)}`);
    if (res.statusCode === 404) {
      res.resume();
      return undefined;
    }
    if (res.statusCode !== 200) throw apiError('read from container', id, res.statusCode ?? 0, await readAll(res));
    return res;
  }

  /** Containers (running or not) with a label, and its value. */
  async containersWithLabel(label: string): Promise<{ id: string; value: string }[]> {
    const q = new URLSearchParams({ all: '1', filters: JSON.stringify({ label: [label] }) });
    const r = await this.json<{ Id: string; Labels?: Record<string, string> }[]>('GET', `/containers/json?${q}`);
    if (r.status !== 200) throw apiError('list containers', label, r.status, r.body);
    return r.body.map((c) => ({ id: c.Id, value: c.Labels?.[label] ?? '' }));
  }

  /** Adds a tag to an image. */
  async tag(image: string, repo: string, tag: string): Promise<void> {
    const q = new URLSearchParams({ repo, tag });
    const r = await this.json('POST', `/images/${imagePath(image)}/tag?${q}`);
    if (r.status !== 201 && r.status !== 200) throw apiError('tag image', image, r.status, r.body);
  }

  /** Imports a root filesystem tar as a one-layer image (used to hand non-daemon sources to the builder). */
  async importRootfs(tar: Readable, repo: string, tag: string): Promise<string> {
    const q = new URLSearchParams({ fromSrc: '-', repo, tag });
    const res = await this.raw('POST', `/images/create?${q}`, tar, { 'Content-Type': 'application/x-tar' });
    const text = await readAll(res);
    if (res.statusCode !== 200 || /"error"/.test(text))
      throw apiError('import image', `${repo}:${tag}`, res.statusCode ?? 0, text);
    return `${repo}:${tag}`;
  }
}

function apiError(what: string, name: string, status: number, body: unknown): Img2vmError {
  const msg =
    typeof body === 'object' && body && 'message' in body
      ? String((body as { message: unknown }).message)
      : String(body).trim();
  return new Img2vmError(
    'toolFailed',
    `Docker daemon could not ${what} ${name} (HTTP ${status}): ${msg}`,
    'see the daemon log (journalctl -u docker)',
  );
}

async function readAll(s: Readable): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.from(c));
  return Buffer.concat(parts).toString('utf8');
}
