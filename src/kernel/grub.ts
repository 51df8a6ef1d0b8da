// Boot-loader files for a guest architecture the host has no package for (arm64 on an amd64 host): GRUB's EFI
// modules (grub-efi-<arch>-bin) and systemd-boot (systemd-boot-efi) from Debian, found through the signed index,
// hash-checked, unpacked once into the cache.
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GuestArch } from '../core/arch.js';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { cacheDir } from '../core/paths.js';
import { ByteSource, TarReader } from '../rootfs/tar.js';
import { run } from '../tools/index.js';
import { debMembers } from './ar.js';
import { DEFAULT_MIRROR, defaultSecurityMirror, fetchSuites } from './archive.js';
import { decode } from './codec.js';
import { compareDebVersions } from './debversion.js';
import { DEBIAN_KEYRING } from './gpgv.js';
import { downloadFile } from './http.js';
import type { PackageStanza } from './packages.js';

const DAY = 24 * 3600_000;
/** A GRUB module directory is a few MiB; a package unpacking to more is hostile. */
const MAX_DATA = 256 << 20;
/** The module directory holds plain files with plain names (*.mod, *.lst, kernel.img, ...). */
const MODULE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,100}$/;

/**
 * Which Debian release's GRUB matches the host's grub-mkimage: grub-mkimage links the modules and kernel.img it is
 * given itself, so they must come from its own GRUB version (a newer kernel.img may hold relocations it cannot do).
 */
export function suiteForGrubVersion(version: string): string {
  const upstream = /\(GRUB\)\s+(\d+\.\d+)/.exec(version)?.[1];
  const known: Record<string, string> = { '2.06': 'bookworm', '2.12': 'trixie' };
  const suite = upstream && known[upstream];
  if (suite) return suite;
  throw new Img2vmError(
    'toolMissing',
    `the host's grub-mkimage is ${version.trim() || 'of an unknown version'}, and img2vm knows which Debian release has the matching GRUB modules only for 2.06 (bookworm) and 2.12 (trixie)`,
    'install grub-common from Debian 12 or 13 (apt-get install grub-common)',
  );
}

export interface DebianPackageOptions {
  name: string;
  arch: string;
  suite: string;
  mirror?: string;
  /** The keyring the archive must be signed with (default Debian's). */
  keyring?: string;
  /** A private directory for the index signatures and the download. */
  work: string;
  signal?: AbortSignal;
  log?: (message: string) => void;
}

/** The newest version of a package in a suite (with its -updates and -security), from signed, hash-checked indexes. */
export async function resolveDebianPackage(o: DebianPackageOptions): Promise<{ stanza: PackageStanza; url: string }> {
  const mirror = (o.mirror ?? DEFAULT_MIRROR).replace(/\/+$/, '');
  const debug = o.log ?? (() => undefined);
  const suites = await fetchSuites({
    mirror,
    securityMirror: defaultSecurityMirror(mirror),
    suite: o.suite,
    arch: o.arch,
    keyring: o.keyring ?? DEBIAN_KEYRING,
    now: new Date(),
    allowExpired: false,
    http: { signal: o.signal, log: debug },
    work: o.work,
    warn: debug,
    debug,
    wants: (n) => n === o.name,
  });
  const hits = suites.flatMap((s) =>
    s.stanzas.filter((p) => p.package === o.name && p.architecture === o.arch).map((p) => ({ p, base: s.source.base })),
  );
  const best = hits.sort((a, b) => compareDebVersions(b.p.version, a.p.version))[0];
  if (!best)
    throw new Img2vmError(
      'imageNotFound',
      `no ${o.name} for ${o.arch} in Debian ${o.suite}`,
      'check --kernel-mirror: it must carry the main archive for that architecture',
    );
  return { stanza: best.p, url: `${best.base}/${best.p.filename}` };
}

/** Downloads a resolved package to `file`, refusing bytes whose SHA-256 is not the one the signed index gives. */
export async function downloadVerified(
  r: { stanza: PackageStanza; url: string },
  file: string,
  signal?: AbortSignal,
): Promise<void> {
  const sha = await downloadFile(r.url, file, { size: r.stanza.size, signal });
  if (sha !== r.stanza.sha256)
    throw new Img2vmError(
      'badImage',
      `${r.url} has SHA-256 ${sha}, but the signed index says ${r.stanza.sha256}`,
      'the mirror, a proxy or the network altered the package; try again or another --kernel-mirror (nothing was cached)',
    );
}

/** Unpacks the regular files directly under `prefix` (e.g. usr/lib/grub/arm64-efi/) of a .deb's data into `dest`. */
export async function unpackDebDir(deb: string, prefix: string, dest: string, signal?: AbortSignal): Promise<number> {
  const size = (await stat(deb)).size;
  const fh = await open(deb, 'r');
  let data: { offset: number; size: number };
  let head: Buffer;
  try {
    const readAt = async (offset: number, len: number): Promise<Buffer> => {
      const b = Buffer.alloc(len);
      const { bytesRead } = await fh.read(b, 0, len, offset);
      return b.subarray(0, bytesRead);
    };
    data = (await debMembers(readAt, size)).data;
    head = await readAt(data.offset, Math.min(512, data.size));
  } finally {
    await fh.close();
  }
  const stream = createReadStream(deb, { start: data.offset, end: data.offset + data.size - 1 });
  const { chunks } = decode(head, stream, { signal, maxBytes: MAX_DATA, what: `${deb}: data.tar` });
  let n = 0;
  try {
    const tar = new TarReader(new ByteSource(chunks));
    for (let h = await tar.next(); h; h = await tar.next()) {
      const path = h.path.replace(/^\.?\//, '');
      const name = path.startsWith(prefix) ? path.slice(prefix.length) : '';
      if (h.type !== 'file' || !MODULE_NAME.test(name)) continue;
      const parts: Buffer[] = [];
      for await (const c of tar.data()) parts.push(c);
      await writeFile(join(dest, name), Buffer.concat(parts), { mode: 0o644 });
      n++;
    }
  } finally {
    await chunks.return(undefined);
  }
  return n;
}

interface PackageIndex {
  version: string;
  sha256: string;
  checkedAt: string;
}

/** A directory of files from one Debian package, as debianPackageDir caches it. */
export interface PackageDirSpec {
  /** The package, its architecture and the suite it is taken from. */
  name: string;
  arch: string;
  suite: string;
  /** The directory inside the package whose plain files are kept (e.g. usr/lib/grub/arm64-efi/). */
  prefix: string;
  /** A file that must be in it (the package is refused without it). */
  marker: string;
  /** The cache's subdirectory, and the directory name the files are kept under. */
  cacheName: string;
  dirName: string;
}

/**
 * The files of a directory in a Debian package for another architecture: from the cache while its answer is a day
 * fresh, else resolved in the signed archive, fetched, hash-checked and unpacked once (published by rename, so a
 * concurrent run either finds the whole directory or makes its own).
 */
export async function debianPackageDir(
  spec: PackageDirSpec,
  ctx: RunContext,
  o: { mirror?: string; cacheDir?: string; keyring?: string } = {},
): Promise<string> {
  const { name, arch, suite } = spec;
  const root = join(o.cacheDir ?? cacheDir(), spec.cacheName);
  const indexFile = join(root, `index-${name}-${arch}-${suite}.json`);
  const dirOf = (sha: string) => join(root, `${arch}-${sha}`, spec.dirName);
  const log = (m: string) => ctx.sink({ type: 'log', level: 'debug', stage: 'rootfs', message: `${name}: ${m}` });
  const idx = await readFile(indexFile, 'utf8')
    .then((t) => JSON.parse(t) as PackageIndex)
    .catch(() => undefined);
  if (idx && Date.now() - Date.parse(idx.checkedAt) < DAY && (await exists(join(dirOf(idx.sha256), spec.marker))))
    return dirOf(idx.sha256);
  const scratch = await mkdtemp(join(ctx.work, `${spec.cacheName}-`));
  const where = { mirror: o.mirror, keyring: o.keyring };
  const r = await resolveDebianPackage({ name, arch, suite, ...where, work: scratch, signal: ctx.signal, log });
  const dir = dirOf(r.stanza.sha256);
  if (!(await exists(join(dir, spec.marker)))) {
    const mb = (r.stanza.size / 1e6).toFixed(1);
    ctx.sink({
      type: 'log',
      level: 'info',
      stage: 'rootfs',
      message: `fetching ${name} ${r.stanza.version} (${mb} MB)`,
    });
    const deb = join(scratch, 'package.deb');
    await downloadVerified(r, deb, ctx.signal);
    const draft = join(scratch, spec.dirName);
    await mkdir(draft);
    await unpackDebDir(deb, spec.prefix, draft, ctx.signal);
    if (!(await exists(join(draft, spec.marker))))
      throw new Img2vmError(
        'badImage',
        `${r.url} holds no ${spec.prefix}${spec.marker}`,
        'try another --kernel-mirror',
      );
    await mkdir(join(root, `${arch}-${r.stanza.sha256}`), { recursive: true });
    await rename(draft, dir).catch(async (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
    });
  }
  await mkdir(root, { recursive: true });
  const rec: PackageIndex = { version: r.stanza.version, sha256: r.stanza.sha256, checkedAt: new Date().toISOString() };
  await writeFile(`${indexFile}.${process.pid}`, JSON.stringify(rec));
  await rename(`${indexFile}.${process.pid}`, indexFile);
  await rm(scratch, { recursive: true, force: true });
  return dir;
}

/** The directory of GRUB's <arch>-efi modules for grub-mkimage -d, from the Debian release of the host's GRUB. */
export async function grubEfiModuleDir(
  arch: GuestArch,
  ctx: RunContext,
  o: { mirror?: string; cacheDir?: string } = {},
): Promise<string> {
  const platform = arch === 'arm64' ? 'arm64-efi' : 'x86_64-efi';
  const suite = suiteForGrubVersion((await run('grub-mkimage', ['--version'], { signal: ctx.signal })).stdout);
  const spec = { name: `grub-efi-${arch}-bin`, arch, suite, prefix: `usr/lib/grub/${platform}/` };
  return debianPackageDir({ ...spec, marker: 'kernel.img', cacheName: 'grub', dirName: platform }, ctx, o);
}

/** systemd-boot's EFI binary for an architecture (systemd-boot<efi arch>.efi), from Debian's systemd-boot-efi. */
export async function systemdBootEfiFile(
  arch: GuestArch,
  ctx: RunContext,
  o: { mirror?: string; cacheDir?: string } = {},
): Promise<string> {
  const file = `systemd-boot${arch === 'arm64' ? 'aa64' : 'x64'}.efi`;
  const spec = { name: 'systemd-boot-efi', arch, suite: 'trixie', prefix: 'usr/lib/systemd/boot/efi/' };
  const dir = await debianPackageDir({ ...spec, marker: file, cacheName: 'systemd-boot', dirName: 'efi' }, ctx, o);
  return join(dir, file);
}

async function exists(p: string): Promise<boolean> {
  return !!(await stat(p).catch(() => undefined));
}
