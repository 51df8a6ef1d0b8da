// Pushes an OCI image (blobs, then the manifest) to a registry over the distribution API: monolithic uploads, bearer or basic auth in a pull,push scope.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { formatSize } from '../core/units.js';
import { lookupCredentials, type Credentials } from './auth.js';
import { isDigest, readLimited, sha256 } from './digest.js';
import { parseChallenges } from './registry.js';
import { apiHost, canonicalReference, isLoopbackRegistry, parseDockerReference } from './reference.js';

const USER_AGENT = 'img2vm/0.1';
const TRIES = 3;

/** A blob to upload: its bytes in memory, or a file streamed from disk. */
export interface PushBlob {
  digest: string;
  size: number;
  mediaType: string;
  path?: string;
  bytes?: Buffer;
}

export interface PushManifest {
  bytes: Buffer;
  mediaType: string;
}

export interface PushOptions {
  /** Registries (host[:port]) reached over plain HTTP; loopback registries always are. */
  insecureRegistries?: string[];
  /** Where DOCKER_CONFIG / HOME are looked up for credentials. */
  env?: NodeJS.ProcessEnv;
  /** First retry delay of 429/5xx answers and broken connections (doubles per attempt). */
  backoffMs?: number;
}

type Body = Buffer | (() => Readable) | undefined;

const RETRYABLE = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

/** A push session to one repository: the transport and its authentication. */
class Pusher {
  readonly base: URL;
  readonly scope: string;
  private auth: string | undefined;
  private creds: Promise<Credentials | undefined> | undefined;

  constructor(
    readonly domain: string,
    readonly repo: string,
    plainHttp: boolean,
    private readonly ctx: RunContext,
    private readonly o: PushOptions,
  ) {
    this.base = new URL(`${plainHttp ? 'http' : 'https'}://${apiHost(domain)}/`);
    this.scope = `repository:${repo}:pull,push`;
  }

  private exchange(method: string, url: URL, headers: OutgoingHttpHeaders, body: Body): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const mod = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = mod(url, { method, headers: { 'User-Agent': USER_AGENT, ...headers }, signal: this.ctx.signal, timeout: 120_000 }, resolve);
      req.on('timeout', () => req.destroy(Object.assign(new Error(`${url.host} sent nothing for 120 s`), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      if (typeof body === 'function') {
        // A failed upload surfaces as the request's error or its answer; the stream's own error is the file's.
        pipeline(body(), req).catch((e: unknown) => req.destroy(e as Error));
      } else req.end(body);
    });
  }

  private fail(e: unknown, url: URL): unknown {
    if (this.ctx.signal.aborted) return this.ctx.signal.reason;
    if (e instanceof Img2vmError) return e;
    const err = e as NodeJS.ErrnoException;
    const hint = err.code === 'ECONNREFUSED' ? 'is the registry running on that port?' : /certificate|SSL|TLS|EPROTO/i.test(`${err.code} ${err.message}`) ? `if it serves plain HTTP, pass --insecure-registry ${this.domain}` : 'check the network and the registry';
    return new Img2vmError('toolFailed', `cannot reach registry ${this.domain} (${url.origin}) to push ${this.repo}: ${err.message}`, hint, { cause: e });
  }

  /** One request with the current authorization (only ever sent to the registry's own origin), retrying broken connections, 429 and 5xx. */
  private async send(method: string, url: URL, headers: Record<string, string>, body: Body, retry = true): Promise<IncomingMessage> {
    for (let attempt = 1; ; attempt++) {
      const h: OutgoingHttpHeaders = { ...headers };
      if (this.auth && url.origin === this.base.origin) h.Authorization = this.auth;
      let res: IncomingMessage;
      try {
        res = await this.exchange(method, url, h, body);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? '';
        if ((RETRYABLE.has(code) || /socket hang up/.test((e as Error).message)) && retry && attempt < TRIES && !this.ctx.signal.aborted) {
          await this.backoff(attempt, `${(e as Error).message} (${method} ${url.pathname})`);
          continue;
        }
        throw this.fail(e, url);
      }
      const status = res.statusCode ?? 0;
      if ((status === 429 || status >= 500) && retry && attempt < TRIES) {
        res.resume();
        await this.backoff(attempt, `HTTP ${status} (${method} ${url.pathname})`);
        continue;
      }
      return res;
    }
  }

  private async backoff(attempt: number, why: string): Promise<void> {
    const ms = (this.o.backoffMs ?? 500) * 2 ** (attempt - 1);
    this.ctx.sink({ type: 'log', level: 'debug', stage: 'output', message: `${this.domain}: ${why}; retrying in ${ms} ms` });
    try {
      await sleep(ms, undefined, { signal: this.ctx.signal });
    } catch {
      throw this.ctx.signal.reason ?? new Error('aborted');
    }
  }

  /** A request that answers a 401 once: a bearer token for the push scope, or basic credentials. `retry: false` leaves retries to the caller (uploads restart from a new session). */
  async request(method: string, url: URL, headers: Record<string, string> = {}, body?: Body, retry = true): Promise<IncomingMessage> {
    let res = await this.send(method, url, headers, body, retry);
    if (res.statusCode === 401) {
      const challenge = res.headers['www-authenticate'];
      res.resume();
      await this.authenticate(Array.isArray(challenge) ? challenge.join(', ') : challenge ?? '');
      res = await this.send(method, url, headers, body, retry);
    }
    return res;
  }

  refused(detail: string): Img2vmError {
    return new Img2vmError('usage', `registry ${this.domain} refused the push to ${this.repo}: ${detail}`, `log in with docker login ${this.domain}, or check the repository name`);
  }

  private credentials(): Promise<Credentials | undefined> {
    this.creds ??= lookupCredentials(this.domain, {
      env: this.o.env,
      signal: this.ctx.signal,
      warn: (message) => this.ctx.sink({ type: 'log', level: 'warn', stage: 'output', message }),
    });
    return this.creds;
  }

  private basicOf(c: Credentials | undefined): string | undefined {
    return c?.username || c?.password ? `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}` : undefined;
  }

  private async authenticate(header: string): Promise<void> {
    const challenges = parseChallenges(header);
    const creds = await this.credentials();
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer) {
      let realm: URL | undefined;
      try {
        realm = bearer.params.realm ? new URL(bearer.params.realm) : undefined;
      } catch {
        realm = undefined;
      }
      if (!realm || (realm.protocol !== 'https:' && realm.protocol !== 'http:')) {
        throw new Img2vmError('toolFailed', `registry ${this.domain} sent a bearer challenge without a usable realm`, 'the registry is misconfigured');
      }
      this.auth = `Bearer ${await this.token(realm, bearer.params.service, creds)}`;
      return;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      const basic = this.basicOf(creds);
      if (!basic) throw this.refused('it requires a login');
      this.auth = basic;
      return;
    }
    throw this.refused(`no supported authentication offered (${header || 'no WWW-Authenticate'})`);
  }

  private async token(realm: URL, service: string | undefined, creds: Credentials | undefined): Promise<string> {
    if (creds?.registryToken) return creds.registryToken;
    let res: IncomingMessage;
    if (creds?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'img2vm', scope: this.scope });
      if (service) form.set('service', service);
      res = await this.send('POST', realm, { 'Content-Type': 'application/x-www-form-urlencoded' }, Buffer.from(form.toString()));
    } else {
      const u = new URL(realm);
      if (service) u.searchParams.set('service', service);
      u.searchParams.set('scope', this.scope);
      const basic = this.basicOf(creds);
      res = await this.send('GET', u, basic ? { Authorization: basic } : {}, undefined);
    }
    const status = res.statusCode ?? 0;
    if (status === 401 || status === 403) {
      res.resume();
      throw this.refused(creds ? 'the token service refused the credentials from the docker config' : 'the token service refused an anonymous token');
    }
    if (status !== 200) {
      res.resume();
      throw new Img2vmError('toolFailed', `the token service of ${this.domain} answered HTTP ${status}`, 'try again later');
    }
    const body = await readLimited(res, 1024 * 1024, `the token from ${realm.host}`);
    let t: { token?: unknown; access_token?: unknown } | undefined;
    try {
      t = JSON.parse(body.toString('utf8')) as typeof t;
    } catch {
      t = undefined;
    }
    const value = typeof t?.token === 'string' && t.token ? t.token : typeof t?.access_token === 'string' ? t.access_token : '';
    if (!value) throw new Img2vmError('toolFailed', `the token service of ${this.domain} answered no token`, 'the registry is misconfigured');
    return value;
  }

  /** The error for a final non-success answer, with what the registry said. */
  async failure(res: IncomingMessage, what: string): Promise<Img2vmError> {
    const status = res.statusCode ?? 0;
    let detail = '';
    try {
      const body = await readLimited(res, 64 * 1024, 'an error answer');
      const text = body.toString('utf8');
      try {
        const j = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
        detail = (j.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
      } catch {
        detail = text.trim().slice(0, 200);
      }
    } catch {
      res.destroy();
    }
    if (status === 401 || status === 403) return this.refused(`${what}: HTTP ${status}${detail ? ` (${detail})` : ''}`);
    return new Img2vmError('toolFailed', `registry ${this.domain} failed ${what} of ${this.repo}: HTTP ${status}${detail ? ` (${detail})` : ''}`, 'check the registry and its logs; try again');
  }

  async hasBlob(digest: string): Promise<boolean> {
    const res = await this.request('HEAD', new URL(`/v2/${this.repo}/blobs/${digest}`, this.base));
    res.resume();
    const s = res.statusCode ?? 0;
    // A redirect means the registry knows the blob and sends readers to its storage.
    if (s === 200 || [301, 302, 303, 307, 308].includes(s)) return true;
    if (s === 404) return false;
    if (s === 401 || s === 403) throw await this.failure(res, `the check for blob ${digest}`);
    return false; // anything else: upload and let the upload tell
  }

  /** POST for an upload session, then one monolithic PUT of the whole blob. */
  async uploadBlob(b: PushBlob): Promise<void> {
    const body: Body = b.bytes ?? (() => createReadStream(b.path!));
    for (let attempt = 1; ; attempt++) {
      const start = await this.request('POST', new URL(`/v2/${this.repo}/blobs/uploads/`, this.base), { 'Content-Length': '0' }, Buffer.alloc(0));
      if (start.statusCode !== 202) throw await this.failure(start, `to start the upload of blob ${b.digest}`);
      start.resume();
      const loc = start.headers.location;
      if (!loc) throw new Img2vmError('toolFailed', `registry ${this.domain} started an upload without a Location`, 'the registry is misconfigured');
      let url: URL;
      try {
        url = new URL(loc, this.base);
      } catch {
        throw new Img2vmError('toolFailed', `registry ${this.domain} answered an invalid upload Location`, 'the registry is misconfigured or hostile');
      }
      if (url.origin !== this.base.origin) {
        throw new Img2vmError('toolFailed', `registry ${this.domain} sent the upload to another host (${url.origin})`, 'the registry is misconfigured or hostile; img2vm sends credentials and data only to the registry itself');
      }
      url.search = `${url.search ? `${url.search}&` : '?'}digest=${encodeURIComponent(b.digest)}`;
      let res: IncomingMessage;
      try {
        res = await this.request('PUT', url, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) }, body, false);
      } catch (e) {
        const code = ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? '';
        if (RETRYABLE.has(code) && attempt < TRIES && !this.ctx.signal.aborted) {
          await this.backoff(attempt, `${code} uploading ${b.digest}`);
          continue;
        }
        throw e;
      }
      const s = res.statusCode ?? 0;
      if (s === 201) {
        res.resume();
        return;
      }
      if ((s === 429 || s >= 500) && attempt < TRIES) {
        res.resume();
        await this.backoff(attempt, `HTTP ${s} uploading ${b.digest}`);
        continue;
      }
      throw await this.failure(res, `the upload of blob ${b.digest}`);
    }
  }

  async putManifest(tag: string, m: PushManifest): Promise<string> {
    const url = new URL(`/v2/${this.repo}/manifests/${tag}`, this.base);
    const res = await this.request('PUT', url, { 'Content-Type': m.mediaType, 'Content-Length': String(m.bytes.length) }, m.bytes);
    if (res.statusCode !== 201) throw await this.failure(res, `the manifest upload`);
    res.resume();
    const want = sha256(m.bytes);
    const got = res.headers['docker-content-digest'];
    if (typeof got === 'string' && got.trim() && got.trim() !== want) {
      throw new Img2vmError('toolFailed', `registry ${this.domain} stored the manifest of ${this.repo}:${tag} as ${got.trim()}, not ${want}`, 'the registry altered the manifest; check it');
    }
    return want;
  }
}

/**
 * Pushes blobs (skipping those the repository already has) and then the manifest under ref's tag.
 * Returns the canonical reference and the manifest's digest.
 */
export async function pushOciImage(ref: string, blobs: PushBlob[], manifest: PushManifest, ctx: RunContext, opts: PushOptions = {}): Promise<{ ref: string; digest: string }> {
  const r = parseDockerReference(ref);
  if (r.digest) throw new Img2vmError('usage', `--push ${ref}: a push needs a tag, not a digest`, 'give a reference like registry.example:5000/team/disk:1.0');
  const tag = r.tag ?? 'latest';
  const insecure = isLoopbackRegistry(r.domain) || (opts.insecureRegistries ?? []).some((x) => x.replace(/^https?:\/\//, '').replace(/\/+$/, '') === r.domain);
  for (const b of blobs) {
    if (!isDigest(b.digest)) throw new Img2vmError('internal', `blob digest "${b.digest}" is not a sha256 digest`);
    if (!b.bytes && !b.path) throw new Img2vmError('internal', `blob ${b.digest} has neither bytes nor a path`);
    const size = b.bytes ? b.bytes.length : (await stat(b.path!)).size;
    if (size !== b.size) throw new Img2vmError('internal', `blob ${b.digest} is ${size} bytes, not the ${b.size} declared`);
  }
  const p = new Pusher(r.domain, r.path, !!insecure, ctx, opts);
  const log = (message: string) => ctx.sink({ type: 'log', level: 'info', stage: 'output', message });
  for (const b of blobs) {
    if (await p.hasBlob(b.digest)) {
      log(`${b.digest.slice(7, 19)}: already in ${r.domain}/${r.path}`);
      continue;
    }
    await p.uploadBlob(b);
    log(`${b.digest.slice(7, 19)}: pushed ${formatSize(b.size)}`);
  }
  const digest = await p.putManifest(tag, manifest);
  log(`pushed ${canonicalReference({ domain: r.domain, path: r.path, tag })}@${digest}`);
  return { ref: canonicalReference({ domain: r.domain, path: r.path, tag }), digest };
}
