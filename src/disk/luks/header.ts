// LUKS2 headers as bytes: the binary header twice (primary and secondary) with its JSON metadata, and keyslot 0.
//
// Layout (the LUKS2 on-disk format): two 16 KiB headers (4 KiB binary + 12 KiB JSON each), then the keyslots area
// up to the data segment at 16 MiB, which is where cryptsetup puts it too, so luksAddKey finds room for 31 more.
import { createHash, pbkdf2 } from 'node:crypto';
import { promisify } from 'node:util';
import { afSplit } from './af.js';
import { xtsEncrypt, XTS_KEY_BYTES } from './xts.js';

const pbkdf2Async = promisify(pbkdf2);

export const LUKS_HEADER_SIZE = 16 * 1024;
const BINARY_SIZE = 4096;
const JSON_SIZE = LUKS_HEADER_SIZE - BINARY_SIZE;
export const LUKS_KEYSLOTS_OFFSET = 2 * LUKS_HEADER_SIZE;
/** Where the encrypted data starts, from the start of the partition. */
export const LUKS_DATA_OFFSET = 16 * 1024 * 1024;
const KEYSLOTS_SIZE = LUKS_DATA_OFFSET - LUKS_KEYSLOTS_OFFSET;
/** The stripes of the anti-forensic split, as cryptsetup uses for every LUKS2 keyslot. */
export const AF_STRIPES = 4000;
const SALT_BYTES = 32;
const KEYSLOT_SECTOR = 512;

/** What the plan fixes about the volume (nothing secret). */
export interface LuksParams {
  uuid: string;
  cipher: 'aes-xts-plain64';
  keyBytes: number;
  /** The data segment's sector size (dm-crypt encrypts in these units). */
  sectorSize: 512 | 4096;
  hash: 'sha256';
  /** PBKDF2 iterations of the keyslot (the passphrase) and of the master key's digest. */
  keyslotIterations: number;
  digestIterations: number;
}

/** The keyslot area of one keyslot: the split key, padded to 4 KiB. */
function keyslotAreaSize(keyBytes: number): number {
  return Math.ceil((keyBytes * AF_STRIPES) / 4096) * 4096;
}

function b64(b: Buffer): string {
  return b.toString('base64');
}

/** The JSON metadata: one keyslot, one segment (the rest of the partition), one digest binding them. */
export function luksJson(p: LuksParams, m: { keyslotSalt: Buffer; digestSalt: Buffer; digest: Buffer }): string {
  const doc = {
    keyslots: {
      '0': {
        type: 'luks2',
        key_size: p.keyBytes,
        af: { type: 'luks1', stripes: AF_STRIPES, hash: p.hash },
        area: {
          type: 'raw',
          offset: String(LUKS_KEYSLOTS_OFFSET),
          size: String(keyslotAreaSize(p.keyBytes)),
          encryption: p.cipher,
          key_size: p.keyBytes,
        },
        kdf: { type: 'pbkdf2', hash: p.hash, iterations: p.keyslotIterations, salt: b64(m.keyslotSalt) },
      },
    },
    tokens: {},
    segments: {
      '0': {
        type: 'crypt',
        offset: String(LUKS_DATA_OFFSET),
        size: 'dynamic',
        iv_tweak: '0',
        encryption: p.cipher,
        sector_size: p.sectorSize,
      },
    },
    digests: {
      '0': {
        type: 'pbkdf2',
        keyslots: ['0'],
        segments: ['0'],
        hash: p.hash,
        iterations: p.digestIterations,
        salt: b64(m.digestSalt),
        digest: b64(m.digest),
      },
    },
    config: { json_size: String(JSON_SIZE), keyslots_size: String(KEYSLOTS_SIZE) },
  };
  return JSON.stringify(doc);
}

/** One binary header with its JSON area, checksummed (sha256 over both, the checksum field zero). */
export function binaryHeader(
  p: LuksParams,
  json: string,
  o: { secondary: boolean; salt: Buffer; seqid: number },
): Buffer {
  const jsonBytes = Buffer.from(json, 'utf8');
  if (jsonBytes.length >= JSON_SIZE) throw new Error(`LUKS2 JSON metadata of ${jsonBytes.length} bytes does not fit`);
  const h = Buffer.alloc(LUKS_HEADER_SIZE);
  Buffer.from(o.secondary ? 'SKUL\xba\xbe' : 'LUKS\xba\xbe', 'latin1').copy(h, 0);
  h.writeUInt16BE(2, 6);
  h.writeBigUInt64BE(BigInt(LUKS_HEADER_SIZE), 8);
  h.writeBigUInt64BE(BigInt(o.seqid), 16);
  // label (24, 48 bytes) left empty
  h.write('sha256', 72, 'latin1');
  o.salt.copy(h, 104, 0, 64);
  h.write(p.uuid, 168, 'latin1');
  // subsystem (208, 48 bytes) left empty
  h.writeBigUInt64BE(BigInt(o.secondary ? LUKS_HEADER_SIZE : 0), 256);
  jsonBytes.copy(h, BINARY_SIZE);
  createHash('sha256').update(h).digest().copy(h, 448);
  return h;
}

/** Where the header area's pieces go, relative to the start of the partition. */
export interface HeaderArea {
  primary: Buffer;
  secondary: Buffer;
  keyslot: { offset: number; bytes: Buffer };
}

/**
 * The whole header area for masterKey under passphrase. random supplies every salt and stripe: the system's
 * randomness, or a seeded one when the master key is given (reproducible bytes, for tests).
 */
export async function luksHeaderArea(
  p: LuksParams,
  masterKey: Buffer,
  passphrase: Buffer,
  random: (n: number) => Buffer,
): Promise<HeaderArea> {
  if (masterKey.length !== p.keyBytes || p.keyBytes !== XTS_KEY_BYTES)
    throw new Error(`a LUKS2 ${p.cipher} master key is ${XTS_KEY_BYTES} bytes, not ${masterKey.length}`);
  const keyslotSalt = random(SALT_BYTES);
  const digestSalt = random(SALT_BYTES);
  const digestBytes = createHash(p.hash).digest().length;
  const digest = await pbkdf2Async(masterKey, digestSalt, p.digestIterations, digestBytes, p.hash);
  const slotKey = await pbkdf2Async(passphrase, keyslotSalt, p.keyslotIterations, p.keyBytes, p.hash);
  const material = Buffer.alloc(keyslotAreaSize(p.keyBytes));
  afSplit(masterKey, AF_STRIPES, p.hash, random).copy(material);
  const keyslot = xtsEncrypt(slotKey, material, 0, KEYSLOT_SECTOR);
  slotKey.fill(0);
  const json = luksJson(p, { keyslotSalt, digestSalt, digest });
  return {
    primary: binaryHeader(p, json, { secondary: false, salt: random(64), seqid: 1 }),
    secondary: binaryHeader(p, json, { secondary: true, salt: random(64), seqid: 1 }),
    keyslot: { offset: LUKS_KEYSLOTS_OFFSET, bytes: keyslot },
  };
}
