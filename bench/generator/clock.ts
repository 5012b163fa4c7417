/**
 * Event time (`occurredAt`) of generated events, as a function of the event
 * index alone, so chunked generation gives the same times as generating
 * everything at once.
 *
 * The time line is made of segments, each taking a share of the events and
 * spreading them evenly over its time span. The default is a history
 * of eight weeks in the first 25 % of the events, then Cyber Week in the other
 * 75 %: the history gives members points that have left their 14-day pending
 * period by Cyber Week (so redemptions can succeed) and orders to return, and
 * Cyber Week is when the retail program's double-points promotion runs.
 */

export interface ClockSegment {
  /** Share of the events in this segment (the shares are normalised to sum 1). */
  share: number;
  fromMs: number;
  /** Exclusive. */
  toMs: number;
}

export const CYBER_WEEK_START_MS = Date.parse('2026-11-23T00:00:00+01:00');
export const CYBER_WEEK_END_MS = Date.parse('2026-12-01T00:00:00+01:00');
const DAY_MS = 86_400_000;

/** 56 days of history (25 % of events), then Cyber Week 2026 (75 %). */
export const DEFAULT_CLOCK: readonly ClockSegment[] = [
  { share: 0.25, fromMs: CYBER_WEEK_START_MS - 56 * DAY_MS, toMs: CYBER_WEEK_START_MS },
  { share: 0.75, fromMs: CYBER_WEEK_START_MS, toMs: CYBER_WEEK_END_MS },
];

/** The warm-up's time line: a week before the measured history, so it never touches Cyber Week's budgets. */
export const WARMUP_CLOCK: readonly ClockSegment[] = [
  { share: 1, fromMs: CYBER_WEEK_START_MS - 63 * DAY_MS, toMs: CYBER_WEEK_START_MS - 56 * DAY_MS },
];

export class EventClock {
  readonly count: number;
  private readonly firstIndex: number[] = [];
  private readonly segments: readonly ClockSegment[];
  private readonly counts: number[] = [];

  constructor(segments: readonly ClockSegment[], count: number) {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`event count must be an integer >= 1, got ${count}`);
    if (segments.length === 0) throw new RangeError('a clock needs at least one segment');
    let shares = 0;
    for (const segment of segments) {
      if (!(segment.share >= 0) || !Number.isFinite(segment.share)) throw new RangeError('segment shares must be finite and >= 0');
      if (!Number.isInteger(segment.fromMs) || !Number.isInteger(segment.toMs) || segment.toMs <= segment.fromMs) {
        throw new RangeError('a segment needs integer fromMs < toMs');
      }
      shares += segment.share;
    }
    if (!(shares > 0)) throw new RangeError('segment shares must have a positive sum');
    for (let index = 1; index < segments.length; index++) {
      if (segments[index]!.fromMs < segments[index - 1]!.toMs) throw new RangeError('segments must follow each other in time');
    }
    this.count = count;
    this.segments = segments;
    let assigned = 0;
    let cumulativeShare = 0;
    for (const segment of segments) {
      cumulativeShare += segment.share;
      const end = Math.round((cumulativeShare / shares) * count);
      this.firstIndex.push(assigned);
      this.counts.push(end - assigned);
      assigned = end;
    }
  }

  /** Event time of event `index` in ms since the epoch; non-decreasing in the index. */
  timeOf(index: number): number {
    let segment = this.segments.length - 1;
    while (segment > 0 && index < this.firstIndex[segment]!) segment -= 1;
    const { fromMs, toMs } = this.segments[segment]!;
    const inSegment = this.counts[segment]!;
    if (inSegment <= 0) return fromMs;
    const offset = index - this.firstIndex[segment]!;
    return fromMs + Math.floor((offset * (toMs - fromMs)) / inSegment);
  }
}
