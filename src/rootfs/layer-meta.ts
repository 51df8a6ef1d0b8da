// Turns a layer entry's header into node metadata, refusing numbers no Linux file system can hold and dropping xattrs Linux would reject.
import { Img2vmError } from '../core/errors.js';
import { aclTextToXattr } from './acl.js';
import type { TarHeader } from './tar.js';
import { showPath } from './tree-path.js';
import type { NodeMeta } from './tree.js';

const HINT = 'the image contains an entry that cannot exist on a Linux file system; rebuild the image without it';

/** uid_t is 32 bits and (uid_t)-1 means "no change" to chown(2), so it names nobody. */
export const MAX_ID = 0xfffffffe;
/** Linux dev_t: 12 bits of major, 20 of minor. */
export const MAX_MAJOR = 0xfff;
export const MAX_MINOR = 0xfffff;
/** XATTR_NAME_MAX and XATTR_SIZE_MAX. */
export const XATTR_NAME_MAX = 255;
export const XATTR_SIZE_MAX = 65536;

const NAMESPACES = ['security.', 'trusted.', 'user.'];
const POSIX_ACLS = ['system.posix_acl_access', 'system.posix_acl_default'];

function checkId(v: number, what: string, h: TarHeader): void {
  if (!Number.isSafeInteger(v) || v < 0 || v > MAX_ID) {
    throw new Img2vmError('badImage', `layer entry "${showPath(h.path)}" has ${what} ${v}; Linux ids are 0 to ${MAX_ID}`, HINT);
  }
}

export function checkDevice(h: TarHeader): void {
  if (h.devmajor < 0 || h.devmajor > MAX_MAJOR || h.devminor < 0 || h.devminor > MAX_MINOR) {
    throw new Img2vmError('badImage', `device node "${showPath(h.path)}" has number ${h.devmajor}:${h.devminor}; Linux allows majors to ${MAX_MAJOR} and minors to ${MAX_MINOR}`, HINT);
  }
}

/** What a layer entry becomes, for the xattr rules that depend on it. */
export type EntryKind = 'file' | 'dir' | 'other';

/** Why Linux would refuse to set this xattr on a node of this kind, or undefined if it would not. */
function xattrProblem(name: string, value: Buffer, kind: EntryKind): string | undefined {
  if (name.length === 0 || name.length > XATTR_NAME_MAX) return `its name is ${name.length} bytes (1 to ${XATTR_NAME_MAX} allowed)`;
  if (name.includes('\0')) return 'its name contains a NUL byte';
  if (value.length > XATTR_SIZE_MAX) return `its value is ${value.length} bytes (at most ${XATTR_SIZE_MAX})`;
  if (POSIX_ACLS.includes(name)) {
    // posix_acl_xattr_header (version 2) then 8-byte entries; the kernel refuses anything else.
    if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== 2) return 'it is not a POSIX ACL in the xattr format';
    if (name === 'system.posix_acl_default' && kind !== 'dir') return 'a default ACL belongs on a directory';
    return undefined;
  }
  if (!NAMESPACES.some((ns) => name.startsWith(ns) && name.length > ns.length)) return 'Linux has no such xattr namespace';
  // The kernel refuses user.* on symlinks and device nodes (and would not show them).
  if (name.startsWith('user.') && kind === 'other') return 'user xattrs exist only on regular files and directories';
  return undefined;
}

/** The entry's metadata. Ids out of range are a badImage error; unusable xattrs are dropped with a warning each. */
export function headerMeta(h: TarHeader, warn: (msg: string) => void, kind: EntryKind): NodeMeta {
  checkId(h.uid, 'uid', h);
  checkId(h.gid, 'gid', h);
  const meta: NodeMeta = { mode: h.mode & 0o7777, uid: h.uid, gid: h.gid, mtime: { ...h.mtimeExact }, xattrs: validXattrs(h, warn, kind) };
  if (h.atime) meta.atime = { ...h.atime };
  if (h.ctime) meta.ctime = { ...h.ctime };
  return meta;
}

export function validXattrs(h: TarHeader, warn: (msg: string) => void, kind: EntryKind): Map<string, Buffer> {
  if (h.xattrs.size === 0 && !h.aclText) return h.xattrs;
  const out = new Map<string, Buffer>();
  const all = new Map(h.xattrs);
  // ACLs in text form count only where the same ACL is not there as an xattr already (GNU tar --acls --xattrs writes both).
  for (const [which, text] of Object.entries(h.aclText ?? {})) {
    const name = `system.posix_acl_${which}`;
    if (text === undefined || all.has(name) || text.trim() === '') continue;
    const v = aclTextToXattr(text);
    if (typeof v === 'string') warn(`dropping the ${which} ACL of "${showPath(h.path)}": ${v}`);
    else all.set(name, v);
  }
  for (const [name, value] of all) {
    const why = xattrProblem(name, value, kind);
    if (why) warn(`dropping extended attribute "${showPath(name)}" of "${showPath(h.path)}": ${why}`);
    else out.set(name, value);
  }
  return out;
}
