// The guest strategies, by the id --init spells (auto resolves to one of them in the plan).
import type { GuestStrategyId } from '../core/plan.js';
import { distroStrategy } from './distro.js';
import { img2vmStrategy } from './img2vm.js';
import { imageStrategy } from './image.js';
import type { GuestStrategy } from './strategy.js';

export const GUEST_STRATEGIES: Record<GuestStrategyId, GuestStrategy> = {
  distro: distroStrategy,
  img2vm: img2vmStrategy,
  image: imageStrategy,
};
