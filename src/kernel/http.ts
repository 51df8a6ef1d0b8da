// A careful HTTP GET for archive files: bounded redirects (http/https only, never https → http), certificate failures named, idle timeouts, retries with backoff, size limits, resumable downloads.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';

export type HttpFailure =
  /** 404/410: the file is not there (an optional suite that does not exist). */
  | 'notFound'
  /** No answer at all: DNS, refused, unreachable, or still failing after the retries. */
  | 'unreachable'
  /** The server broke the protocol or a limit: too large, a bad redirect. Not retried. */
  | 'protocol'
  /** The TLS certificate could not be verified. Not retried, and never retried over plain http. */
  | 'tls';

export class HttpError extends Error {
  constructor(
    readonly reason: HttpFailure,
    readonly url: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export interface HttpOptions {
  signal?: AbortSignal;
  /** Attempts per request (default 4). */
  tries?: number;
  /** First retry delay, doubled each time up to 10 s (default 500 ms). */
  backoffMs?: number;
  /** A connection that sends nothing for this long is dropped and retried (default 30 s). */
  idleTimeoutMs?: number;
  maxRedirects?: number;
  /** Trust only these CAs (PEM) for https, instead of Node's list (tests; users add CAs with NODE_EXTRA_CA_CERTS). */
  ca?: string | Buffer;
  log?: (message: string) => void;
}

/** Whether an error of the network stack is worth another attempt; failing to connect at all is not. */
const TRANSIENT = new Set([
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'HPE_INVALID_CHUNK_SIZE',
]);

/** Certificate errors of Node's TLS stack (and OpenSSL's, for a handshake that cannot even start). */
function tlsFailure(code: string, host: string): string | undefined {
  if (/CERT|SELF_SIGNED|^UNABLE_TO_|^ERR_TLS_|HOSTNAME_MISMATCH/.test(code))
    return `cannot verify the TLS certificate of ${host} (${code})`;
  if (/^ERR_SSL_/.test(code)) return `the TLS handshake with ${host} failed (${code})`;
  return undefined;
}

class Transient extends Error {}

interface Opened {
  res: http.IncomingMessage;
  url: string;
}

function request(url: URL, headers: Record<string, string>, o: HttpOptions): Promise<http.IncomingMessage> {
  const mod = url.protocol === 'https:' ? https : http;
  const idle = o.idleTimeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const tls = url.protocol === 'https:' && o.ca !== undefined ? { ca: o.ca } : {};
    const req = mod.get(
      url,
      { headers: { 'user-agent': 'img2vm', ...headers }, signal: o.signal, timeout: idle, ...tls },
      resolve,
    );
    req.on('timeout', () =>
      req.destroy(Object.assign(new Error(`${url.host} sent nothing for ${idle / 1000} s`), { code: 'ETIMEDOUT' })),
    );
    req.on('error', reject);
  });
}

/** One GET, following redirects; resolves with a 2xx response whose body is unread. */
async function openOnce(url: string, headers: Record<string, string>, o: HttpOptions): Promise<Opened> {
  let u = new URL(url);
  for (let hops = 0; ; hops++) {
    let res: http.IncomingMessage;
    try {
      res = await request(u, headers, o);
    } catch (e) {
      if (o.signal?.aborted) throw o.signal.reason;
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (TRANSIENT.has(code)) throw new Transient(`${(e as Error).message} (${u.href})`);
      const tls = u.protocol === 'https:' ? tlsFailure(code, u.host) : undefined;
      if (tls) throw new HttpError('tls', u.href, tls);
      throw new HttpError('unreachable', u.href, `cannot reach ${u.host}: ${code || (e as Error).message}`);
    }
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      if (hops >= (o.maxRedirects ?? 5))
        throw new HttpError('protocol', url, `${url} redirects more than ${o.maxRedirects ?? 5} times`);
      let next: URL;
      try {
        next = new URL(res.headers.location, u);
      } catch {
        throw new HttpError('protocol', u.href, `${u.href} redirects to an invalid URL`);
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:')
        throw new HttpError('protocol', u.href, `${u.href} redirects to a ${next.protocol} URL`);
      if (u.protocol === 'https:' && next.protocol === 'http:')
        throw new HttpError(
          'protocol',
          u.href,
          `${u.href} redirects to plain http (${next.href}), which would give up what https protects`,
        );
      u = next;
      continue;
    }
    if (status >= 200 && status < 300) return { res, url: u.href };
    res.resume();
    if (status === 404 || status === 410)
      throw new HttpError('notFound', u.href, `${u.href} does not exist (HTTP ${status})`, status);
    if (status === 408 || status === 429 || status >= 500) throw new Transient(`HTTP ${status} from ${u.href}`);
    throw new HttpError('protocol', u.href, `${u.href} answered HTTP ${status}`, status);
  }
}

async function retrying<T>(url: string, o: HttpOptions, attempt: (n: number) => Promise<T>): Promise<T> {
  const tries = Math.max(1, o.tries ?? 4);
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (e) {
      if (o.signal?.aborted) throw o.signal.reason;
      const transient = e instanceof Transient || TRANSIENT.has((e as NodeJS.ErrnoException).code ?? '');
      if (!transient) throw e;
      if (n >= tries)
        throw new HttpError('unreachable', url, `${(e as Error).message}; gave up after ${tries} attempts`);
      const ms = Math.round(Math.min((o.backoffMs ?? 500) * 2 ** (n - 1), 10_000) * (0.75 + Math.random() / 2));
      o.log?.(`${(e as Error).message}; retrying in ${ms} ms (attempt ${n + 1} of ${tries})`);
      await abortableSleep(ms, o.signal);
    }
  }
}

/** Waits ms, or until the signal aborts (then throws its reason): a retry's wait must not hold up an interrupt. */
function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function declaredLength(res: http.IncomingMessage): number | undefined {
  const v = res.headers['content-length'];
  return v !== undefined && /^[0-9]+$/.test(v) ? Number(v) : undefined;
}

/** A small file into memory; more than maxBytes is a protocol error. */
export async function getBuffer(url: string, maxBytes: number, o: HttpOptions = {}): Promise<Buffer> {
  return retrying(url, o, async () => {
    const { res } = await openOnce(url, {}, o);
    const len = declaredLength(res);
    if (len !== undefined && len > maxBytes) {
      res.destroy();
      throw new HttpError('protocol', url, `${url} is ${len} bytes, more than the ${maxBytes} expected`);
    }
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of res as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > maxBytes) {
        res.destroy();
        throw new HttpError('protocol', url, `${url} is more than the ${maxBytes} bytes expected`);
      }
      parts.push(c);
    }
    if (len !== undefined && n !== len) throw new Transient(`connection ended after ${n} of ${len} bytes of ${url}`);
    return Buffer.concat(parts, n);
  });
}

export interface DownloadOptions extends HttpOptions {
  /** The exact size the index promises; more is refused at once, less is retried. */
  size: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Downloads into `file`, hashing on the way; a connection that breaks off resumes with a Range
 * request when the server honours it. Returns the SHA-256 (hex) of exactly `size` bytes.
 */
export async function downloadFile(url: string, file: string, o: DownloadOptions): Promise<string> {
  const fh = await open(file, 'w');
  try {
    let hash = createHash('sha256');
    let done = 0;
    await retrying(url, o, async () => {
      const headers: Record<string, string> = done > 0 ? { range: `bytes=${done}-` } : {};
      const { res } = await openOnce(url, headers, o);
      if (done > 0 && res.statusCode !== 206) {
        // The server sent the whole file again: start over.
        done = 0;
        hash = createHash('sha256');
        await fh.truncate(0);
      } else if (done > 0 && !new RegExp(`^bytes ${done}-`).test(res.headers['content-range'] ?? '')) {
        res.destroy();
        throw new HttpError('protocol', url, `${url} answered a range request with the wrong range`);
      }
      const len = declaredLength(res);
      if (len !== undefined && done + len !== o.size) {
        res.destroy();
        throw new HttpError('protocol', url, `${url} is ${done + len} bytes, but the index says ${o.size}`);
      }
      for await (const c of res as AsyncIterable<Buffer>) {
        if (done + c.length > o.size) {
          res.destroy();
          throw new HttpError('protocol', url, `${url} is more than the ${o.size} bytes the index says`);
        }
        await fh.write(c, 0, c.length, done).catch((e: NodeJS.ErrnoException) => {
          // Say which file: a full file system is reported where it is.
          e.path ??= file;
          throw e;
        });
        hash.update(c);
        done += c.length;
        o.onProgress?.(done, o.size);
      }
      if (done !== o.size) throw new Transient(`connection ended after ${done} of ${o.size} bytes of ${url}`);
    });
    await fh.sync();
    return hash.digest('hex');
  } finally {
    await fh.close();
  }
}
