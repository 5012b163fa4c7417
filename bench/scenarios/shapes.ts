/**
 * Traffic shapes: the target publish rate over time. A shape is a piecewise
 * linear rate function r(t) (events/s at second t), so the number of events
 * due by any time is its integral, computed exactly (trapezoids). The
 * publisher is open-loop: it publishes what the schedule says is due, and if
 * it ever falls behind it catches up rather than dropping events, so a slow
 * engine never slows the offered load (no coordinated omission).
 */

export interface RateShape {
  readonly name: string;
  /** One line for people: what the shape is, with its figures. */
  readonly description: string;
  readonly durationSeconds: number;
  /** Target rate at second t (0 outside [0, duration]). */
  rateAt(tSeconds: number): number;
  /** Events due by second t: the integral of the rate from 0 to t. */
  cumulativeAt(tSeconds: number): number;
  /** Events in the whole schedule (rounded). */
  readonly totalEvents: number;
  readonly peakRatePerSecond: number;
  readonly meanRatePerSecond: number;
  /** The knots of the rate function, for reports: [second, events/s]. */
  readonly points: readonly (readonly [number, number])[];
}

export class PiecewiseLinearShape implements RateShape {
  readonly name: string;
  readonly description: string;
  readonly points: readonly (readonly [number, number])[];
  readonly durationSeconds: number;
  readonly totalEvents: number;
  readonly peakRatePerSecond: number;
  readonly meanRatePerSecond: number;
  /** Integral up to each knot. */
  private readonly integralAt: number[];

  constructor(name: string, points: readonly (readonly [number, number])[], describe: (shape: PiecewiseLinearShape) => string) {
    if (points.length < 2) throw new RangeError('a shape needs at least two points');
    if (points[0]![0] !== 0) throw new RangeError('a shape starts at second 0');
    for (let index = 0; index < points.length; index++) {
      const [t, rate] = points[index]!;
      if (!Number.isFinite(t) || !Number.isFinite(rate) || rate < 0) throw new RangeError('shape points need finite times and rates >= 0');
      if (index > 0 && t <= points[index - 1]![0]) throw new RangeError('shape times must increase');
    }
    this.name = name;
    this.points = points;
    this.durationSeconds = points[points.length - 1]![0];
    this.integralAt = [0];
    for (let index = 1; index < points.length; index++) {
      const [t0, r0] = points[index - 1]!;
      const [t1, r1] = points[index]!;
      this.integralAt.push(this.integralAt[index - 1]! + ((r0 + r1) / 2) * (t1 - t0));
    }
    const total = this.integralAt[this.integralAt.length - 1]!;
    if (!(total >= 1)) throw new RangeError('a shape must schedule at least one event');
    this.totalEvents = Math.round(total);
    this.peakRatePerSecond = Math.max(...points.map(([, rate]) => rate));
    this.meanRatePerSecond = total / this.durationSeconds;
    this.description = describe(this);
  }

  private segmentOf(tSeconds: number): number {
    let low = 0;
    let high = this.points.length - 2;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.points[middle]![0] <= tSeconds) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  rateAt(tSeconds: number): number {
    if (tSeconds < 0 || tSeconds > this.durationSeconds) return 0;
    const segment = this.segmentOf(tSeconds);
    const [t0, r0] = this.points[segment]!;
    const [t1, r1] = this.points[segment + 1]!;
    return r0 + ((r1 - r0) * (tSeconds - t0)) / (t1 - t0);
  }

  cumulativeAt(tSeconds: number): number {
    if (tSeconds <= 0) return 0;
    if (tSeconds >= this.durationSeconds) return this.integralAt[this.integralAt.length - 1]!;
    const segment = this.segmentOf(tSeconds);
    const [t0, r0] = this.points[segment]!;
    return this.integralAt[segment]! + ((r0 + this.rateAt(tSeconds)) / 2) * (tSeconds - t0);
  }
}

/**
 * When event `index` (0-based) is due on the schedule, in seconds: the first t
 * at which cumulativeAt(t) reaches index + 1 (the end of the schedule for the
 * last events, whose share the rounding of the total leaves past it).
 */
export function scheduledSecondOf(shape: RateShape, index: number): number {
  const target = index + 1;
  if (shape.cumulativeAt(shape.durationSeconds) < target) return shape.durationSeconds;
  let low = 0;
  let high = shape.durationSeconds;
  for (let step = 0; step < 40; step++) {
    const middle = (low + high) / 2;
    if (shape.cumulativeAt(middle) >= target) high = middle;
    else low = middle;
  }
  return high;
}

const count = (value: number): string => Math.round(value).toLocaleString('en-US');

/** The same rate for the whole duration. */
export function steadyShape(ratePerSecond: number, durationSeconds: number): RateShape {
  positive(ratePerSecond, 'rate');
  positive(durationSeconds, 'duration');
  return new PiecewiseLinearShape(
    'steady',
    [
      [0, ratePerSecond],
      [durationSeconds, ratePerSecond],
    ],
    (shape) => `steady ${count(ratePerSecond)} events/s for ${durationSeconds} s (${count(shape.totalEvents)} events)`,
  );
}

/**
 * From 10 % of the peak up to the peak, linearly over the first 75 % of the
 * duration, then the peak held for the last 25 %: where the engine stops
 * keeping up shows as lag growing and latency leaving the floor.
 */
export function rampShape(peakPerSecond: number, durationSeconds: number): RateShape {
  positive(peakPerSecond, 'peak');
  positive(durationSeconds, 'duration');
  return new PiecewiseLinearShape(
    'ramp',
    [
      [0, peakPerSecond * 0.1],
      [durationSeconds * 0.75, peakPerSecond],
      [durationSeconds, peakPerSecond],
    ],
    (shape) =>
      `ramp from ${count(peakPerSecond * 0.1)} to ${count(peakPerSecond)} events/s over ${(durationSeconds * 0.75).toFixed(0)} s, ` +
      `held ${(durationSeconds * 0.25).toFixed(0)} s (${count(shape.totalEvents)} events)`,
  );
}

/**
 * A Cyber Week day compressed into `daySeconds`: quiet night, morning ramp,
 * a lunchtime bump, the afternoon, and the evening spike at 20:30 — the peak,
 * about 3.4 times the day's average. Levels are relative to the peak, by hour.
 */
export const CYBER_DAY_PROFILE: readonly (readonly [number, number])[] = [
  [0, 0.12],
  [2, 0.06],
  [4, 0.03],
  [6, 0.05],
  [8, 0.15],
  [10, 0.28],
  [12, 0.32],
  [14, 0.27],
  [17, 0.3],
  [19, 0.55],
  [20.5, 1],
  [21.5, 0.85],
  [23, 0.3],
  [24, 0.12],
];

export function cyberDayShape(peakPerSecond: number, daySeconds: number): RateShape {
  positive(peakPerSecond, 'peak');
  positive(daySeconds, 'day length');
  const points = CYBER_DAY_PROFILE.map(([hour, level]) => [(hour / 24) * daySeconds, level * peakPerSecond] as const);
  return new PiecewiseLinearShape(
    'cyber-week',
    points,
    (shape) =>
      `a Cyber Week day in ${daySeconds} s (1 h = ${(daySeconds / 24).toFixed(2)} s): night ${count(0.03 * peakPerSecond)}/s, ` +
      `evening peak ${count(peakPerSecond)}/s, mean ${count(shape.meanRatePerSecond)}/s ` +
      `(peak ${(shape.peakRatePerSecond / shape.meanRatePerSecond).toFixed(1)} × mean), ${count(shape.totalEvents)} events`,
  );
}

function positive(value: number, name: string): void {
  if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be a positive number, got ${value}`);
}
