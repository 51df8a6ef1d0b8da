// Test tiers named for what they need: "node" (node alone: seconds), "tools" (real host programs), "boot" (QEMU boots).
import { configDefaults, defineConfig } from 'vitest/config';

// The file name says what a test needs; test/setup/node-only.ts fails a node-tier test that starts a process or leaves loopback.
const TOOLS = 'test/**/*.tools.test.ts';
const BOOT = 'test/**/*.boot.test.ts';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'node',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, TOOLS, BOOT],
          setupFiles: ['test/setup/node-only.ts'],
          testTimeout: 30_000,
        },
      },
      {
        // One file at a time: the end-to-end files among them share dockerd and the fixtures it builds.
        test: { name: 'tools', include: [TOOLS], testTimeout: 30 * 60_000, hookTimeout: 30 * 60_000, fileParallelism: false },
      },
      {
        test: { name: 'boot', include: [BOOT], testTimeout: 30 * 60_000, hookTimeout: 30 * 60_000, fileParallelism: false },
      },
    ],
  },
});
