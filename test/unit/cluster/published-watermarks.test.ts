import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PublishedWatermarks } from '../../../src/cluster/published-watermarks.js';

describe('PublishedWatermarks', () => {
  it('moves only over a prefix of committed batches whose outcomes are acknowledged', () => {
    const marks = new PublishedWatermarks();
    marks.own(3, 100);
    const first = marks.committed(new Map([[3, 110]]));
    const second = marks.committed(new Map([[3, 120]]));
    const third = marks.committed(new Map([[3, 130]]));
    expect(marks.of(3)).toBe(100);
    second(); // acknowledged before the first: the mark may not pass the first
    expect(marks.of(3)).toBe(100);
    first();
    expect(marks.of(3)).toBe(120);
    third();
    expect(marks.of(3)).toBe(130);
  });

  it('keeps partitions apart, and forgets a released one', () => {
    const marks = new PublishedWatermarks();
    marks.own(1, 0);
    marks.own(2, 50);
    const done = marks.committed(new Map([[1, 10], [2, 60], [9, 99]])); // 9 is not owned: ignored
    expect([marks.of(1), marks.of(2), marks.of(9)]).toEqual([0, 50, 0]);
    marks.release(2);
    done();
    expect([marks.of(1), marks.of(2)]).toEqual([10, 0]);
    marks.own(2, 70); // owned again: from its restore's mark
    expect(marks.of(2)).toBe(70);
  });

  it('equals the highest watermark of the longest fully acknowledged prefix, in any acknowledgement order', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 30 }), fc.array(fc.nat(), { maxLength: 30 }), (steps, order) => {
        const marks = new PublishedWatermarks();
        marks.own(0, 0);
        let watermark = 0;
        const batches = steps.map((step) => {
          watermark += step;
          return { watermark, acknowledge: marks.committed(new Map([[0, watermark]])), done: false };
        });
        const pending = [...batches.keys()];
        for (const pick of order) {
          if (pending.length === 0) break;
          const [index] = pending.splice(pick % pending.length, 1);
          batches[index!]!.acknowledge();
          batches[index!]!.done = true;
          const prefix = batches.findIndex((batch) => !batch.done);
          const expected = prefix === 0 ? 0 : batches[(prefix < 0 ? batches.length : prefix) - 1]!.watermark;
          expect(marks.of(0)).toBe(expected);
        }
      }),
    );
  });
});
