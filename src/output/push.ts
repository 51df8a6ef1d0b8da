// The push sink: after the containerdisk output, pushes its image to a registry (the OCI distribution flow).
import type { ConversionRun } from '../core/conversion.js';
import { pushContainerDisk } from './containerdisk.js';

export interface OutputSink {
  id: string;
  run(r: ConversionRun): Promise<string>;
}

export const push: OutputSink = {
  id: 'push',
  async run(r) {
    const qcow2 = r.artifact?.containerDiskQcow2;
    if (!qcow2) throw new Error('push runs after the containerdisk output');
    r.pushed = await pushContainerDisk(qcow2, r.options.push!, r.ctx, { insecureRegistries: r.options.insecureRegistries });
    return r.pushed.digest;
  },
};

export const SINKS: Record<string, OutputSink> = { push };
