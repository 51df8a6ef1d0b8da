// Edits of the image's account files (passwd, group, shadow, gshadow) for --password and --user, as pure text changes.
import { Img2vmError } from '../../core/errors.js';
import { setRootPassword } from '../credentials.js';

export interface CurrentFile {
  content: string;
  mode: number;
  uid: number;
  gid: number;
}

/** Reads a file of the flattened image (through the in-root resolver); undefined when it is missing. */
export type ReadGuestFile = (path: string) => CurrentFile | undefined;

export interface GuestFile {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  content: string;
}

export interface AccountEdits {
  /** Days since the epoch, for shadow's last-change field. */
  epochDays: number;
  /** A crypt(3) hash for root; absent: root's entry is left as it is. */
  rootPasswordHash?: string;
  user?: {
    name: string;
    /** Absent: the user has no password login ("*", which sshd still lets log in with a key). */
    passwordHash?: string;
    /** Added to this group's members when the image has it. */
    sudoGroup: string;
  };
  /** How /etc/shadow is created when the image has none. */
  shadow: { mode: number; group: string | null };
}

export interface AccountResult {
  files: GuestFile[];
  /** Where the --user lives once the edits are applied. */
  user?: { name: string; uid: number; gid: number; home: string; created: boolean };
  root: { home: string };
  warnings: string[];
}

const MAX_ACCOUNT_FILE = 8 * 1024 * 1024;
const UID_MIN = 1000;
const UID_MAX = 59999;

function lines(text: string): string[] {
  const l = text.split('\n');
  if (l.at(-1) === '') l.pop();
  return l;
}

function join(l: string[]): string {
  return l.length ? `${l.join('\n')}\n` : '';
}

function fields(line: string): string[] {
  return line.split(':');
}

function read(readFile: ReadGuestFile, path: string): CurrentFile | undefined {
  const f = readFile(path);
  if (f && f.content.length > MAX_ACCOUNT_FILE)
    throw new Img2vmError(
      'badImage',
      `the image's ${path} is larger than ${MAX_ACCOUNT_FILE} bytes`,
      'that is not an account file; check the image',
    );
  return f;
}

function out(
  path: string,
  content: string,
  current: CurrentFile | undefined,
  fallback: { mode: number; gid: number },
): GuestFile {
  // An existing file keeps its mode and owner (shadow is 0640 root:shadow on Debian, 0000 root:root on Fedora).
  return current
    ? { path, content, mode: current.mode, uid: current.uid, gid: current.gid }
    : { path, content, mode: fallback.mode, uid: 0, gid: fallback.gid };
}

/** Adds `name` to the member list (4th field of group, also of gshadow) of `group`; whether anything changed. */
function addMember(l: string[], group: string, name: string): boolean {
  const i = l.findIndex((x) => fields(x)[0] === group);
  if (i < 0) return false;
  const f = fields(l[i]!);
  while (f.length < 4) f.push('');
  const members = f[3]!.split(',').filter(Boolean);
  if (members.includes(name)) return false;
  members.push(name);
  f[3] = members.join(',');
  l[i] = f.join(':');
  return true;
}

function shellFor(shells: CurrentFile | undefined): string {
  const listed = new Set(lines(shells?.content ?? '').map((s) => s.trim()));
  return listed.has('/bin/bash') ? '/bin/bash' : '/bin/sh';
}

function homeOf(entry: string[] | undefined, fallback: string): string {
  const home = entry?.[5];
  if (home === undefined || home === '') return fallback;
  if (!home.startsWith('/') || home.split('/').includes('..')) {
    throw new Img2vmError(
      'badImage',
      `the image's /etc/passwd gives ${entry![0]} the home directory ${JSON.stringify(home)}`,
      'fix the account in the image',
    );
  }
  return home;
}

/** The ids and home of an account the image already has, which must be a regular user's. */
function existingUser(
  name: string,
  existing: string[],
  warnings: string[],
): { uid: number; gid: number; home: string } {
  const uid = Number(existing[2]);
  const gid = Number(existing[3]);
  if (!Number.isInteger(uid) || uid < UID_MIN || uid > UID_MAX) {
    throw new Img2vmError(
      'usage',
      `--user ${name}: the image has ${name} as a system account (uid ${existing[2]})`,
      'pick another name',
    );
  }
  if (!/^\d+$/.test(existing[3] ?? ''))
    throw new Img2vmError(
      'badImage',
      `the image's /etc/passwd gives ${name} no valid group id`,
      'fix the account in the image',
    );
  if (/(nologin|false)$/.test(existing[6] ?? ''))
    warnings.push(`${name} exists in the image with the shell ${existing[6]}: it cannot log in until that is changed`);
  return { uid, gid, home: homeOf(existing, `/home/${name}`) };
}

/** The first id from 1000 free as both a user and a group id, for a new account whose name no group has. */
function freeId(passwd: string[], group: string[], name: string): number {
  const uids = new Set(passwd.map((l) => Number(fields(l)[2])));
  const gids = new Set(group.map((l) => Number(fields(l)[2])));
  if (group.some((l) => fields(l)[0] === name))
    throw new Img2vmError('usage', `--user ${name}: the image already has a group of that name`, 'pick another name');
  let n = UID_MIN;
  while (n <= UID_MAX && (uids.has(n) || gids.has(n))) n++;
  if (n > UID_MAX)
    throw new Img2vmError(
      'badImage',
      'the image has no free user id between 1000 and 59999',
      'remove unused accounts from the image',
    );
  return n;
}

/** Applies the account edits to the image's files; the result replaces them whole. */
export function applyAccounts(edits: AccountEdits, readFile: ReadGuestFile): AccountResult {
  const warnings: string[] = [];
  const passwdF = read(readFile, '/etc/passwd');
  const groupF = read(readFile, '/etc/group');
  const shadowF = read(readFile, '/etc/shadow');
  const gshadowF = read(readFile, '/etc/gshadow');
  const passwd = lines(passwdF?.content ?? '');
  const group = lines(groupF?.content ?? '');
  let shadowText = shadowF?.content ?? '';
  const gshadow = gshadowF ? lines(gshadowF.content) : undefined;
  const shadowGid = edits.shadow.group
    ? Number(fields(group.find((g) => fields(g)[0] === edits.shadow.group) ?? '::0')[2]) || 0
    : 0;
  const rootEntry = passwd.map(fields).find((f) => f[0] === 'root');
  const result: AccountResult = { files: [], root: { home: homeOf(rootEntry, '/root') }, warnings };
  let passwdChanged = false;
  let groupChanged = false;
  let shadowChanged = false;

  if (edits.rootPasswordHash !== undefined) {
    shadowText = setRootPassword(shadowText, edits.rootPasswordHash, edits.epochDays);
    shadowChanged = true;
  }

  const u = edits.user;
  if (u) {
    const existing = passwd.map(fields).find((f) => f[0] === u.name);
    let uid: number;
    let gid: number;
    let home: string;
    if (existing) {
      ({ uid, gid, home } = existingUser(u.name, existing, warnings));
    } else {
      const n = freeId(passwd, group, u.name);
      uid = gid = n;
      home = `/home/${u.name}`;
      passwd.push(`${u.name}:x:${uid}:${gid}::${home}:${shellFor(read(readFile, '/etc/shells'))}`);
      group.push(`${u.name}:x:${gid}:`);
      gshadow?.push(`${u.name}:!::`);
      passwdChanged = groupChanged = true;
    }
    const shadow = lines(shadowText);
    const si = shadow.findIndex((l) => fields(l)[0] === u.name);
    if (si < 0) shadow.push(`${u.name}:${u.passwordHash ?? '*'}:${edits.epochDays}:0:99999:7:::`);
    else if (u.passwordHash !== undefined) {
      const f = fields(shadow[si]!);
      while (f.length < 9) f.push('');
      f[1] = u.passwordHash;
      f[2] = String(edits.epochDays);
      shadow[si] = f.join(':');
    }
    if (si < 0 || u.passwordHash !== undefined) {
      shadowText = join(shadow);
      shadowChanged = true;
    }
    if (addMember(group, u.sudoGroup, u.name)) groupChanged = true;
    if (gshadow && addMember(gshadow, u.sudoGroup, u.name)) groupChanged = true;
    result.user = { name: u.name, uid, gid, home, created: !existing };
  }

  if (passwdChanged) result.files.push(out('/etc/passwd', join(passwd), passwdF, { mode: 0o644, gid: 0 }));
  if (groupChanged) {
    result.files.push(out('/etc/group', join(group), groupF, { mode: 0o644, gid: 0 }));
    if (gshadow)
      result.files.push(out('/etc/gshadow', join(gshadow), gshadowF, { mode: edits.shadow.mode, gid: shadowGid }));
  }
  if (shadowChanged)
    result.files.push(out('/etc/shadow', shadowText, shadowF, { mode: edits.shadow.mode, gid: shadowGid }));
  return result;
}
