// The builders, by the id --builder spells; auto takes the first that is available here.
import type { BuilderId } from '../../core/plan.js';
import type { Builder } from './builder.js';
import { dockerBuilder } from './docker.js';

export const BUILDERS: Record<BuilderId, Builder> = { docker: dockerBuilder };

/** The order auto tries them in. */
export const AUTO_ORDER: BuilderId[] = ['docker'];
