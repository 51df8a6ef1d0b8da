// Test tiers named for what they need: "node" (node alone: seconds), "tools" (real host programs), "boot" (QEMU boots).
import { availableParallelism } from 'node:os';
import { configDefaults, defineConfig } from 'vitest/config';

// The file name says what a test needs; test/setup/node-only.ts fails a node-tier test that starts a process or leaves loopback.
const TOOLS = 'test/**/*.tools.test.ts';
const BOOT = 'test/**/*.boot.test.ts';
// The slow tier: tests that take far longer than a boot (an arm64 distribution build under emulation), run only
// when asked for (IMG2VM_SLOW=1, which `bash scripts/test.sh --slow` sets), so the default suite keeps its time.
const SLOW = 'test/**/*.slow.test.ts';
const RUN_SLOW = process.env.IMG2VM_SLOW === '1';
// vitest's default is one worker per core but one: a single worker on the 2-core machines this runs on.
const NODE_WORKERS = Math.max(2, availableParallelism() - 1);
// Two files at a time: a TCG guest keeps about one core busy while the other file converts, builds or waits on the
// network. Files that run together must not see each other: private work directories, free ports, containers of
// their own image (docker ps --filter ancestor=), processes named by their own paths.
const VM_WORKERS = 2;
// Two VMs at once on what may be two cores: TCG then runs each VM's vCPUs on one host thread in turn (faster there,
// and QEMU 7.2's multi-threaded TCG let a guest kernel oops while patching its own code under that load; src/vm/accel.ts
// has the numbers). A value the caller set wins.
const VM_ENV = { IMG2VM_TCG_THREAD: process.env.IMG2VM_TCG_THREAD || 'single' };

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'node',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, TOOLS, BOOT, SLOW],
          setupFiles: ['test/setup/node-only.ts'],
          testTimeout: 30_000,
          maxWorkers: NODE_WORKERS,
        },
      },
      {
        test: {
          name: 'tools',
          include: [TOOLS],
          testTimeout: 30 * 60_000,
          hookTimeout: 30 * 60_000,
          maxWorkers: VM_WORKERS,
          env: VM_ENV,
          // After the node tier, together with the boot tier: the two share the VM_WORKERS.
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: 'boot',
          include: [BOOT],
          testTimeout: 30 * 60_000,
          hookTimeout: 30 * 60_000,
          maxWorkers: VM_WORKERS,
          env: VM_ENV,
          sequence: { groupOrder: 1 },
        },
      },
      ...(RUN_SLOW
        ? [
            {
              test: {
                name: 'slow',
                include: [SLOW],
                testTimeout: 180 * 60_000,
                hookTimeout: 60 * 60_000,
                maxWorkers: VM_WORKERS,
                env: VM_ENV,
                sequence: { groupOrder: 1 },
              },
            },
          ]
        : []),
    ],
  },
});
