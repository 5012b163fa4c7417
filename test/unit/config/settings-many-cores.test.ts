import { describe, expect, it, vi } from 'vitest';

// A host with more cores than the default partition count (64).
vi.mock('node:os', async (importOriginal) => {
  const os = await importOriginal<typeof import('node:os')>();
  return { ...os, availableParallelism: () => 96 };
});

const { loadSettings } = await import('../../../src/config/settings.js');

describe('loadSettings on a host with 96 cores', () => {
  it('accepts explicit actors within the partitions', () => {
    expect(loadSettings({ LOYALTY_ACTORS: '64' }).actors).toBe(64);
  });

  // BUG (src/config/settings.ts): actors defaults to availableParallelism()
  // without capping it at partitions (or at its own maximum of 256), so on a
  // 96-core host an operator who sets nothing gets
  //   "LOYALTY_ACTORS (actors): must not exceed partitions (64)"
  // and the engine refuses to start. Same with LOYALTY_PARTITIONS=2 on a
  // 4-core laptop. Fix: default actors to min(availableParallelism(), partitions)
  // (e.g. in the refinement/transform, when actors was not given).
  it('starts with the default settings (actors capped at partitions)', () => {
    const settings = loadSettings({});
    expect(settings.actors).toBeLessThanOrEqual(settings.partitions);
  });
});
