/**
 * Token bucket for a target publish rate, refilled from a monotonic clock.
 * Node timers fire about once a millisecond at best and sometimes later, so
 * each wake-up publishes whatever the elapsed time allows (up to the bucket's
 * capacity): the average rate holds even when single timers are late, and a
 * stall never turns into an unbounded burst.
 */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly capacity: number;
  private tokens: number;
  private lastMs: number;

  /** `burstMs`: how many milliseconds of tokens may pile up while the publisher is not running. */
  constructor(ratePerSecond: number, nowMs: number, burstMs = 50) {
    if (!(ratePerSecond > 0) || !Number.isFinite(ratePerSecond)) throw new RangeError(`rate must be a positive number, got ${ratePerSecond}`);
    if (!(burstMs > 0)) throw new RangeError(`burstMs must be positive, got ${burstMs}`);
    this.ratePerSecond = ratePerSecond;
    this.capacity = Math.max(1, (ratePerSecond * burstMs) / 1000);
    // Start with one token, not a full bucket: the first millisecond is not a burst.
    this.tokens = 1;
    this.lastMs = nowMs;
  }

  /** Whole tokens available at `nowMs` (after refill). */
  available(nowMs: number): number {
    const elapsedMs = nowMs - this.lastMs;
    if (elapsedMs > 0) {
      this.tokens = Math.min(this.capacity, this.tokens + (elapsedMs * this.ratePerSecond) / 1000);
      this.lastMs = nowMs;
    }
    return Math.floor(this.tokens);
  }

  take(count: number): void {
    if (count > this.tokens + 1e-9) throw new RangeError(`took ${count} tokens with only ${this.tokens} available`);
    this.tokens -= count;
  }

  /** Milliseconds until one more whole token exists (0 if one does). */
  msUntilNextToken(): number {
    return this.tokens >= 1 ? 0 : ((1 - this.tokens) * 1000) / this.ratePerSecond;
  }
}
