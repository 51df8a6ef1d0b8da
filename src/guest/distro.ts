// --init distro: the distribution's own kernel, initramfs and init, installed from its template by a builder.
import { rm } from 'node:fs/promises';
import type { Env } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import type { BuilderId, GuestSettings } from '../core/plan.js';
import type { ConvertOptions } from '../core/options.js';
import { AUTO_ORDER, BUILDERS } from '../build/index.js';
import type { Builder, BuildInput } from '../build/builder.js';
import { applyAccountEdits, distroGuestFiles, recipeWithFeatures } from './distro-config.js';
import { recipeFor } from './distros.js';
import type { Bootable, GuestStrategy, Known } from './strategy.js';
import { emulationFor } from './binfmt.js';

/** The builders --builder names: one, or auto's order. */
export function buildersFor(o: ConvertOptions): BuilderId[] {
  return o.builder === 'auto' ? AUTO_ORDER : [o.builder];
}

function settingsOf(o: ConvertOptions, known: Known): GuestSettings {
  return {
    password: o.password !== undefined,
    sshKey: known.inputs.sshKey ?? null,
    user: o.user ?? null,
    dns: o.dns ?? null,
    cloudInit: o.cloudInit,
    entrypointService: o.entrypointService,
    systemdBoot: o.bootloader === 'systemd-boot',
    luks: o.luks,
  };
}

/** The first builder that works here (of the one asked for, or auto's order); the error says why none does. */
async function pickBuilder(wanted: BuilderId[], env: Env): Promise<Builder> {
  const why: string[] = [];
  for (const id of wanted) {
    const b = BUILDERS[id];
    const a = await b.available(env);
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

export const distroStrategy: GuestStrategy = {
  id: 'distro',
  describe(o, known, a) {
    const reason = o.init === 'auto' ? 'auto: the distribution is installed from its template' : '--init distro';
    const settings = settingsOf(o, known);
    const builders = buildersFor(o);
    const image = known.image;
    // Before the image is read, the distribution is not known; the recipe refuses an unsupported one.
    const recipe = image && image.os !== undefined ? recipeFor(image.os ?? undefined, image.architecture) : undefined;
    const emulation = a.arch === a.host ? undefined : emulationFor(known.inputs.binfmt, a.arch);
    const build = {
      builders,
      recipe: recipe ? recipeWithFeatures(recipe, settings) : null,
      platform: `linux/${a.arch}`,
      emulator: emulation?.ok ? { name: emulation.handler.name, interpreter: emulation.handler.interpreter } : null,
      os: image?.os ?? null,
      process: image?.process ?? null,
      settings,
    };
    const made = known.tree?.build;
    return {
      strategy: 'distro',
      reason,
      distribution: recipe?.label ?? null,
      template: recipe?.template ?? null,
      builder: made?.builder ?? (o.builder === 'auto' ? null : o.builder),
      cached: made ? made.cached : null,
      build,
    };
  },
  luksCmdline(known, luksUuid) {
    // Before the image is read the family is not known; the plan made from its facts has the arguments.
    const os = known.image?.os;
    return os ? recipeFor(os, known.image?.architecture).distro.luks.cmdline(luksUuid) : { args: [] };
  },
  guestFiles(o, known, hostname) {
    const os = known.image?.os;
    if (!os) return [];
    return distroGuestFiles(
      recipeFor(os, known.image?.architecture),
      settingsOf(o, known),
      known.image?.process ?? null,
      hostname,
    );
  },
  async edit(tree, plan, secrets, env) {
    const b = plan.guest.build;
    if (!b?.os) return;
    await applyAccountEdits(
      tree,
      {
        recipe: recipeFor(b.os, plan.architecture.arch),
        settings: b.settings,
        process: b.process,
        hostname: plan.hostname,
        password: secrets.password,
      },
      env,
    );
  },
  kernelFromImage: true,
  noKernelHint: 'the guest build did not install a kernel; see -v output',
  tools: [],
  /** Builds the template on the image (or takes the builder's cached result); with lookupOnly only the cache. */
  async make(plan, image, env, { lookupOnly }): Promise<Bootable | undefined> {
    const b = plan.guest.build;
    if (!b?.recipe) throw new Error('the distro strategy was planned without its recipe');
    const input: BuildInput = {
      image,
      recipe: b.recipe,
      ref: plan.image,
      ...(b.emulator ? { platform: b.platform } : {}),
    };
    if (lookupOnly) {
      for (const id of b.builders) {
        const builder = BUILDERS[id];
        if (!(await builder.available(env)).ok) continue;
        const hit = await builder.lookup(input, env);
        return hit
          ? { image: hit.image, build: { builder: id, cached: true, image: hit.ref }, detail: 'cached' }
          : undefined;
      }
      return undefined;
    }
    const builder = await pickBuilder(b.builders, env);
    const built = await builder.build(input, env);
    // The built image holds the base layers too: the source's unpacked copy would only double the disk used.
    if (image.workDir) await rm(image.workDir, { recursive: true, force: true });
    return {
      image: built.image,
      build: { builder: builder.id, cached: built.cached, image: built.ref },
      detail: built.cached ? 'cached' : 'built',
    };
  },
};
