// UEFI firmware reads the ESP writeFat32 makes: OVMF boots GRUB from the removable path, and its own FAT driver reads long names.
import { execa } from 'execa';
import { copyFileSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createRandom } from '../../src/core/random.js';
import { MiB } from '../../src/core/units.js';
import { writeFat32, type Fat32File } from '../../src/disk/fat32.js';
import { partitionByRole, planLayout } from '../../src/disk/layout.js';
import { writePartitionTable } from '../disk/table-file.js';
import { RawFileTarget } from '../../src/disk/target.js';
import { OVMF_CANDIDATES } from '../../src/vm/firmware.js';
import { qemuArgs } from '../../src/vm/qemu.js';

const tmp = mkdtempSync(join(tmpdir(), 'img2vm-esp-ovmf-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const text = (s: string) => new TextEncoder().encode(s);
const ENTRY = 'loader/entries/img2vm-6.1.0-28-cloud-amd64.conf';

/** A GPT disk (planLayout + writePartitionTable) whose only file system is an ESP written by writeFat32. */
async function disk(name: string, files: Fat32File[]): Promise<string> {
  const layout = planLayout({ boot: 'uefi', rootSize: MiB, random: createRandom('esp-ovmf') });
  const esp = partitionByRole(layout, 'esp')!;
  const path = join(tmp, `${name}.raw`);
  const t = new RawFileTarget(path);
  t.resize(layout.diskSize);
  await writeFat32(
    t,
    { offset: esp.start, size: esp.size, volumeId: 0x1234abcd, label: 'EFI', epoch: 1700000000 },
    files,
  );
  t.close();
  const fd = openSync(path, 'r+');
  try {
    await writePartitionTable(fd, layout);
  } finally {
    closeSync(fd);
  }
  return path;
}

/** Boots the disk under OVMF with the project's own QEMU command line (TCG, no network) until the guest powers off. */
async function boot(path: string): Promise<string> {
  const code = OVMF_CANDIDATES[0]!;
  const vars = join(tmp, `${Math.random().toString(36).slice(2)}.vars.fd`);
  copyFileSync(code.vars, vars);
  const argv = qemuArgs({
    disk: path,
    format: 'raw',
    firmware: 'uefi',
    ovmf: { code: code.code, vars },
    accel: 'tcg',
    memMiB: 256,
    cpus: 1,
    snapshot: true,
    publish: [],
    console: 'pipe',
  });
  expect(argv.join(' ')).toContain('-nic none');
  const r = await execa('qemu-system-x86_64', argv, { reject: false, timeout: 180_000, stdin: 'ignore', all: true });
  // ANSI sequences and CRs out, so the assertions read plain lines.
  const out = (r.all ?? '').replace(/\x1b\[[0-9;=?]*[a-zA-Z]/g, '').replaceAll('\r', '');
  if (r.timedOut || r.exitCode !== 0)
    throw new Error(`QEMU ${r.timedOut ? 'timed out' : `exited ${r.exitCode}`}:\n${out}`);
  return out;
}

describe('OVMF reads the ESP', () => {
  it('boots GRUB from EFI/BOOT/BOOTX64.EFI, and GRUB reads long-named files from it', async () => {
    const cfg = join(tmp, 'early.cfg');
    writeFileSync(
      cfg,
      [
        'echo IMG2VM-GRUB-STARTED',
        `cat (hd0,gpt1)/${ENTRY}`,
        'cat (hd0,gpt1)/loader/Mixed.Case.Long.Name.txt',
        'echo IMG2VM-GRUB-DONE',
        'halt',
      ].join('\n'),
    );
    const efi = join(tmp, 'bootx64.efi');
    await execa('grub-mkimage', [
      '-O',
      'x86_64-efi',
      '-p',
      '/EFI/BOOT',
      '-c',
      cfg,
      '-o',
      efi,
      'echo',
      'halt',
      'cat',
      'fat',
      'part_gpt',
    ]);
    const out = await boot(
      await disk('grub', [
        { path: 'EFI/BOOT/BOOTX64.EFI', content: readFileSync(efi) },
        { path: ENTRY, content: text('MARKER-LONG-NAME\n') },
        { path: 'loader/Mixed.Case.Long.Name.txt', content: text('MARKER-MIXED-CASE\n') },
      ]),
    );
    expect(out).toMatch(/IMG2VM-GRUB-STARTED\nMARKER-LONG-NAME\n+MARKER-MIXED-CASE\n+IMG2VM-GRUB-DONE/);
  });

  it("lets the firmware's own FAT driver (the UEFI shell) read long names and show NT lower-case names", async () => {
    // No boot loader: OVMF falls back to its built-in shell, which runs startup.nsh from the first file system.
    const script = [
      'echo IMG2VM-SHELL-STARTED',
      'fs0:',
      `type \\${ENTRY.replaceAll('/', '\\')}`,
      'ls \\loader',
      'echo IMG2VM-SHELL-DONE',
      'reset -s',
      '',
    ].join('\r\n');
    const out = await boot(
      await disk('shell', [
        { path: 'startup.nsh', content: text(script) },
        { path: ENTRY, content: text('MARKER-LONG-NAME\n') },
        { path: 'loader/Mixed.Case.Long.Name.txt', content: text('x') },
        { path: 'loader/lower.txt', content: text('xy') },
      ]),
    );
    expect(out).toMatch(/IMG2VM-SHELL-STARTED/);
    expect(out).toMatch(/type \\loader\\entries\\img2vm-6\.1\.0-28-cloud-amd64\.conf\nMARKER-LONG-NAME/);
    // The listing: names as stored (long names, and "lower.txt"/"entries" from the NT case flags), times from the epoch.
    expect(out).toMatch(/11\/14\/2023 +22:13 +<DIR> +\d+ +entries\n/);
    expect(out).toMatch(/11\/14\/2023 +22:13 +2 +lower\.txt\n/);
    expect(out).toMatch(/11\/14\/2023 +22:13 +1 +Mixed\.Case\.Long\.Name\.txt\n/);
    expect(out).toMatch(/IMG2VM-SHELL-DONE/);
  });
});
