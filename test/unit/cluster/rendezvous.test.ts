import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assignPartitions, ownerOf } from '../../../src/cluster/rendezvous.js';

const counts = (owners: Map<number, string>): Map<string, number> => {
  const result = new Map<string, number>();
  for (const owner of owners.values()) result.set(owner, (result.get(owner) ?? 0) + 1);
  return result;
};

describe('rendezvous assignment of partitions', () => {
  it('gives every partition exactly one live owner, the same whatever the order of the live set', () => {
    const live = ['engine-a', 'engine-b', 'engine-c'];
    const owners = assignPartitions(64, live);
    expect(owners.size).toBe(64);
    expect([...owners.values()].every((owner) => live.includes(owner))).toBe(true);
    expect(assignPartitions(64, [...live].reverse())).toEqual(owners);
  });

  it('spreads 64 partitions over 3 instances near evenly (no instance under 14 or over 30)', () => {
    for (const live of [['engine-a', 'engine-b', 'engine-c'], ['host1-1', 'host1-2', 'host1-3'], ['a', 'b', 'c']]) {
      for (const count of counts(assignPartitions(64, live)).values()) {
        expect(count).toBeGreaterThanOrEqual(14);
        expect(count).toBeLessThanOrEqual(30);
      }
    }
  });

  it('moves only the leaving instance\'s partitions when one leaves, and only to the joiner when one joins', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.stringMatching(/^[a-z0-9-]{1,12}$/), { minLength: 2, maxLength: 6 }), fc.integer({ min: 1, max: 256 }), (live, partitions) => {
        const before = assignPartitions(partitions, live);
        const leaving = live[0]!;
        const after = assignPartitions(partitions, live.slice(1));
        for (const [partition, owner] of before) {
          if (owner !== leaving) expect(after.get(partition)).toBe(owner);
        }
        const joined = assignPartitions(partitions, [...live, 'joiner']);
        for (const [partition, owner] of joined) {
          if (owner !== 'joiner') expect(owner).toBe(before.get(partition));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('has no owner without live instances', () => {
    expect(assignPartitions(8, []).size).toBe(0);
    expect(ownerOf(3, [])).toBeUndefined();
  });
});
