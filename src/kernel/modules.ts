// Which module files a kernel needs loaded, dependencies first, for a list of wanted modules (modules.dep closure minus built-ins).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Img2vmError } from '../core/errors.js';

export type ModuleCompression = 'xz' | 'zstd' | 'gzip' | null;

export interface ModuleFile {
  /** Canonical name (underscores), as the kernel reports it. */
  name: string;
  /** Absolute path of the .ko file. */
  path: string;
  compressed: ModuleCompression;
}

export interface ModulesIndex {
  /** name → path relative to the modules directory, and the paths of everything it needs. */
  dep: Map<string, { path: string; deps: string[] }>;
  builtin: Set<string>;
}

/** modules.dep, modules.builtin: text files of a few hundred KiB; anything far larger is hostile. */
const MAX_INDEX = 32 << 20;

/** The kernel treats "-" and "_" in module names alike; so does every lookup here. */
export function canonicalModuleName(name: string): string {
  return name.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

export function moduleNameOf(path: string): string {
  return canonicalModuleName(path.slice(path.lastIndexOf('/') + 1));
}

export function compressionOf(path: string): ModuleCompression {
  if (path.endsWith('.ko.xz')) return 'xz';
  if (path.endsWith('.ko.zst')) return 'zstd';
  if (path.endsWith('.ko.gz')) return 'gzip';
  return null;
}

export class ModulesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModulesError';
  }
}

/** A path inside the modules directory; depmod of old wrote absolute /lib/modules/<version>/... paths. */
function relPath(p: string, version: string | undefined): string {
  let r = p;
  for (const prefix of version ? [`/lib/modules/${version}/`, `/usr/lib/modules/${version}/`] : []) {
    if (r.startsWith(prefix)) r = r.slice(prefix.length);
  }
  if (
    r.startsWith('/') ||
    r.split('/').some((c) => c === '..' || c === '' || c === '.') ||
    !/\.ko(\.(xz|zst|gz))?$/.test(r)
  ) {
    throw new ModulesError(`modules.dep names an unsafe or non-module path "${p.slice(0, 120)}"`);
  }
  return r;
}

export function parseModulesDep(text: string, version?: string): ModulesIndex['dep'] {
  const dep: ModulesIndex['dep'] = new Map();
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon < 0) throw new ModulesError(`malformed modules.dep line "${line.slice(0, 120)}"`);
    const path = relPath(line.slice(0, colon).trim(), version);
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((d) => relPath(d, version));
    const name = moduleNameOf(path);
    // depmod lists a module once; should two share a name, the first wins, as modprobe's lookup does.
    if (!dep.has(name)) dep.set(name, { path, deps });
  }
  return dep;
}

export function parseModulesBuiltin(text: string): Set<string> {
  return new Set(
    text
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map(moduleNameOf),
  );
}

export interface ResolveOptions {
  /** What a module that is neither built in nor in modules.dep is: an error (default), or skipped. */
  missing?: 'error' | 'skip';
}

/**
 * The modules to load for `wanted`, each after everything it needs. Each modules.dep line lists a
 * module's whole closure, so a depth-first walk that emits a module after its dependencies gives a
 * valid load order whatever order depmod wrote them in.
 */
export function moduleClosure(index: ModulesIndex, wanted: string[], opts: ResolveOptions = {}): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const byPath = new Map<string, string>();
  for (const [name, e] of index.dep) byPath.set(e.path, name);
  const visit = (name: string, chain: string[]): void => {
    const s = state.get(name);
    if (s === 'done') return;
    if (s === 'visiting') throw new ModulesError(`modules.dep has a dependency cycle: ${[...chain, name].join(' → ')}`);
    const e = index.dep.get(name);
    if (!e) throw new ModulesError(`modules.dep lists a dependency "${name}" that has no line of its own`);
    state.set(name, 'visiting');
    for (const d of [...e.deps].reverse()) {
      const dn = byPath.get(d) ?? moduleNameOf(d);
      if (index.builtin.has(dn) && !index.dep.has(dn)) continue;
      visit(dn, [...chain, name]);
    }
    state.set(name, 'done');
    order.push(name);
  };
  for (const w of wanted) {
    const name = canonicalModuleName(w);
    if (index.dep.has(name)) visit(name, []);
    else if (index.builtin.has(name)) continue;
    else if (opts.missing !== 'skip')
      throw new ModulesError(`the kernel has no module "${w}" (neither built in nor in modules.dep)`);
  }
  return order;
}

function readIndexFile(path: string, required: boolean): string | undefined {
  if (!existsSync(path)) {
    if (required) throw new ModulesError(`${path} is missing`);
    return undefined;
  }
  const st = statSync(path);
  if (!st.isFile() || st.size > MAX_INDEX)
    throw new ModulesError(`${path} is not a regular file of at most ${MAX_INDEX >> 20} MiB`);
  return readFileSync(path, 'utf8');
}

export function loadModulesIndex(modulesDir: string, version?: string): ModulesIndex {
  const dep = parseModulesDep(readIndexFile(join(modulesDir, 'modules.dep'), true)!, version);
  const builtin = parseModulesBuiltin(readIndexFile(join(modulesDir, 'modules.builtin'), false) ?? '');
  return { dep, builtin };
}

/**
 * The module files to load (in order) so that every wanted module is available. A kernel without a
 * modules directory has everything built in: nothing to load.
 */
export function resolveModules(
  bundle: { modulesDir?: string; version: string; origin?: string },
  wanted: string[],
  opts: ResolveOptions = {},
): ModuleFile[] {
  if (!bundle.modulesDir) return [];
  const dir = bundle.modulesDir;
  try {
    const index = loadModulesIndex(dir, bundle.version);
    return moduleClosure(index, wanted, opts).map((name) => {
      const rel = index.dep.get(name)!.path;
      const path = join(dir, rel);
      if (!existsSync(path)) throw new ModulesError(`modules.dep lists ${rel}, which is not in ${dir}`);
      return { name, path, compressed: compressionOf(rel) };
    });
  } catch (e) {
    if (!(e instanceof ModulesError)) throw e;
    throw new Img2vmError(
      'badImage',
      `kernel ${bundle.version}${bundle.origin ? ` (${bundle.origin})` : ''}: ${e.message}`,
      'use a kernel that has these drivers (built in or as modules), or regenerate modules.dep with depmod',
    );
  }
}
