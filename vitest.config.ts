import { defineConfig } from 'vitest/config';

// Integration tests start their own nats-server processes and LMDB files; they
// run in forks so a crashed engine child never takes the runner down with it.
// The JSON report is what .ci/run reads for its closing "N passed, N failed".
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    // Two cores: the heavy integration files (each starts engines) must not all run at once.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', ['json', { outputFile: '.vitest/results.json' }]],
  },
});
