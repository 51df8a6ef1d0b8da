// A client of the OCI distribution API over node:http(s): bearer and basic auth, bounded redirects, retries, resumable blob downloads.
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { basicAuth, mayReceiveCredentials, type Credentials } from './auth.js';
import type { BlobWriter } from './blob-cache.js';
import { MAX_JSON, readLimited, tooLarge, truncated } from './digest.js';
import { formatZodError, MANIFEST_ACCEPT } from './manifest.js';
import { apiHost } from './reference.js';
import {
  errorDetail,
  isRetryable,
  networkError,
  parseChallenges,
  RegistryError,
  retryAfterMs,
} from './registry-errors.js';

export { errorDetail, isRetryable, parseChallenges, RegistryError, type RegistryFailure } from './registry-errors.js';

const USER_AGENT = 'img2vm/0.1';

export interface RegistryClientOptions {
  /** The registry as references name it (docker.io, localhost:5000). */
  domain: string;
  /** Plain HTTP (loopback or insecure registries) instead of HTTPS. */
  plainHttp: boolean;
  /** Asked only when a registry demands authentication. */
  credentials?: () => Promise<Credentials | undefined>;
  signal?: AbortSignal;
  log?: (msg: string) => void;
  /** Attempts per request, counting the first. */
  tries?: number;
  /** First retry delay; doubles each time (capped at 10 s) unless the registry sends Retry-After. */
  backoffMs?: number;
  /** A connection idle this long is broken. */
  timeoutMs?: number;
  maxRedirects?: number;
  /** Extra trusted certificates (PEM) for HTTPS: a private CA. */
  ca?: string | Buffer;
}

/** A request body: bytes, or a stream made afresh for each attempt (uploads of files). */
export type RequestBody = Buffer | (() => Readable);

export interface RequestOptions {
  body?: RequestBody;
  /** Authenticate for pushing (scope pull,push) instead of pulling. */
  push?: boolean;
  /** false: one attempt, the caller retries (an upload restarts from a new session). */
  retry?: boolean;
}

const TokenSchema = z
  .object({ token: z.string().optional(), access_token: z.string().optional(), expires_in: z.number().optional() })
  .passthrough()
  .refine((t) => !!(t.token || t.access_token), 'the answer has neither token nor access_token');

export class RegistryClient {
  readonly base: URL;
  readonly domain: string;
  private readonly tries: number;
  private readonly backoffMs: number;
  private readonly timeoutMs: number;
  private readonly maxRedirects: number;
  /** Bearer tokens by scope; basic credentials apply to every scope. */
  private readonly tokens = new Map<string, { header: string; expires: number }>();
  private basic: string | undefined;
  private creds: Promise<Credentials | undefined> | undefined;

  constructor(private readonly o: RegistryClientOptions) {
    this.domain = o.domain;
    this.base = new URL(`${o.plainHttp ? 'http' : 'https'}://${apiHost(o.domain)}/`);
    this.tries = o.tries ?? 5;
    this.backoffMs = o.backoffMs ?? 500;
    this.timeoutMs = o.timeoutMs ?? 60_000;
    this.maxRedirects = o.maxRedirects ?? 10;
  }

  static scope(repo: string, push = false): string {
    return `repository:${repo}:${push ? 'pull,push' : 'pull'}`;
  }

  // ---- transport ----

  private exchange(
    method: string,
    url: URL,
    headers: OutgoingHttpHeaders,
    body: RequestBody | undefined,
    signal: AbortSignal | undefined,
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const mod = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = mod(
        url,
        {
          method,
          headers,
          signal,
          timeout: this.timeoutMs,
          ...(this.o.ca && url.protocol === 'https:' ? { ca: this.o.ca } : {}),
        },
        resolve,
      );
      req.on('timeout', () => {
        req.destroy(
          Object.assign(new Error(`${url.host} sent nothing for ${this.timeoutMs / 1000} s`), { code: 'ETIMEDOUT' }),
        );
      });
      req.on('error', reject);
      if (typeof body === 'function') {
        // A failed upload surfaces as the request's error or its answer; the stream's own error is the file's.
        pipeline(body(), req).catch((e: unknown) => req.destroy(e as Error));
      } else req.end(body);
    });
  }

  /** One exchange, following redirects; Authorization goes only to authOrigin (never to a CDN it redirects to). */
  private async send(
    method: string,
    url: URL,
    headers: Record<string, string>,
    authorization: string | undefined,
    authOrigin: string,
    signal: AbortSignal | undefined,
    body?: RequestBody,
  ): Promise<IncomingMessage> {
    let current = url;
    for (let hop = 0; ; hop++) {
      const h: OutgoingHttpHeaders = { 'User-Agent': USER_AGENT, ...headers };
      if (authorization && current.origin === authOrigin) h.Authorization = authorization;
      const res = await this.exchange(method, current, h, body, signal);
      const status = res.statusCode ?? 0;
      const loc = res.headers.location;
      if (![301, 302, 303, 307, 308].includes(status) || !loc) return res;
      res.resume();
      if (hop >= this.maxRedirects) {
        throw new RegistryError(
          'protocol',
          'badImage',
          `registry ${this.domain} redirected ${url.pathname} more than ${this.maxRedirects} times`,
          'the registry is misconfigured or hostile',
        );
      }
      let next: URL;
      try {
        next = new URL(loc, current);
      } catch {
        throw new RegistryError(
          'protocol',
          'badImage',
          `registry ${this.domain} redirected to an invalid URL`,
          'the registry is misconfigured or hostile',
        );
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new RegistryError(
          'protocol',
          'badImage',
          `registry ${this.domain} redirected to a ${next.protocol} URL`,
          'the registry is misconfigured or hostile',
        );
      }
      if (current.protocol === 'https:' && next.protocol === 'http:') {
        throw new RegistryError(
          'protocol',
          'badImage',
          `registry ${this.domain} redirected ${current.host}${current.pathname} from HTTPS to plain HTTP (${next.origin})`,
          'img2vm does not give up TLS on a redirect; the registry is misconfigured or hostile',
        );
      }
      if (status === 303) {
        method = 'GET';
        body = undefined;
      }
      current = next;
    }
  }

  /** An exchange with retries of broken connections, 429 and 5xx (honouring Retry-After). */
  private async sendRetrying(
    method: string,
    url: URL,
    headers: Record<string, string>,
    auth: () => string | undefined,
    authOrigin: string,
    signal: AbortSignal | undefined,
    body?: RequestBody,
    tries = this.tries,
  ): Promise<IncomingMessage> {
    for (let attempt = 1; ; attempt++) {
      let res: IncomingMessage;
      try {
        res = await this.send(method, url, headers, auth(), authOrigin, signal, body);
      } catch (e) {
        if (isRetryable(e) && attempt < tries && !signal?.aborted) {
          await this.backoff(attempt, undefined, `${(e as Error).message} (${url.pathname})`, signal);
          continue;
        }
        throw this.networkError(e, url, signal);
      }
      const status = res.statusCode ?? 0;
      if ((status === 429 || status >= 500) && attempt < tries) {
        const ra = retryAfterMs(res.headers['retry-after']);
        res.resume();
        await this.backoff(attempt, ra, `HTTP ${status} (${url.pathname})`, signal);
        continue;
      }
      return res;
    }
  }

  /** Waits before attempt `attempt + 1`: Retry-After when given, else exponential with jitter. */
  async backoff(
    attempt: number,
    retryAfter: number | undefined,
    why: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const exp = Math.min(this.backoffMs * 2 ** (attempt - 1), 10_000);
    const ms = retryAfter ?? Math.round(exp * (0.75 + Math.random() / 2));
    this.o.log?.(`${this.domain}: ${why}; retrying in ${ms} ms (attempt ${attempt + 1} of ${this.tries})`);
    try {
      await sleep(ms, undefined, { signal });
    } catch {
      throw signal?.reason ?? new Error('aborted');
    }
  }

  private networkError(e: unknown, url: URL, signal: AbortSignal | undefined): unknown {
    return networkError(e, this.domain, url, signal);
  }

  // ---- authentication ----

  private authHeader(scope: string): string | undefined {
    const t = this.tokens.get(scope);
    if (t && t.expires > Date.now()) return t.header;
    return this.basic;
  }

  private credentials(): Promise<Credentials | undefined> {
    this.creds ??= this.o.credentials?.() ?? Promise.resolve(undefined);
    return this.creds;
  }

  /** Answers a 401: a bearer token from the realm (cached per scope), or basic credentials. */
  private async authenticate(
    header: string | string[] | undefined,
    scope: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const challenges = parseChallenges(Array.isArray(header) ? header.join(', ') : (header ?? ''));
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const creds = await this.credentials();
    if (bearer) {
      const realm = bearer.params.realm;
      let realmUrl: URL | undefined;
      try {
        realmUrl = realm ? new URL(realm) : undefined;
      } catch {
        realmUrl = undefined;
      }
      if (!realmUrl || (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:')) {
        throw new RegistryError(
          'protocol',
          'badImage',
          `registry ${this.domain} sent a bearer challenge without a usable realm`,
          'the registry is misconfigured',
        );
      }
      const token = await this.fetchToken(realmUrl, bearer.params.service, scope, creds, signal);
      this.tokens.set(scope, {
        header: `Bearer ${token.value}`,
        expires: Date.now() + Math.max(token.expiresIn - 10, 5) * 1000,
      });
      return;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      if (!creds?.username && !creds?.password) {
        throw new RegistryError(
          'denied',
          'imageNotFound',
          `registry ${this.domain} requires a login`,
          `log in first: docker login ${this.domain}`,
        );
      }
      // Sent only to the registry's own origin (see send), over whatever the user chose for it.
      this.basic = basicAuth(creds);
      return;
    }
    throw new RegistryError(
      'denied',
      'imageNotFound',
      `registry ${this.domain} refused access and offered no supported authentication (${String(header ?? 'no WWW-Authenticate')})`,
      `log in first: docker login ${this.domain}`,
    );
  }

  private async fetchToken(
    realm: URL,
    service: string | undefined,
    scope: string,
    creds: Credentials | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ value: string; expiresIn: number }> {
    if (creds?.registryToken) return { value: creds.registryToken, expiresIn: 3600 };
    const basic = creds?.username || creds?.password ? basicAuth(creds) : undefined;
    if ((creds?.identityToken || basic) && !mayReceiveCredentials(realm, this.base)) {
      throw new RegistryError(
        'protocol',
        'badImage',
        `registry ${this.domain} names ${realm.origin} as its token service: img2vm sends credentials to another host only over HTTPS`,
        `serve that token service over HTTPS, or remove the credentials for ${this.domain} from the docker config to pull anonymously`,
      );
    }
    let res: IncomingMessage;
    if (creds?.identityToken) {
      // OAuth2 refresh-token grant, as docker does for identity tokens.
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: creds.identityToken,
        client_id: 'img2vm',
        scope,
      });
      if (service) form.set('service', service);
      res = await this.sendRetrying(
        'POST',
        realm,
        { 'Content-Type': 'application/x-www-form-urlencoded' },
        () => undefined,
        realm.origin,
        signal,
        Buffer.from(form.toString()),
      );
    } else {
      const u = new URL(realm);
      if (service) u.searchParams.set('service', service);
      u.searchParams.set('scope', scope);
      res = await this.sendRetrying('GET', u, {}, () => basic, u.origin, signal);
    }
    return this.readToken(res, realm, creds);
  }

  private async readToken(
    res: IncomingMessage,
    realm: URL,
    creds: Credentials | undefined,
  ): Promise<{ value: string; expiresIn: number }> {
    const status = res.statusCode ?? 0;
    if (status === 401 || status === 403) {
      res.resume();
      throw new RegistryError(
        'denied',
        'imageNotFound',
        creds
          ? `registry ${this.domain} refused the credentials from the docker config`
          : `registry ${this.domain} refused an anonymous token`,
        `log in (again): docker login ${this.domain}`,
      );
    }
    if (status !== 200) {
      res.resume();
      throw new RegistryError(
        'protocol',
        'imageNotFound',
        `the token service of ${this.domain} answered HTTP ${status}`,
        'try again later',
      );
    }
    const body = await readLimited(res, 1024 * 1024, `the token from ${realm.host}`);
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      throw new RegistryError(
        'protocol',
        'badImage',
        `the token service of ${this.domain} answered something other than JSON`,
        'the registry is misconfigured',
      );
    }
    const t = TokenSchema.safeParse(json);
    if (!t.success)
      throw new RegistryError(
        'protocol',
        'badImage',
        `the token service of ${this.domain} answered an invalid token: ${formatZodError(t.error)}`,
        'the registry is misconfigured',
      );
    return { value: (t.data.token || t.data.access_token)!, expiresIn: t.data.expires_in ?? 60 };
  }

  /** A request in a repository's scope (pull, or pull,push), authenticating once on a 401. */
  async request(
    method: string,
    path: string | URL,
    repo: string,
    headers: Record<string, string> = {},
    signal = this.o.signal,
    opts: RequestOptions = {},
  ): Promise<IncomingMessage> {
    const url = new URL(path, this.base);
    const scope = RegistryClient.scope(repo, opts.push);
    const tries = opts.retry === false ? 1 : this.tries;
    const go = () =>
      this.sendRetrying(method, url, headers, () => this.authHeader(scope), this.base.origin, signal, opts.body, tries);
    let res = await go();
    if (res.statusCode === 401) {
      const challenge = res.headers['www-authenticate'];
      res.resume();
      this.tokens.delete(scope);
      await this.authenticate(challenge, scope, signal);
      res = await go();
    }
    return res;
  }

  /** Turns a final non-success answer into an error that says what the registry said. */
  async failure(res: IncomingMessage, what: string): Promise<RegistryError> {
    const status = res.statusCode ?? 0;
    const detail = await errorDetail(res);
    const said = detail ? ` (${detail})` : '';
    if (status === 401 || status === 403) {
      return new RegistryError(
        'denied',
        'imageNotFound',
        `registry ${this.domain} denied access to ${what}${said}`,
        `the repository does not exist or needs a login: docker login ${this.domain}`,
      );
    }
    if (status === 404)
      return new RegistryError(
        'notFound',
        'imageNotFound',
        `${what} is not in registry ${this.domain}${said}`,
        'check the name and tag',
      );
    if (status === 429 || status >= 500) {
      return new RegistryError(
        'unreachable',
        'imageNotFound',
        `registry ${this.domain} answered HTTP ${status} for ${what}, ${this.tries} times${said}`,
        'the registry is overloaded or failing; try again later',
      );
    }
    return new RegistryError(
      'protocol',
      'imageNotFound',
      `registry ${this.domain} answered HTTP ${status} for ${what}${said}`,
      'check the reference',
    );
  }

  // ---- API ----

  /** Fetches a manifest or index (at most 4 MiB), retrying a body that breaks off. */
  async getManifest(
    repo: string,
    reference: string,
  ): Promise<{ bytes: Buffer; contentType?: string; digest?: string }> {
    const what = `manifest ${repo}:${reference}`;
    for (let attempt = 1; ; attempt++) {
      const res = await this.request('GET', `/v2/${repo}/manifests/${reference}`, repo, { Accept: MANIFEST_ACCEPT });
      if (res.statusCode !== 200) throw await this.failure(res, what);
      const len = Number(res.headers['content-length']);
      if (len > MAX_JSON) {
        res.destroy();
        throw new RegistryError(
          'protocol',
          'badImage',
          `registry ${this.domain} sent a ${len}-byte ${what}; more than ${MAX_JSON} bytes is refused`,
          'the registry is misconfigured or hostile',
        );
      }
      try {
        const bytes = await readLimited(res, MAX_JSON, `${what} from ${this.domain}`);
        const dh = res.headers['docker-content-digest'];
        return {
          bytes,
          contentType: res.headers['content-type'],
          digest: typeof dh === 'string' ? dh.trim() : undefined,
        };
      } catch (e) {
        if (isRetryable(e) && attempt < this.tries) {
          await this.backoff(attempt, undefined, `${(e as Error).message} reading ${what}`, this.o.signal);
          continue;
        }
        throw this.networkError(e, new URL(this.base), this.o.signal);
      }
    }
  }

  /**
   * Downloads a blob into w, resuming with a Range request after a broken connection when the
   * registry answers 206, starting over when it answers 200. Never accepts more bytes than declared.
   */
  async downloadBlob(
    repo: string,
    digest: string,
    w: BlobWriter,
    onProgress: (bytes: number) => void,
    signal = this.o.signal,
  ): Promise<void> {
    const what = `blob ${digest}`;
    for (let attempt = 1; ; attempt++) {
      const headers: Record<string, string> = {};
      if (w.offset > 0) headers.Range = `bytes=${w.offset}-`;
      const res = await this.request('GET', `/v2/${repo}/blobs/${digest}`, repo, headers, signal);
      const status = res.statusCode ?? 0;
      if (status === 206) {
        const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
        if (!m || Number(m[1]) !== w.offset) {
          res.resume();
          await w.reset();
          this.o.log?.(`${this.domain}: ${what}: unusable partial answer; starting over`);
          continue;
        }
      } else if (status === 200) {
        if (w.offset > 0) {
          this.o.log?.(`${this.domain}: ${what}: no range support; starting over`);
          await w.reset();
        }
      } else {
        throw await this.failure(res, what);
      }
      const len = Number(res.headers['content-length']);
      if (Number.isFinite(len) && w.offset + len > w.size) {
        res.destroy();
        throw tooLarge(`${what} from ${this.domain}`, w.size);
      }
      try {
        for await (const chunk of res) {
          await w.write(chunk as Buffer);
          onProgress(w.offset);
        }
      } catch (e) {
        if (isRetryable(e) && attempt < this.tries && !signal?.aborted) {
          await this.backoff(
            attempt,
            undefined,
            `${(e as Error).message} after ${w.offset} of ${w.size} bytes of ${what}`,
            signal,
          );
          continue;
        }
        throw this.networkError(e, this.base, signal);
      }
      if (w.offset < w.size) {
        if (attempt < this.tries) {
          await this.backoff(
            attempt,
            undefined,
            `connection ended after ${w.offset} of ${w.size} bytes of ${what}`,
            signal,
          );
          continue;
        }
        throw truncated(`${what} from ${this.domain}`, w.offset, w.size);
      }
      return;
    }
  }
}
