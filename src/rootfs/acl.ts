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
        const num = /^[0-9]{1,10}$/.test(idText ?? '') ? Number(idText) : /^[0-9]{1,10}$/.test(qualifier) ? Number(qualifier) : NaN;
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
  if (count(TAG.user_obj) !== 1 || count(TAG.group_obj) !== 1 || count(TAG.other) !== 1) return 'an ACL needs exactly one user::, group:: and other:: entry';
  if (count(TAG.mask) > 1 || (count(TAG.mask) === 0 && (count(TAG.user) > 0 || count(TAG.group) > 0))) return 'an ACL with named entries needs one mask:: entry';
  for (let i = 1; i < entries.length; i++) {
    if (entries[i]!.tag === entries[i - 1]!.tag && entries[i]!.id === entries[i - 1]!.id) return 'an ACL names the same user or group twice';
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
