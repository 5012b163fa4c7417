import { defineConfig } from 'vitest/config';

// Integration tests start their own nats-server processes and LMDB files; they
// run in forks so a crashed engine child never takes the runner down with it.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
