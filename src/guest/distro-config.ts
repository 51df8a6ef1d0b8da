// The distro strategy's guest configuration: the options' build features for the cached template build, the
// per-conversion files as plan data (secrets left out), and the account edits made when the files are written.
import type { Env } from '../core/context.js';
import type { BuildRecipe, GuestFile, GuestSettings, ProcessFacts } from '../core/plan.js';
import { createRandom } from '../core/random.js';
import type { RootTree } from '../rootfs/tree-edit.js';
import { binPath } from '../rootfs/tree-path.js';
import type { ImageConfig } from '../source/image.js';
import type { DistroRecipe } from './distros.js';
import {
  applyEdits,
  buildFeatures,
  buildValues,
  guestFiles,
  type GuestOptions,
  type GuestPlan,
} from './guest-config.js';

/** The guest options as guest-config takes them, from the plan's settings (and the password, kept apart). */
function guestOptionsOf(s: GuestSettings, hostname: string, password: string | undefined): GuestOptions {
  return {
    password,
    sshKey: s.sshKey ?? undefined,
    user: s.user ?? undefined,
    hostname,
    dns: s.dns ?? undefined,
    cloudInit: s.cloudInit,
    entrypointService: s.entrypointService,
  };
}

/** The recipe with what the options install: packages and services (booleans only, so the build cache is shared). */
export function recipeWithFeatures(recipe: DistroRecipe, s: GuestSettings): BuildRecipe {
  const values = buildValues(recipe, buildFeatures(guestOptionsOf(s, '', undefined)));
  // The guest's own systemd-boot: bootctl and the kernel-install hooks keep the ESP current on upgrades.
  const sdboot = s.systemdBoot ? recipe.distro.systemdBootPackage : undefined;
  if (sdboot) values.extra_packages = [values.extra_packages, sdboot].filter(Boolean).join(' ');
  return { template: recipe.template, label: recipe.label, values: s.luks ? withLuks(recipe, values) : values };
}

/** The template values with what unlocks a LUKS2 root at boot: the family's packages and its initramfs settings. */
export function withLuks(recipe: DistroRecipe, values: Record<string, string>): Record<string, string> {
  const luks = recipe.distro.luks;
  const extra = [values.extra_packages, ...luks.packages].filter(Boolean).join(' ');
  return { ...values, ...luks.values, extra_packages: extra };
}

function imageConfigOf(p: ProcessFacts | null): ImageConfig {
  return { config: p ? { Entrypoint: p.entrypoint, Cmd: p.cmd, Env: p.env, WorkingDir: p.cwd, User: p.user } : {} };
}

function accountNotes(s: GuestSettings): string[] {
  return [
    ...(s.password ? ["root's password (SHA-512 crypt)"] : []),
    ...(s.user ? [`the sudo user ${s.user}${s.password ? ' with the same password' : ''}`] : []),
    ...(s.sshKey ? [`authorized_keys from ${s.sshKey.file}`] : []),
  ];
}

/**
 * What a conversion writes into a distribution's root, as plan data. Computed with a stand-in password, whose
 * hash is not kept: the real one is made when the accounts are edited.
 */
export function distroGuestFiles(
  recipe: DistroRecipe,
  s: GuestSettings,
  process: ProcessFacts | null,
  hostname: string,
): GuestFile[] {
  const g = guestFiles(recipe, guestOptionsOf(s, hostname, s.password ? 'x' : undefined), imageConfigOf(process), {
    random: createRandom('plan'),
    epochSeconds: 0,
  });
  const by = 'distro';
  const notes = accountNotes(s);
  return [
    ...g.dirs.map((d): GuestFile => ({ kind: 'dir', path: d.path, fs: 'root', mode: d.mode, by })),
    ...g.removes.map((r): GuestFile => ({ kind: 'remove', path: r.dir, fs: 'root', filter: `${r.prefix}*`, by })),
    ...g.files.map((f): GuestFile => ({
      kind: 'file',
      path: f.path,
      fs: 'root',
      mode: f.mode,
      content: f.content,
      by,
    })),
    ...g.symlinks.map((l): GuestFile => ({ kind: 'symlink', path: l.path, fs: 'root', content: l.target, by })),
    ...(notes.length
      ? [
          {
            kind: 'edit',
            path: '/etc/passwd, /etc/shadow, /etc/group',
            fs: 'root',
            note: notes.join('; '),
            by,
          } as GuestFile,
        ]
      : []),
  ];
}

/** The account files applyEdits may read, read from the tree first (it wants them synchronously). */
const ACCOUNT_FILES = ['/etc/passwd', '/etc/group', '/etc/shadow', '/etc/gshadow', '/etc/shells'];

export interface AccountInput {
  recipe: DistroRecipe;
  settings: GuestSettings;
  process: ProcessFacts | null;
  hostname: string;
  password: string | undefined;
}

/** The account edits, with the real password hashes (salted from the run's seed), against the image's own files. */
export async function applyAccountEdits(tree: RootTree, a: AccountInput, env: Env): Promise<void> {
  const g: GuestPlan = guestFiles(
    a.recipe,
    guestOptionsOf(a.settings, a.hostname, a.password),
    imageConfigOf(a.process),
    { random: env.random.fork('password'), epochSeconds: env.epoch },
  );
  const current = new Map<string, { content: string; mode: number; uid: number; gid: number }>();
  for (const path of ACCOUNT_FILES) {
    const n = tree.lookup(binPath(path));
    const data = await tree.readFile(binPath(path));
    if (n?.kind === 'file' && data)
      current.set(path, { content: data.toString('utf8'), mode: n.meta.mode, uid: n.meta.uid, gid: n.meta.gid });
  }
  const out = applyEdits(g.edits, (path) => current.get(path));
  for (const d of out.dirs) {
    // An existing directory (root's home) keeps its owner and mode; a new one (a user's home) gets them.
    if (tree.lookup(binPath(d.path))) continue;
    tree.mkdirp(binPath(d.path), { mode: d.mode, uid: d.uid, gid: d.gid });
  }
  for (const f of out.files) tree.writeFile(binPath(f.path), f.content, { mode: f.mode, uid: f.uid, gid: f.gid });
  for (const w of out.warnings) env.sink({ type: 'log', level: 'warn', stage: 'rootfs', message: w });
}
