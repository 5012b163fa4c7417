/**
 * Seeded pseudo-random numbers for the load generator. Math.random is never
 * used: the same seed must give the same events on every machine, so a run
 * can be repeated and a failure reproduced.
 *
 * xoshiro128** (Blackman & Vigna): 128-bit state, period 2^128 − 1, fast in
 * 32-bit integer arithmetic. The state is seeded from one 32-bit seed with
 * splitmix32 so that nearby seeds give unrelated streams.
 */
export class Prng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
    let state = seed >>> 0;
    const next = (): number => {
      state = (state + 0x9e3779b9) >>> 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    // An all-zero state would stay zero forever; splitmix32 cannot produce four zeros, but be explicit.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits (fine enough for a CDF of millions of members). */
  nextFloat(): number {
    const high = this.nextUint32() >>> 5; // 27 bits
    const low = this.nextUint32() >>> 6; // 26 bits
    return (high * 67_108_864 + low) / 9_007_199_254_740_992;
  }

  /** Uniform integer in [min, max], both inclusive. */
  nextInt(min: number, max: number): number {
    if (!(Number.isInteger(min) && Number.isInteger(max) && max >= min)) {
      throw new RangeError(`nextInt needs integers min <= max, got ${min}, ${max}`);
    }
    return min + Math.floor(this.nextFloat() * (max - min + 1));
  }

  /** Index into `cumulativeWeights` (ascending, last = total) chosen in proportion to the weights. */
  pickWeighted(cumulativeWeights: readonly number[]): number {
    const total = cumulativeWeights[cumulativeWeights.length - 1];
    if (total === undefined || !(total > 0)) throw new RangeError('weights must have a positive total');
    const target = this.nextFloat() * total;
    for (let index = 0; index < cumulativeWeights.length; index++) {
      if (target < cumulativeWeights[index]!) return index;
    }
    return cumulativeWeights.length - 1;
  }
}

function rotl(value: number, shift: number): number {
  return (value << shift) | (value >>> (32 - shift));
}

/** Running sums of weights, for Prng.pickWeighted. */
export function cumulative(weights: readonly number[]): number[] {
  let sum = 0;
  return weights.map((weight) => {
    if (!(weight >= 0) || !Number.isFinite(weight)) throw new RangeError(`weights must be finite and >= 0, got ${weight}`);
    sum += weight;
    return sum;
  });
}
