// The converted disk's key: every field that decides a disk's bytes changes it, options that do not leave it alone, and disks go into the store and come out byte for byte.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { inventory } from '../../src/cache/index.js';
import { parseConvertOptions, type ConvertOptionsInput } from '../../src/core/options.js';
import { Scope } from '../../src/core/scope.js';
import {
  canonicalJson,
  diskKey,
  diskKeyOptions,
  DiskStore,
  DISK_FILE,
  keyAnnotations,
  parseDiskRecord,
  Store,
  type DiskKeyFields,
} from '../../src/store/index.js';

const H = (c: string) => c.repeat(64);

const resolved = { format: 'qcow2', hostname: 'web', sourceDateEpoch: 1700000000 };
const opts = (o: Partial<ConvertOptionsInput> = {}) => parseConvertOptions({ image: 'web:1', seed: 's', ...o });

function base(): DiskKeyFields {
  return {
    img2vm: { version: '0.1.0', code: H('a') },
    image: { config: `sha256:${H('b')}`, manifest: `sha256:${H('c')}`, platform: 'linux/amd64' },
    guest: { strategy: 'img2vm', build: null },
    kernel: `sha256:${H('d')}`,
    init: H('e'),
    loaders: { 'grub-bios': H('f'), 'grub-efi': H('1') },
    options: diskKeyOptions(opts({ sshKey: '/k.pub', password: 'pw', dns: ['1.1.1.1'] }), {
      ...resolved,
      sshKeyText: 'ssh-ed25519 AAAA k',
    }),
  };
}

/** Every leaf of the fields, as a path and a value different from the one there. */
function leaves(v: unknown, path: string[] = []): { path: string[]; other: unknown }[] {
  if (v !== null && typeof v === 'object' && !Array.isArray(v))
    return Object.entries(v).flatMap(([k, x]) => leaves(x, [...path, k]));
  const other =
    typeof v === 'boolean'
      ? !v
      : typeof v === 'number'
        ? v + 1
        : v === null
          ? 'set'
          : Array.isArray(v)
            ? []
            : `${String(v)}x`;
  return [{ path, other }];
}

function withLeaf(f: DiskKeyFields, path: string[], value: unknown): DiskKeyFields {
  const copy = structuredClone(f) as unknown as Record<string, unknown>;
  let o = copy;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string, unknown>;
  o[path.at(-1)!] = value;
  return copy as unknown as DiskKeyFields;
}

describe('the disk key', () => {
  it('is a hex SHA-256 that does not depend on the order the fields were written in', () => {
    const f = base();
    const reordered = JSON.parse(canonicalJson(f)) as DiskKeyFields;
    const reversed = Object.fromEntries(Object.entries(reordered).reverse()) as unknown as DiskKeyFields;
    expect(diskKey(f)).toMatch(/^[0-9a-f]{64}$/);
    expect(diskKey(reversed)).toBe(diskKey(f));
  });

  it('changes with every field', () => {
    const f = base();
    const all = leaves(f);
    // The fields the module's comment lists, each reached here.
    expect(all.map((l) => l.path.join('.'))).toEqual(
      expect.arrayContaining([
        'img2vm.version',
        'img2vm.code',
        'image.config',
        'image.manifest',
        'image.platform',
        'guest.strategy',
        'guest.build',
        'kernel',
        'init',
        'loaders.grub-bios',
        'options.format',
        'options.compress',
        'options.size',
        'options.boot',
        'options.bootloader',
        'options.partitionTable',
        'options.bootPartition',
        'options.kernelCmdline',
        'options.hostname',
        'options.user',
        'options.dns',
        'options.cloudInit',
        'options.entrypointService',
        'options.sshKey',
        'options.password',
        'options.seed',
        'options.sourceDateEpoch',
      ]),
    );
    const keys = new Set([diskKey(f)]);
    for (const l of all) keys.add(diskKey(withLeaf(f, l.path, l.other)));
    expect(keys.size).toBe(all.length + 1);
    // A loader more or less is a change too.
    expect(diskKey({ ...f, loaders: { 'grub-bios': H('f') } })).not.toBe(diskKey(f));
  });

  it('changes with each byte-changing option as the user gives it', () => {
    const key = (o: Partial<ConvertOptionsInput>, r: Partial<typeof resolved> = {}) =>
      diskKey({ ...base(), options: diskKeyOptions(opts(o), { ...resolved, ...r }) });
    const variants: [Partial<ConvertOptionsInput>, Partial<typeof resolved>][] = [
      [{}, {}],
      [{ compress: true }, {}],
      [{ size: '4G' }, {}],
      [{ boot: 'uefi' }, {}],
      [{ boot: 'uefi', bootloader: 'systemd-boot' }, {}],
      [{ partitionTable: 'mbr' }, {}],
      [{ bootPartition: '512M' }, {}],
      [{ kernelCmdline: 'quiet' }, {}],
      [{ user: 'ann' }, {}],
      [{ dns: ['9.9.9.9'] }, {}],
      [{ cloudInit: true }, {}],
      [{ entrypointService: true }, {}],
      [{ password: 'a' }, {}],
      [{ password: 'b' }, {}],
      [{ seed: 'other' }, {}],
      [{ seed: undefined }, {}],
      [{}, { format: 'raw' }],
      [{}, { hostname: 'db' }],
      [{}, { sourceDateEpoch: 1 }],
    ];
    expect(new Set(variants.map(([o, r]) => key(o, r))).size).toBe(variants.length);
  });

  it('is not changed by options that do not change bytes', () => {
    const key = (o: Partial<ConvertOptionsInput>) => diskKey({ ...base(), options: diskKeyOptions(opts(o), resolved) });
    const same = [
      {},
      { output: '/elsewhere/disk.qcow2' },
      { pull: 'always' as const },
      { insecureRegistries: ['reg.example:5000'] },
      { push: 'reg.example/disks/web:1' },
      { config: 'img2vm.yaml' },
      { builder: 'runc' as const },
      { kernel: 'debian-archive:trixie' },
      { kernelMirror: 'http://mirror.example/debian' },
      { kernelNoSecurity: true },
      { platform: 'linux/amd64' },
    ];
    expect(new Set(same.map(key)).size).toBe(1);
  });

  it('holds no secret: the password as a slow hash only, and not at all in the annotations', () => {
    const f = base();
    expect(canonicalJson(f)).not.toContain('"pw"');
    expect(f.options.password).toMatch(/^[0-9a-f]{64}$/);
    const a = keyAnnotations(f, diskKey(f));
    expect(JSON.stringify(a)).not.toContain(f.options.password!);
    expect(JSON.parse(a['org.img2vm.disk.options']!)).toMatchObject({ password: 'set', format: 'qcow2' });
    expect(a['org.img2vm.disk.key']).toBe(diskKey(f));
  });
});

describe('converted disks in the store', () => {
  let root: string;
  let scope: Scope;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'img2vm-disks-'));
    scope = new Scope();
  });
  afterEach(async () => {
    await scope.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('puts a disk in and gets it out byte for byte, sparse, and lists it', async () => {
    const src = join(root, 'src.raw');
    const bytes = Buffer.alloc(64 << 20);
    bytes.write('boot', 0);
    bytes.fill(7, 20 << 20, (20 << 20) + 5000);
    bytes[bytes.length - 1] = 1;
    writeFileSync(src, bytes);
    const disks = new DiskStore(new Store(join(root, 'cache')));
    const f = base();
    const rec = await disks.put(f, src, scope, { note: 'meta' });
    expect(rec.key).toBe(diskKey(f));
    expect(rec.meta).toEqual({ note: 'meta' });

    const out = join(root, 'out.raw');
    const got = await disks.get(rec.key, out, scope);
    expect(got?.sha256).toBe(rec.sha256);
    expect(readFileSync(out).equals(bytes)).toBe(true);
    // Only the MiBs with data take blocks: a raw disk stays sparse on the way in and out.
    expect(statSync(out).blocks * 512).toBeLessThan(4 << 20);
    expect(statSync(join(root, 'cache', 'disks', rec.key, DISK_FILE)).blocks * 512).toBeLessThan(4 << 20);

    const inv = await inventory({ root: join(root, 'cache'), imageStores: false });
    const e = inv.items.map((i) => i.entry).find((x) => x.kind === 'converted-disk');
    expect(e).toMatchObject({ name: `disk:${rec.key}`, bytes: expect.any(Number) });
    expect(e!.detail).toContain('qcow2 of sha256:cccccccccccc (linux/amd64), --init img2vm');
  });

  it('gives nothing for a key it does not hold, and drops a disk whose bytes changed', async () => {
    const src = join(root, 'src.raw');
    writeFileSync(src, Buffer.from('a disk'));
    const disks = new DiskStore(new Store(join(root, 'cache')));
    expect(await disks.get(H('0'), join(root, 'none'), scope)).toBeUndefined();
    const rec = await disks.put(base(), src, scope);
    writeFileSync(join(root, 'cache', 'disks', rec.key, DISK_FILE), Buffer.from('b disk'));
    const out = join(root, 'out.raw');
    expect(await disks.get(rec.key, out, scope)).toBeUndefined();
    expect(() => statSync(out)).toThrow();
    expect(await disks.find(rec.key)).toBeUndefined();
  });

  it('reads a record only when its fields hash to its key', () => {
    const f = base();
    const rec = { format: 1, key: diskKey(f), fields: f, bytes: 1, sha256: H('9'), createdAt: 'now', meta: null };
    expect(parseDiskRecord(rec)?.key).toBe(diskKey(f));
    expect(parseDiskRecord({ ...rec, fields: { ...f, kernel: null } })).toBeUndefined();
    expect(parseDiskRecord({ ...rec, key: H('0') })).toBeUndefined();
  });
});
