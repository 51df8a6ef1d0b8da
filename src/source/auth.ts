// Registry credentials as docker finds them (~/.docker/config.json auths, credsStore, credHelpers), and where they may be sent.
import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { Img2vmError } from '../core/errors.js';
import { runCredentialHelper } from '../tools/index.js';
import { formatZodError } from './manifest.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (docker login with an identity provider). */
  identityToken?: string;
  /** A bearer token to send as is. */
  registryToken?: string;
}

export function basicAuth(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`;
}

/**
 * Whether a token service may receive a registry's credentials: over HTTPS wherever it is, over plain HTTP only
 * on the registry's own host, and only when the registry itself is plain HTTP (the user chose that for it).
 * Anything else would put the credentials on the wire in the clear, to a host the registry merely named.
 */
export function mayReceiveCredentials(target: URL, registry: URL): boolean {
  if (target.protocol === 'https:') return true;
  return (
    target.protocol === 'http:' &&
    registry.protocol === 'http:' &&
    target.hostname.toLowerCase() === registry.hostname.toLowerCase()
  );
}

const AuthEntrySchema = z
  .object({
    auth: z.string().optional(),
    username: z.string().optional(),
    password: z.string().optional(),
    identitytoken: z.string().optional(),
    registrytoken: z.string().optional(),
  })
  .passthrough();

const ConfigSchema = z
  .object({
    auths: z.record(z.string(), AuthEntrySchema).optional(),
    credsStore: z.string().optional(),
    credHelpers: z.record(z.string(), z.string()).optional(),
  })
  .passthrough();

const HelperOutputSchema = z.object({ Username: z.string().optional(), Secret: z.string() }).passthrough();

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker'), 'config.json');
}

/** The key docker files a registry's credentials under: Docker Hub keeps its historical URL. */
export function credentialKey(domain: string): string {
  return domain === 'docker.io' ? 'https://index.docker.io/v1/' : domain;
}

/** auths keys may be URLs (https://host/v1/) or bare hosts; compare the host part. */
function keyHost(key: string): string {
  const h = key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
  return h === 'index.docker.io' || h === 'registry-1.docker.io' ? 'docker.io' : h;
}

export interface CredentialOptions {
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  warn?: (msg: string) => void;
}

/** Credentials for a registry domain, or undefined to go anonymous. */
export async function lookupCredentials(
  domain: string,
  opts: CredentialOptions = {},
): Promise<Credentials | undefined> {
  const path = dockerConfigPath(opts.env);
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  if (st.size > 4 * 1024 * 1024)
    throw new Img2vmError('usage', `docker config ${path} is larger than 4 MiB`, 'check that file');
  let data: unknown;
  try {
    data = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new Img2vmError(
      'usage',
      `docker config ${path} is not valid JSON: ${(e as Error).message}`,
      'fix or remove that file',
    );
  }
  const parsed = ConfigSchema.safeParse(data);
  if (!parsed.success) {
    throw new Img2vmError(
      'usage',
      `docker config ${path} is invalid: ${formatZodError(parsed.error)}`,
      'fix or remove that file',
    );
  }
  const cfg = parsed.data;
  const key = credentialKey(domain);
  const helper = cfg.credHelpers?.[key] ?? cfg.credHelpers?.[domain];
  if (helper) return fromHelper(helper, key, opts);
  if (cfg.credsStore) {
    const c = await fromHelper(cfg.credsStore, key, opts);
    if (c) return c;
  }
  const entry = cfg.auths?.[key] ?? Object.entries(cfg.auths ?? {}).find(([k]) => keyHost(k) === domain)?.[1];
  if (!entry) return undefined;
  const c: Credentials = {};
  if (entry.auth) {
    const dec = Buffer.from(entry.auth, 'base64').toString('utf8');
    const i = dec.indexOf(':');
    if (i < 0)
      throw new Img2vmError(
        'usage',
        `docker config ${path}: the auth of ${key} is not base64 of user:password`,
        `log in again: docker login ${domain}`,
      );
    c.username = dec.slice(0, i);
    c.password = dec.slice(i + 1);
  }
  if (entry.username) c.username = entry.username;
  if (entry.password) c.password = entry.password;
  if (entry.identitytoken) c.identityToken = entry.identitytoken;
  if (entry.registrytoken) c.registryToken = entry.registrytoken;
  return Object.keys(c).length ? c : undefined;
}

async function fromHelper(
  helper: string,
  serverUrl: string,
  opts: CredentialOptions,
): Promise<Credentials | undefined> {
  let r;
  try {
    r = await runCredentialHelper(helper, 'get', serverUrl, { signal: opts.signal });
  } catch (e) {
    if (e instanceof Img2vmError && e.kind === 'toolMissing') {
      opts.warn?.(`${e.message}; pulling anonymously`);
      return undefined;
    }
    throw e;
  }
  if (r.exitCode !== 0) {
    const out = `${r.stdout} ${r.stderr}`.trim();
    if (/credentials not found/i.test(out)) return undefined;
    throw new Img2vmError(
      'usage',
      `credential helper docker-credential-${helper} failed for ${serverUrl}: ${out || `exit ${r.exitCode}`}`,
      `check it with: echo ${serverUrl} | docker-credential-${helper} get`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(r.stdout);
  } catch {
    throw new Img2vmError(
      'usage',
      `credential helper docker-credential-${helper} printed something other than JSON`,
      `check it with: echo ${serverUrl} | docker-credential-${helper} get`,
    );
  }
  const out = HelperOutputSchema.safeParse(data);
  if (!out.success)
    throw new Img2vmError(
      'usage',
      `credential helper docker-credential-${helper} printed JSON without Secret`,
      'the helper is broken',
    );
  // docker's convention: the user name "<token>" marks an identity token rather than a password.
  if (out.data.Username === '<token>') return { identityToken: out.data.Secret };
  return { username: out.data.Username ?? '', password: out.data.Secret };
}
