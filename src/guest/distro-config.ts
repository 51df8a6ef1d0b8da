// The distro strategy's guest configuration: the options' build features for the cached template build, the
// per-conversion files as plan data (secrets left out), and the account edits made when the files are written.
import { chownSync, chmodSync, lstatSync, readFileSync } from 'node:fs';
import type { ConversionRun } from '../core/conversion.js';
import type { ConvertOptions } from '../core/options.js';
import type { GuestFile, ImageFacts } from '../core/plan.js';
import { createRandom } from '../core/random.js';
import { mkdirInRoot, resolveInRoot, writeInRoot } from '../rootfs/inroot.js';
import type { ImageConfig } from '../source/image.js';
import type { DistroRecipe } from './distros.js';
import { applyEdits, buildFeatures, buildValues, guestFiles, type GuestOptions, type GuestPlan } from './guest-config.js';

/** The guest options as guest-config takes them; the --ssh-key file was read when the conversion started. */
export function guestOptionsOf(o: ConvertOptions, facts: ImageFacts, hostname: string): GuestOptions {
  return {
    password: o.password,
    sshKey: facts.inputs?.sshKey,
    user: o.user,
    hostname,
    dns: o.dns,
    cloudInit: o.cloudInit,
    entrypointService: o.entrypointService,
  };
}

/** The recipe with what the options install: packages and services (booleans only, so the build cache is shared). */
export function recipeWithFeatures(recipe: DistroRecipe, o: ConvertOptions, facts: ImageFacts): DistroRecipe {
  const values = buildValues(recipe, buildFeatures(guestOptionsOf(o, facts, '')));
  // The guest's own systemd-boot: bootctl and the kernel-install hooks keep the ESP current on upgrades.
  const sdboot = o.bootloader === 'systemd-boot' ? recipe.distro.systemdBootPackage : undefined;
  if (sdboot) values.extra_packages = [values.extra_packages, sdboot].filter(Boolean).join(' ');
  return { ...recipe, values };
}

function imageConfigOf(facts: ImageFacts): ImageConfig {
  const p = facts.process;
  return { config: p ? { Entrypoint: p.entrypoint, Cmd: p.cmd, Env: p.env, WorkingDir: p.cwd, User: p.user } : {} };
}

function accountNotes(o: ConvertOptions, facts: ImageFacts): string[] {
  return [
    ...(o.password !== undefined ? ["root's password (SHA-512 crypt)"] : []),
    ...(o.user ? [`the sudo user ${o.user}${o.password !== undefined ? ' with the same password' : ''}`] : []),
    ...(facts.inputs?.sshKey ? [`authorized_keys from ${facts.inputs.sshKey.file}`] : []),
  ];
}

/**
 * What a conversion writes into a distribution's root, as plan data. Computed with a stand-in password, whose
 * hash is not kept: the real one is made when the accounts are edited.
 */
export function distroGuestFiles(recipe: DistroRecipe, o: ConvertOptions, facts: ImageFacts, hostname: string): GuestFile[] {
  const g = guestFiles(recipe, { ...guestOptionsOf(o, facts, hostname), ...(o.password !== undefined ? { password: 'x' } : {}) }, imageConfigOf(facts), { random: createRandom('plan'), epochSeconds: 0 });
  const by = 'distro';
  const notes = accountNotes(o, facts);
  return [
    ...g.dirs.map((d): GuestFile => ({ kind: 'dir', path: d.path, fs: 'root', mode: d.mode, by })),
    ...g.removes.map((r): GuestFile => ({ kind: 'remove', path: r.dir, fs: 'root', filter: `${r.prefix}*`, by })),
    ...g.files.map((f): GuestFile => ({ kind: 'file', path: f.path, fs: 'root', mode: f.mode, content: f.content, by })),
    ...g.symlinks.map((l): GuestFile => ({ kind: 'symlink', path: l.path, fs: 'root', content: l.target, by })),
    ...(notes.length ? [{ kind: 'edit', path: '/etc/passwd, /etc/shadow, /etc/group', fs: 'root', note: notes.join('; '), by } as GuestFile] : []),
  ];
}

export function distroWarnings(recipe: DistroRecipe, o: ConvertOptions, facts: ImageFacts, hostname: string): string[] {
  return guestFiles(recipe, { ...guestOptionsOf(o, facts, hostname), ...(o.password !== undefined ? { password: 'x' } : {}) }, imageConfigOf(facts), { random: createRandom('plan'), epochSeconds: 0 }).warnings;
}

/** The account edits, with the real password hashes (salted from the run's seed), against the image's own files. */
export function applyAccountEdits(r: ConversionRun, recipe: DistroRecipe, epochSeconds: number): void {
  const g: GuestPlan = guestFiles(recipe, guestOptionsOf(r.options, r.facts, r.plan.hostname), imageConfigOf(r.facts), { random: r.ctx.random.fork('password'), epochSeconds });
  const read = (path: string) => {
    try {
      const p = resolveInRoot(r.staging, path.replace(/^\/+/, ''), true);
      const st = lstatSync(p);
      if (!st.isFile()) return undefined;
      return { content: readFileSync(p, 'utf8'), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    } catch {
      return undefined;
    }
  };
  const out = applyEdits(g.edits, read);
  for (const d of out.dirs) {
    const rel = d.path.replace(/^\/+/, '');
    // An existing directory (root's home) keeps its owner and mode; a new one (a user's home) gets them.
    if (exists(resolveInRoot(r.staging, rel, true))) continue;
    const host = mkdirInRoot(r.staging, rel);
    chownSync(host, d.uid, d.gid);
    chmodSync(host, d.mode);
  }
  for (const f of out.files) writeInRoot(r.staging, f.path.replace(/^\/+/, ''), f.content, f.mode, { uid: f.uid, gid: f.gid });
  for (const w of out.warnings) r.ctx.sink({ type: 'log', level: 'warn', stage: 'rootfs', message: w });
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
