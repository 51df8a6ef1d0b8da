// The members of an image archive (a tar) found where they lie: only headers are read, contents are skipped by
// position and later read in place, so nothing is ever extracted to a temporary directory.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { Img2vmError } from '../core/errors.js';
import { testHook } from '../core/test-hook.js';
import { ByteSource, TarFormatError, TarReader } from '../rootfs/tar.js';

/** More members than any docker save or OCI layout holds; the index is kept in memory. */
export const MAX_ARCHIVE_MEMBERS = 100_000;
/** What is read at a time while looking for headers (contents are skipped by position, never read). */
const HEADER_READ = 16 * 1024;
/** How far an archive's own symbolic links are followed. */
const MAX_LINK_HOPS = 8;

/** A regular file of the archive: its content's offset in the archive file and its size. */
export interface ArchiveFile {
  kind: 'file';
  offset: number;
  size: number;
}

export type ArchiveMember = ArchiveFile | { kind: 'link'; target: string } | { kind: 'other' };

/** What identifies the archive file that was indexed, so a reader never takes another file's bytes for its members. */
interface Identity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

export interface ArchiveIndex {
  file: string;
  identity: Identity;
  /** Member name (normalised, see archiveMemberPath) → what it is; a later member of the same name wins. */
  members: Map<string, ArchiveMember>;
}

/** Normalises a member name of an archive; anything that could climb out of the archive's root is refused. */
export function archiveMemberPath(name: string): string {
  const n = posix.normalize(name.replace(/^\.\/+/, ''));
  if (n.startsWith('/') || n === '..' || n.startsWith('../') || n.includes('\0')) {
    throw new Img2vmError(
      'badImage',
      `image archive has an unsafe member name "${name}"`,
      'the archive is corrupt or hostile; re-create it with docker save',
    );
  }
  return n.replace(/\/$/, '');
}

export interface IndexOptions {
  signal?: AbortSignal;
  /** Told how far into the archive the index has come (bytes of the archive passed, read or skipped). */
  onBytes?: (n: number) => void;
}

/** Reads the headers of the archive at file (a regular file) and where each member's content lies. */
export async function indexArchive(file: string, o: IndexOptions = {}): Promise<ArchiveIndex> {
  o.signal?.throwIfAborted();
  const fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw Object.assign(new Error(`${file} is not a regular file`), { code: 'ENOTREG' });
    const identity = { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
    const members = await readHeaders(fh, identity.size, o);
    return { file, identity, members };
  } finally {
    await fh.close();
  }
}

async function readHeaders(fh: FileHandle, fileSize: number, o: IndexOptions): Promise<Map<string, ArchiveMember>> {
  let pos = 0;
  async function* chunks(): AsyncGenerator<Buffer> {
    for (;;) {
      // A fresh buffer each time: the reader hands out slices of it that must stay valid.
      const buf = Buffer.allocUnsafe(HEADER_READ);
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) return;
      pos += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  }
  const src = new ByteSource(chunks(), (n) => (pos += n));
  const reader = new TarReader(src);
  const members = new Map<string, ArchiveMember>();
  let reported = 0;
  try {
    for (let h = await reader.next(); h; h = await reader.next()) {
      o.signal?.throwIfAborted();
      if (members.size >= MAX_ARCHIVE_MEMBERS)
        throw new Img2vmError(
          'badImage',
          `image archive has more than ${MAX_ARCHIVE_MEMBERS} members`,
          'no image archive needs that many; the archive is hostile or not an image archive',
        );
      const name = archiveMemberPath(Buffer.from(h.path, 'latin1').toString('utf8'));
      const target = Buffer.from(h.linkpath, 'latin1').toString('utf8');
      members.set(name, memberOf(h.type, name, target, src.position, h.size, !!h.sparse, fileSize));
      if (members.size === 1) await testHook('during', 'source/archive');
      o.onBytes?.(Math.min(src.position, fileSize) - reported);
      reported = Math.min(src.position, fileSize);
    }
  } catch (e) {
    if (e instanceof TarFormatError)
      throw new Img2vmError('badImage', `image archive is corrupt: ${e.message}`, 'check the file, or re-create it');
    throw e;
  }
  o.signal?.throwIfAborted();
  return members;
}

function memberOf(
  type: string,
  name: string,
  target: string,
  offset: number,
  size: number,
  sparse: boolean,
  fileSize: number,
): ArchiveMember {
  if (type === 'file') {
    // No image archive writer makes sparse members; their bytes would not lie in one piece.
    if (sparse) return { kind: 'other' };
    if (offset + size > fileSize)
      throw new Img2vmError(
        'badImage',
        `image archive is truncated: member "${name}" needs ${offset + size - fileSize} more bytes than the file has`,
        'the file is incomplete; copy or re-create it',
      );
    return { kind: 'file', offset, size };
  }
  // A symbolic link is relative to its own directory (legacy docker save links duplicate layers); a hard link names
  // a member from the archive's root (tar of a layout whose blobs are hard-linked).
  if (type === 'symlink') return { kind: 'link', target: archiveMemberPath(posix.join(posix.dirname(name), target)) };
  if (type === 'link') return { kind: 'link', target: archiveMemberPath(target) };
  return { kind: 'other' };
}

/** The member at name, following the archive's own links; undefined when there is none. */
export function findMember(a: ArchiveIndex, name: string): ArchiveMember | undefined {
  let m = a.members.get(archiveMemberPath(name));
  for (let i = 0; m?.kind === 'link'; i++) m = i < MAX_LINK_HOPS ? a.members.get(m.target) : { kind: 'other' };
  return m;
}

/**
 * A stream of a member's bytes, read in place from the archive file; the file must still be the one indexed (an
 * archive replaced or rewritten meanwhile is refused rather than read at stale offsets).
 */
export async function openMember(a: ArchiveIndex, m: ArchiveFile): Promise<Readable> {
  const fh = await open(a.file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    const id = a.identity;
    if (!st.isFile() || st.dev !== id.dev || st.ino !== id.ino || st.size !== id.size || st.mtimeMs !== id.mtimeMs)
      throw new Img2vmError(
        'badImage',
        `image archive ${a.file} changed while it was being read`,
        'leave the file alone while img2vm reads it, then try again',
      );
  } catch (e) {
    await fh.close();
    throw e;
  }
  if (m.size === 0) {
    await fh.close();
    return Readable.from([]);
  }
  return fh.createReadStream({ start: m.offset, end: m.offset + m.size - 1, highWaterMark: 1 << 20 }) as Readable;
}

/** A small member's bytes (at most max), or undefined when it is absent or not a regular file. */
export async function readMember(a: ArchiveIndex, name: string, max: number): Promise<Buffer | undefined> {
  const m = findMember(a, name);
  if (m?.kind !== 'file' || m.size > max) return undefined;
  const parts: Buffer[] = [];
  for await (const c of await openMember(a, m)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
