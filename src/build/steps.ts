// What the runc builder does for a recipe step inside a bundle's rootfs: USER resolved like docker, COPY through the in-root resolver.
import { posix } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import { mkdirInRoot, readInRoot, writeInRoot } from '../rootfs/inroot.js';
import { parseRecipe, type RecipeFile, type Step } from './recipe.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function parsePasswd(text: string | undefined): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || !/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) continue;
    out.push({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! });
  }
  return out;
}

function parseGroup(text: string | undefined): { name: string; gid: number; members: string[] }[] {
  const out: { name: string; gid: number; members: string[] }[] = [];
  for (const line of (text ?? '').split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || !/^\d+$/.test(f[2]!)) continue;
    out.push({ name: f[0]!, gid: Number(f[2]), members: f[3]!.split(',').filter(Boolean) });
  }
  return out;
}

/**
 * USER user[:group] as docker resolves it against the image's own /etc/passwd and /etc/group (read inside the
 * root): a name must exist, a number need not; the user's supplementary groups come along unless a group is given.
 */
export function resolveUser(passwd: string | undefined, group: string | undefined, spec: string): ResolvedUser {
  const [u, g] = spec.split(':') as [string, string | undefined];
  const users = parsePasswd(passwd);
  const groups = parseGroup(group);
  const byName = users.find((e) => e.name === u);
  const numeric = /^\d+$/.test(u);
  const entry = byName ?? (numeric ? users.find((e) => e.uid === Number(u)) : undefined);
  if (!entry && !numeric)
    throw new Img2vmError(
      'buildFailed',
      `the recipe's USER ${u} does not exist in the image's /etc/passwd`,
      'this is a bug in the template; run with --builder docker to compare',
    );
  const uid = entry?.uid ?? Number(u);
  let gid = entry?.gid ?? 0;
  let additionalGids: number[] = [];
  if (g !== undefined) {
    const grp = groups.find((e) => e.name === g);
    if (grp) gid = grp.gid;
    else if (/^\d+$/.test(g)) gid = Number(g);
    else
      throw new Img2vmError(
        'buildFailed',
        `the recipe's USER group ${g} does not exist in the image's /etc/group`,
        'this is a bug in the template',
      );
  } else if (entry) {
    additionalGids = [
      ...new Set(groups.filter((e) => e.members.includes(entry.name) && e.gid !== gid).map((e) => e.gid)),
    ].sort((a, b) => a - b);
  }
  return { uid, gid, additionalGids, home: entry?.home || '/' };
}

/** The user a step runs as, from the image in root. */
export function stepUser(root: string, step: Extract<Step, { kind: 'run' }>): ResolvedUser {
  return resolveUser(
    readInRoot(root, 'etc/passwd')?.toString('utf8'),
    readInRoot(root, 'etc/group')?.toString('utf8'),
    step.user,
  );
}

/** Makes the step's WORKDIR (docker creates it when missing), never outside root. */
export function ensureWorkdir(root: string, workdir: string): void {
  mkdirInRoot(root, workdir.replace(/^\/+/, ''));
}

/**
 * The files a COPY step writes, as destination paths: `files/` (or a directory under it) copies its content
 * into dest; a single file goes to dest, or into it when dest ends with a slash.
 */
export function copyTargets(
  step: Extract<Step, { kind: 'copy' }>,
  files: readonly RecipeFile[],
): { dest: string; file: RecipeFile }[] {
  const src = step.src.replace(/\/$/, '');
  const exact = files.find((f) => f.path === src);
  if (exact) {
    const intoDir = step.dest.endsWith('/');
    return [{ dest: intoDir ? posix.join(step.dest, posix.basename(src)) : step.dest, file: exact }];
  }
  const under = files.filter((f) => f.path.startsWith(`${src}/`));
  if (under.length === 0) throw new Error(`COPY ${step.src}: nothing in the template matches`);
  return under.map((f) => ({ dest: posix.join(step.dest, f.path.slice(src.length + 1)), file: f }));
}

/** Carries out a COPY step: files owned by root with the template's modes, parents made 0755, the image's symlinks followed only inside root. */
export function copyStep(root: string, step: Extract<Step, { kind: 'copy' }>, files: readonly RecipeFile[]): number {
  const targets = copyTargets(step, files);
  for (const t of targets) writeInRoot(root, t.dest.replace(/^\/+/, ''), t.file.content, t.file.mode);
  return targets.length;
}

/**
 * The ENV the recipe leaves in the image config (ARG values are build-time only, as in docker). Values cannot
 * reference variables in the subset, so dropping the ARG lines changes no ENV value.
 */
export function recipeEnv(dockerfile: string): Record<string, string> {
  const withoutArgs = dockerfile.replace(/^[ \t]*ARG[ \t][^\n]*$/gim, '');
  const { steps } = parseRecipe(`${withoutArgs}\nUSER root\nWORKDIR /\nRUN :\n`);
  const last = steps[steps.length - 1];
  return last?.kind === 'run' ? last.env : {};
}

/** The base config's Env with the recipe's ENV over it, in docker's order (replaced names keep their place). */
export function applyEnv(env: readonly string[] | null | undefined, add: Record<string, string>): string[] {
  const out = [...(env ?? [])];
  for (const [k, v] of Object.entries(add)) {
    const i = out.findIndex((e) => e.startsWith(`${k}=`));
    if (i >= 0) out[i] = `${k}=${v}`;
    else out.push(`${k}=${v}`);
  }
  return out;
}
