import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { actorOfPartition, fnv1a32, partitionOf } from '../../../src/routing/partitioner.js';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('fnv1a32', () => {
  it('matches the published FNV-1a 32-bit test vectors', () => {
    expect(fnv1a32(bytes(''))).toBe(0x811c9dc5);
    expect(fnv1a32(bytes('a'))).toBe(0xe40c292c);
    expect(fnv1a32(bytes('foobar'))).toBe(0xbf9cf968);
  });

  it('hashes only the [start, end) range', () => {
    const buffer = bytes('xxfoobaryy');
    expect(fnv1a32(buffer, 2, 8)).toBe(0xbf9cf968);
    expect(fnv1a32(buffer, 3, 3)).toBe(0x811c9dc5);
  });

  it('returns an unsigned 32-bit integer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (input) => {
        const hash = fnv1a32(input);
        expect(Number.isInteger(hash)).toBe(true);
        expect(hash).toBeGreaterThanOrEqual(0);
        expect(hash).toBeLessThanOrEqual(0xffffffff);
      }),
    );
  });
});

describe('partitionOf', () => {
  it('is fnv1a32 of the UTF-8 bytes modulo the partition count', () => {
    expect(partitionOf('foobar', 64)).toBe(0xbf9cf968 % 64);
    expect(partitionOf('a', 7)).toBe(0xe40c292c % 7);
  });

  it('is in range and stable for any id and partition count', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 64 }), fc.integer({ min: 1, max: 4096 }), (memberId, partitions) => {
        const partition = partitionOf(memberId, partitions);
        expect(Number.isInteger(partition)).toBe(true);
        expect(partition).toBeGreaterThanOrEqual(0);
        expect(partition).toBeLessThan(partitions);
        expect(partitionOf(memberId, partitions)).toBe(partition);
      }),
    );
  });

  it('spreads 100k member ids roughly uniformly over 64 partitions', () => {
    const partitions = 64;
    const ids = 100_000;
    const counts = new Array<number>(partitions).fill(0);
    for (let index = 0; index < ids; index++) counts[partitionOf(`member-${index}`, partitions)]! += 1;
    const expected = ids / partitions;
    const chiSquare = counts.reduce((sum, count) => sum + (count - expected) ** 2 / expected, 0);
    // 63 degrees of freedom: mean 63, p = 0.999 at ~103. 200 is generous and still
    // catches a badly skewed hash (e.g. one that ignores the last characters).
    expect(chiSquare).toBeLessThan(200);
    for (const count of counts) {
      expect(count).toBeGreaterThan(expected * 0.85);
      expect(count).toBeLessThan(expected * 1.15);
    }
  });
});

describe('actorOfPartition', () => {
  it('deals partitions round-robin to actors', () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((partition) => actorOfPartition(partition, 3))).toEqual([0, 1, 2, 0, 1, 2, 0]);
    expect(actorOfPartition(63, 1)).toBe(0);
  });

  it('gives every actor the same number of partitions (±1)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 512 }), fc.integer({ min: 1, max: 64 }), (partitions, actors) => {
        fc.pre(actors <= partitions);
        const owned = new Array<number>(actors).fill(0);
        for (let partition = 0; partition < partitions; partition++) owned[actorOfPartition(partition, actors)]! += 1;
        expect(Math.max(...owned) - Math.min(...owned)).toBeLessThanOrEqual(1);
        expect(Math.min(...owned)).toBeGreaterThan(0);
      }),
    );
  });
});
