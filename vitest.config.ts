import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Fails the run when a test changed the checkout (build/, dist/, prebuilds/, tracked files).
    globalSetup: ['test/helpers/tree-guard.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Engine tests use native threads sized to the machine; running test files in parallel on a
    // 2-core machine only makes them slower and noisier.
    fileParallelism: false,
    pool: 'forks',
  },
});
