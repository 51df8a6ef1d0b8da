// Converts POSIX ACLs from the text form tar archives carry (SCHILY.acl.*) to the system.posix_acl_* xattr value the kernel takes.

/** posix_acl_xattr tags. */
const TAG = { user_obj: 0x01, user: 0x02, group_obj: 0x04, group: 0x08, mask: 0x10, other: 0x20 } as const;
const UNDEFINED_ID = 0xffffffff;

interface AclEntry {
  tag: number;
  perm: number;
  id: number;
}

/**
 * The xattr value (version 2 header, then 8-byte entries in the kernel's order) for an ACL in the
 * long or short text form of acl(5), with star's optional fourth field (the numeric id). A
 * qualifier that is a name rather than a number cannot be resolved without the image's passwd and
 * is reported, as is any other problem: the result is then a string saying why.
 */
export function aclTextToXattr(text: string): Buffer | string {
  const entries: AclEntry[] = [];
  for (const raw of text.split(/[\n,]/)) {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') continue;
    const f = line.split(':');
    if (f.length < 3 || f.length > 4) return `"${line}" is not an ACL entry`;
    const [tagText, qualifier, permText, idText] = f as [string, string, string, string | undefined];
    const perm = parsePerm(permText);
    if (perm === undefined) return `"${line}" has bad permissions`;
    const base = ({ u: 'user', g: 'group', m: 'mask', o: 'other' } as Record<string, string>)[tagText] ?? tagText;
    let tag: number;
    let id = UNDEFINED_ID;
    const named = qualifier !== '';
    if (base === 'user' || base === 'group') {
      tag = named ? (base === 'user' ? TAG.user : TAG.group) : base === 'user' ? TAG.user_obj : TAG.group_obj;
      if (named) {
        const num = /^[0-9]{1,10}$/.test(idText ?? '')
          ? Number(idText)
          : /^[0-9]{1,10}$/.test(qualifier)
            ? Number(qualifier)
            : NaN;
        if (!(num >= 0 && num < UNDEFINED_ID)) return `"${line}" names ${base} "${qualifier}" without a numeric id`;
        id = num;
      }
    } else if (base === 'mask' || base === 'other') {
      if (named) return `"${line}" has a qualifier`;
      tag = base === 'mask' ? TAG.mask : TAG.other;
    } else return `"${line}" has an unknown tag`;
    entries.push({ tag, perm, id });
  }
  entries.sort((a, b) => a.tag - b.tag || a.id - b.id);
  const count = (t: number): number => entries.filter((e) => e.tag === t).length;
  if (count(TAG.user_obj) !== 1 || count(TAG.group_obj) !== 1 || count(TAG.other) !== 1)
    return 'an ACL needs exactly one user::, group:: and other:: entry';
  if (count(TAG.mask) > 1 || (count(TAG.mask) === 0 && (count(TAG.user) > 0 || count(TAG.group) > 0)))
    return 'an ACL with named entries needs one mask:: entry';
  for (let i = 1; i < entries.length; i++) {
    if (entries[i]!.tag === entries[i - 1]!.tag && entries[i]!.id === entries[i - 1]!.id)
      return 'an ACL names the same user or group twice';
  }
  const out = Buffer.alloc(4 + 8 * entries.length);
  out.writeUInt32LE(2, 0);
  entries.forEach((e, i) => {
    out.writeUInt16LE(e.tag, 4 + 8 * i);
    out.writeUInt16LE(e.perm, 6 + 8 * i);
    out.writeUInt32LE(e.id, 8 + 8 * i);
  });
  return out;
}

function parsePerm(s: string): number | undefined {
  if (/^[0-7]$/.test(s)) return Number(s);
  let p = 0;
  for (const c of s) {
    if (c === 'r') p |= 4;
    else if (c === 'w') p |= 2;
    else if (c === 'x') p |= 1;
    else if (c !== '-') return undefined;
  }
  return s.length > 0 && s.length <= 3 ? p : undefined;
}

const ORDER =
  'its entries are not user::, user:ID ..., group::, group:ID ..., mask:: (optional) and other::, in that order, as Linux requires';

/**
 * Why Linux would refuse this system.posix_acl_* value, or undefined if it would set it: the
 * version 2 header, then entries whose tags come in the order posix_acl_valid() (fs/posix_acl.c)
 * insists on (user::, named users, group::, named groups, mask::, other::), permissions within rwx,
 * a mask wherever there is a named entry, and an id that names someone on named entries. An ACL
 * with no entries is not set either (posix_acl_from_xattr() reads it as none, which removes one).
 */
export function aclXattrProblem(value: Buffer): string | undefined {
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== 2)
    return 'it is not a POSIX ACL in the xattr format';
  if (value.length === 4) return 'it is an ACL without entries, which Linux takes as none';
  const order = [TAG.user_obj, TAG.user, TAG.group_obj, TAG.group, TAG.mask, TAG.other];
  let last = -1;
  let named = false;
  let hasMask = false;
  for (let o = 4; o < value.length; o += 8) {
    const tag = value.readUInt16LE(o);
    const perm = value.readUInt16LE(o + 2);
    const rank = order.indexOf(tag as (typeof order)[number]);
    if (rank < 0) return `it has an entry with the unknown tag 0x${tag.toString(16)}`;
    if (perm & ~7) return `it has an entry with the permissions 0x${perm.toString(16)}`;
    const repeats = tag === TAG.user || tag === TAG.group;
    // Going back, repeating a base entry, or passing user:: or group:: by.
    if (
      rank < last ||
      (rank === last && !repeats) ||
      order.slice(last + 1, rank).some((t) => t === TAG.user_obj || t === TAG.group_obj)
    )
      return ORDER;
    if (repeats) {
      named = true;
      if (value.readUInt32LE(o + 4) === UNDEFINED_ID) return 'a named entry has no id';
    }
    if (tag === TAG.mask) hasMask = true;
    last = rank;
  }
  if (last !== order.indexOf(TAG.other)) return ORDER;
  if (named && !hasMask) return 'it has named entries but no mask:: entry';
  return undefined;
}

/**
 * What setting a valid access ACL does to an inode on Linux (posix_acl_update_mode() and
 * posix_acl_equiv_mode() in fs/posix_acl.c): the permission bits become user:: for the owner,
 * mask:: (group:: when there is no mask) for the group, other:: for others; set-id and sticky bits
 * stay. An ACL that says no more than those bits (no mask, no named entries) is not kept.
 */
export function accessAclMode(mode: number, value: Buffer): { mode: number; keep: boolean } {
  let owner = 0;
  let group = 0;
  let other = 0;
  let mask: number | undefined;
  let keep = false;
  for (let o = 4; o + 8 <= value.length; o += 8) {
    const perm = value.readUInt16LE(o + 2) & 7;
    switch (value.readUInt16LE(o)) {
      case TAG.user_obj:
        owner = perm;
        break;
      case TAG.group_obj:
        group = perm;
        break;
      case TAG.other:
        other = perm;
        break;
      case TAG.mask:
        mask = perm;
        keep = true;
        break;
      default:
        keep = true;
    }
  }
  return { mode: (mode & 0o7000) | (owner << 6) | ((mask ?? group) << 3) | other, keep };
}

/**
 * A valid access ACL after chmod(2) to mode, as posix_acl_chmod() (fs/posix_acl.c) rewrites it:
 * user:: takes the owner bits, mask:: (group:: when there is no mask) the group bits, other:: the
 * other bits; named entries stay.
 */
export function chmodAcl(value: Buffer, mode: number): Buffer {
  const out = Buffer.from(value);
  let mask = -1;
  let group = -1;
  for (let o = 4; o + 8 <= out.length; o += 8) {
    const tag = out.readUInt16LE(o);
    if (tag === TAG.user_obj) out.writeUInt16LE((mode >> 6) & 7, o + 2);
    else if (tag === TAG.other) out.writeUInt16LE(mode & 7, o + 2);
    else if (tag === TAG.mask) mask = o;
    else if (tag === TAG.group_obj) group = o;
  }
  const g = mask >= 0 ? mask : group;
  if (g >= 0) out.writeUInt16LE((mode >> 3) & 7, g + 2);
  return out;
}
