// Firmware choice from partition tables generated as bytes (MBR, GPT with 512- and 4096-byte sectors, hybrids).
import { describe, expect, it } from 'vitest';
import { detectArch, detectFirmware, gptTypes, guidToString } from '../../src/vm/firmware.js';

const ESP = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
const BIOS_BOOT = '21686148-6449-6e6f-744e-656564454649';
const LINUX = '0fc63daf-8483-4772-8e79-3d69d8477de4';

function guidBytes(text: string): Uint8Array {
  const h = text.replaceAll('-', '');
  const b = Buffer.from(h, 'hex');
  // The first three fields are little-endian on disk.
  return Uint8Array.from([b[3]!, b[2]!, b[1]!, b[0]!, b[5]!, b[4]!, b[7]!, b[6]!, ...b.subarray(8)]);
}

function mbr(entries: { type: number; start: number; sectors: number }[], bootCode = true, size = 1024 * 1024): Buffer {
  const buf = Buffer.alloc(size);
  if (bootCode) buf.fill(0x90, 0, 440);
  entries.forEach((e, i) => {
    const o = 446 + i * 16;
    buf[o + 4] = e.type;
    buf.writeUInt32LE(e.start, o + 8);
    buf.writeUInt32LE(e.sectors, o + 12);
  });
  buf[510] = 0x55;
  buf[511] = 0xaa;
  return buf;
}

function gpt(types: string[], opts: { sector?: number; bootCode?: boolean; hybrid?: boolean } = {}): Buffer {
  const sector = opts.sector ?? 512;
  const entries = [{ type: 0xee, start: 1, sectors: 0xffffffff }];
  if (opts.hybrid) entries.push({ type: 0x83, start: 4096, sectors: 8192 });
  const buf = mbr(entries, opts.bootCode ?? false);
  buf.write('EFI PART', sector, 'latin1');
  buf.writeBigUInt64LE(2n, sector + 72); // partition entries at LBA 2
  buf.writeUInt32LE(128, sector + 80);
  buf.writeUInt32LE(128, sector + 84);
  types.forEach((t, i) => buf.set(guidBytes(t), 2 * sector + i * 128));
  return buf;
}

describe('detectFirmware', () => {
  it('MBR with boot code → BIOS', () => {
    expect(detectFirmware(mbr([{ type: 0x83, start: 2048, sectors: 1638400 }]))).toEqual({
      firmware: 'bios',
      table: 'mbr',
      reason: 'MBR partition table: BIOS',
    });
  });

  it('GPT with only an EFI System partition → UEFI', () => {
    const g = detectFirmware(gpt([ESP, LINUX]));
    expect(g.firmware).toBe('uefi');
    expect(g.table).toBe('gpt');
  });

  it('GPT with a BIOS boot partition → BIOS', () => {
    expect(detectFirmware(gpt([BIOS_BOOT, LINUX]))).toMatchObject({ firmware: 'bios', table: 'gpt' });
  });

  it('hybrid GPT (BIOS boot and ESP) → BIOS', () => {
    expect(detectFirmware(gpt([BIOS_BOOT, ESP, LINUX], { bootCode: true }))).toMatchObject({
      firmware: 'bios',
      table: 'hybrid',
    });
  });

  it('GPT with an ESP behind a hybrid MBR with boot code → BIOS', () => {
    expect(detectFirmware(gpt([ESP, LINUX], { bootCode: true, hybrid: true }))).toMatchObject({
      firmware: 'bios',
      table: 'hybrid',
    });
  });

  it('reads GPTs with 4096-byte sectors', () => {
    expect(detectFirmware(gpt([ESP, LINUX], { sector: 4096 }))).toMatchObject({ firmware: 'uefi', table: 'gpt' });
    expect(gptTypes(gpt([LINUX], { sector: 4096 }))).toEqual([LINUX]);
  });

  it('GPT with neither boot partition: MBR boot code decides', () => {
    expect(detectFirmware(gpt([LINUX], { bootCode: true })).firmware).toBe('bios');
    expect(detectFirmware(gpt([LINUX], { bootCode: false })).firmware).toBe('uefi');
  });

  it('MBR whose only bootable thing is an EFI System partition → UEFI', () => {
    expect(detectFirmware(mbr([{ type: 0xef, start: 2048, sectors: 65536 }], false))).toMatchObject({
      firmware: 'uefi',
      table: 'mbr',
    });
    expect(detectFirmware(mbr([{ type: 0xef, start: 2048, sectors: 65536 }], true)).firmware).toBe('bios');
  });

  it('no partition table → BIOS, and says so', () => {
    expect(detectFirmware(Buffer.alloc(4096))).toMatchObject({ firmware: 'bios', table: 'none' });
    expect(detectFirmware(Buffer.alloc(10)).table).toBe('none');
  });

  it('a protective MBR without a GPT header is read as MBR', () => {
    expect(detectFirmware(mbr([{ type: 0xee, start: 1, sectors: 100 }]))).toMatchObject({
      firmware: 'bios',
      table: 'mbr',
    });
  });

  it('prints GUIDs in their usual mixed-endian text form', () => {
    expect(guidToString(guidBytes(ESP))).toBe(ESP);
    expect(guidToString(guidBytes(BIOS_BOOT))).toBe(BIOS_BOOT);
  });
});

describe('detectArch: the guest architecture from the disk', () => {
  const ROOT_AMD64 = '4f68bce3-e8cd-4db1-96e7-fbcaf984b709';
  const ROOT_ARM64 = 'b921b045-1df0-41c3-af44-4c6f280d3fae';
  it('reads the Discoverable Partitions root type of the GPT', () => {
    expect(detectArch(gpt([ESP, ROOT_ARM64]))).toMatchObject({ arch: 'arm64', reason: /arm64 root type/ });
    expect(detectArch(gpt([BIOS_BOOT, ESP, ROOT_AMD64]))).toMatchObject({ arch: 'amd64', reason: /amd64 root type/ });
  });
  it('takes a disk without one (MBR, a plain Linux partition) as amd64 and says why', () => {
    expect(detectArch(gpt([ESP, LINUX]))).toMatchObject({ arch: 'amd64', reason: /no architecture-specific/ });
    expect(detectArch(mbr([{ type: 0x83, start: 2048, sectors: 2048 }]))).toMatchObject({ arch: 'amd64' });
  });
});
