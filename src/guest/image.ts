// --init image (--raw): the image brings its own kernel and init; img2vm installs nothing and keeps its configuration.
import { passwordEdit } from './configure.js';
import { hasTemplate, recipeFor } from './distros.js';
import type { GuestStrategy } from './strategy.js';

export const imageStrategy: GuestStrategy = {
  id: 'image',
  describe: (o) => ({
    strategy: 'image',
    reason: o.raw
      ? '--raw: the image brings its own kernel and init'
      : '--init image: the image brings its own kernel and init',
    distribution: null,
    template: null,
    builder: null,
    cached: null,
  }),
  // The image's own initramfs: told as its family's would be where img2vm knows the family; otherwise nothing
  // (--kernel-cmdline says what that initramfs needs).
  luksCmdline(known, luksUuid) {
    const os = known.image?.os;
    const arch = known.image?.architecture;
    return os && hasTemplate(os, arch) ? recipeFor(os, arch).distro.luks.cmdline(luksUuid) : { args: [] };
  },
  guestFiles: (o) => passwordEdit(o.password !== undefined, 'image'),
  kernelFromImage: true,
  noKernelHint: 'drop --raw so img2vm installs a kernel, or add one to the image',
  tools: [],
  async make(plan, image, env) {
    env.sink({ type: 'log', level: 'debug', stage: 'guest', message: plan.guest.reason });
    return { image, detail: 'nothing installed' };
  },
};
