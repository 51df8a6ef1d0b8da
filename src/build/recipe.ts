// The guest recipe as steps any builder can run: a rendered template Dockerfile parsed into typed RUN/COPY steps.
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join, posix, relative } from 'node:path';
import { TEMPLATES_DIR } from '../core/paths.js';
import { renderTemplate } from './template.js';

/**
 * One step of a recipe. RUN steps are shell-form only: `script` is what docker hands to `/bin/sh -c`
 * (continuation lines joined as docker joins them). `env` holds only what the recipe declares (ARG defaults,
 * then ENV): a builder starts from the base image's own Env and applies it on top. `user` is as USER gave it
 * (resolved against the image's /etc/passwd, like docker); `workdir` is created if missing, like docker's
 * WORKDIR. `network` says whether the step fetches anything (a package manager that installs); the runc
 * builder runs the others without network. COPY copies the build context's `src` (a directory's content
 * when it ends in /) to `dest`, owned by root, modes as in `files`.
 */
export type Step =
  | {
      kind: 'run';
      script: string;
      env: Record<string, string>;
      user: string;
      workdir: string;
      network: boolean;
      line: number;
    }
  | { kind: 'copy'; src: string; dest: string; line: number };

export interface RecipeFile {
  /** Relative to the build context, e.g. "files/etc/inittab". */
  path: string;
  mode: number;
  content: Buffer;
}

export interface RenderedRecipe {
  dockerfile: string;
  steps: Step[];
  files: RecipeFile[];
  /** The base image reference named by FROM. */
  base: string;
}

export class RecipeSyntaxError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(`line ${line}: ${message}`);
    this.name = 'RecipeSyntaxError';
  }
}

interface Instruction {
  line: number;
  keyword: string;
  args: string;
}

/** Splits a Dockerfile into instructions: comments dropped, continuation lines joined the way docker joins them. */
function instructions(text: string): Instruction[] {
  const lines = text.split('\n');
  const out: Instruction[] = [];
  let pending: { line: number; text: string } | undefined;
  let leading = true;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, '');
    const n = i + 1;
    if (/^\s*#/.test(raw)) {
      // Parser directives (# escape=`, # syntax=) change how everything after them is read.
      if (leading && !pending && /^#\s*[a-zA-Z][a-zA-Z0-9]*\s*=/.test(raw))
        throw new RecipeSyntaxError(n, 'parser directives are not in the subset');
      continue;
    }
    // Blank lines end nothing: docker skips them, also inside a continued instruction.
    if (raw.trim() === '') continue;
    leading = false;
    const continued = /\\[ \t]*$/.test(raw);
    const body = continued ? raw.replace(/\\[ \t]*$/, '') : raw;
    if (pending) pending.text += body;
    else pending = { line: n, text: body };
    if (continued) continue;
    const m = /^\s*([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(pending.text);
    if (!m) throw new RecipeSyntaxError(pending.line, `cannot read "${pending.text.trim().slice(0, 40)}"`);
    out.push({ line: pending.line, keyword: m[1]!.toUpperCase(), args: (m[2] ?? '').trim() });
    pending = undefined;
  }
  if (pending) throw new RecipeSyntaxError(pending.line, 'the file ends inside a continued line');
  return out;
}

/**
 * Docker's key=value word syntax (ENV, ARG defaults): words split on blanks, double and single quotes
 * group, a backslash escapes the next character outside single quotes. Variable references are not in
 * the subset, so a `$` is refused rather than left for builders to expand differently.
 */
function words(args: string, line: number): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < args.length; i++) {
    const c = args[i]!;
    if (c === '$' && quote !== "'") throw new RecipeSyntaxError(line, 'variable references ($) are not in the subset');
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < args.length) cur += args[++i];
      else cur += c;
      continue;
    }
    if (c === ' ' || c === '\t') {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (c === '"' || c === "'") quote = c;
    else if (c === '\\' && i + 1 < args.length) cur += args[++i];
    else cur += c;
  }
  if (quote) throw new RecipeSyntaxError(line, 'unterminated quote');
  if (inWord) out.push(cur);
  return out;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function assignments(args: string, line: number, what: string, allowBare: boolean): [string, string | undefined][] {
  const ws = words(args, line);
  if (!ws.length) throw new RecipeSyntaxError(line, `${what} needs a name`);
  return ws.map((w) => {
    const eq = w.indexOf('=');
    const name = eq < 0 ? w : w.slice(0, eq);
    if (!NAME.test(name)) throw new RecipeSyntaxError(line, `${what} name "${name}" is not a valid variable name`);
    if (eq < 0 && !allowBare) throw new RecipeSyntaxError(line, `${what} ${name} needs a value (name=value)`);
    return [name, eq < 0 ? undefined : w.slice(eq + 1)];
  });
}

const FETCHERS = new Set(['curl', 'wget']);
const PACKAGE_MANAGERS = new Set([
  'apt-get',
  'apt',
  'aptitude',
  'dnf',
  'dnf5',
  'microdnf',
  'yum',
  'apk',
  'zypper',
  'pip',
  'pip3',
]);
/** Subcommands that work from what is already on disk. */
const OFFLINE = new Set([
  'clean',
  'autoclean',
  'autoremove',
  'del',
  'remove',
  'purge',
  'erase',
  'info',
  'list',
  'check',
  'mark',
]);

/**
 * Whether a RUN script reaches the network: any simple command that starts with a package manager (other
 * than its offline subcommands) or a downloader. A false "yes" only grants network a step did not need; a
 * script hiding a fetch behind a variable or a function is outside what templates may do.
 */
export function needsNetwork(script: string): boolean {
  for (const command of script.split(/&&|\|\||[;|\n&(){}]/)) {
    const ws = command
      .trim()
      .split(/\s+/)
      .filter((w) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(w));
    const head = ws[0] === 'exec' || ws[0] === 'command' || ws[0] === 'env' ? ws.slice(1) : ws;
    const prog = posix.basename(head[0] ?? '');
    if (FETCHERS.has(prog)) return true;
    if (PACKAGE_MANAGERS.has(prog)) {
      const sub = head.slice(1).find((w) => !w.startsWith('-'));
      if (sub === undefined || !OFFLINE.has(sub)) return true;
    }
  }
  return false;
}

function absolute(path: string, line: number, what: string): string {
  if (!path.startsWith('/')) throw new RecipeSyntaxError(line, `${what} must be an absolute path`);
  return posix.normalize(path);
}

/** Parses a rendered template Dockerfile into steps; anything outside the subset is an error naming its line. */
export function parseRecipe(dockerfile: string): { base: string; steps: Step[] } {
  const steps: Step[] = [];
  let base: string | undefined;
  let user: string | undefined;
  let workdir: string | undefined;
  const args: Record<string, string> = {};
  const env: Record<string, string> = {};
  for (const ins of instructions(dockerfile)) {
    const { line, keyword, args: rest } = ins;
    if (base === undefined && keyword !== 'FROM') throw new RecipeSyntaxError(line, `${keyword} before FROM`);
    switch (keyword) {
      case 'FROM': {
        if (base !== undefined) throw new RecipeSyntaxError(line, 'only one FROM (no multi-stage builds)');
        const ws = rest.split(/\s+/).filter(Boolean);
        if (ws.length !== 1 || ws[0]!.startsWith('--'))
          throw new RecipeSyntaxError(line, 'FROM takes one image and no flags or AS');
        base = ws[0]!;
        break;
      }
      case 'USER': {
        const ws = words(rest, line);
        if (ws.length !== 1 || !/^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/.test(ws[0]!)) {
          throw new RecipeSyntaxError(line, 'USER takes one user[:group]');
        }
        user = ws[0]!;
        break;
      }
      case 'WORKDIR': {
        const ws = words(rest, line);
        if (ws.length !== 1) throw new RecipeSyntaxError(line, 'WORKDIR takes one path');
        workdir = ws[0]!.startsWith('/') ? absolute(ws[0]!, line, 'WORKDIR') : posix.join(workdir ?? '/', ws[0]!);
        break;
      }
      case 'ARG':
        for (const [k, v] of assignments(rest, line, 'ARG', true)) if (v !== undefined) args[k] = v;
        break;
      case 'ENV':
        for (const [k, v] of assignments(rest, line, 'ENV', false)) env[k] = v!;
        break;
      case 'RUN': {
        if (rest.startsWith('[')) throw new RecipeSyntaxError(line, 'RUN must use the shell form, not a JSON array');
        if (/^--/.test(rest)) throw new RecipeSyntaxError(line, 'RUN flags (--mount, --network) are not in the subset');
        if (!rest) throw new RecipeSyntaxError(line, 'RUN needs a command');
        // The image's own USER and WORKDIR would otherwise decide how the step runs.
        if (user === undefined || workdir === undefined)
          throw new RecipeSyntaxError(line, 'USER and WORKDIR must be set before the first RUN');
        steps.push({
          kind: 'run',
          script: rest,
          env: { ...args, ...env },
          user,
          workdir,
          network: needsNetwork(rest),
          line,
        });
        break;
      }
      case 'COPY': {
        const ws = rest.split(/\s+/).filter(Boolean);
        if (ws.some((w) => w.startsWith('--')))
          throw new RecipeSyntaxError(line, 'COPY flags (--chown, --from) are not in the subset');
        if (ws.length !== 2)
          throw new RecipeSyntaxError(line, 'COPY takes one source under files/ and one destination');
        const src = posix.normalize(ws[0]!);
        if (!(src === 'files' || src === 'files/' || src.startsWith('files/')) || src.split('/').includes('..')) {
          throw new RecipeSyntaxError(line, 'COPY source must be files/ or a path under it');
        }
        steps.push({
          kind: 'copy',
          src: src.replace(/\/$/, '') + (ws[0]!.endsWith('/') ? '/' : ''),
          dest: absolute(ws[1]!, line, 'COPY destination'),
          line,
        });
        break;
      }
      default:
        throw new RecipeSyntaxError(
          line,
          `${keyword} is not in the subset (FROM, USER, ARG, ENV, WORKDIR, RUN, COPY files/)`,
        );
    }
  }
  if (base === undefined) throw new RecipeSyntaxError(1, 'no FROM');
  return { base, steps };
}

async function readTree(root: string): Promise<RecipeFile[]> {
  const out: RecipeFile[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      const st = await lstat(p);
      if (st.isDirectory()) await walk(p);
      // Git keeps only the executable bit, so the mode is what any checkout has, whatever its umask.
      else if (st.isFile())
        out.push({ path: relative(root, p), mode: st.mode & 0o111 ? 0o755 : 0o644, content: await readFile(p) });
      else throw new Error(`${p}: templates hold only regular files and directories`);
    }
  };
  await walk(root);
  return out;
}

/**
 * Renders a distribution's template with `values` (which must include `base`) and parses it. A template
 * error is a bug in img2vm, not something a user caused, so it is a plain Error.
 */
export async function renderRecipe(
  recipe: { template: string },
  values: Record<string, string>,
  templatesDir = TEMPLATES_DIR,
): Promise<RenderedRecipe> {
  const dir = join(templatesDir, recipe.template);
  const what = `templates/${recipe.template}/Dockerfile`;
  const dockerfile = renderTemplate(await readFile(join(dir, 'Dockerfile'), 'utf8'), values, what);
  let parsed: { base: string; steps: Step[] };
  try {
    parsed = parseRecipe(dockerfile);
  } catch (e) {
    if (e instanceof RecipeSyntaxError) throw new Error(`${what} (rendered): ${e.message}`, { cause: e });
    throw e;
  }
  const files = (await readTree(dir)).filter((f) => f.path !== 'Dockerfile');
  for (const f of files)
    if (!f.path.startsWith('files/'))
      throw new Error(`templates/${recipe.template}/${f.path}: only files/ is copied into the guest`);
  return { dockerfile, steps: parsed.steps, files, base: parsed.base };
}
