// Turns a layer entry's header into node metadata, refusing numbers no Linux file system can hold and dropping xattrs Linux would reject.
import { Img2vmError } from '../core/errors.js';
import { accessAclMode, aclTextToXattr, aclXattrProblem, chmodAcl } from './acl.js';
import {
  MAX_ENTRY_XATTR_BYTES,
  MAX_TOTAL_XATTR_BYTES,
  overLimit,
  XATTR_HELD_OVERHEAD,
  xattrDiskBytes,
} from './limits.js';
import type { TarHeader } from './tar.js';
import { showPath } from './tree-path.js';
import { NO_XATTRS, sealMap, type NodeMeta, type Timestamp } from './tree.js';

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
const ACCESS_ACL = 'system.posix_acl_access';
const POSIX_ACLS = [ACCESS_ACL, 'system.posix_acl_default'];

function checkId(v: number, what: string, h: TarHeader): void {
  if (!Number.isSafeInteger(v) || v < 0 || v > MAX_ID) {
    throw new Img2vmError(
      'badImage',
      `layer entry "${showPath(h.path)}" has ${what} ${v}; Linux ids are 0 to ${MAX_ID}`,
      HINT,
    );
  }
}

export function checkDevice(h: TarHeader): void {
  if (h.devmajor < 0 || h.devmajor > MAX_MAJOR || h.devminor < 0 || h.devminor > MAX_MINOR) {
    throw new Img2vmError(
      'badImage',
      `device node "${showPath(h.path)}" has number ${h.devmajor}:${h.devminor}; Linux allows majors to ${MAX_MAJOR} and minors to ${MAX_MINOR}`,
      HINT,
    );
  }
}

/** What a layer entry becomes, for the xattr rules that depend on it ('other': a device node or a fifo). */
export type EntryKind = 'file' | 'dir' | 'symlink' | 'other';

export function entryKind(type: string): EntryKind {
  return type === 'file' || type === 'dir' || type === 'symlink' ? type : 'other';
}

/** Why Linux would refuse to set this xattr on a node of this kind, or undefined if it would not. */
function xattrProblem(name: string, value: Buffer, kind: EntryKind): string | undefined {
  if (name.length === 0 || name.length > XATTR_NAME_MAX)
    return `its name is ${name.length} bytes (1 to ${XATTR_NAME_MAX} allowed)`;
  if (name.includes('\0')) return 'its name contains a NUL byte';
  if (value.length > XATTR_SIZE_MAX) return `its value is ${value.length} bytes (at most ${XATTR_SIZE_MAX})`;
  if (POSIX_ACLS.includes(name)) {
    // set_posix_acl() in fs/posix_acl.c: no ACLs on symlinks, default ACLs on directories only.
    if (kind === 'symlink') return 'Linux has no ACLs on symlinks';
    if (name !== ACCESS_ACL && kind !== 'dir') return 'a default ACL belongs on a directory';
    return aclXattrProblem(value);
  }
  if (!NAMESPACES.some((ns) => name.startsWith(ns) && name.length > ns.length))
    return 'Linux has no such xattr namespace';
  // The kernel refuses user.* on symlinks and device nodes (and would not show them).
  if (name.startsWith('user.') && kind !== 'file' && kind !== 'dir')
    return 'user xattrs exist only on regular files and directories';
  return undefined;
}

/** Distinct metadata and xattr sets kept for sharing; past this, new ones are simply not shared. */
const SHARED_MAX = 4096;
/** xattr sets up to this many bytes are compared for sharing (bigger ones are rare and costly to key). */
const SHARED_XATTR_BYTES = 1024;

/**
 * Hands out metadata shared between entries that have the same, so that a tree of a million files
 * with a few distinct owners, modes and times holds a few metadata objects, not a million (with
 * their times and xattr maps, that was some 300 bytes an entry). What it hands out is frozen (the
 * xattr maps sealed): a node whose metadata changes gets a new object. It also keeps the count of
 * xattr bytes held, for MAX_TOTAL_XATTR_BYTES.
 */
export class MetaCache {
  private readonly metas = new Map<string, NodeMeta>();
  private readonly xattrSets = new Map<string, { id: number; map: Map<string, Buffer> }>();
  private readonly xattrIds = new WeakMap<Map<string, Buffer>, number>([[NO_XATTRS, 0]]);
  /** xattr bytes held, each distinct set once, as MAX_TOTAL_XATTR_BYTES counts them. */
  heldXattrBytes = 0;

  /** The entry's metadata (ids checked; xattrs as given, already checked), with mode in place of the header's. */
  meta(h: TarHeader, xattrs: Map<string, Buffer>, mode: number): NodeMeta {
    const x = this.xattrs(xattrs, h.path);
    const id = this.xattrIds.get(x);
    const m = h.mtimeExact;
    const key =
      id === undefined
        ? undefined
        : `${mode} ${h.uid} ${h.gid} ${m.sec} ${m.nsec} ${time(h.atime)} ${time(h.ctime)} ${id}`;
    const found = key === undefined ? undefined : this.metas.get(key);
    if (found) return found;
    const meta: NodeMeta = { mode, uid: h.uid, gid: h.gid, mtime: Object.freeze({ ...m }), xattrs: x };
    if (h.atime) meta.atime = Object.freeze({ ...h.atime });
    if (h.ctime) meta.ctime = Object.freeze({ ...h.ctime });
    Object.freeze(meta);
    if (key !== undefined && this.metas.size < SHARED_MAX) this.metas.set(key, meta);
    return meta;
  }

  /** A shared (sealed) map equal to xattrs where there is one, counting what is newly held. */
  xattrs(xattrs: Map<string, Buffer>, path: string): Map<string, Buffer> {
    if (xattrs.size === 0) return NO_XATTRS;
    let bytes = 0;
    let key = '';
    for (const [k, v] of xattrs) {
      bytes += xattrDiskBytes(k, v);
      if (bytes <= SHARED_XATTR_BYTES) key += `${k.length} ${k}${v.length} ${v.toString('latin1')}`;
    }
    if (bytes > MAX_ENTRY_XATTR_BYTES) {
      throw overLimit(
        'MAX_ENTRY_XATTR_BYTES',
        MAX_ENTRY_XATTR_BYTES,
        `the extended attributes of "${showPath(path)}" take ${bytes} bytes in ext4 (without the ea_inode feature, which img2vm does not write, one inode and one 4 KiB block hold them)`,
        'remove or shorten some of its extended attributes in the image',
      );
    }
    const shareable = bytes <= SHARED_XATTR_BYTES;
    const found = shareable ? this.xattrSets.get(key) : undefined;
    if (found) return found.map;
    this.heldXattrBytes += bytes + xattrs.size * XATTR_HELD_OVERHEAD;
    if (this.heldXattrBytes > MAX_TOTAL_XATTR_BYTES) {
      throw overLimit(
        'MAX_TOTAL_XATTR_BYTES',
        MAX_TOTAL_XATTR_BYTES,
        `the image's extended attributes take more than ${MAX_TOTAL_XATTR_BYTES} bytes of memory (at "${showPath(path)}")`,
      );
    }
    const map = sealMap(new Map(xattrs));
    if (shareable && this.xattrSets.size < SHARED_MAX) {
      const id = this.xattrSets.size + 1;
      this.xattrSets.set(key, { id, map });
      this.xattrIds.set(map, id);
    }
    return map;
  }
}

function time(t: Timestamp | undefined): string {
  return t ? `${t.sec}.${t.nsec}` : '-';
}

/**
 * The entry's metadata, shared through cache; a symlink's mode is always 0777. Ids out of range are
 * a badImage error; unusable xattrs are dropped with a warning each. An access ACL and the mode
 * end as extracting the layer on Linux leaves them (withAccessAcl).
 */
export function headerMeta(h: TarHeader, warn: (msg: string) => void, kind: EntryKind, cache: MetaCache): NodeMeta {
  checkId(h.uid, 'uid', h);
  checkId(h.gid, 'gid', h);
  const x = validXattrs(h, warn, kind);
  const set = withAccessAcl(h.type === 'symlink' ? 0o777 : h.mode & 0o7777, x, x, aclAsText(h));
  return cache.meta(h, set.xattrs, set.mode);
}

/** Whether the entry's access ACL came as text (SCHILY.acl.access) rather than as the xattr. */
export function aclAsText(h: TarHeader): boolean {
  return h.aclText?.access !== undefined && !h.xattrs.has(ACCESS_ACL);
}

/**
 * The mode and xattrs an inode ends with when an entry sets the xattrs in `set` (valid ones) over
 * mode and the xattrs it has (`all`), as extraction on Linux leaves them. Linux keeps the mode's
 * permission bits and an access ACL in step: setting the ACL sets the bits
 * (posix_acl_update_mode()), chmod(2) rewrites the ACL (posix_acl_chmod()), and an ACL that says no
 * more than the bits is not kept at all. Which one wins is the extractor's order:
 * - an ACL as text (SCHILY.acl.access) is set after the mode by GNU tar --acls and bsdtar, so the
 *   ACL decides the bits. bsdtar writes group:: into the header's mode beside an ACL whose mask::
 *   may be more: a directory 0770 on disk with mask::rwx arrives as 0750 and extracts as 0770.
 * - an ACL as the xattr (SCHILY.xattr.system.posix_acl_access) is set before the mode by Docker's
 *   and containerd's unpackers (setxattr, then chmod) and by GNU tar --xattrs, so the header's
 *   mode decides and the ACL follows it. (bsdtar does not set it from there at all.)
 */
export function withAccessAcl(
  mode: number,
  all: Map<string, Buffer>,
  set: Map<string, Buffer>,
  asText: boolean,
): { mode: number; xattrs: Map<string, Buffer> } {
  const acl = set.get(ACCESS_ACL);
  if (!acl) return { mode, xattrs: all };
  const r = accessAclMode(mode, acl);
  const xattrs = new Map(all);
  if (!r.keep) xattrs.delete(ACCESS_ACL);
  else if (!asText) xattrs.set(ACCESS_ACL, chmodAcl(acl, mode));
  return { mode: asText ? r.mode : mode, xattrs };
}

export function validXattrs(h: TarHeader, warn: (msg: string) => void, kind: EntryKind): Map<string, Buffer> {
  if (h.xattrs.size === 0 && !h.aclText) return NO_XATTRS;
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
