// Verifies a detached OpenPGP signature with gpgv against one keyring, judging gpgv's machine-readable status lines as apt does.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../tools/index.js';

export const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export function gpgvArgv(keyring: string, sigFile: string, dataFile: string): string[] {
  return ['--status-fd', '1', '--keyring', keyring, sigFile, dataFile];
}

export interface SignatureVerdict {
  ok: boolean;
  /** Fingerprints of the keys that made good signatures. */
  signers: string[];
  /** Why not, when !ok. */
  reason?: string;
}

/** Digest algorithm ids of RFC 4880 §9.4 that no longer count as a signature (MD5, SHA-1, RIPEMD-160). */
const WEAK_HASHES = new Set(['1', '2', '3']);

/**
 * Good when at least one signature is GOODSIG + VALIDSIG with a strong digest from a key in the
 * keyring, and no signature is BAD. Signatures by keys the keyring lacks (NO_PUBKEY) are ignored, as
 * apt ignores them: Debian signs with several keys, and an older keyring knows only some.
 */
export function judgeStatus(status: string): SignatureVerdict {
  interface Sig {
    good: boolean;
    valid?: string[];
    bad: boolean;
    other?: string;
  }
  const sigs: Sig[] = [];
  let cur: Sig | undefined;
  for (const line of status.split('\n')) {
    const m = /^\[GNUPG:\] ([A-Z_]+)(?: (.*))?$/.exec(line.trim());
    if (!m) continue;
    const [kw, rest = ''] = [m[1]!, m[2]];
    if (kw === 'NEWSIG' || !cur) {
      cur = { good: false, bad: false };
      sigs.push(cur);
      if (kw === 'NEWSIG') continue;
    }
    switch (kw) {
      case 'GOODSIG':
        cur.good = true;
        break;
      case 'VALIDSIG':
        cur.valid = rest.split(' ');
        break;
      case 'BADSIG':
        cur.bad = true;
        break;
      case 'EXPSIG':
      case 'EXPKEYSIG':
      case 'REVKEYSIG':
        cur.other = `${kw} ${rest.split(' ')[0] ?? ''}`.trim();
        break;
      case 'ERRSIG': {
        // ERRSIG keyid pkalgo hashalgo class time rc: rc 9 is "no public key", 4 an unsupported algorithm.
        const f = rest.split(' ');
        cur.other = `ERRSIG ${f[0] ?? ''} rc=${f[5] ?? '?'}`;
        break;
      }
    }
  }
  if (sigs.some((s) => s.bad))
    return { ok: false, signers: [], reason: 'a signature is BAD (the file was altered after signing)' };
  const good = sigs.filter((s) => s.good && s.valid && s.valid.length >= 9 && !WEAK_HASHES.has(s.valid[7]!));
  if (good.length === 0) {
    const weak = sigs.some((s) => s.good && s.valid && WEAK_HASHES.has(s.valid[7] ?? ''));
    const other = sigs.map((s) => s.other).filter(Boolean);
    const why = weak
      ? 'only signatures with a weak digest (MD5/SHA-1)'
      : other.length
        ? `no good signature (${other.join(', ')}: e.g. signed by a key the keyring does not have, or an expired/revoked one)`
        : 'no good signature';
    return { ok: false, signers: [], reason: why };
  }
  return { ok: true, signers: good.map((s) => s.valid![0]!) };
}

/** Runs gpgv on text + detached signature in a private directory (so no user keyring or gpg.conf takes part). */
export async function verifyDetached(
  text: Buffer,
  signature: Buffer,
  keyring: string,
  workDir: string,
  signal?: AbortSignal,
): Promise<SignatureVerdict> {
  const dir = await mkdtemp(join(workDir, 'gpgv-'));
  try {
    const data = join(dir, 'Release');
    const sig = join(dir, 'Release.gpg');
    await writeFile(data, text);
    await writeFile(sig, signature);
    const r = await run('gpgv', gpgvArgv(keyring, sig, data), { reject: false, signal, env: { GNUPGHOME: dir } });
    const verdict = judgeStatus(r.stdout);
    if (!verdict.ok) {
      const said = r.stderr
        .trim()
        .split('\n')
        .filter((l) => !/^gpgv: +(Signature made|using )/.test(l))
        .slice(-2)
        .join(' | ');
      verdict.reason = /\[GNUPG:\]/.test(r.stdout)
        ? `${verdict.reason ?? 'rejected'}${said ? `; gpgv: ${said}` : ''}`
        : `gpgv could not check it: ${said || `exit ${r.exitCode}`}`;
    }
    return verdict;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
