// The LUKS2 writer in node alone: the anti-forensic split, the headers as bytes, the volume that encrypts as it is
// written, and the plan an encrypted root makes (secrets nowhere in it). cryptsetup reads it in luks.tools.test.ts.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { renderPlan } from '../../src/cli/plan-render.js';
import { luksSecrets } from '../../src/convert.js';
import { parseConvertOptions, type ConvertOptionsInput } from '../../src/core/options.js';
import { createRandom } from '../../src/core/random.js';
import { partitionByRole } from '../../src/disk/layout.js';
import { afMerge, afSplit, diffuse } from '../../src/disk/luks/af.js';
import {
  AF_STRIPES,
  binaryHeader,
  luksHeaderArea,
  luksJson,
  LUKS_DATA_OFFSET,
  LUKS_HEADER_SIZE,
} from '../../src/disk/luks/header.js';
import { LuksVolume } from '../../src/disk/luks/volume.js';
import { xtsDecrypt, xtsEncrypt } from '../../src/disk/luks/xts.js';
import type { BlockTarget } from '../../src/disk/target.js';
import { plan } from '../../src/plan.js';
import { known } from '../helpers/facts.js';

const PARAMS = {
  uuid: '0b5c2d7e-4f3a-4c1e-9d2b-7a6f5e4d3c2b',
  cipher: 'aes-xts-plain64' as const,
  keyBytes: 64,
  sectorSize: 512 as const,
  hash: 'sha256' as const,
  keyslotIterations: 1000,
  digestIterations: 1000,
};

/** An in-memory disk: what was never written reads as zeros. */
class MemTarget implements BlockTarget {
  bytes = Buffer.alloc(0);
  write(buf: Uint8Array, offset: number): void {
    if (offset + buf.length > this.bytes.length) this.resize(offset + buf.length);
    this.bytes.set(buf, offset);
  }
  read(buf: Uint8Array, offset: number): number {
    const n = Math.max(0, Math.min(buf.length, this.bytes.length - offset));
    buf.fill(0);
    if (n > 0) buf.set(this.bytes.subarray(offset, offset + n));
    return buf.length;
  }
  size(): number {
    return this.bytes.length;
  }
  resize(n: number): void {
    const b = Buffer.alloc(n);
    this.bytes.copy(b, 0, 0, Math.min(n, this.bytes.length));
    this.bytes = b;
  }
  close(): void {}
}

describe('anti-forensic split', () => {
  it('gives the key back from all its stripes, and not when one stripe is lost', () => {
    const key = randomBytes(64);
    const material = afSplit(key, AF_STRIPES, 'sha256', randomBytes);
    expect(material.length).toBe(64 * AF_STRIPES);
    expect(afMerge(material, 64, AF_STRIPES, 'sha256').equals(key)).toBe(true);
    material[100 * 64 + 3]! ^= 1;
    expect(afMerge(material, 64, AF_STRIPES, 'sha256').equals(key)).toBe(false);
  });

  it('diffuses in digest-sized pieces, each hashed after its big-endian index (a partial last piece truncated)', () => {
    const block = Buffer.from(Array.from({ length: 40 }, (_, i) => i));
    const want = Buffer.concat([
      createHash('sha256')
        .update(Buffer.from([0, 0, 0, 0]))
        .update(block.subarray(0, 32))
        .digest(),
      createHash('sha256')
        .update(Buffer.from([0, 0, 0, 1]))
        .update(block.subarray(32))
        .digest()
        .subarray(0, 8),
    ]);
    diffuse(block, 'sha256');
    expect(block.equals(want)).toBe(true);
  });
});

describe('aes-xts-plain64', () => {
  it('encrypts each sector with its number as the tweak (64-bit little-endian), as dm-crypt does', () => {
    const key = randomBytes(64);
    const data = randomBytes(4 * 512);
    const enc = xtsEncrypt(key, data, 7, 512);
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64LE(9n);
    const d = createDecipheriv('aes-256-xts', key, iv);
    expect(Buffer.concat([d.update(enc.subarray(1024, 1536)), d.final()]).equals(data.subarray(1024, 1536))).toBe(true);
    expect(xtsDecrypt(key, enc, 7, 512).equals(data)).toBe(true);
  });

  it("is Node's own aes-256-xts, sector by sector, for both sector sizes and sector numbers past 2^32", () => {
    const key = randomBytes(64);
    const data = randomBytes(16 * 4096);
    for (const [size, first] of [
      [512, 0],
      [512, 2 ** 32 - 3],
      [4096, 12345],
    ] as const) {
      const enc = xtsEncrypt(key, data, first, size);
      for (let off = 0, s = first; off < data.length; off += size, s++) {
        const iv = Buffer.alloc(16);
        iv.writeBigUInt64LE(BigInt(s));
        const c = createCipheriv('aes-256-xts', key, iv);
        expect(c.update(data.subarray(off, off + size)).equals(enc.subarray(off, off + size))).toBe(true);
      }
      expect(xtsDecrypt(key, enc, first, size).equals(data)).toBe(true);
    }
  });
});

describe('LUKS2 headers', () => {
  it('binary header: magic, version, sizes, uuid, offset, and a sha256 over header and JSON with the field zeroed', () => {
    const json = luksJson(PARAMS, {
      keyslotSalt: Buffer.alloc(32, 1),
      digestSalt: Buffer.alloc(32, 2),
      digest: Buffer.alloc(32, 3),
    });
    for (const secondary of [false, true]) {
      const h = binaryHeader(PARAMS, json, { secondary, salt: Buffer.alloc(64, 9), seqid: 1 });
      expect(h.length).toBe(LUKS_HEADER_SIZE);
      expect(h.subarray(0, 6).toString('latin1')).toBe(secondary ? 'SKUL\xba\xbe' : 'LUKS\xba\xbe');
      expect(h.readUInt16BE(6)).toBe(2);
      expect(h.readBigUInt64BE(8)).toBe(BigInt(LUKS_HEADER_SIZE));
      expect(h.readBigUInt64BE(256)).toBe(secondary ? BigInt(LUKS_HEADER_SIZE) : 0n);
      expect(h.subarray(168, 204).toString('latin1')).toBe(PARAMS.uuid);
      const zeroed = Buffer.from(h);
      zeroed.fill(0, 448, 512);
      expect(h.subarray(448, 480).equals(createHash('sha256').update(zeroed).digest())).toBe(true);
      expect(JSON.parse(h.subarray(4096).toString('utf8').replace(/\0+$/, ''))).toMatchObject({
        segments: { '0': { offset: String(LUKS_DATA_OFFSET), size: 'dynamic', sector_size: 512 } },
        keyslots: { '0': { kdf: { type: 'pbkdf2', hash: 'sha256' }, af: { stripes: 4000, hash: 'sha256' } } },
      });
    }
  });

  it('the keyslot holds the master key: decrypted with the passphrase-derived key and merged, it is the key', async () => {
    const { pbkdf2Sync } = await import('node:crypto');
    const mk = randomBytes(64);
    const area = await luksHeaderArea(PARAMS, mk, Buffer.from('pass'), randomBytes);
    const meta = JSON.parse(area.primary.subarray(4096).toString('utf8').replace(/\0+$/, ''));
    const ks = meta.keyslots['0'];
    const slotKey = pbkdf2Sync('pass', Buffer.from(ks.kdf.salt, 'base64'), ks.kdf.iterations, 64, 'sha256');
    const material = xtsDecrypt(slotKey, area.keyslot.bytes, 0, 512);
    expect(afMerge(material, 64, 4000, 'sha256').equals(mk)).toBe(true);
    const dg = meta.digests['0'];
    expect(pbkdf2Sync(mk, Buffer.from(dg.salt, 'base64'), dg.iterations, 32, 'sha256').toString('base64')).toBe(
      dg.digest,
    );
  });
});

describe('the volume encrypts as it is written', () => {
  it('unaligned writes and reads see plaintext; never-written sectors read as zeros and are filled as zeros', async () => {
    const disk = new MemTarget();
    const mk = randomBytes(64);
    const start = LUKS_DATA_OFFSET;
    const v = new LuksVolume(disk, start, PARAMS, { masterKey: mk, passphrase: Buffer.from('p'), random: randomBytes });
    const plain = Buffer.alloc(64 * 1024);
    const put = (b: Buffer, at: number) => {
      v.write(b, start + at);
      b.copy(plain, at);
    };
    put(randomBytes(4096), 8192);
    put(Buffer.from('tiny'), 3);
    put(randomBytes(1000), 8192 + 4000);
    put(randomBytes(700), 30_000);
    const back = Buffer.alloc(5000);
    v.read(back, start + 8000);
    expect(back.equals(plain.subarray(8000, 13000))).toBe(true);
    // nothing of the plaintext is on the disk as such
    expect(disk.bytes.includes(plain.subarray(8192, 8192 + 64))).toBe(false);
    await v.finish(plain.length, new AbortController().signal);
    const all = xtsDecrypt(mk, disk.bytes.subarray(start, start + plain.length), 0, 512);
    expect(all.equals(plain)).toBe(true);
    expect(disk.bytes.subarray(0, 6).toString('latin1')).toBe('LUKS\xba\xbe');
    expect(disk.bytes.subarray(LUKS_HEADER_SIZE, LUKS_HEADER_SIZE + 6).toString('latin1')).toBe('SKUL\xba\xbe');
  });
});

function luksPlan(opts: Partial<ConvertOptionsInput>, os: unknown = null) {
  const o = parseConvertOptions({
    image: 'img2vm-demo:bookworm',
    output: '/out/d.img',
    seed: 's',
    init: 'image',
    luksPassword: 'correct horse',
    ...opts,
  });
  return {
    o,
    p: plan(
      o,
      known({
        source: { transport: 'docker-daemon', id: `sha256:${'ab'.repeat(32)}`, layers: 1 },
        os,
        content: { blocks4k: 10_000, entries: 500, bytes: 30 << 20, files: 400, boot: { blocks4k: 9000, entries: 5 } },
        kernel: { version: '6.1.0-28-cloud-amd64', kernelPath: '/boot/vmlinuz', initrdPath: '/boot/initrd.img' },
        hasResolved: true,
        process: { entrypoint: [], cmd: ['/bin/sh'], env: [], cwd: '/', user: '' },
      } as Parameters<typeof known>[0]),
      createRandom('s'),
    ),
  };
}

describe('the plan of an encrypted root', () => {
  it('puts the file system after the LUKS2 header area, /boot on a clear partition, and no secret anywhere', () => {
    const { p } = luksPlan({});
    expect(p.luks).toMatchObject({ cipher: 'aes-xts-plain64', pbkdf: 'pbkdf2', sectorSize: 512, masterKey: 'random' });
    const part = partitionByRole(p.layout!, 'root')!;
    const fs = p.filesystems.find((f) => f.role === 'root')!;
    expect(fs.offset).toBe(part.start + LUKS_DATA_OFFSET);
    expect(fs.offset + fs.size).toBeLessThanOrEqual(part.start + part.size);
    expect(p.disk.rootOffset).toBe(fs.offset);
    expect(partitionByRole(p.layout!, 'boot')).toBeDefined();
    expect(JSON.stringify(p)).not.toContain('correct horse');
    // img2vm plan says so
    const text = renderPlan(p);
    expect(text).toMatch(/luks +root encrypted: LUKS2 .*aes-xts-plain64 512-bit, 512-byte sectors, pbkdf2-sha256/);
    expect(text).toContain('/boot in the clear: its own ext4 partition');
    expect(text).not.toContain('correct horse');
  });

  it("names the volume on the kernel command line for the distribution's initramfs (Debian's, here)", () => {
    const debian = { id: 'debian', idLike: [], versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' };
    const { p } = luksPlan({}, debian);
    expect(p.boot.cmdline).toContain(`cryptopts=target=root_crypt,source=UUID=${p.luks!.uuid},key=none,luks`);
  });

  it("plans it for img2vm's own init too: the volume shown, /boot clear, nothing about it on the command line", () => {
    const { p } = luksPlan({ init: 'img2vm' });
    expect(p.guest.strategy).toBe('img2vm');
    expect(p.luks).toMatchObject({ cipher: 'aes-xts-plain64', pbkdf: 'pbkdf2', keyslotIterations: 600_000 });
    expect(partitionByRole(p.layout!, 'boot')).toBeDefined();
    // the init reads the volume's UUID from its spec in the initramfs
    expect(p.boot.cmdline).not.toContain('cryptopts');
    expect(p.boot.cmdline).not.toContain(p.luks!.uuid);
    expect(renderPlan(p)).toMatch(/luks +root encrypted: LUKS2 /);
    expect(JSON.stringify(p)).not.toContain('correct horse');
  });

  it('refuses two passphrases, a master key without one, and the partitionless rootfs format', () => {
    expect(() => parseConvertOptions({ image: 'x', luksPassword: 'a', luksPasswordFile: '/f' })).toThrow(
      /give the passphrase once/,
    );
    expect(() => parseConvertOptions({ image: 'x', luksMasterKeyFile: '/k' })).toThrow(/give --luks-password/);
    expect(() => luksPlan({ output: '/out/d.tar', format: 'rootfs' })).toThrow(/does not apply to --format rootfs/);
  });

  it('draws a new master key on every run even with --seed; only a master key file fixes it', () => {
    const { o } = luksPlan({});
    const a = luksSecrets(o, createRandom('s'))!;
    const b = luksSecrets(o, createRandom('s'))!;
    expect(a.masterKey.length).toBe(64);
    expect(a.masterKey.equals(b.masterKey)).toBe(false);
    expect(a.random(16).equals(b.random(16))).toBe(false);
    expect(a.passphrase.toString()).toBe('correct horse');
  });
});
