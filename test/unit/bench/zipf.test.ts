import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Prng } from '../../../bench/generator/prng.js';
import { ZipfSampler } from '../../../bench/generator/zipf.js';

describe('ZipfSampler', () => {
  it('has probabilities that sum to 1 and fall as 1 / (k + 1)^s', () => {
    const sampler = new ZipfSampler(1_000, 1.2);
    let sum = 0;
    for (let rank = 0; rank < sampler.size; rank++) sum += sampler.probability(rank);
    expect(sum).toBeCloseTo(1, 12);
    for (const rank of [1, 9, 99, 999]) {
      expect(sampler.probability(0) / sampler.probability(rank)).toBeCloseTo(Math.pow(rank + 1, 1.2), 6);
    }
  });

  it('is uniform with exponent 0', () => {
    const sampler = new ZipfSampler(50, 0);
    for (let rank = 0; rank < 50; rank++) expect(sampler.probability(rank)).toBeCloseTo(1 / 50, 12);
  });

  it('maps u to the first rank whose cumulative probability exceeds it', () => {
    const sampler = new ZipfSampler(500, 1);
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (u) => {
        const rank = sampler.rankFor(u);
        let below = 0;
        for (let k = 0; k < rank; k++) below += sampler.probability(k);
        // cdf(rank - 1) <= u < cdf(rank), allowing for float summation error.
        expect(below).toBeLessThanOrEqual(u + 1e-12);
        expect(below + sampler.probability(rank)).toBeGreaterThan(u - 1e-12);
      }),
    );
    expect(sampler.rankFor(0)).toBe(0);
    expect(sampler.rankFor(1 - Number.EPSILON)).toBe(499);
  });

  it('draws ranks with the expected frequencies (within 4 standard deviations)', () => {
    const sampler = new ZipfSampler(10_000, 1);
    const prng = new Prng(42);
    const draws = 200_000;
    const counts = new Uint32Array(sampler.size);
    for (let draw = 0; draw < draws; draw++) counts[sampler.sample(prng)]! += 1;
    for (const rank of [0, 1, 2, 3, 9, 99]) {
      const p = sampler.probability(rank);
      const expected = draws * p;
      const sigma = Math.sqrt(draws * p * (1 - p));
      expect(Math.abs(counts[rank]! - expected)).toBeLessThan(4 * sigma);
    }
    // The head is heavy: with s = 1 over 10k ranks the top 10 ranks take ~30 % of draws.
    let top10 = 0;
    for (let rank = 0; rank < 10; rank++) top10 += counts[rank]!;
    let expectedTop10 = 0;
    for (let rank = 0; rank < 10; rank++) expectedTop10 += sampler.probability(rank);
    expect(top10 / draws).toBeCloseTo(expectedTop10, 2);
    // The tail is reached too.
    expect(counts.subarray(5_000).some((count) => count > 0)).toBe(true);
  });

  it('refuses bad parameters', () => {
    expect(() => new ZipfSampler(0, 1)).toThrow(RangeError);
    expect(() => new ZipfSampler(10, -1)).toThrow(RangeError);
    expect(() => new ZipfSampler(10, Number.NaN)).toThrow(RangeError);
  });
});

describe('Prng', () => {
  it('repeats its sequence for a seed and differs between seeds', () => {
    const a = new Prng(7);
    const b = new Prng(7);
    const c = new Prng(8);
    const seqA = Array.from({ length: 20 }, () => a.nextUint32());
    expect(Array.from({ length: 20 }, () => b.nextUint32())).toEqual(seqA);
    expect(Array.from({ length: 20 }, () => c.nextUint32())).not.toEqual(seqA);
  });

  it('gives floats in [0, 1) with a mean near 1/2', () => {
    const prng = new Prng(3);
    let sum = 0;
    let min = Infinity;
    let max = -Infinity;
    for (let draw = 0; draw < 100_000; draw++) {
      const value = prng.nextFloat();
      sum += value;
      min = Math.min(min, value);
      max = Math.max(max, value);
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    expect(sum / 100_000).toBeCloseTo(0.5, 2);
  });
});
