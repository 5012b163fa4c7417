import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allocate, assert, assertSafeInteger, base36Upper11, multiplyRounded, voucherCode, type RedemptionRecord } from '../../../src/domain/index.js';
import { sortLastByDeadline } from '../../../src/domain/redemption.js';

/**
 * Hot-path rewrites held to the code they replaced: the straightforward
 * versions below are the former implementations, kept here as references.
 */

/** The former allocate: multiplyRounded per weight, remainders computed apart. */
function allocateReference(total: number, weights: readonly number[]): number[] {
  assertSafeInteger(total, 'total');
  assert(total >= 0, 'total must be non-negative');
  assert(weights.length > 0, 'weights must not be empty');
  let weightSum = 0;
  for (const weight of weights) weightSum += weight;
  assertSafeInteger(weightSum, 'sum of weights');
  if (weights.length === 1) return [total];
  const effective = weightSum === 0 ? weights.map(() => 1) : weights;
  const effectiveSum = weightSum === 0 ? weights.length : weightSum;
  const parts = new Array<number>(effective.length);
  const remainders = new Array<number>(effective.length);
  let given = 0;
  for (let index = 0; index < effective.length; index++) {
    const weight = effective[index]!;
    assert(weight >= 0, 'weights must be non-negative');
    const part = multiplyRounded(total, weight, effectiveSum, 'floor');
    parts[index] = part;
    const product = total * weight;
    remainders[index] = Number.isSafeInteger(product) ? product % effectiveSum : Number((BigInt(total) * BigInt(weight)) % BigInt(effectiveSum));
    given += part;
  }
  let left = total - given;
  assert(left >= 0, 'largest remainder leftover is negative');
  assert(left < effective.length, 'largest remainder leftover exceeds one per part');
  while (left > 0) {
    let best = -1;
    for (let index = 0; index < effective.length; index++) {
      if (best === -1 || remainders[index]! > remainders[best]!) best = index;
    }
    parts[best] = parts[best]! + 1;
    remainders[best] = -1;
    left -= 1;
  }
  return parts;
}

function outcome(run: () => unknown): { value?: unknown; error?: string } {
  try {
    return { value: run() };
  } catch (error) {
    return { error: `${(error as Error).name}: ${(error as Error).message}` };
  }
}

const weight = fc.oneof(
  { weight: 20, arbitrary: fc.integer({ min: 0, max: 1_000_000 }) },
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 2, arbitrary: fc.integer({ min: 2 ** 40, max: 2 ** 50 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 0.5, -0, Number.MAX_SAFE_INTEGER, Number.NaN) },
);
const total = fc.oneof(
  { weight: 20, arbitrary: fc.integer({ min: 0, max: 100_000 }) },
  { weight: 2, arbitrary: fc.integer({ min: 2 ** 30, max: Number.MAX_SAFE_INTEGER }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 1.5, Number.NaN) },
);

describe('hot-path rewrites against the former implementations', () => {
  it('allocate gives the same parts, or throws the same assertion, for any total and weights', () => {
    fc.assert(
      fc.property(total, fc.array(weight, { minLength: 0, maxLength: 8 }), (amount, weights) => {
        expect(outcome(() => allocate(amount, weights))).toEqual(outcome(() => allocateReference(amount, weights)));
      }),
      { numRuns: 20_000 },
    );
  });

  it('base36Upper11 is toString(36), upper case, padded to 11, for every 53-bit value', () => {
    fc.assert(
      fc.property(fc.oneof(fc.maxSafeNat(), fc.integer({ min: 0, max: 1_000_000 }), fc.constantFrom(0, 35, 36, Number.MAX_SAFE_INTEGER)), (value) => {
        expect(base36Upper11(value)).toBe(value.toString(36).toUpperCase().padStart(11, '0'));
      }),
      { numRuns: 20_000 },
    );
  });

  it('sortLastByDeadline orders redemptions exactly as the stable sort by deadline did', () => {
    const deadline = fc.oneof(
      { weight: 20, arbitrary: fc.integer({ min: 0, max: 40 }) },
      { weight: 1, arbitrary: fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0) },
    );
    const list = fc.oneof(
      // The usual shape: a sorted list and one new redemption at the end.
      fc.tuple(fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 12 }), deadline).map(([sorted, added]) => [...sorted.sort((a, b) => a - b), added]),
      fc.array(deadline, { maxLength: 12 }),
    );
    fc.assert(
      fc.property(list, (deadlines) => {
        const records = deadlines.map((cancelUntilMs, index) => ({ eventId: `r${index}`, cancelUntilMs }) as unknown as RedemptionRecord);
        const expected = records.slice().sort((left, right) => left.cancelUntilMs - right.cancelUntilMs);
        const actual = records.slice();
        sortLastByDeadline(actual);
        expect(actual.map((record) => record.eventId)).toEqual(expected.map((record) => record.eventId));
      }),
      { numRuns: 20_000 },
    );
  });

  it('voucher codes keep their format', () => {
    expect(voucherCode('GOLD', 'm1', 'big', 'gold-welcome')).toMatch(/^GOLD-[0-9A-Z]{11}$/);
  });
});
