// Docker image references, normalised exactly as docker does (debian → docker.io/library/debian:latest).
import { Img2vmError } from '../core/errors.js';

export interface DockerReference {
  /** The registry as docker names it: docker.io, localhost:5000, [::1]:5000. */
  domain: string;
  /** The repository path inside the registry: library/debian. */
  path: string;
  /** The tag; 'latest' when neither a tag nor a digest was given. */
  tag?: string;
  digest?: string;
}

// The grammar of github.com/distribution/reference.
const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|[-]+)';
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOST = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])`;
const DOMAIN = `${HOST}(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const DOMAIN_RE = new RegExp(`^${DOMAIN}$`);
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const DIGEST_RE = new RegExp(`^${DIGEST}$`);
const MAX_NAME = 255;

function invalid(s: string, why: string): Img2vmError {
  return new Img2vmError(
    'usage',
    `invalid image reference "${s}": ${why}`,
    'references look like debian, debian:bookworm, registry.example:5000/team/app:1.0 or name@sha256:…',
  );
}

/** Parses and normalises a reference; errors are usage errors that say what is wrong. */
export function parseDockerReference(s: string): DockerReference {
  if (!s) throw invalid(s, 'it is empty');
  if (/^[a-f0-9]{64}$/.test(s)) throw invalid(s, 'a 64-digit hex string is an image ID, not a repository name');
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw invalid(s, `"${digest}" is not a digest`);
    if (!/^sha256:[a-f0-9]{64}$/.test(digest))
      throw invalid(s, `only sha256 digests (64 lowercase hex digits) are supported, not "${digest}"`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw invalid(s, `"${tag}" is not a valid tag`);
  }
  const { domain, path } = splitDomain(rest);
  if (path !== path.toLowerCase()) throw invalid(s, 'the repository name must be lowercase');
  if (!DOMAIN_RE.test(domain)) throw invalid(s, `"${domain}" is not a valid registry host`);
  if (!PATH_RE.test(path)) throw invalid(s, `"${path}" is not a valid repository name`);
  if (domain.length + 1 + path.length > MAX_NAME) throw invalid(s, `the name is longer than ${MAX_NAME} characters`);
  if (!tag && !digest) tag = 'latest';
  return { domain, path, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** docker's splitDockerDomain: the first component is a registry only if it looks like a host. */
function splitDomain(name: string): { domain: string; path: string } {
  const i = name.indexOf('/');
  const first = name.slice(0, i);
  let domain: string;
  let path: string;
  if (i < 0 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = 'docker.io';
    path = name;
  } else {
    domain = first;
    path = name.slice(i + 1);
  }
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  return { domain, path };
}

/** docker.io/library/debian:latest, or …@sha256:… */
export function canonicalReference(r: DockerReference): string {
  return `${r.domain}/${r.path}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/** The name docker shows: debian:latest rather than docker.io/library/debian:latest. */
export function familiarReference(r: DockerReference): string {
  let name = `${r.domain}/${r.path}`;
  if (r.domain === 'docker.io')
    name = r.path.startsWith('library/') && r.path.indexOf('/', 8) < 0 ? r.path.slice(8) : r.path;
  return `${name}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/** The host that serves the registry API. */
export function apiHost(domain: string): string {
  return domain === 'docker.io' ? 'registry-1.docker.io' : domain;
}

/** Loopback registries speak plain HTTP without asking, as the docker daemon allows. */
export function isLoopbackRegistry(domain: string): boolean {
  const host = domain.startsWith('[') ? domain.slice(1, domain.indexOf(']')) : domain.replace(/:[0-9]+$/, '');
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
