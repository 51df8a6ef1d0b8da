// Reads the ar archive a .deb is (debian-binary, control.tar.*, data.tar.*) by offsets, checking every header against the file's size.

export class ArError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArError';
  }
}

export interface ArMember {
  name: string;
  /** Where the member's content starts in the file. */
  offset: number;
  size: number;
}

/** Reads len bytes at offset (fewer only at the end of the file). */
export type ReadAt = (offset: number, len: number) => Promise<Buffer>;

const MAGIC = '!<arch>\n';
const HEADER = 60;
const MAX_MEMBERS = 64;

export async function readArMembers(readAt: ReadAt, fileSize: number): Promise<ArMember[]> {
  const magic = await readAt(0, MAGIC.length);
  if (magic.length < MAGIC.length || magic.toString('latin1') !== MAGIC)
    throw new ArError('not an ar archive (bad magic)');
  const members: ArMember[] = [];
  let off = MAGIC.length;
  while (off < fileSize) {
    // A single padding byte may end the archive after an odd-sized last member.
    if (off === fileSize - 1 && (await readAt(off, 1))[0] === 0x0a) break;
    if (members.length >= MAX_MEMBERS) throw new ArError(`more than ${MAX_MEMBERS} members`);
    const h = await readAt(off, HEADER);
    if (h.length < HEADER) throw new ArError(`truncated member header at offset ${off}`);
    if (h[58] !== 0x60 || h[59] !== 0x0a) throw new ArError(`bad member header at offset ${off}`);
    const rawName = h.toString('latin1', 0, 16).trimEnd();
    if (rawName.startsWith('/') && rawName !== '/')
      throw new ArError(`member at offset ${off} uses an extended name table, which .deb files never do`);
    const name = rawName.endsWith('/') ? rawName.slice(0, -1) : rawName;
    if (!/^[A-Za-z0-9_.+-]*$/.test(name)) throw new ArError(`member at offset ${off} has an invalid name`);
    const sizeField = h.toString('latin1', 48, 58).trimEnd();
    if (!/^[0-9]{1,10}$/.test(sizeField)) throw new ArError(`member "${name}" has an invalid size field`);
    const size = Number(sizeField);
    const start = off + HEADER;
    if (start + size > fileSize)
      throw new ArError(
        `member "${name}" (${size} bytes at offset ${start}) runs past the end of the file (${fileSize} bytes): truncated`,
      );
    members.push({ name, offset: start, size });
    off = start + size + (size % 2);
  }
  return members;
}

export interface DebMembers {
  version: string;
  control?: ArMember;
  data: ArMember;
}

/** Checks the member order and names dpkg requires and finds the data archive. */
export async function debMembers(readAt: ReadAt, fileSize: number): Promise<DebMembers> {
  const ms = await readArMembers(readAt, fileSize);
  const first = ms[0];
  if (!first || first.name !== 'debian-binary') throw new ArError('the first member is not debian-binary (not a .deb)');
  if (first.size > 64) throw new ArError('debian-binary is too large');
  const version = (await readAt(first.offset, first.size)).toString('latin1').trim();
  if (!/^2\.[0-9]+$/.test(version)) throw new ArError(`unsupported .deb format version "${version.slice(0, 20)}"`);
  let control: ArMember | undefined;
  let data: ArMember | undefined;
  for (const m of ms.slice(1)) {
    if (m.name.startsWith('_')) continue; // reserved for extensions dpkg ignores
    if (/^control\.tar(\.(gz|xz|zst))?$/.test(m.name) && !control && !data) control = m;
    else if (/^data\.tar(\.(gz|xz|zst|bz2|lzma))?$/.test(m.name) && control && !data) data = m;
    else throw new ArError(`unexpected member "${m.name}" in the .deb`);
  }
  if (!data) throw new ArError('the .deb has no data.tar member');
  return { version, control, data };
}
