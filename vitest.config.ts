import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    maxWorkers: 2,
    // `gc()` for tests that compare heap use with a baseline (test/hostile/harness.ts): without
    // it garbage not yet collected counts, and an idle process may not collect for a long time.
    execArgv: ['--expose-gc'],
    reporters: ['default'],
  },
})
