// A kernel file on disk with an optional modules directory: used where it lies, identified by a hash of its contents.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { kernelVersionOf } from './bzimage.js';
import type { KernelBundle } from './bundle.js';

async function hashFile(h: ReturnType<typeof createHash>, path: string): Promise<void> {
  for await (const c of createReadStream(path)) h.update(c as Buffer);
}

/** Every regular file's path, size and content, in sorted order: a change to any module changes the id. */
async function hashTree(h: ReturnType<typeof createHash>, dir: string, rel = ''): Promise<void> {
  const entries = (await readdir(join(dir, rel), { withFileTypes: true })).sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  );
  for (const e of entries) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) await hashTree(h, dir, r);
    else if (e.isFile()) {
      h.update(`${r}\0${(await stat(join(dir, r))).size}\0`);
      await hashFile(h, join(dir, r));
    }
  }
}

async function isFile(p: string): Promise<boolean> {
  return !!(await stat(p).catch(() => undefined))?.isFile();
}

export async function vmlinuzKernel(
  path: string,
  modulesDir: string | undefined,
  ctx: RunContext,
): Promise<KernelBundle> {
  if (!(await isFile(path)))
    throw new Img2vmError(
      'usage',
      `kernel file ${path} does not exist or is not a file`,
      'give the path of a kernel image (vmlinuz/bzImage)',
    );
  const version = await kernelVersionOf(path);
  const h = createHash('sha256');
  h.update('vmlinuz\0');
  await hashFile(h, path);
  const bundle: KernelBundle = { version, vmlinuz: path, origin: `kernel file ${path}`, id: '' };
  if (modulesDir) {
    // Either lib/modules/<version> itself or the lib/modules above it.
    const dir = (await isFile(join(modulesDir, 'modules.dep')))
      ? modulesDir
      : (await isFile(join(modulesDir, version, 'modules.dep')))
        ? join(modulesDir, version)
        : undefined;
    if (!dir) {
      throw new Img2vmError(
        'usage',
        `--kernel-modules ${modulesDir} has no modules.dep (nor ${version}/modules.dep)`,
        `give lib/modules/${version} of this kernel; if it lacks modules.dep, run: depmod -b ROOT ${version}`,
      );
    }
    if (basename(dir) !== version) {
      ctx.sink({
        type: 'log',
        level: 'warn',
        stage: 'guest',
        message: `kernel: ${path} is ${version}, but its modules directory is named ${basename(dir)}; modules built for another kernel will not load`,
      });
    }
    h.update('\0modules\0');
    await hashTree(h, dir);
    bundle.modulesDir = dir;
    bundle.origin += ` with modules from ${dir}`;
  }
  bundle.id = `sha256:${h.digest('hex')}`;
  return bundle;
}
