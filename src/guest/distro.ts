// --init distro: the distribution's own kernel, initramfs and init, installed from its template by a builder.
import { rm } from 'node:fs/promises';
import { Img2vmError } from '../core/errors.js';
import type { BuilderId } from '../core/plan.js';
import { applyAccountEdits, distroGuestFiles, recipeWithFeatures } from './distro-config.js';
import { epochSeconds } from '../core/epoch.js';
import { detectOs } from './detect.js';
import { recipeFor } from './distros.js';
import { AUTO_ORDER, BUILDERS } from '../build/index.js';
import type { Builder } from '../build/builder.js';
import type { GuestStrategy } from './strategy.js';
import type { ConversionRun } from '../core/conversion.js';
import type { SourceImage } from '../source/image.js';


async function pickBuilder(r: ConversionRun): Promise<Builder> {
  const wanted: BuilderId[] = r.options.builder === 'auto' ? AUTO_ORDER : [r.options.builder];
  const why: string[] = [];
  for (const id of wanted) {
    const b = BUILDERS[id];
    const a = await b.available(r);
    if (a.ok) return b;
    why.push(a.why);
    if (wanted.length === 1) {
      throw new Img2vmError(
        id === 'docker' ? 'daemonUnreachable' : 'toolMissing',
        `installing a kernel and init needs a builder, and ${a.why}`,
        id === 'docker'
          ? 'start dockerd (dockerd --bridge=none &), use --builder runc (as root), or --init img2vm (no builder at all)'
          : 'install it, pick another --builder, or use --init img2vm (no builder at all)',
        { cause: a.cause },
      );
    }
  }
  throw new Img2vmError(
    'daemonUnreachable',
    `installing a kernel and init needs a builder, and none is available: ${why.join('; ')}`,
    'start dockerd (dockerd --bridge=none &), install runc and run as root, or use --init img2vm (no builder at all)',
  );
}

/**
 * For `img2vm plan`: the distribution (from os-release) and, when a builder has the guest build cached, the built
 * image to measure; undefined when it would have to be built.
 */
export async function lookupGuestBuild(r: ConversionRun): Promise<SourceImage | undefined> {
  const os = await detectOs(r.image!, r.ctx.signal);
  r.facts.os = os ?? null;
  const recipe = recipeWithFeatures(recipeFor(os, r.image!.config.architecture), r.options, r.facts);
  const wanted: BuilderId[] = r.options.builder === 'auto' ? AUTO_ORDER : [r.options.builder];
  for (const id of wanted) {
    const b = BUILDERS[id];
    if (!(await b.available(r)).ok) continue;
    const hit = await b.lookup(r, recipe);
    r.facts.guest = { distribution: recipe.label, template: recipe.template, builder: id, cached: !!hit, image: hit?.ref ?? null };
    return hit?.image;
  }
  return undefined;
}

export const distroStrategy: GuestStrategy = {
  id: 'distro',
  describe(o, facts) {
    const reason = o.init === 'auto' ? 'auto: the distribution is installed from its template' : '--init distro';
    const known = facts.guest;
    if (known) return { strategy: 'distro', reason, distribution: known.distribution, template: known.template, builder: known.builder, cached: known.cached };
    // Before the build: the distribution is known once os-release was read.
    if (facts.os === undefined) return { strategy: 'distro', reason, distribution: null, template: null, builder: null, cached: null };
    const recipe = recipeFor(facts.os ?? undefined, undefined);
    return { strategy: 'distro', reason, distribution: recipe.label, template: recipe.template, builder: o.builder === 'auto' ? null : o.builder, cached: null };
  },
  guestFiles(o, facts, hostname) {
    if (!facts.os) return [];
    return distroGuestFiles(recipeFor(facts.os, undefined), o, facts, hostname);
  },
  async edit(r, f) {
    if (f.by !== 'distro' || !r.facts.os) return;
    await applyAccountEdits(r, recipeFor(r.facts.os, undefined), epochSeconds());
  },
  kernelFromImage: true,
  noKernelHint: 'the guest build did not install a kernel; see -v output',
  tools: [],
  async apply(r) {
    const builder = await pickBuilder(r);
    const os = r.facts.os !== undefined ? r.facts.os ?? undefined : await detectOs(r.image!, r.ctx.signal);
    r.facts.os = os ?? null;
    const recipe = recipeWithFeatures(recipeFor(os, r.image!.config.architecture), r.options, r.facts);
    const built = await builder.build(r, recipe);
    const before = r.image!;
    r.image = built.image;
    r.facts.guest = { distribution: recipe.label, template: recipe.template, builder: builder.id, cached: built.cached, image: built.ref };
    // The built image holds the base layers too: the source's unpacked copy would only double the disk used.
    if (before.workDir) await rm(before.workDir, { recursive: true, force: true });
    return built.cached ? 'cached' : 'built';
  },
};
