import { assert, assertSafeInteger } from './assert.js';

/** How a fractional point count becomes an integer. Always explicit in the program. */
export type Rounding = 'floor' | 'half_up' | 'ceil';

/**
 * Exact integer division with an explicit rounding rule, for non-negative
 * numerators. Floating-point division is never used for balances: `n % d` and
 * `(n - r) / d` are exact for safe integers, `n / d` is not.
 */
export function divideRounded(numerator: number, denominator: number, rounding: Rounding): number {
  assertSafeInteger(numerator, 'numerator');
  assertSafeInteger(denominator, 'denominator');
  assert(numerator >= 0, 'numerator must be non-negative');
  assert(denominator > 0, 'denominator must be positive');
  const remainder = numerator % denominator;
  const quotient = (numerator - remainder) / denominator;
  switch (rounding) {
    case 'floor':
      return quotient;
    case 'ceil':
      return remainder > 0 ? quotient + 1 : quotient;
    case 'half_up':
      return remainder * 2 >= denominator ? quotient + 1 : quotient;
  }
}

/** points = amount × pointsPer / perMinor, rounded as the program says; the product must stay exact. */
export function pointsForAmount(amountMinor: number, pointsPer: number, perMinor: number, rounding: Rounding): number {
  assert(amountMinor >= 0, 'amountMinor must be non-negative');
  const product = amountMinor * pointsPer;
  assertSafeInteger(product, 'amountMinor × pointsPer');
  return divideRounded(product, perMinor, rounding);
}

/**
 * value × numerator / denominator with explicit rounding, exact for any safe
 * inputs: when the product would leave the safe-integer range the division is
 * done in BigInt, so a large basket never turns into a floating-point balance.
 */
export function multiplyRounded(value: number, numerator: number, denominator: number, rounding: Rounding): number {
  assertSafeInteger(value, 'value');
  assertSafeInteger(numerator, 'numerator');
  assert(value >= 0, 'value must be non-negative');
  assert(numerator >= 0, 'numerator must be non-negative');
  const product = value * numerator;
  if (Number.isSafeInteger(product)) return divideRounded(product, denominator, rounding);
  assertSafeInteger(denominator, 'denominator');
  assert(denominator > 0, 'denominator must be positive');
  const big = BigInt(value) * BigInt(numerator);
  const divisor = BigInt(denominator);
  const quotient = big / divisor;
  const remainder = big % divisor;
  let result = quotient;
  if (rounding === 'ceil' && remainder > 0n) result += 1n;
  if (rounding === 'half_up' && remainder * 2n >= divisor) result += 1n;
  const asNumber = Number(result);
  assertSafeInteger(asNumber, 'rounded product');
  return asNumber;
}

/**
 * The share of `total` that `part` out of `whole` stands for, rounded down,
 * and exactly `total` when part reaches whole. Used cumulatively (share of
 * everything returned so far minus what was already taken), so the sum of
 * the shares never exceeds the total and the last share completes it.
 */
export function prorate(total: number, part: number, whole: number): number {
  assert(part >= 0, 'part must be non-negative');
  assert(whole >= 0, 'whole must be non-negative');
  if (part >= whole) return total;
  return multiplyRounded(total, part, whole, 'floor');
}

/**
 * Splits `total` into integer parts proportional to `weights` by the largest
 * remainder method: the parts always add up to `total` exactly, ties go to the
 * earlier index so the split is deterministic. All-zero weights split evenly.
 */
export function allocate(total: number, weights: readonly number[]): number[] {
  assertSafeInteger(total, 'total');
  assert(total >= 0, 'total must be non-negative');
  const count = weights.length;
  assert(count > 0, 'weights must not be empty');
  let weightSum = 0;
  for (let index = 0; index < count; index++) weightSum += weights[index]!;
  assertSafeInteger(weightSum, 'sum of weights');
  if (count === 1) return [total];
  // All-zero weights count as ones.
  const allZero = weightSum === 0;
  const sum = allZero ? count : weightSum;
  const parts = new Array<number>(count);
  const remainders = new Array<number>(count);
  let given = 0;
  for (let index = 0; index < count; index++) {
    const weight = allZero ? 1 : weights[index]!;
    assert(weight >= 0, 'weights must be non-negative');
    // multiplyRounded(total, weight, sum, 'floor') and its remainder, inlined with
    // the same checks in the same order; the rare unsafe product takes the BigInt path.
    assertSafeInteger(weight, 'numerator');
    const product = total * weight;
    let part: number;
    let remainder: number;
    if (Number.isSafeInteger(product)) {
      assert(sum > 0, 'denominator must be positive');
      remainder = product % sum;
      part = (product - remainder) / sum;
    } else {
      part = multiplyRounded(total, weight, sum, 'floor');
      remainder = remainderOf(total, weight, sum);
    }
    parts[index] = part;
    // The remainder only ranks the parts; comparing scaled fractions is enough.
    remainders[index] = remainder;
    given += part;
  }
  let left = total - given;
  assert(left >= 0, 'largest remainder leftover is negative');
  assert(left < count, 'largest remainder leftover exceeds one per part');
  while (left > 0) {
    let best = -1;
    for (let index = 0; index < count; index++) {
      if (best === -1 || remainders[index]! > remainders[best]!) best = index;
    }
    parts[best] = parts[best]! + 1;
    remainders[best] = -1;
    left -= 1;
  }
  return parts;
}

/** (total × weight) mod sum, exactly, as a number (it is below sum, a safe integer). */
function remainderOf(total: number, weight: number, sum: number): number {
  const product = total * weight;
  if (Number.isSafeInteger(product)) return product % sum;
  return Number((BigInt(total) * BigInt(weight)) % BigInt(sum));
}
