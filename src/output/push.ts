// The push sink: after the containerdisk output, pushes its image to a registry (the OCI distribution flow).
import type { Env } from '../core/context.js';
import type { ConversionPlan } from '../core/plan.js';
import { pushContainerDisk } from './containerdisk.js';
import type { OutputArtifact } from './format.js';

/** Pushes the containerDisk the output stage made to the plan's --push reference. */
export async function pushArtifact(
  plan: ConversionPlan,
  artifact: OutputArtifact,
  env: Env,
): Promise<{ ref: string; digest: string }> {
  const ref = plan.output.push;
  if (!artifact.containerDiskQcow2 || ref === null)
    throw new Error('push runs after the containerdisk output, with a reference');
  return pushContainerDisk(
    artifact.containerDiskQcow2,
    ref,
    env,
    env.fixedEpoch,
    { insecureRegistries: plan.source.insecureRegistries },
    plan.architecture.arch,
  );
}
