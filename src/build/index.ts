// The builders, by the id --builder spells; auto takes the first that is available here.
import type { BuilderId } from '../core/plan.js';
import type { Builder } from './builder.js';
import { dockerBuilder } from './docker.js';
import { podmanBuilder } from './podman.js';
import { runcBuilder } from './runc.js';

export const BUILDERS: Record<BuilderId, Builder> = { docker: dockerBuilder, podman: podmanBuilder, runc: runcBuilder };

/**
 * The order auto tries them in: the daemon first (its cache and its images are already there), then runc,
 * which builds in place with nothing copied through a second image store, then podman.
 */
export const AUTO_ORDER: BuilderId[] = ['docker', 'runc', 'podman'];
