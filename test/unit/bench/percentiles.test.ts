import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { percentileOfSorted, sortedSamples, summarize } from '../../../bench/measure/percentiles.js';

describe('percentiles (nearest rank)', () => {
  const oneToHundred = Float64Array.from({ length: 100 }, (_, index) => index + 1);

  it('reads the expected ranks of 1..100', () => {
    expect(percentileOfSorted(oneToHundred, 0)).toBe(1);
    expect(percentileOfSorted(oneToHundred, 50)).toBe(50);
    expect(percentileOfSorted(oneToHundred, 90)).toBe(90);
    expect(percentileOfSorted(oneToHundred, 99)).toBe(99);
    expect(percentileOfSorted(oneToHundred, 99.9)).toBe(100);
    expect(percentileOfSorted(oneToHundred, 100)).toBe(100);
  });

  it('does not round p99.9 of 1,000 samples up past the 999th', () => {
    const samples = Float64Array.from({ length: 1_000 }, (_, index) => index + 1);
    expect(percentileOfSorted(samples, 99.9)).toBe(999);
    expect(percentileOfSorted(samples, 99)).toBe(990);
  });

  it('sorts numerically, drops NaN, and summarizes', () => {
    const summary = summarize([10, Number.NaN, 2, 30, 1, Number.NaN]);
    expect(summary.count).toBe(4);
    expect(summary.min).toBe(1);
    expect(summary.max).toBe(30);
    expect(summary.mean).toBeCloseTo(10.75, 12);
    expect(summary.percentiles.p50).toBe(2);
    expect(summary.percentiles.p90).toBe(30);
    expect(Array.from(sortedSamples([10, 9, 100, 1]))).toEqual([1, 9, 10, 100]);
  });

  it('gives NaN for no samples and refuses percentiles outside [0, 100]', () => {
    expect(percentileOfSorted(new Float64Array(0), 50)).toBeNaN();
    expect(summarize([]).percentiles['p99.9']).toBeNaN();
    expect(() => percentileOfSorted(oneToHundred, 101)).toThrow(RangeError);
    expect(() => percentileOfSorted(oneToHundred, -1)).toThrow(RangeError);
  });

  it('returns a sample with at least p % of samples at or below it and fewer than p % below it', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 300 }),
        fc.constantFrom(0.1, 1, 25, 50, 90, 99, 99.9, 100),
        (values, percentile) => {
          const sorted = sortedSamples(values);
          const result = percentileOfSorted(sorted, percentile);
          expect(values).toContain(result);
          const atOrBelow = values.filter((value) => value <= result).length;
          const below = values.filter((value) => value < result).length;
          expect(atOrBelow / values.length).toBeGreaterThanOrEqual(percentile / 100 - 1e-9);
          expect(below / values.length).toBeLessThan(percentile / 100 + 1e-9);
        },
      ),
    );
  });
});
