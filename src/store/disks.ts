// Converted disks in the store (kind disk): put a finished disk in under its key, get one out byte for byte.
//
// <cache>/disks/<key>/   disk.json   the record: key, the key's fields, the disk's size and SHA-256, the caller's meta
//                        disk        the disk file, sparse (or a reflink of the file it was put from)
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, lstat, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Scope } from '../core/scope.js';
import { canonicalJson, diskKey, DiskKeyFieldsSchema, type DiskKeyFields } from './disk-key.js';
import type { Check, Store } from './store.js';

export const DISK_RECORD = 'disk.json';
export const DISK_FILE = 'disk';

const DiskRecordSchema = z.object({
  format: z.literal(1),
  key: z.string().regex(/^[0-9a-f]{64}$/),
  fields: DiskKeyFieldsSchema,
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
  /** Whatever the caller keeps with the disk (the plan, the result): plain JSON. */
  meta: z.unknown(),
});

export type DiskRecord = z.infer<typeof DiskRecordSchema>;

/** A record read from anywhere (the store, a registry): its shape, and fields that hash to its key. */
export function parseDiskRecord(v: unknown): DiskRecord | undefined {
  const r = DiskRecordSchema.safeParse(v);
  return r.success && diskKey(r.data.fields) === r.data.key ? r.data : undefined;
}

const CHUNK = 1 << 20;
const ZERO = Buffer.alloc(CHUNK);
const isZero = (b: Buffer): boolean => b.equals(ZERO.subarray(0, b.length));

/**
 * Copies a file byte for byte and returns the SHA-256 of its bytes: a reflink where the file system shares extents
 * (the hash still reads them), else a copy that leaves all-zero MiBs as holes, so a sparse raw disk stays sparse.
 */
export async function copyDisk(from: string, to: string): Promise<{ bytes: number; sha256: string }> {
  const reflinked = await copyFile(from, to, constants.COPYFILE_FICLONE_FORCE).then(
    () => true,
    () => false,
  );
  const h = createHash('sha256');
  const src = await open(from, 'r');
  const dst = reflinked ? undefined : await open(to, 'w', 0o644);
  let pos = 0;
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const { bytesRead } = await src.read(buf, 0, CHUNK, pos);
      if (bytesRead === 0) break;
      const part = buf.subarray(0, bytesRead);
      h.update(part);
      if (dst && !isZero(part)) await dst.write(part, 0, bytesRead, pos);
      pos += bytesRead;
    }
    if (dst) {
      await dst.truncate(pos);
      await dst.sync();
    }
  } finally {
    await src.close();
    await dst?.close();
  }
  return { bytes: pos, sha256: h.digest('hex') };
}

async function readRecord(dir: string, key: string): Promise<DiskRecord | undefined> {
  try {
    const r = parseDiskRecord(JSON.parse(await readFile(join(dir, DISK_RECORD), 'utf8')));
    if (!r || r.key !== key) return undefined;
    const st = await lstat(join(dir, DISK_FILE));
    return st.isFile() && st.size === r.bytes ? r : undefined;
  } catch {
    return undefined;
  }
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    for await (const c of fh.createReadStream({ highWaterMark: CHUNK })) h.update(c as Buffer);
  } finally {
    await fh.close().catch(() => undefined);
  }
  return h.digest('hex');
}

/** Whole: the record names the key and the disk has its size; intact: the disk's bytes hash to the record's SHA-256. */
export function diskCheck(key: string): Check {
  return {
    whole: async (dir) => !!(await readRecord(dir, key)),
    intact: async (dir) => {
      const r = await readRecord(dir, key);
      return !!r && (await hashFile(join(dir, DISK_FILE))) === r.sha256;
    },
  };
}

/** The record of a finished disk that is not kept in the store (a --push of a plain disk names its fields too). */
export async function diskRecordOf(fields: DiskKeyFields, file: string, meta: unknown = null): Promise<DiskRecord> {
  const st = await lstat(file);
  return {
    format: 1,
    key: diskKey(fields),
    fields,
    bytes: st.size,
    sha256: await hashFile(file),
    createdAt: new Date().toISOString(),
    meta,
  };
}

export class DiskStore {
  constructor(readonly store: Store) {}

  /** The record of a disk held locally, without taking it (for listing). */
  find(key: string): Promise<DiskRecord | undefined> {
    return readRecord(this.store.path('disk', key), key);
  }

  /**
   * Puts a finished disk in under the key of its fields (copied, so the caller's file stays theirs); a disk already
   * there under that key stands. Returns the record.
   */
  async put(fields: DiskKeyFields, file: string, scope: Scope, meta: unknown = null): Promise<DiskRecord> {
    const key = diskKey(fields);
    const check = diskCheck(key);
    const { path } = await this.store.ensure('disk', key, {
      scope,
      check,
      make: async (d) => {
        const { bytes, sha256 } = await copyDisk(file, join(d.path, DISK_FILE));
        const rec: DiskRecord = { format: 1, key, fields, bytes, sha256, createdAt: new Date().toISOString(), meta };
        await writeFile(join(d.path, DISK_RECORD), `${canonicalJson(rec)}\n`, { mode: 0o644 });
      },
    });
    const rec = await readRecord(path, key);
    if (!rec) throw new Error(`the disk ${key} was put in the store but does not read back`);
    return rec;
  }

  /**
   * Copies the disk held under the key to dest, byte for byte (checked against the record's SHA-256 as it is
   * copied); undefined when there is none or it is damaged (then it is removed, and dest with it). Holds the entry
   * for the scope.
   */
  async get(key: string, dest: string, scope: Scope): Promise<DiskRecord | undefined> {
    const dir = await this.store.take('disk', key, scope, { whole: diskCheck(key).whole });
    if (!dir) return undefined;
    const rec = await readRecord(dir, key);
    if (!rec) return undefined;
    const got = await copyDisk(join(dir, DISK_FILE), dest).catch(async (e: unknown) => {
      await rm(dest, { force: true });
      throw e;
    });
    if (got.sha256 !== rec.sha256 || got.bytes !== rec.bytes) {
      await rm(dest, { force: true });
      await this.store.discard('disk', key);
      return undefined;
    }
    return rec;
  }

  /** Puts a disk in whose file is already in the record's place: for disks pulled from a registry (verified there). */
  async adopt(rec: DiskRecord, file: string, scope: Scope): Promise<void> {
    if (diskKey(rec.fields) !== rec.key) throw new Error(`the record's fields do not hash to its key ${rec.key}`);
    await this.store.ensure('disk', rec.key, {
      scope,
      check: diskCheck(rec.key),
      make: async (d) => {
        const got = await copyDisk(file, join(d.path, DISK_FILE));
        if (got.sha256 !== rec.sha256 || got.bytes !== rec.bytes)
          throw new Error(`the disk for ${rec.key} does not have the bytes its record names`);
        await writeFile(join(d.path, DISK_RECORD), `${canonicalJson(rec)}\n`, { mode: 0o644 });
      },
    });
  }
}
