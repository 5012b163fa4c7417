import { defineConfig } from 'vitest/config';

// Integration tests start their own nats-server processes and LMDB files; they
// run in forks so a crashed engine child never takes the runner down with it.
// The JSON report is what .ci/run reads for its closing "N passed, N failed".
//
// Two projects in the one pool. Unit tests share their workers' module cache
// (isolate off): each file still runs on its own, but src/ is imported once per
// worker rather than once per file, which took 47 s of the unit tests' 105 s
// (63 s without it, the same 731 tests). Integration files stay isolated: they
// start engines, servers and timers whose module state must not outlive them.
const unit = 'test/unit/**/*.test.ts';
export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    // Two cores: the heavy integration files (each starts engines) must not all run at once.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', ['json', { outputFile: '.vitest/results.json' }]],
    projects: [
      { extends: true, test: { name: 'unit', include: [unit], isolate: false } },
      { extends: true, test: { name: 'integration', include: ['test/**/*.test.ts'], exclude: [unit] } },
    ],
  },
});
