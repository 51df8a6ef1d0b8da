// makeReproducible: two qemu-img conversions of one raw disk become byte-identical with one seed, stay valid, and differ with another seed.
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunContext } from '../../src/core/context.js';
import { Img2vmError } from '../../src/core/errors.js';
import { createRandom } from '../../src/core/random.js';
import { MiB } from '../../src/core/units.js';
import { RawFileTarget } from '../../src/disk/target.js';
import { QEMU_FORMATS, qemuImgConvertArgs } from '../../src/output/qemu-img.js';
import { run } from '../../src/tools/index.js';
import { writeContainerDiskArchive } from '../../src/output/containerdisk.js';
import type { OutputFormat } from '../../src/output/format.js';
import { crc32cOf as crc32c } from '../../src/core/crc32c.js';
import { vhdChecksum, vhdTimestamp } from '../../src/output/patch/vhd.js';
import { vhdxChecksum } from '../../src/output/patch/vhdx.js';
import { Qcow2Target } from '../../src/disk/qcow2/target.js';
import { qcow2 } from '../../src/output/qcow2.js';
import { makeReproducible, type DiskFormatId } from '../../src/output/reproducible.js';
import { vdi } from '../../src/output/vdi.js';
import { vhd } from '../../src/output/vhd.js';
import { vhdx } from '../../src/output/vhdx.js';
import { vmdk } from '../../src/output/vmdk.js';

const tmp = mkdtempSync(join(tmpdir(), 'img2vm-repro-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const EPOCH = 1_700_000_000;
const raw = join(tmp, 'disk.raw');

beforeAll(() => {
  // Data at a few places, including a 2 MiB-block boundary and the last sector.
  const t = new RawFileTarget(raw);
  t.resize(48 * MiB);
  const r = createRandom('fixture');
  for (const off of [0, 3 * MiB - 4096, 17 * MiB + 512, 48 * MiB - 512])
    t.write(r.bytes(off === 48 * MiB - 512 ? 512 : 300_000), off);
  t.close();
});

/** Only signal is used by the qemu-img formats' write(). */
const ctx = { signal: new AbortController().signal, sink: () => {} } as unknown as RunContext;
const sha256 = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const FORMATS: Array<[DiskFormatId, OutputFormat, string]> = [
  ['vmdk', vmdk, 'vmdk'],
  ['vhdx', vhdx, 'vhdx'],
  ['vhd', vhd, 'vpc'],
  ['vdi', vdi, 'vdi'],
  ['qcow2', qcow2, 'qcow2'],
];
let n = 0;
/** Converts with img2vm's own qemu-img options for the format (qemu-img alone, before any patching), to a fresh temporary name each time. */
async function convert(f: OutputFormat, ext: string): Promise<string> {
  const dest = join(tmp, `.out-${n++}.tmp.${ext}`);
  const q = QEMU_FORMATS[f.id] ?? { qemuFormat: 'qcow2' };
  await run('qemu-img', qemuImgConvertArgs(raw, dest, q.qemuFormat, { options: q.options }), { signal: ctx.signal });
  return dest;
}
function bytesAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    closeSync(fd);
  }
}

describe('checksums', () => {
  it('CRC-32C has the Castagnoli check value', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(32))).toBe(0x8a9136aa);
  });
  it('VHD timestamps count from 2000 and clamp to the 32-bit field', () => {
    expect(vhdTimestamp(946_684_800)).toBe(0);
    expect(vhdTimestamp(EPOCH)).toBe(EPOCH - 946_684_800);
    expect(vhdTimestamp(0)).toBe(0);
    expect(vhdTimestamp(2 ** 40)).toBe(0xffff_ffff);
  });
});

describe.each(FORMATS)('%s', (id, format, qemuName) => {
  it('two conversions with one seed are byte-identical after makeReproducible, and differ before it (except qcow2)', async () => {
    const a = await convert(format, id);
    const b = await convert(format, id);
    if (id !== 'qcow2') expect(sha256(a)).not.toBe(sha256(b));
    makeReproducible(id, a, createRandom('s1'), EPOCH, { finalName: `disk.${id}` });
    makeReproducible(id, b, createRandom('s1'), EPOCH, { finalName: `disk.${id}` });
    expect(sha256(a)).toBe(sha256(b));
  });

  it('stays valid: qemu-img check (where the format has one), info and compare against the raw', async () => {
    const a = await convert(format, id);
    makeReproducible(id, a, createRandom('s1'), EPOCH, { finalName: `disk.${id}` });
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', '-f', qemuName, a])).stdout);
    expect(info['virtual-size']).toBe(48 * MiB);
    if (id !== 'vhd') {
      // qemu's vpc driver has no check; everything else must come out clean.
      const c = await run('qemu-img', ['check', '-f', qemuName, a], { reject: false });
      expect(c.exitCode, c.stdout + c.stderr).toBe(0);
    }
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', qemuName, raw, a], { reject: false });
    expect(cmp.exitCode, cmp.stdout + cmp.stderr).toBe(0);
    // A writer accepts it too (for vhdx: its headers and the emptied log): write other data into it, read it back.
    const other = join(tmp, `other-${id}.raw`);
    const t = new RawFileTarget(other);
    t.resize(48 * MiB);
    t.write(createRandom('other').bytes(MiB), 20 * MiB);
    t.close();
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', qemuName, other, a]);
    const cmp2 = await run('qemu-img', ['compare', '-f', 'raw', '-F', qemuName, other, a], { reject: false });
    expect(cmp2.exitCode, cmp2.stdout + cmp2.stderr).toBe(0);
  });

  if (id !== 'qcow2') {
    it('another seed gives other ids', async () => {
      const a = await convert(format, id);
      const b = await convert(format, id);
      makeReproducible(id, a, createRandom('s1'), EPOCH, { finalName: `disk.${id}` });
      makeReproducible(id, b, createRandom('s2'), EPOCH, { finalName: `disk.${id}` });
      expect(sha256(a)).not.toBe(sha256(b));
    });
  }
});

describe('the fields each format gets', () => {
  it('vmdk: CID from the seed and the final file name in the extent line', async () => {
    const a = await convert(vmdk, 'vmdk');
    makeReproducible('vmdk', a, createRandom('s1'), EPOCH, { finalName: 'my disk.vmdk' });
    const text = bytesAt(a, 512, 1024).toString('latin1');
    const cid = createRandom('s1').bytes(4).readUInt32BE(0).toString(16).padStart(8, '0');
    expect(text).toContain(`\nCID=${cid}\nparentCID=ffffffff\n`);
    expect(text).toMatch(/\nRW 98304 SPARSE "my disk\.vmdk"\n/);
    expect(text).not.toContain('.tmp.');
  });

  it('vmdk: accepts the CID qemu prints without leading zeros (one conversion in sixteen)', async () => {
    const a = await convert(vmdk, 'vmdk');
    const desc = bytesAt(a, 512, 1024);
    const text = desc.toString('latin1').replace(/\nCID=[0-9a-f]+\n/, '\nCID=fa1\n');
    const fd = openSync(a, 'r+');
    const out = Buffer.alloc(1024);
    out.write(text.replace(/\0+$/, ''), 'latin1');
    writeSync(fd, out, 0, 1024, 512);
    closeSync(fd);
    makeReproducible('vmdk', a, createRandom('s1'), EPOCH, { finalName: 'disk.vmdk' });
    expect(bytesAt(a, 512, 1024).toString('latin1')).toMatch(/\nCID=[0-9a-f]{8}\nparentCID=ffffffff\n/);
  });

  it('vhd: both footers carry the epoch, the seeded id and a correct checksum', async () => {
    const a = await convert(vhd, 'vhd');
    makeReproducible('vhd', a, createRandom('s1'), EPOCH);
    const size = readFileSync(a).length;
    const head = bytesAt(a, 0, 512);
    const foot = bytesAt(a, size - 512, 512);
    expect(head.equals(foot)).toBe(true);
    expect(foot.readUInt32BE(24)).toBe(EPOCH - 946_684_800);
    expect(foot.readUInt32BE(64)).toBe(vhdChecksum(foot));
    const uuid = createRandom('s1').uuid().replace(/-/g, '');
    expect(foot.subarray(68, 84).toString('hex').slice(16)).toBe(uuid.slice(16));
  });

  it('vhdx: valid header checksums, ordered sequence numbers, an empty (zeroed) log', async () => {
    const a = await convert(vhdx, 'vhdx');
    const before = [bytesAt(a, 64 * 1024, 4096), bytesAt(a, 128 * 1024, 4096)];
    makeReproducible('vhdx', a, createRandom('s1'), EPOCH);
    const after = [bytesAt(a, 64 * 1024, 4096), bytesAt(a, 128 * 1024, 4096)];
    for (const h of after) expect(h.readUInt32LE(4)).toBe(vhdxChecksum(h));
    const order = (hs: Buffer[]) => Math.sign(Number(hs[0]!.readBigUInt64LE(8) - hs[1]!.readBigUInt64LE(8)));
    expect(order(after)).toBe(order(before));
    expect(bytesAt(a, 1024 * 1024, 1024 * 1024).every((x) => x === 0)).toBe(true);
  });

  it('vdi: image and modification UUIDs from the seed, in GUID layout', async () => {
    const a = await convert(vdi, 'vdi');
    makeReproducible('vdi', a, createRandom('s1'), EPOCH);
    const r = createRandom('s1');
    const ids = [r.uuid(), r.uuid()].map((u) => u.replace(/-/g, ''));
    const at = bytesAt(a, 0x188, 32);
    // Version nibble 4 is in byte 7 when the third field is stored little-endian.
    expect(at[7]! >> 4).toBe(4);
    expect(at.subarray(8, 16).toString('hex')).toBe(ids[0]!.slice(16));
    expect(at.subarray(24, 32).toString('hex')).toBe(ids[1]!.slice(16));
  });
});

describe('refusing files it does not recognise', () => {
  it('fails with a typed error instead of patching blindly', () => {
    const junk = join(tmp, 'junk.img');
    writeFileSync(junk, Buffer.alloc(4 * 1024 * 1024, 1));
    for (const id of ['vmdk', 'vhd', 'vhdx', 'vdi'] as const) {
      let err: unknown;
      try {
        makeReproducible(id, junk, createRandom('x'), EPOCH);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(Img2vmError);
      expect((err as Img2vmError).kind).toBe('toolFailed');
    }
    expect(readFileSync(junk).every((x) => x === 1)).toBe(true);
  });

  it('rejects a timestamp that is not a time', () => {
    expect(() => makeReproducible('vhd', raw, createRandom('x'), Number.NaN)).toThrow(Img2vmError);
  });
});

describe('containerDisk', () => {
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllEnvs();
  });

  it('the archive of a reproducible qcow2 is byte-identical at another wall-clock time with one SOURCE_DATE_EPOCH', async () => {
    const q = join(tmp, 'cd.qcow2');
    const t = new Qcow2Target(q, { size: 16 * MiB });
    t.write(createRandom('cd').bytes(200_000), MiB);
    t.close();
    vi.stubEnv('SOURCE_DATE_EPOCH', String(EPOCH));
    const digests: string[] = [];
    for (const [i, when] of [new Date('2030-01-01T00:00:00Z'), new Date('2031-06-15T12:34:56Z')].entries()) {
      vi.useFakeTimers({ now: when, toFake: ['Date'] });
      const work = mkdtempSync(join(tmp, `cdw${i}-`));
      const out = join(tmp, `cd${i}.tar`);
      await writeContainerDiskArchive(q, out, work, EPOCH);
      digests.push(sha256(out));
      vi.useRealTimers();
    }
    expect(digests[1]).toBe(digests[0]);
  });
});
