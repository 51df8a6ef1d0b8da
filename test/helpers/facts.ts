// Facts about an image for plan tests, written flat as a finished conversion knows them, sorted into planning's phases.
import type {
  ContentFacts,
  ImageFacts,
  KernelFacts,
  PlanInputs,
  ProcessFacts,
  TreeFacts,
  Userland,
} from '../../src/core/plan.js';
import type { Known } from '../../src/guest/strategy.js';

export interface FlatFacts {
  inputs?: PlanInputs;
  source?: ImageFacts['source'];
  process?: ProcessFacts;
  architecture?: string;
  os?: ImageFacts['os'];
  builders?: ImageFacts['builders'];
  /** The distro strategy's build, as the plan shows it. */
  guest?: {
    distribution?: string;
    template?: string;
    builder: NonNullable<TreeFacts['build']>['builder'];
    cached: boolean | null;
    image: string | null;
  };
  kernel?: KernelFacts | null;
  kernelBundle?: TreeFacts['kernelBundle'];
  hasResolved?: boolean;
  userland?: Userland;
  content?: ContentFacts;
}

const NO_PROCESS: ProcessFacts = { entrypoint: [], cmd: [], env: [], cwd: '/', user: '' };

/** The phases' facts: the image once anything about it is given, the tree once a kernel or userland is, the content. */
export function known(f: FlatFacts): Known {
  const k: Known = { inputs: f.inputs ?? {} };
  if (f.source || f.os !== undefined || f.process || f.builders) {
    k.image = {
      source: f.source ?? { transport: 'docker-daemon', id: `sha256:${'00'.repeat(32)}`, layers: 1 },
      process: f.process ?? NO_PROCESS,
      architecture: f.architecture ?? 'amd64',
      ...(f.os !== undefined ? { os: f.os } : {}),
      ...(f.builders ? { builders: f.builders } : {}),
    };
  }
  if (f.kernel !== undefined || f.kernelBundle || f.userland || f.guest || f.hasResolved !== undefined) {
    k.tree = {
      kernel: f.kernel ?? null,
      hasResolved: !!f.hasResolved,
      ...(f.userland ? { userland: f.userland } : {}),
      ...(f.kernelBundle ? { kernelBundle: f.kernelBundle } : {}),
      ...(f.guest ? { build: { builder: f.guest.builder, cached: !!f.guest.cached, image: f.guest.image ?? '' } } : {}),
    };
  }
  if (f.content) k.content = f.content;
  return k;
}
