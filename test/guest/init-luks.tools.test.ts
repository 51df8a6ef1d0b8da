// img2vm's init unlocking LUKS2 (native/init's tool mode): SHA-256/HMAC/PBKDF2 vectors, and the master key recovered
// from a header img2vm's TS writer made and from one cryptsetup made on a plain file; a wrong passphrase refused.
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { luksHeaderArea, LUKS_DATA_OFFSET, type LuksParams } from '../../src/disk/luks/header.js';

const REPO = join(import.meta.dirname, '..', '..');
const INIT = join(REPO, 'native', 'init');
let work: string;

beforeAll(async () => {
  const r = await execa('bash', [join(REPO, 'scripts', 'build-native.sh')], { reject: false, all: true });
  expect(r.exitCode, `scripts/build-native.sh failed:\n${r.all}`).toBe(0);
  work = mkdtempSync(join(tmpdir(), 'img2vm-init-luks-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const hex = (s: string) => Buffer.from(s, 'latin1').toString('hex');
async function tool(args: string[], input?: string) {
  return execa(INIT, args, { reject: false, input: input ?? '' });
}

describe('SHA-256, HMAC-SHA256, PBKDF2-HMAC-SHA256 in C', () => {
  it('SHA-256 gives the FIPS 180-2 vectors (one block, two blocks, empty)', async () => {
    expect((await tool(['--sha256', hex('abc')])).stdout).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    expect((await tool(['--sha256', hex('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')])).stdout).toBe(
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
    expect((await tool(['--sha256', ''])).stdout).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });

  it('HMAC-SHA256 gives RFC 4231 test cases 1, 2 and 6 (a key longer than a block)', async () => {
    expect((await tool(['--hmac-sha256', '0b'.repeat(20), hex('Hi There')])).stdout).toBe(
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    );
    expect((await tool(['--hmac-sha256', hex('Jefe'), hex('what do ya want for nothing?')])).stdout).toBe(
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
    const msg = 'Test Using Larger Than Block-Size Key - Hash Key First';
    expect((await tool(['--hmac-sha256', 'aa'.repeat(131), hex(msg)])).stdout).toBe(
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    );
  });

  it('PBKDF2-HMAC-SHA256 gives RFC 7914 §11 vectors (1 and 80,000 iterations, 64 bytes: two blocks)', async () => {
    expect((await tool(['--pbkdf2-sha256', hex('passwd'), hex('salt'), '1', '64'])).stdout).toBe(
      '55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc' +
        '49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783',
    );
    expect((await tool(['--pbkdf2-sha256', hex('Password'), hex('NaCl'), '80000', '64'])).stdout).toBe(
      '4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56' +
        'a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d',
    );
  });

  it("agrees with Node's PBKDF2 on a 600,000-iteration key of odd length (the keyslot's work factor)", async () => {
    const { pbkdf2Sync } = await import('node:crypto');
    const want = pbkdf2Sync('pass phrase', 'sodium chloride', 600_000, 40, 'sha256').toString('hex');
    expect((await tool(['--pbkdf2-sha256', hex('pass phrase'), hex('sodium chloride'), '600000', '40'])).stdout).toBe(
      want,
    );
  });
});

const PARAMS: LuksParams = {
  uuid: '6c1d2f3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f',
  cipher: 'aes-xts-plain64',
  keyBytes: 64,
  sectorSize: 512,
  hash: 'sha256',
  keyslotIterations: 1000,
  digestIterations: 1000,
};

/** A LUKS2 header area as img2vm's writer makes it, in a file of headers + keyslots + one data sector. */
async function tsVolume(name: string, masterKey: Buffer, pass: string): Promise<string> {
  const area = await luksHeaderArea(PARAMS, masterKey, Buffer.from(pass), randomBytes);
  const f = Buffer.alloc(LUKS_DATA_OFFSET + 512);
  area.primary.copy(f, 0);
  area.secondary.copy(f, area.primary.length);
  area.keyslot.bytes.copy(f, area.keyslot.offset);
  const path = join(work, name);
  writeFileSync(path, f);
  return path;
}

interface Unlocked {
  uuid: string;
  header: 'primary' | 'secondary';
  keyslot: number;
  keyBytes: number;
  sectorSize: number;
  offset: number;
  table: string;
}

describe('--luks-unlock: the init opening a LUKS2 volume', () => {
  it("recovers the master key of img2vm's own header and builds the dm-crypt table from it", async () => {
    const key = randomBytes(64);
    const vol = await tsVolume('ts.luks', key, 'correct horse');
    const r = await tool(['--luks-unlock', vol], 'correct horse\n');
    expect(r.exitCode, r.stderr).toBe(0);
    const u = JSON.parse(r.stdout) as Unlocked;
    expect(u).toMatchObject({
      uuid: PARAMS.uuid,
      header: 'primary',
      keyslot: 0,
      keyBytes: 64,
      sectorSize: 512,
      offset: LUKS_DATA_OFFSET,
    });
    expect(u.table).toBe(`aes-xts-plain64 ${key.toString('hex')} 0 254:0 ${LUKS_DATA_OFFSET / 512}`);
    expect(r.stderr).toContain(`Please unlock disk root (LUKS2 UUID=${PARAMS.uuid}): `);
    expect(r.stderr).not.toContain('correct horse');
  });

  it('says a wrong passphrase is wrong, asks again, and takes the right one on the second try', async () => {
    const vol = await tsVolume('retry.luks', randomBytes(64), 'right');
    const r = await tool(['--luks-unlock', vol], 'wrong\nright\n');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain('No key available with this passphrase (try 1 of 3).');
    expect(r.stderr.match(/Please unlock disk/g)).toHaveLength(2);
  });

  it('refuses after three wrong passphrases with a fatal message, and at the end of input', async () => {
    const vol = await tsVolume('refuse.luks', randomBytes(64), 'right');
    const r = await tool(['--luks-unlock', vol], 'a\nb\nc\nright\n');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('fatal: the LUKS2 passphrase was refused 3 times');
    expect(r.stdout).toBe('');
    const eof = await tool(['--luks-unlock', vol], 'a\n');
    expect(eof.exitCode).toBe(1);
    expect(eof.stderr).toContain("fatal: no passphrase: the console's input ended");
  });

  it('falls back to the secondary header when the primary is damaged, and refuses when both are', async () => {
    const key = randomBytes(64);
    const vol = await tsVolume('damaged.luks', key, 'x');
    const { openSync, writeSync, closeSync } = await import('node:fs');
    const fd = openSync(vol, 'r+');
    writeSync(fd, Buffer.from('{"tampered":1}'), 0, 14, 4096 + 100);
    const one = await tool(['--luks-unlock', vol], 'x\n');
    expect(one.exitCode, one.stderr).toBe(0);
    expect(JSON.parse(one.stdout)).toMatchObject({ header: 'secondary', keyslot: 0 });
    expect((JSON.parse(one.stdout) as Unlocked).table).toContain(key.toString('hex'));
    writeSync(fd, Buffer.from('{"tampered":2}'), 0, 14, 16384 + 4096 + 100);
    closeSync(fd);
    const both = await tool(['--luks-unlock', vol], 'x\n');
    expect(both.exitCode).toBe(1);
    expect(both.stderr).toContain("the LUKS2 header's checksum does not match (damaged header)");
    const plain = join(work, 'plain');
    writeFileSync(plain, Buffer.alloc(8192));
    const none = await tool(['--luks-unlock', plain], 'x\n');
    expect(none.stderr).toContain('no LUKS header');
  });
});

describe('--luks-unlock on volumes cryptsetup formats (a plain file: no root, no device mapper)', () => {
  const cs = (args: string[], input: string) => execa('cryptsetup', args, { input, reject: false, all: true });

  it('opens a pbkdf2 keyslot of cryptsetup luksFormat to the key cryptsetup was given', async () => {
    const file = join(work, 'cs.luks');
    const keyFile = join(work, 'cs.key');
    const key = randomBytes(64);
    writeFileSync(file, Buffer.alloc(32 * 1024 * 1024));
    writeFileSync(keyFile, key);
    const f = await cs(
      [
        'luksFormat',
        '-q',
        '--type',
        'luks2',
        '--pbkdf',
        'pbkdf2',
        '--pbkdf-force-iterations',
        '1000',
        '--cipher',
        'aes-xts-plain64',
        '--key-size',
        '512',
        '--sector-size',
        '512',
        '--volume-key-file',
        keyFile,
        '--key-file',
        '-',
        file,
      ],
      'cs pass',
    );
    expect(f.exitCode, f.all).toBe(0);
    const r = await tool(['--luks-unlock', file], 'cs pass\n');
    expect(r.exitCode, r.stderr).toBe(0);
    const u = JSON.parse(r.stdout) as Unlocked;
    expect(u.keyslot).toBe(0);
    expect(u.table).toContain(`aes-xts-plain64 ${key.toString('hex')} 0 254:0 `);
    expect((await tool(['--luks-unlock', file], 'not it\nnot it\nnot it\n')).exitCode).toBe(1);
  }, 60_000);

  it('maps a volume of 4096-byte sectors with sector_size:4096, as cryptsetup does for LUKS2', async () => {
    const file = join(work, 'cs4k.luks');
    writeFileSync(file, Buffer.alloc(32 * 1024 * 1024));
    const fast = ['--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000'];
    const f = await cs(
      ['luksFormat', '-q', '--type', 'luks2', ...fast, '--sector-size', '4096', '--key-file', '-', file],
      '4k',
    );
    expect(f.exitCode, f.all).toBe(0);
    const r = await tool(['--luks-unlock', file], '4k\n');
    expect(r.exitCode, r.stderr).toBe(0);
    const u = JSON.parse(r.stdout) as Unlocked;
    expect(u.sectorSize).toBe(4096);
    expect(u.table).toMatch(new RegExp(`^aes-xts-plain64 [0-9a-f]{128} 0 254:0 ${u.offset / 512} 1 sector_size:4096$`));
  }, 60_000);

  it('names an argon2id keyslot (luksAddKey by default) as one it cannot open, and still opens the pbkdf2 one', async () => {
    const file = join(work, 'argon.luks');
    writeFileSync(file, Buffer.alloc(32 * 1024 * 1024));
    const argon = ['--pbkdf', 'argon2id', '--pbkdf-force-iterations', '4', '--pbkdf-memory', '32768'];
    const f = await cs(['luksFormat', '-q', '--type', 'luks2', ...argon, '--key-file', '-', file], 'only argon');
    expect(f.exitCode, f.all).toBe(0);
    const r = await tool(['--luks-unlock', file], 'only argon\n');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/no keyslot img2vm's init can open \(keyslot 0: its KDF is argon2id/);
    writeFileSync(join(work, 'old'), 'only argon');
    const add = await cs(
      [
        'luksAddKey',
        '-q',
        '--pbkdf',
        'pbkdf2',
        '--pbkdf-force-iterations',
        '1000',
        '--key-file',
        join(work, 'old'),
        file,
        '-',
      ],
      'pbkdf2 pass',
    );
    expect(add.exitCode, add.all).toBe(0);
    const ok = await tool(['--luks-unlock', file], 'pbkdf2 pass\n');
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect((JSON.parse(ok.stdout) as Unlocked).keyslot).toBe(1);
  }, 60_000);
});
