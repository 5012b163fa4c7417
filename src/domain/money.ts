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
