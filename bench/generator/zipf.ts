import type { Prng } from './prng.js';

/**
 * Zipf-distributed ranks over [0, n): rank k (0-based) is drawn with
 * probability proportional to 1 / (k + 1)^s. A few members are very active and
 * most are rarely seen, as in real loyalty traffic; s = 0 is uniform.
 *
 * The cumulative distribution is precomputed once (n doubles) and each draw is
 * a binary search, so a draw costs O(log n) whatever s is.
 */
export class ZipfSampler {
  readonly size: number;
  readonly exponent: number;
  private readonly cdf: Float64Array;

  constructor(size: number, exponent: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`Zipf size must be an integer >= 1, got ${size}`);
    if (!Number.isFinite(exponent) || exponent < 0) throw new RangeError(`Zipf exponent must be finite and >= 0, got ${exponent}`);
    this.size = size;
    this.exponent = exponent;
    this.cdf = new Float64Array(size);
    let sum = 0;
    for (let rank = 0; rank < size; rank++) {
      sum += 1 / Math.pow(rank + 1, exponent);
      this.cdf[rank] = sum;
    }
    for (let rank = 0; rank < size; rank++) this.cdf[rank] = this.cdf[rank]! / sum;
    // Rounding must never leave a draw of u close to 1 without a rank.
    this.cdf[size - 1] = 1;
  }

  /** Probability of one rank, from the table (for reports and tests). */
  probability(rank: number): number {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.size) throw new RangeError(`rank out of range: ${rank}`);
    return rank === 0 ? this.cdf[0]! : this.cdf[rank]! - this.cdf[rank - 1]!;
  }

  /** The smallest rank whose cumulative probability exceeds u, for u in [0, 1). */
  rankFor(u: number): number {
    let low = 0;
    let high = this.size - 1;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.cdf[middle]! > u) high = middle;
      else low = middle + 1;
    }
    return low;
  }

  sample(prng: Prng): number {
    return this.rankFor(prng.nextFloat());
  }
}
