/**
 * Exact percentiles of a set of samples. Latencies of every event are kept
 * (8 bytes each), so nothing is approximated by buckets: sort once, then read
 * ranks.
 *
 * Definition (nearest rank): the p-th percentile is the smallest sample such
 * that at least p % of the samples are less than or equal to it, i.e. the
 * sample at 1-based rank ceil(p / 100 × n). p = 0 gives the minimum, p = 100
 * the maximum. This is the definition HdrHistogram and most load tools report.
 */

export const REPORTED_PERCENTILES = [50, 90, 99, 99.9] as const;

export interface Summary {
  count: number;
  min: number;
  mean: number;
  max: number;
  /** Keyed by the percentile as written, e.g. "p50", "p99.9". */
  percentiles: Record<string, number>;
}

/** Sorts a copy (ascending, numerically) and drops NaN samples. */
export function sortedSamples(samples: ArrayLike<number>): Float64Array {
  const copy = new Float64Array(samples.length);
  let used = 0;
  for (let index = 0; index < samples.length; index++) {
    const value = samples[index]!;
    if (!Number.isNaN(value)) copy[used++] = value;
  }
  // Typed-array sort is numeric, unlike Array.prototype.sort's default.
  return copy.subarray(0, used).sort();
}

/** Nearest-rank percentile of ascending samples; NaN when there are none. */
export function percentileOfSorted(sorted: ArrayLike<number>, percentile: number): number {
  if (!(percentile >= 0 && percentile <= 100)) throw new RangeError(`percentile must be within [0, 100], got ${percentile}`);
  const count = sorted.length;
  if (count === 0) return Number.NaN;
  // Rounding guards against 99.9 / 100 × 1000 = 998.9999999999999 style errors before ceil.
  const rank = Math.max(1, Math.ceil(Number(((percentile / 100) * count).toFixed(9))));
  return sorted[Math.min(count, rank) - 1]!;
}

export function percentileKey(percentile: number): string {
  return `p${percentile}`;
}

export function summarize(samples: ArrayLike<number>, percentiles: readonly number[] = REPORTED_PERCENTILES): Summary {
  const sorted = sortedSamples(samples);
  let sum = 0;
  for (const value of sorted) sum += value;
  const result: Record<string, number> = {};
  for (const percentile of percentiles) result[percentileKey(percentile)] = percentileOfSorted(sorted, percentile);
  return {
    count: sorted.length,
    min: sorted.length > 0 ? sorted[0]! : Number.NaN,
    mean: sorted.length > 0 ? sum / sorted.length : Number.NaN,
    max: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
    percentiles: result,
  };
}
