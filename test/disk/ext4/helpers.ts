// Shared test helpers for the ext4 writer: tree builders, image writing, and the host tools that read images back.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { Img2vmError } from '../../../src/core/errors.js';
import { Ext4Writer, type Ext4Summary, type Ext4WriterOptions } from '../../../src/disk/ext4/index.js';
import { RawFileTarget } from '../../../src/disk/target.js';
import type { ContentRef, DirNode, Node, NodeMeta, Timestamp } from '../../../src/rootfs/tree.js';

export const EPOCH = 1_700_000_000;
export const UUID = '01234567-89ab-4def-8123-456789abcdef';
export const SEED = '11111111-2222-4333-8444-555555555555';

export function meta(mode: number, extra: Partial<NodeMeta> = {}): NodeMeta {
  return { mode, uid: 0, gid: 0, mtime: { sec: EPOCH, nsec: 0 }, xattrs: new Map(), ...extra };
}

export function ts(sec: number, nsec = 0): Timestamp {
  return { sec, nsec };
}

export function dir(entries: Record<string, Node> | Map<string, Node> = {}, m: NodeMeta = meta(0o755)): DirNode {
  return { kind: 'dir', meta: m, entries: entries instanceof Map ? entries : new Map(Object.entries(entries)) };
}

export function file(data: ContentRef, size: number, m: NodeMeta = meta(0o644)): Node {
  return { kind: 'file', meta: m, size, data };
}

export interface Tmp {
  dir: string;
  path(name: string): string;
  done(): void;
}

export function tmp(): Tmp {
  const d = mkdtempSync(join(tmpdir(), 'img2vm-ext4-'));
  return { dir: d, path: (n) => join(d, n), done: () => rmSync(d, { recursive: true, force: true }) };
}

export interface Image {
  path: string;
  summary: Ext4Summary;
}

/**
 * Writes a file system into a fresh image file: fill puts content through the writer and returns
 * the tree, then finish with the given size (default 64 MiB) and inode count (default 4096).
 */
export async function writeImage(
  path: string,
  fill: (w: Ext4Writer) => Promise<DirNode> | DirNode,
  o: {
    sizeBytes?: number;
    inodeCount?: number;
    journalBytes?: number;
    offset?: number;
    writer?: Partial<Ext4WriterOptions>;
  } = {},
): Promise<Image> {
  const target = new RawFileTarget(path);
  try {
    const w = new Ext4Writer({
      target,
      offset: o.offset ?? 0,
      uuid: UUID,
      label: 'root',
      hashSeed: SEED,
      epoch: EPOCH,
      ...o.writer,
    });
    const root = await fill(w);
    const summary = await w.finish(root, {
      sizeBytes: o.sizeBytes ?? 64 * 1024 * 1024,
      inodeCount: o.inodeCount ?? 4096,
      ...(o.journalBytes ? { journalBytes: o.journalBytes } : {}),
    });
    return { path, summary };
  } finally {
    target.close();
  }
}

function tool(name: string, args: string[], input?: Buffer): { status: number; stdout: Buffer; stderr: string } {
  const r = spawnSync(name, args, {
    input,
    maxBuffer: 1 << 30,
    env: { ...process.env, LC_ALL: 'C', PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
  });
  if (r.error) throw new Error(`${name} could not run (${r.error.message}); install it with scripts/install-deps.sh`);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr.toString() };
}

/**
 * e2fsck -fn must find nothing (exit 0); the whole report is the failure message otherwise.
 * IMG2VM_E2FSCK_EXTRA names a second e2fsck (e.g. 1.47.2 unpacked from bookworm-backports, its
 * libraries in ../lib/x86_64-linux-gnu) that must agree.
 */
export function expectClean(path: string): void {
  const r = tool('e2fsck', ['-fn', path]);
  expect(r.status, `e2fsck -fn ${path}:\n${r.stdout.toString()}${r.stderr}`).toBe(0);
  const extra = process.env.IMG2VM_E2FSCK_EXTRA;
  if (extra) {
    const lib = join(extra, '..', '..', 'lib', 'x86_64-linux-gnu');
    const x = spawnSync(extra, ['-fn', path], {
      encoding: 'utf8',
      env: { ...process.env, LC_ALL: 'C', LD_LIBRARY_PATH: lib },
    });
    expect(x.status, `${extra} -fn ${path}:\n${x.stdout}${x.stderr}`).toBe(0);
  }
}

/** Runs one debugfs request against the image and returns its output (debugfs's banner removed). */
export function debugfs(path: string, request: string): string {
  const r = tool('debugfs', ['-R', request, path]);
  if (r.status !== 0) throw new Error(`debugfs -R '${request}' failed: ${r.stderr}`);
  return r.stdout.toString('latin1');
}

/** Runs several debugfs requests in one process (one per line). */
export function debugfsBatch(path: string, requests: string[]): string {
  const r = tool('debugfs', ['-f', '-', path], Buffer.from(requests.join('\n') + '\n', 'latin1'));
  if (r.status !== 0) throw new Error(`debugfs -f failed: ${r.stderr}`);
  return r.stdout.toString('latin1');
}

/** A file's bytes as debugfs reads them (dump to stdout). */
export function catFile(path: string, file: string): Buffer {
  const r = tool('debugfs', ['-R', `cat "${file}"`, path]);
  if (r.status !== 0) throw new Error(`debugfs cat ${file} failed: ${r.stderr}`);
  return r.stdout;
}

export function run(name: string, args: string[]): { status: number; out: string } {
  const r = tool(name, args);
  return { status: r.status, out: r.stdout.toString('latin1') + r.stderr };
}

export async function* chunksOf(buf: Buffer, size: number): AsyncIterable<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

/** The error a promise rejects with (undefined if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

/**
 * e must be an Img2vmError of this kind whose message matches. (toMatchObject does not look at an
 * Error's message, so it is checked here explicitly.)
 */
export function expectFailure(e: unknown, kind: string, message: RegExp): void {
  expect(e, 'expected an Img2vmError').toBeInstanceOf(Img2vmError);
  const err = e as Img2vmError;
  expect(err.kind, err.message).toBe(kind);
  expect(err.message).toMatch(message);
}
