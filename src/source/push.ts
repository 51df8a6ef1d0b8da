// Pushes an OCI image (blobs, then the manifest) to a registry over the distribution API: monolithic uploads, bearer or basic auth in a pull,push scope.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { testHook } from '../core/test-hook.js';
import { formatSize } from '../core/units.js';
import { lookupCredentials } from './auth.js';
import { isDigest, sha256 } from './digest.js';
import { errorDetail, isRetryable, RegistryClient, RegistryError, type RequestBody } from './registry.js';
import { canonicalReference, isLoopbackRegistry, parseDockerReference } from './reference.js';

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

/** The push side of one repository; transport, retries and authentication are the registry client's (scope pull,push). */
class Pusher {
  readonly base: URL;

  constructor(
    private readonly client: RegistryClient,
    readonly domain: string,
    readonly repo: string,
    private readonly ctx: RunContext,
  ) {
    this.base = client.base;
  }

  private request(
    method: string,
    url: URL,
    headers: Record<string, string> = {},
    body?: RequestBody,
    retry = true,
  ): Promise<IncomingMessage> {
    return this.client.request(method, url, this.repo, headers, this.ctx.signal, { body, push: true, retry });
  }

  refused(detail: string, cause?: unknown): Img2vmError {
    return new Img2vmError(
      'usage',
      `registry ${this.domain} refused the push to ${this.repo}: ${detail}`,
      `log in with docker login ${this.domain}, or check the repository name`,
      { cause },
    );
  }

  /** The error for a final non-success answer, with what the registry said. */
  async failure(res: IncomingMessage, what: string): Promise<Img2vmError> {
    const status = res.statusCode ?? 0;
    const detail = await errorDetail(res);
    if (status === 401 || status === 403) return this.refused(`${what}: HTTP ${status}${detail ? ` (${detail})` : ''}`);
    return new Img2vmError(
      'toolFailed',
      `registry ${this.domain} failed ${what} of ${this.repo}: HTTP ${status}${detail ? ` (${detail})` : ''}`,
      'check the registry and its logs; try again',
    );
  }

  /** The registry client's errors, said as push errors: a refusal is the user's to fix (log in), the rest a failure. */
  asPushError(e: unknown): unknown {
    if (!(e instanceof RegistryError)) return e;
    if (e.reason === 'denied') return this.refused(e.message, e);
    return new Img2vmError('toolFailed', `${e.message} (pushing ${this.repo})`, e.hint, { cause: e });
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
    const body: RequestBody = b.bytes ?? (() => createReadStream(b.path!));
    for (let attempt = 1; ; attempt++) {
      const start = await this.request(
        'POST',
        new URL(`/v2/${this.repo}/blobs/uploads/`, this.base),
        { 'Content-Length': '0' },
        Buffer.alloc(0),
      );
      if (start.statusCode !== 202) throw await this.failure(start, `to start the upload of blob ${b.digest}`);
      start.resume();
      const loc = start.headers.location;
      if (!loc)
        throw new Img2vmError(
          'toolFailed',
          `registry ${this.domain} started an upload without a Location`,
          'the registry is misconfigured',
        );
      let url: URL;
      try {
        url = new URL(loc, this.base);
      } catch {
        throw new Img2vmError(
          'toolFailed',
          `registry ${this.domain} answered an invalid upload Location`,
          'the registry is misconfigured or hostile',
        );
      }
      if (url.origin !== this.base.origin) {
        throw new Img2vmError(
          'toolFailed',
          `registry ${this.domain} sent the upload to another host (${url.origin})`,
          'the registry is misconfigured or hostile; img2vm sends credentials and data only to the registry itself',
        );
      }
      url.search = `${url.search ? `${url.search}&` : '?'}digest=${encodeURIComponent(b.digest)}`;
      let res: IncomingMessage;
      try {
        res = await this.request(
          'PUT',
          url,
          { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) },
          body,
          false,
        );
      } catch (e) {
        const cause = (e as Error).cause;
        if (e instanceof RegistryError && isRetryable(cause) && attempt < TRIES && !this.ctx.signal.aborted) {
          await this.client.backoff(
            attempt,
            undefined,
            `${(cause as Error).message} uploading ${b.digest}`,
            this.ctx.signal,
          );
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
        await this.client.backoff(attempt, undefined, `HTTP ${s} uploading ${b.digest}`, this.ctx.signal);
        continue;
      }
      throw await this.failure(res, `the upload of blob ${b.digest}`);
    }
  }

  async putManifest(tag: string, m: PushManifest): Promise<string> {
    const url = new URL(`/v2/${this.repo}/manifests/${tag}`, this.base);
    const res = await this.request(
      'PUT',
      url,
      { 'Content-Type': m.mediaType, 'Content-Length': String(m.bytes.length) },
      m.bytes,
    );
    if (res.statusCode !== 201) throw await this.failure(res, `the manifest upload`);
    res.resume();
    const want = sha256(m.bytes);
    const got = res.headers['docker-content-digest'];
    if (typeof got === 'string' && got.trim() && got.trim() !== want) {
      throw new Img2vmError(
        'toolFailed',
        `registry ${this.domain} stored the manifest of ${this.repo}:${tag} as ${got.trim()}, not ${want}`,
        'the registry altered the manifest; check it',
      );
    }
    return want;
  }
}

/**
 * Pushes blobs (skipping those the repository already has) and then the manifest under ref's tag.
 * Returns the canonical reference and the manifest's digest.
 */
export async function pushOciImage(
  ref: string,
  blobs: PushBlob[],
  manifest: PushManifest,
  ctx: RunContext,
  opts: PushOptions = {},
): Promise<{ ref: string; digest: string }> {
  const r = parseDockerReference(ref);
  if (r.digest)
    throw new Img2vmError(
      'usage',
      `--push ${ref}: a push needs a tag, not a digest`,
      'give a reference like registry.example:5000/team/disk:1.0',
    );
  const tag = r.tag ?? 'latest';
  const insecure =
    isLoopbackRegistry(r.domain) ||
    (opts.insecureRegistries ?? []).some((x) => x.replace(/^https?:\/\//, '').replace(/\/+$/, '') === r.domain);
  for (const b of blobs) {
    if (!isDigest(b.digest)) throw new Img2vmError('internal', `blob digest "${b.digest}" is not a sha256 digest`);
    if (!b.bytes && !b.path) throw new Img2vmError('internal', `blob ${b.digest} has neither bytes nor a path`);
    const size = b.bytes ? b.bytes.length : (await stat(b.path!)).size;
    if (size !== b.size)
      throw new Img2vmError('internal', `blob ${b.digest} is ${size} bytes, not the ${b.size} declared`);
  }
  const client = new RegistryClient({
    domain: r.domain,
    plainHttp: !!insecure,
    credentials: () =>
      lookupCredentials(r.domain, {
        env: opts.env,
        signal: ctx.signal,
        warn: (message) => ctx.sink({ type: 'log', level: 'warn', stage: 'output', message }),
      }),
    signal: ctx.signal,
    log: (message) => ctx.sink({ type: 'log', level: 'debug', stage: 'output', message }),
    tries: TRIES,
    backoffMs: opts.backoffMs,
    // After the last byte of a large blob the registry may hash and store it a while before it answers.
    timeoutMs: 120_000,
  });
  const p = new Pusher(client, r.domain, r.path, ctx);
  const log = (message: string) => ctx.sink({ type: 'log', level: 'info', stage: 'output', message });
  let digest: string;
  try {
    for (const b of blobs) {
      if (await p.hasBlob(b.digest)) {
        log(`${b.digest.slice(7, 19)}: already in ${r.domain}/${r.path}`);
        continue;
      }
      await p.uploadBlob(b);
      log(`${b.digest.slice(7, 19)}: pushed ${formatSize(b.size)}`);
      // Blobs are in the registry, the tag not yet (see core/test-hook.ts).
      await testHook('during', 'output/push');
    }
    digest = await p.putManifest(tag, manifest);
  } catch (e) {
    throw p.asPushError(e);
  }
  log(`pushed ${canonicalReference({ domain: r.domain, path: r.path, tag })}@${digest}`);
  return { ref: canonicalReference({ domain: r.domain, path: r.path, tag }), digest };
}
