// An encrypted root under img2vm's own init: a scratch image converted with --init img2vm --luks-password boots,
// the init asks for the passphrase on the serial console, img2vm test (and img2vm run) types it, and the workload
// runs from the unlocked root; a wrong passphrase ends the boot at once with a clear message.
import { execa } from 'execa';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { layerOf, writeOciArchive } from '../../fixtures/oci.js';
import { BIN, img2vm, sh } from './helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' };
const PASS = 'img2vm init unlocks this';
// The workload proves where it runs: its root is the dm-crypt mapping, not the partition.
const PROBE_C = `
#include <stdio.h>
#include <string.h>
int main(void) {
  char l[512];
  FILE *f = fopen("/proc/mounts", "r");
  while (f && fgets(l, sizeof l, f))
    if (!strncmp(l, "/dev/", 5) && strstr(l, " / ")) printf("probe: root %s", l);
  printf("probe: ran from the encrypted root\\n");
  return 5;
}
`;

let tmp: string;
let image: string;
const timings: string[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-luks-init-'));
  await writeFile(join(tmp, 'probe.c'), PROBE_C);
  await sh('musl-gcc', ['-static', '-Os', '-o', join(tmp, 'probe'), join(tmp, 'probe.c')]);
  image = join(tmp, 'probe.tar');
  await writeOciArchive(
    image,
    [await layerOf([{ name: 'probe', mode: 0o755, content: await readFile(join(tmp, 'probe')) }])],
    { Entrypoint: ['/probe'] },
  );
}, 120_000);

afterAll(async () => {
  if (timings.length) console.log(`LUKS2 under img2vm's init:\n${timings.join('\n')}`);
  await rm(tmp, { recursive: true, force: true });
});

const secs = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

it('--init img2vm: the init asks, img2vm test and run type the passphrase, the workload runs; a wrong one fails', async () => {
  const disk = join(tmp, 'luks.qcow2');
  let t0 = performance.now();
  const c = await img2vm(
    [`oci-archive:${image}`, '--init', 'img2vm', '--boot', 'bios', '--luks-password', PASS, '-o', disk, '--json'],
    { env: NO_DAEMON },
  );
  expect(c.exitCode, c.all).toBe(0);
  timings.push(`convert: ${secs(t0)}`);
  const plan = (JSON.parse(c.stdout) as { plan: { luks: { uuid: string }; boot: { cmdline: string } } }).plan;
  expect(c.stdout).not.toContain(PASS);
  expect(plan.boot.cmdline).not.toContain(plan.luks.uuid);

  // the wrong passphrase first: it ends at the init's refusal (exit 23), not at the timeout (exit 20)
  t0 = performance.now();
  const bad = await img2vm(['test', disk, '--luks-password', 'not the passphrase', '--timeout', '600', '--verbose']);
  expect(bad.exitCode, bad.all).toBe(23);
  expect(bad.stderr).toMatch(/the LUKS passphrase was refused by the guest/);
  expect(bad.all).toContain(`Please unlock disk root (LUKS2 UUID=${plan.luks.uuid}): `);
  expect(bad.all).toContain('No key available with this passphrase (try 1 of 3).');
  timings.push(`test with a wrong passphrase, to the refusal: ${secs(t0)}`);

  t0 = performance.now();
  const ok = await img2vm([
    'test',
    disk,
    '--luks-password',
    PASS,
    '--expect-exit',
    '5',
    '--timeout',
    '600',
    '--verbose',
  ]);
  expect(ok.exitCode, ok.all).toBe(0);
  const unlocked = /LUKS2 volume \S+ unlocked with keyslot 0 in ([\d.]+) s/.exec(ok.all);
  expect(unlocked, ok.all).not.toBeNull();
  expect(ok.all).toContain('probe: root /dev/img2vm-root / ext4');
  expect(ok.all).not.toContain(PASS);
  timings.push(
    `test to the workload's exit: ${secs(t0)}; unlock in the guest (PBKDF2 600k + digest): ${unlocked![1]} s`,
  );

  // img2vm run: typed from a file, the console handed over: the workload's output alone and its status
  await writeFile(join(tmp, 'pass'), `${PASS}\n`);
  t0 = performance.now();
  const run = await execa(BIN, ['run', disk, '--luks-password-file', join(tmp, 'pass'), '--timeout', '600'], {
    reject: false,
    all: true,
    stdin: 'ignore',
    env: { CI: 'true' },
  });
  expect(run.exitCode, run.all).toBe(5);
  expect(run.stdout).toBe('probe: root /dev/img2vm-root / ext4 rw,relatime 0 0\nprobe: ran from the encrypted root');
  timings.push(`run to the workload's exit: ${secs(t0)}`);
}, 2_400_000);
