import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AssertionError } from '../../../src/domain/assert.js';
import { AckTracker } from '../../../src/routing/ack-tracker.js';

interface Handle {
  readonly sequence: number;
  readonly delivery: number;
}

const handle = (sequence: number, delivery = 1): Handle => ({ sequence, delivery });

function trackAll(tracker: AckTracker<Handle>, sequences: readonly number[]): void {
  for (const sequence of sequences) tracker.track(sequence, handle(sequence));
}

describe('AckTracker', () => {
  it('in-order completion acks each sequence as it completes', () => {
    const tracker = new AckTracker<Handle>();
    trackAll(tracker, [1, 2, 3]);
    expect(tracker.inFlight).toBe(3);
    expect(tracker.complete(1)).toEqual(handle(1));
    expect(tracker.complete(2)).toEqual(handle(2));
    expect(tracker.complete(3)).toEqual(handle(3));
    expect(tracker.inFlight).toBe(0);
  });

  it('acks the highest of a done prefix in one go', () => {
    const tracker = new AckTracker<Handle>();
    trackAll(tracker, [10, 11, 12, 13]);
    expect(tracker.complete(12)).toBeUndefined();
    expect(tracker.complete(11)).toBeUndefined();
    expect(tracker.complete(10)).toEqual(handle(12));
    expect(tracker.inFlight).toBe(1);
    expect(tracker.complete(13)).toEqual(handle(13));
  });

  it('out-of-order completion acks only the contiguous done prefix', () => {
    const tracker = new AckTracker<Handle>();
    trackAll(tracker, [1, 2, 3, 4, 5]);
    expect(tracker.complete(2)).toBeUndefined();
    expect(tracker.complete(4)).toBeUndefined();
    expect(tracker.complete(5)).toBeUndefined();
    expect(tracker.inFlight).toBe(5);
    expect(tracker.complete(1)).toEqual(handle(2));
    expect(tracker.inFlight).toBe(3);
    expect(tracker.complete(3)).toEqual(handle(5));
    expect(tracker.inFlight).toBe(0);
  });

  it('ignores gaps in stream sequences (messages other consumers or filters skipped)', () => {
    const tracker = new AckTracker<Handle>();
    trackAll(tracker, [3, 9, 100]);
    expect(tracker.complete(9)).toBeUndefined();
    expect(tracker.complete(3)).toEqual(handle(9));
  });

  it('a redelivery of an in-flight sequence keeps one slot and acks through the newest handle', () => {
    const tracker = new AckTracker<Handle>();
    expect(tracker.track(1, handle(1, 1))).toBe(true);
    expect(tracker.track(2, handle(2, 1))).toBe(true);
    expect(tracker.track(2, handle(2, 2))).toBe(false);
    expect(tracker.inFlight).toBe(2);
    expect(tracker.complete(2)).toBeUndefined();
    expect(tracker.complete(1)).toEqual(handle(2, 2));
    expect(tracker.inFlight).toBe(0);
  });

  it('a redelivery of a sequence already completed (but held behind a lower one) stays completed', () => {
    const tracker = new AckTracker<Handle>();
    trackAll(tracker, [1, 2]);
    expect(tracker.complete(2)).toBeUndefined();
    expect(tracker.track(2, handle(2, 2))).toBe(false);
    expect(tracker.complete(1)).toEqual(handle(2, 2));
  });

  it('completing twice, or completing a sequence never tracked or already acked, returns nothing', () => {
    const tracker = new AckTracker<Handle>();
    trackAll(tracker, [1, 2]);
    expect(tracker.complete(2)).toBeUndefined();
    expect(tracker.complete(2)).toBeUndefined();
    expect(tracker.complete(77)).toBeUndefined();
    expect(tracker.complete(1)).toEqual(handle(2));
    expect(tracker.complete(1)).toBeUndefined();
    expect(tracker.inFlight).toBe(0);
  });

  it('a lower sequence tracked after higher ones (a redelivery) holds the watermark until it completes', () => {
    const tracker = new AckTracker<Handle>();
    trackAll(tracker, [5, 6, 7]);
    tracker.track(3, handle(3, 2));
    expect(tracker.inFlight).toBe(4);
    expect(tracker.complete(5)).toBeUndefined();
    expect(tracker.complete(6)).toBeUndefined();
    expect(tracker.complete(3)).toEqual(handle(6));
    expect(tracker.complete(7)).toEqual(handle(7));
  });

  it('inserts a lower sequence between in-flight ones in order', () => {
    const tracker = new AckTracker<Handle>();
    trackAll(tracker, [10, 20, 30]);
    tracker.track(25, handle(25));
    tracker.track(15, handle(15));
    expect(tracker.complete(10)).toEqual(handle(10));
    expect(tracker.complete(20)).toBeUndefined();
    expect(tracker.complete(15)).toEqual(handle(20));
    expect(tracker.complete(30)).toBeUndefined();
    expect(tracker.complete(25)).toEqual(handle(30));
  });

  it('tracks again a sequence redelivered after its watermark was acked', () => {
    const tracker = new AckTracker<Handle>();
    trackAll(tracker, [1]);
    expect(tracker.complete(1)).toEqual(handle(1));
    expect(tracker.track(1, handle(1, 2))).toBe(true);
    expect(tracker.inFlight).toBe(1);
    expect(tracker.complete(1)).toEqual(handle(1, 2));
  });

  it('refuses sequences that are not positive safe integers', () => {
    const tracker = new AckTracker<Handle>();
    for (const sequence of [0, -1, 1.5, Number.NaN, 2 ** 53]) {
      expect(() => tracker.track(sequence, handle(sequence))).toThrow(AssertionError);
    }
  });

  it('compacts after many acks and keeps working across the compaction', () => {
    const tracker = new AckTracker<Handle>();
    const total = 20_000;
    for (let sequence = 1; sequence <= total; sequence++) tracker.track(sequence, handle(sequence));
    let wrongAcks = 0;
    for (let sequence = 1; sequence <= 15_000; sequence++) if (tracker.complete(sequence)?.sequence !== sequence) wrongAcks += 1;
    expect(wrongAcks).toBe(0);
    const internals = tracker as unknown as { sequences: number[]; head: number };
    // The acked prefix was dropped: the arrays hold little more than what is in flight.
    expect(internals.sequences.length).toBeLessThan(total);
    expect(internals.sequences.length - internals.head).toBe(5_000);
    expect(tracker.inFlight).toBe(5_000);
    // Out of order after the compaction: indices must still be right.
    tracker.track(14_000, handle(14_000, 2));
    let earlyAcks = 0;
    for (let sequence = total; sequence > 15_000; sequence--) if (tracker.complete(sequence) !== undefined) earlyAcks += 1;
    expect(earlyAcks).toBe(0);
    expect(tracker.complete(14_000)).toEqual(handle(total));
    expect(tracker.inFlight).toBe(0);
  });

  it('property: the acked watermark never passes an uncompleted sequence; after all complete the last ack is the max', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 10_000 }), { minLength: 1, maxLength: 200 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        fc.infiniteStream(fc.nat()),
        (deliveries, redeliveryPicks, picks) => {
          const tracker = new AckTracker<Handle>();
          const latest = new Map<number, Handle>();
          for (const sequence of deliveries) {
            const first = handle(sequence);
            tracker.track(sequence, first);
            latest.set(sequence, first);
          }
          // Redeliveries of in-flight sequences, in any order.
          for (const pick of redeliveryPicks) {
            const sequence = deliveries[pick % deliveries.length]!;
            const again = handle(sequence, latest.get(sequence)!.delivery + 1);
            expect(tracker.track(sequence, again)).toBe(false);
            latest.set(sequence, again);
          }
          expect(tracker.inFlight).toBe(deliveries.length);
          const uncompleted = new Set(deliveries);
          const completionOrder = [...deliveries];
          const iterator = picks[Symbol.iterator]();
          let lastAck: Handle | undefined;
          while (completionOrder.length > 0) {
            const index = iterator.next().value! % completionOrder.length;
            const [sequence] = completionOrder.splice(index, 1);
            uncompleted.delete(sequence!);
            const acked = tracker.complete(sequence!);
            if (acked === undefined) continue;
            expect(Math.min(Infinity, ...uncompleted)).toBeGreaterThan(acked.sequence);
            if (lastAck !== undefined) expect(acked.sequence).toBeGreaterThan(lastAck.sequence);
            expect(acked).toBe(latest.get(acked.sequence));
            lastAck = acked;
          }
          expect(lastAck?.sequence).toBe(Math.max(...deliveries));
          expect(tracker.inFlight).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: with deliveries and completions interleaved, no ack passes an uncompleted tracked sequence', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 1_000 }), { minLength: 1, maxLength: 150 }),
        fc.infiniteStream(fc.tuple(fc.boolean(), fc.nat())),
        (deliveries, steps) => {
          const tracker = new AckTracker<Handle>();
          const toDeliver = [...deliveries];
          const uncompleted: number[] = [];
          const iterator = steps[Symbol.iterator]();
          let highestAck = 0;
          while (toDeliver.length > 0 || uncompleted.length > 0) {
            const [deliver, pick] = iterator.next().value!;
            if (toDeliver.length > 0 && (deliver || uncompleted.length === 0)) {
              const sequence = toDeliver.shift()!;
              tracker.track(sequence, handle(sequence));
              uncompleted.push(sequence);
              continue;
            }
            const [sequence] = uncompleted.splice(pick % uncompleted.length, 1);
            const acked = tracker.complete(sequence!);
            if (acked === undefined) continue;
            expect(Math.min(Infinity, ...uncompleted)).toBeGreaterThan(acked.sequence);
            highestAck = Math.max(highestAck, acked.sequence);
          }
          expect(tracker.inFlight).toBe(0);
          expect(highestAck).toBe(Math.max(...deliveries));
        },
      ),
      { numRuns: 300 },
    );
  });

  describe('deliveries lost on the way (holdAt, expectRedelivery, release)', () => {
    it('holdAt keeps the watermark at the hold even when later sequences are done, and releaseHold acks the prefix', () => {
      const tracker = new AckTracker<Handle>();
      trackAll(tracker, [1, 2, 3]);
      tracker.holdAt(1);
      expect(tracker.complete(1)).toEqual(handle(1));
      expect(tracker.complete(2)).toBeUndefined();
      expect(tracker.complete(3)).toBeUndefined();
      expect(tracker.holding).toBe(1);
      expect(tracker.releaseHold()).toEqual(handle(3));
      expect(tracker.inFlight).toBe(0);
    });

    it('a placeholder holds the watermark below it until its message is delivered and completed', () => {
      const tracker = new AckTracker<Handle>();
      trackAll(tracker, [1, 2]);
      expect(tracker.expectRedelivery(3, 5)).toEqual([3, 4, 5]);
      tracker.track(6, handle(6));
      for (const sequence of [1, 2, 6]) tracker.complete(sequence);
      expect(tracker.lowest).toEqual({ sequence: 3, delivered: false, done: false });
      expect(tracker.awaitedSequences()).toEqual([3, 4, 5]);
      // The redeliveries come (as new to the tracker) and are committed.
      expect(tracker.track(4, handle(4, 2))).toBe(true);
      expect(tracker.track(3, handle(3, 2))).toBe(true);
      expect(tracker.complete(4)).toBeUndefined();
      expect(tracker.complete(3)).toEqual(handle(4, 2));
      expect(tracker.track(5, handle(5, 2))).toBe(true);
      expect(tracker.complete(5)).toEqual(handle(6));
      expect(tracker.inFlight).toBe(0);
    });

    it('expectRedelivery skips sequences already tracked and merges placeholders below tracked ones in order', () => {
      const tracker = new AckTracker<Handle>();
      trackAll(tracker, [10, 13, 16]);
      expect(tracker.expectRedelivery(11, 16)).toEqual([11, 12, 14, 15]);
      expect(tracker.awaitedSequences()).toEqual([11, 12, 14, 15]);
      tracker.complete(10);
      tracker.complete(13);
      tracker.complete(16);
      expect(tracker.lowest).toEqual({ sequence: 11, delivered: false, done: false });
      expect(tracker.inFlight).toBe(6);
    });

    it('release gives up a placeholder (the stream no longer holds it); the last real handle before it acks', () => {
      const tracker = new AckTracker<Handle>();
      trackAll(tracker, [1]);
      tracker.expectRedelivery(2, 2);
      tracker.track(3, handle(3));
      expect(tracker.complete(1)).toEqual(handle(1));
      expect(tracker.complete(3)).toBeUndefined();
      expect(tracker.release(2)).toEqual(handle(3));
      expect(tracker.release(2)).toBeUndefined();
      expect(tracker.inFlight).toBe(0);
    });

    it('never acks past a placeholder, whatever the order of deliveries and completions (property)', () => {
      fc.assert(
        fc.property(fc.integer({ min: 2, max: 40 }), fc.array(fc.integer({ min: 1, max: 60 }), { maxLength: 80 }), fc.integer({ min: 0, max: 2 ** 31 }), (gapAt, sequences, seed) => {
          const tracker = new AckTracker<Handle>();
          const delivered = [...new Set(sequences.filter((sequence) => sequence < gapAt))].sort((a, b) => a - b);
          trackAll(tracker, delivered);
          const awaited = tracker.expectRedelivery(gapAt, gapAt + 3).length;
          const later = [...new Set(sequences.filter((sequence) => sequence > gapAt + 3))];
          trackAll(tracker, later);
          let random = seed;
          const order = [...delivered, ...later].sort(() => ((random = (random * 1103515245 + 12345) % 2 ** 31) % 3) - 1);
          for (const sequence of order) {
            const acked = tracker.complete(sequence);
            if (acked !== undefined) expect(acked.sequence).toBeLessThan(gapAt);
          }
          expect(awaited).toBe(4);
        }),
      );
    });
  });
});
