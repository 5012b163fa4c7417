import { assert } from './assert.js';
import type { CompiledProgram } from './compiled.js';
import type { MemberState, TierBucket } from './state.js';
import { monthIndexOf, monthStartMs } from './time.js';
import { writeList, type Work } from './work.js';

/**
 * The tier measure (qualifying points of the tier currency, or spend) kept in
 * calendar-month buckets, so a qualification window (calendar year, rolling N
 * months) can move forward one month at a time. A lifetime window uses one
 * bucket. At most window-length buckets exist at once.
 */

export function tierMeasure(state: MemberState): number {
  let total = 0;
  for (const bucket of state.tierBuckets) total += bucket.amount;
  return total;
}

/** Months in the window: the number of buckets that can be live at once. */
export function windowMonths(program: CompiledProgram): number {
  const window = program.tierWindow;
  return window.kind === 'rolling_months' ? window.months : window.kind === 'calendar_year' ? 12 : 0;
}

/**
 * The bucket an event at `atMs` counts in. A late event whose month already
 * left the window counts in the window's oldest month: it was processed in
 * this window, and a measure must never depend on arrival order beyond that.
 */
export function bucketKeyFor(program: CompiledProgram, state: MemberState, atMs: number): number {
  if (program.tierWindow.kind === 'lifetime' || state.tierReviewAtMs === null) return 0;
  const key = monthIndexOf(atMs, program.offsetMinutes);
  const oldest = monthIndexOf(state.tierReviewAtMs, program.offsetMinutes) - windowMonths(program);
  return Math.max(key, oldest);
}

/** The first period end strictly after `atMs` (null for a lifetime window). */
export function firstReviewAfter(program: CompiledProgram, atMs: number): number | null {
  const window = program.tierWindow;
  if (window.kind === 'lifetime') return null;
  const month = monthIndexOf(atMs, program.offsetMinutes);
  const next = window.kind === 'calendar_year' ? (Math.floor(month / 12) + 1) * 12 : month + 1;
  return monthStartMs(next, program.offsetMinutes);
}

export function addTierMeasure(work: Work, key: number, amount: number): void {
  assert(amount > 0, 'a tier measure credit is positive');
  const buckets = writeList(work, 'tierBuckets');
  let index = buckets.length;
  while (index > 0 && buckets[index - 1]!.key > key) index -= 1;
  const previous = buckets[index - 1];
  if (previous !== undefined && previous.key === key) buckets[index - 1] = { key, amount: previous.amount + amount };
  else buckets.splice(index, 0, { key, amount });
}

/**
 * Removes up to `amount` of tier measure and returns what was taken. The rule
 * (docs/program.md, "Qualifying points after returns and debits"):
 * - a return (`sourceKey`: the month its order was earned in) takes from that
 *   month's bucket first, because those are the points being given back; what
 *   that bucket no longer holds (a qualifying debit already took it) comes from
 *   the newest buckets, so the return still lowers the measure by what it gave;
 * - an operator debit (`sourceKey` null) takes from the newest bucket first, so
 *   the correction stays in the window as long as possible;
 * - either spills into older buckets; each bucket stops at 0 and what no bucket
 *   holds is not taken (never carried as a negative measure): the floor is
 *   applied at each step, not once over all events;
 * - a return whose month already left the window takes nothing: those points
 *   were ledgered out as a qualifying lapse and cannot leave twice.
 */
export function removeTierMeasure(work: Work, sourceKey: number | null, amount: number): number {
  if (amount <= 0) return 0;
  if (sourceKey !== null && sourceKey < oldestLiveKey(work.program, work.state)) return 0;
  if (work.state.tierBuckets.length === 0) return 0;
  const buckets = writeList(work, 'tierBuckets');
  let left = amount;
  if (sourceKey !== null) {
    const own = buckets.findIndex((bucket) => bucket.key === sourceKey);
    if (own >= 0) left -= takeFromBucket(buckets, own, left);
  }
  for (let index = buckets.length - 1; index >= 0 && left > 0; index--) left -= takeFromBucket(buckets, index, left);
  assert(left >= 0, 'a tier measure removal took more than asked');
  return amount - left;
}

/** Takes up to `wanted` from one bucket (dropping it when emptied); returns what it took. */
function takeFromBucket(buckets: TierBucket[], index: number, wanted: number): number {
  const bucket = buckets[index]!;
  const taken = Math.min(bucket.amount, wanted);
  if (taken === bucket.amount) buckets.splice(index, 1);
  else buckets[index] = { key: bucket.key, amount: bucket.amount - taken };
  return taken;
}

/** The oldest month key still inside the window (no limit for a lifetime window or before the first review is set). */
function oldestLiveKey(program: CompiledProgram, state: MemberState): number {
  if (program.tierWindow.kind === 'lifetime' || state.tierReviewAtMs === null) return Number.MIN_SAFE_INTEGER;
  return monthIndexOf(state.tierReviewAtMs, program.offsetMinutes) - windowMonths(program);
}

/** Removes the buckets with key < `firstKept` and returns their total. */
export function lapseBuckets(work: Work, firstKept: number): number {
  const current = work.state.tierBuckets;
  if (current.length === 0 || current[0]!.key >= firstKept) return 0;
  const buckets = writeList(work, 'tierBuckets');
  let lapsed = 0;
  while (buckets.length > 0 && buckets[0]!.key < firstKept) lapsed += buckets.shift()!.amount;
  return lapsed;
}
