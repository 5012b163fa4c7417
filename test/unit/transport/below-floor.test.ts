import { afterEach, describe, expect, it, vi } from 'vitest';
import { BelowFloorWatch, pendingBelowFloor, type ConsumerStanding } from '../../../src/transport/below-floor.js';

describe('pendingBelowFloor', () => {
  it('is 0 for a healthy ack-all consumer: every pending entry lies between the floor and the last delivery', () => {
    expect(pendingBelowFloor({ ackFloor: 100, delivered: 150, ackPending: 50 })).toBe(0);
    expect(pendingBelowFloor({ ackFloor: 150, delivered: 150, ackPending: 0 })).toBe(0);
    // Messages deleted in the range make it larger than what is pending: never a false finding.
    expect(pendingBelowFloor({ ackFloor: 100, delivered: 150, ackPending: 20 })).toBe(0);
    // A consumer recreated at S reports floor 0 until its first ack.
    expect(pendingBelowFloor({ ackFloor: 0, delivered: 5_000, ackPending: 300 })).toBe(0);
  });

  it('counts what can only lie below the floor', () => {
    // The floor moved past the delivery pointer (an ack-all for a sequence beyond it), then 40 more were delivered below it.
    expect(pendingBelowFloor({ ackFloor: 1_000, delivered: 640, ackPending: 40 })).toBe(40);
    expect(pendingBelowFloor({ ackFloor: 1_000, delivered: 1_010, ackPending: 25 })).toBe(15);
  });
});

describe('BelowFloorWatch', () => {
  afterEach(() => void vi.useRealTimers());

  const healthy: ConsumerStanding = { ackFloor: 10, delivered: 12, ackPending: 2 };
  const stuck: ConsumerStanding = { ackFloor: 10, delivered: 12, ackPending: 7 };

  it('looks up the consumer on a sighting, at most once per interval, and reports entries below the floor', async () => {
    vi.useFakeTimers();
    let standing = healthy;
    const lookup = vi.fn(async () => standing);
    const onFound = vi.fn();
    const watch = new BelowFloorWatch({ lookup, onFound, intervalMs: 2_000, now: () => Date.now() });
    watch.sighted();
    await vi.advanceTimersByTimeAsync(0);
    expect(lookup).toHaveBeenCalledTimes(1);
    expect(onFound).not.toHaveBeenCalled();
    // Many sightings within the interval: one more lookup when it ends.
    standing = stuck;
    for (let i = 0; i < 100; i++) watch.sighted();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(lookup).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(lookup).toHaveBeenCalledTimes(2);
    expect(onFound).toHaveBeenCalledExactlyOnceWith(stuck, 5);
    // No sighting: no lookup.
    await vi.advanceTimersByTimeAsync(10_000);
    expect(lookup).toHaveBeenCalledTimes(2);
    watch.close();
  });

  it('a failed lookup (NATS away) is tried again after the interval; close stops it', async () => {
    vi.useFakeTimers();
    let fail = true;
    const lookup = vi.fn(async () => {
      if (fail) throw new Error('timeout');
      return stuck;
    });
    const onFound = vi.fn();
    const watch = new BelowFloorWatch({ lookup, onFound, intervalMs: 2_000, now: () => Date.now() });
    watch.sighted();
    await vi.advanceTimersByTimeAsync(0);
    expect(lookup).toHaveBeenCalledTimes(1);
    fail = false;
    await vi.advanceTimersByTimeAsync(2_000);
    expect(lookup).toHaveBeenCalledTimes(2);
    expect(onFound).toHaveBeenCalledTimes(1);
    watch.close();
    watch.sighted();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(lookup).toHaveBeenCalledTimes(2);
  });
});
