// What the registry client shares with its callers and tests: typed failures, which errors are worth a retry,
// reading error answers, Retry-After and WWW-Authenticate challenges.
import type { IncomingMessage } from 'node:http';
import { Img2vmError, type ExitCodeName } from '../core/errors.js';
import { readLimited } from './digest.js';

export type RegistryFailure = 'unreachable' | 'notFound' | 'denied' | 'protocol';

/** A registry failure; `reason` lets a bare reference tell "no such image" from "no registry". */
export class RegistryError extends Img2vmError {
  constructor(
    readonly reason: RegistryFailure,
    kind: ExitCodeName,
    message: string,
    hint?: string,
    options?: { cause?: unknown },
  ) {
    super(kind, message, hint, options);
  }
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

// DNS failures (ENOTFOUND, EAI_AGAIN) are not retried: without a network they would only delay the error.
const RETRYABLE = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'EHOSTUNREACH',
  'ENETRESET',
]);

export function isRetryable(e: unknown): boolean {
  if (e instanceof Img2vmError) return false;
  const err = e as NodeJS.ErrnoException | null;
  if (!err) return false;
  return RETRYABLE.has(err.code ?? '') || err.message === 'aborted' || /socket hang up/.test(err.message ?? '');
}

/** What a registry said in an error answer: its `errors` codes and messages, else the start of the text. */
export async function errorDetail(res: IncomingMessage): Promise<string> {
  let text: string;
  try {
    text = (await readLimited(res, 64 * 1024, 'an error answer')).toString('utf8');
  } catch {
    res.destroy();
    return '';
  }
  try {
    const j = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    return (j.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
  } catch {
    return text.trim().slice(0, 200);
  }
}

export function retryAfterMs(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const s = Number(v);
  const ms = Number.isFinite(s) ? s * 1000 : Date.parse(v) - Date.now();
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(ms, 0), 60_000);
}

/** Parses WWW-Authenticate: one or more `Scheme k="v", k2=v2` challenges. */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  const re = /\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)|\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?/y;
  let cur: Challenge | undefined;
  let i = 0;
  while (i < header.length) {
    re.lastIndex = i;
    const m = re.exec(header);
    if (!m || m[0].length === 0) {
      i++;
      continue;
    }
    i = re.lastIndex;
    if (m[1] && !(m[2] || m[3] !== undefined)) {
      cur = { scheme: m[1].toLowerCase(), params: {} };
      out.push(cur);
    } else if (m[2] && cur) {
      cur.params[m[2].toLowerCase()] = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : (m[4] ?? '');
    }
  }
  return out;
}

/** A failed exchange as the user should read it: which registry, and what to check. */
export function networkError(e: unknown, domain: string, url: URL, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  if (e instanceof Img2vmError) return e;
  const err = e as NodeJS.ErrnoException;
  const code = err.code ?? '';
  const where = `registry ${domain} (${url.origin})`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new RegistryError(
      'unreachable',
      'imageNotFound',
      `cannot resolve the host of ${where}`,
      'check the name and the network, or use a local source (docker-daemon:, oci:, docker-archive:)',
      { cause: e },
    );
  }
  if (code === 'ECONNREFUSED')
    return new RegistryError(
      'unreachable',
      'imageNotFound',
      `${where} refused the connection`,
      'is the registry running on that port?',
      { cause: e },
    );
  if (code.startsWith('ERR_SSL') || code === 'EPROTO' || /certificate|SSL|TLS/i.test(err.message ?? '')) {
    return new RegistryError(
      'unreachable',
      'imageNotFound',
      `TLS with ${where} failed: ${err.message}`,
      `if it serves plain HTTP, list it in insecureRegistries (${domain})`,
      { cause: e },
    );
  }
  return new RegistryError(
    'unreachable',
    'imageNotFound',
    `cannot reach ${where}: ${err.message}`,
    'check the network and the registry',
    { cause: e },
  );
}
