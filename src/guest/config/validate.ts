// Checks the guest options a user gives (host name, user name, DNS servers, SSH public keys) before they reach a file.
import { isIP } from 'node:net';
import { Img2vmError } from '../../core/errors.js';

/** RFC 1123 labels; 64 characters at most in all, the kernel's limit for a host name. */
export function validateHostname(name: string): string {
  const label = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
  if (name.length === 0 || name.length > 64 || !name.split('.').every((l) => label.test(l))) {
    throw new Img2vmError(
      'usage',
      `invalid --hostname ${JSON.stringify(name)}`,
      'a host name is letters, digits and hyphens (not at either end of a label), labels joined by dots, 64 characters at most',
    );
  }
  return name;
}

/** The names useradd accepts by default on every supported distribution. */
export function validateUserName(name: string): string {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(name)) {
    throw new Img2vmError(
      'usage',
      `invalid --user ${JSON.stringify(name)}`,
      'a user name starts with a lower-case letter or _, then lower-case letters, digits, _ or -, 32 characters at most',
    );
  }
  if (name === 'root')
    throw new Img2vmError(
      'usage',
      '--user root: root is always there',
      "drop --user; --password and --ssh-key set root's login",
    );
  return name;
}

/** --dns may be repeated and each may be a comma list; the result is deduplicated in order. */
export function parseDns(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    for (const part of v.split(',')) {
      const ip = part.trim();
      if (!ip) continue;
      // A zone (fe80::1%eth0) names an interface of the VM, which img2vm cannot know.
      if (!isIP(ip) || ip.includes('%'))
        throw new Img2vmError(
          'usage',
          `invalid --dns ${JSON.stringify(ip)}`,
          'give IPv4 or IPv6 addresses, e.g. --dns 1.1.1.1,2606:4700:4700::1111',
        );
      if (!out.includes(ip)) out.push(ip);
    }
  }
  if (!out.length)
    throw new Img2vmError('usage', '--dns names no server', 'give at least one address, e.g. --dns 1.1.1.1');
  return out;
}

export interface PublicKey {
  type: string;
  /** The base64 key blob, as written. */
  blob: string;
  comment: string;
}

const KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
]);
const MAX_KEY_FILE = 64 * 1024;

/**
 * Reads an OpenSSH public key file (one or more `type base64 [comment]` lines, as ssh-keygen writes and
 * authorized_keys holds). A private key, a PuTTY/RFC 4716 export or anything else is refused with what to do.
 */
export function parseSshKeys(text: string, file: string): PublicKey[] {
  const bad = (why: string, hint: string) => new Img2vmError('usage', `--ssh-key ${file}: ${why}`, hint);
  if (text.length > MAX_KEY_FILE)
    throw bad('the file is too large to be a public key', 'pass the .pub file ssh-keygen wrote');
  if (/PRIVATE KEY-----/.test(text))
    throw bad(
      'this is a private key',
      'pass the public half (the .pub file); a private key must never go into a disk image',
    );
  if (/^---- BEGIN SSH2 PUBLIC KEY ----/m.test(text))
    throw bad('this is an RFC 4716 (PuTTY) export', `convert it with: ssh-keygen -i -f ${file}`);
  const keys: PublicKey[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '').trim();
    if (!line || line.startsWith('#')) continue;
    const where = `line ${i + 1}`;
    const [type = '', blob = '', ...rest] = line.split(/[ \t]+/);
    if (!KEY_TYPES.has(type)) {
      if (type === 'ssh-dss')
        throw bad(`${where}: DSA keys are refused by current OpenSSH`, 'make an Ed25519 key: ssh-keygen -t ed25519');
      if ([blob, ...rest].some((w) => KEY_TYPES.has(w)))
        throw bad(`${where}: authorized_keys options are not supported`, 'give plain public keys, one per line');
      throw bad(
        `${where}: not an OpenSSH public key`,
        'pass the .pub file ssh-keygen wrote (it starts with ssh-ed25519, ssh-rsa or ecdsa-sha2-...)',
      );
    }
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || blob.length % 4 !== 0)
      throw bad(`${where}: the key data is not base64`, 'the file is damaged; copy it again');
    // The blob starts with its own type as an SSH string: a key pasted under the wrong type fails here.
    const raw = Buffer.from(blob, 'base64');
    const len = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
    if (len < 0 || 4 + len > raw.length || raw.toString('latin1', 4, 4 + len) !== type)
      throw bad(`${where}: the key data does not hold a ${type} key`, 'the file is damaged; copy it again');
    // Control characters in a comment would reach a file other tools parse line by line.
    const comment = rest.join(' ').replace(/[\x00-\x1f\x7f]/g, '');
    keys.push({ type, blob, comment });
  }
  if (!keys.length) throw bad('the file holds no public key', 'pass the .pub file ssh-keygen wrote');
  return keys;
}

export function authorizedKeys(keys: readonly PublicKey[]): string {
  return keys.map((k) => `${k.type} ${k.blob}${k.comment ? ` ${k.comment}` : ''}\n`).join('');
}
