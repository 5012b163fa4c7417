import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allocate, divideRounded, multiplyRounded, pointsForAmount, prorate } from '../../../src/domain/index.js';

describe('money: integers only, rounding explicit', () => {
  it('divides with floor, half_up and ceil', () => {
    expect(divideRounded(249, 100, 'floor')).toBe(2);
    expect(divideRounded(249, 100, 'half_up')).toBe(2);
    expect(divideRounded(250, 100, 'half_up')).toBe(3);
    expect(divideRounded(201, 100, 'ceil')).toBe(3);
    expect(pointsForAmount(1999, 1, 100, 'floor')).toBe(19);
  });

  it('multiplies past 2^53 exactly through BigInt', () => {
    expect(multiplyRounded(2 ** 52, 3, 4, 'floor')).toBe(3 * 2 ** 50);
    expect(multiplyRounded(9_000_000_000_000, 1000, 1_000_000, 'half_up')).toBe(9_000_000_000);
  });

  it('allocate always adds up to the total and follows the weights', () => {
    fc.assert(
      fc.property(fc.nat(1_000_000), fc.array(fc.nat(1_000_000), { minLength: 1, maxLength: 20 }), (total, weights) => {
        const parts = allocate(total, weights);
        expect(parts.reduce((sum, part) => sum + part, 0)).toBe(total);
        const weightSum = weights.reduce((sum, weight) => sum + weight, 0);
        parts.forEach((part, index) => {
          expect(part).toBeGreaterThanOrEqual(0);
          if (weightSum > 0) expect(Math.abs(part - (total * weights[index]!) / weightSum)).toBeLessThan(1);
        });
      }),
    );
  });

  it('prorate is monotone and reaches the total exactly at the whole', () => {
    fc.assert(
      fc.property(fc.nat(100_000), fc.integer({ min: 1, max: 1000 }), fc.nat(1000), (total, whole, part) => {
        const share = prorate(total, Math.min(part, whole), whole);
        expect(share).toBeLessThanOrEqual(total);
        expect(prorate(total, whole, whole)).toBe(total);
        if (part < whole) expect(prorate(total, part + 1, whole)).toBeGreaterThanOrEqual(share);
      }),
    );
  });
});
