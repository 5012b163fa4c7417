import { assert } from '../domain/assert.js';
import type { LedgerEntry, MemberState } from '../domain/state.js';

/**
 * Program KPIs kept incrementally: each applied event adds its deltas to
 * counters of its day (at the program's UTC offset), so a report reads a few
 * hundred counter records instead of scanning every member. Pure: the actor
 * calls it with the member's state before and after and the ledger entries.
 */

export const DAY_MS = 86_400_000;

/** Counters of one day for one actor; merged by summing across actors. */
export interface DayCounters {
  /** Per points currency. */
  currencies: Record<string, CurrencyCounters>;
  enrollments: number;
  upgrades: number;
  downgrades: number;
  /** Change in the number of members per tier (sums over days give the distribution). */
  tierDelta: Record<string, number>;
  /** Members whose first activity of this day it was. */
  activeMembers: number;
  promotions: Record<string, { points: number; uses: number }>;
}

export interface CurrencyCounters {
  issued: number;
  redeemed: number;
  expired: number;
  adjusted: number;
  clawedBack: number;
  /** Net change of spendable + pending points: the liability's daily movement. */
  liabilityDelta: number;
  redemptions: number;
}

/** Distinct active members of a week or month (first activity in that period). */
export interface PeriodActive {
  activeMembers: number;
}

export function emptyDay(): DayCounters {
  return { currencies: {}, enrollments: 0, upgrades: 0, downgrades: 0, tierDelta: {}, activeMembers: 0, promotions: {} };
}

export function dayKeyOf(ms: number, utcOffsetMinutes: number): number {
  return Math.floor((ms + utcOffsetMinutes * 60_000) / DAY_MS);
}

/** ISO week key: days since epoch of the week's Monday. */
export function weekKeyOf(ms: number, utcOffsetMinutes: number): number {
  const day = dayKeyOf(ms, utcOffsetMinutes);
  // 1970-01-01 was a Thursday: (day + 3) % 7 is days since Monday.
  return day - ((day + 3) % 7 + 7) % 7;
}

/** year × 12 + month (0-based) at the offset. */
export function monthKeyOf(ms: number, utcOffsetMinutes: number): number {
  const date = new Date(ms + utcOffsetMinutes * 60_000);
  return date.getUTCFullYear() * 12 + date.getUTCMonth();
}

export interface KpiInput {
  readonly before: MemberState | undefined;
  readonly after: MemberState;
  readonly ledger: readonly LedgerEntry[];
  /** The tier order of the program (index = rank), to tell upgrades from downgrades. */
  readonly tierRank: ReadonlyMap<string, number>;
  readonly atMs: number;
  readonly utcOffsetMinutes: number;
}

export interface KpiTarget {
  day(dayKey: number): DayCounters;
  week(weekKey: number): PeriodActive;
  month(monthKey: number): PeriodActive;
}

/** Adds one decision's deltas to the target's counters. */
export function addKpis(target: KpiTarget, input: KpiInput): void {
  const { before, after, atMs, utcOffsetMinutes } = input;
  const day = target.day(dayKeyOf(atMs, utcOffsetMinutes));

  if (before === undefined || before.status !== 'active') {
    if (after.status === 'active') {
      day.enrollments += 1;
      day.tierDelta[after.tierId] = (day.tierDelta[after.tierId] ?? 0) + 1;
      // A first event can lift a new member above the first tier: that is an upgrade too.
      if ((input.tierRank.get(after.tierId) ?? 0) > 0) day.upgrades += 1;
    }
  } else if (after.status !== 'active') {
    day.tierDelta[before.tierId] = (day.tierDelta[before.tierId] ?? 0) - 1;
  } else if (before.tierId !== after.tierId) {
    day.tierDelta[before.tierId] = (day.tierDelta[before.tierId] ?? 0) - 1;
    day.tierDelta[after.tierId] = (day.tierDelta[after.tierId] ?? 0) + 1;
    const from = input.tierRank.get(before.tierId) ?? 0;
    const to = input.tierRank.get(after.tierId) ?? 0;
    if (to > from) day.upgrades += 1;
    else day.downgrades += 1;
  }

  // Active: the member's last activity moved into a period it was not in before.
  const lastBefore = before?.lastActivityMs;
  const lastAfter = after.lastActivityMs;
  if (lastAfter !== lastBefore && lastAfter > (lastBefore ?? Number.NEGATIVE_INFINITY)) {
    const newDay = dayKeyOf(lastAfter, utcOffsetMinutes);
    if (lastBefore === undefined || dayKeyOf(lastBefore, utcOffsetMinutes) !== newDay) target.day(newDay).activeMembers += 1;
    const newWeek = weekKeyOf(lastAfter, utcOffsetMinutes);
    if (lastBefore === undefined || weekKeyOf(lastBefore, utcOffsetMinutes) !== newWeek) target.week(newWeek).activeMembers += 1;
    const newMonth = monthKeyOf(lastAfter, utcOffsetMinutes);
    if (lastBefore === undefined || monthKeyOf(lastBefore, utcOffsetMinutes) !== newMonth) target.month(newMonth).activeMembers += 1;
  }

  const redeemedEvents = new Set<string>();
  const promotionEvents = new Set<string>();
  for (const entry of input.ledger) {
    assert(Number.isSafeInteger(entry.points), 'ledger points must be safe integers');
    const counters = (day.currencies[entry.currency] ??= emptyCurrency());
    const liquid = entry.balance === 'spendable' || entry.balance === 'pending';
    if (liquid) counters.liabilityDelta += entry.points;
    switch (entry.kind) {
      case 'earn':
      case 'activity':
        if (liquid && entry.points > 0) counters.issued += entry.points;
        break;
      case 'adjustment':
        if (entry.balance === 'spendable') counters.adjusted += entry.points;
        break;
      case 'redeem':
        if (entry.balance === 'spendable') {
          counters.redeemed -= entry.points;
          if (!redeemedEvents.has(entry.eventId)) {
            redeemedEvents.add(entry.eventId);
            counters.redemptions += 1;
          }
        }
        break;
      case 'redeem_cancel':
        if (entry.balance === 'spendable') {
          counters.redeemed -= entry.points;
          if (!redeemedEvents.has(entry.eventId)) {
            redeemedEvents.add(entry.eventId);
            counters.redemptions -= 1;
          }
        }
        break;
      case 'expire':
      case 'forfeit':
        if (liquid) counters.expired -= entry.points;
        break;
      case 'clawback':
        if (liquid) counters.clawedBack -= entry.points;
        break;
      default:
        break;
    }
    if (entry.promotionId !== undefined && liquid) {
      const promotion = (day.promotions[entry.promotionId] ??= { points: 0, uses: 0 });
      promotion.points += entry.points;
      const useKey = `${entry.promotionId}\u0000${entry.eventId}`;
      if (!promotionEvents.has(useKey) && entry.points > 0) {
        promotionEvents.add(useKey);
        promotion.uses += 1;
      }
    }
  }
}

function emptyCurrency(): CurrencyCounters {
  return { issued: 0, redeemed: 0, expired: 0, adjusted: 0, clawedBack: 0, liabilityDelta: 0, redemptions: 0 };
}

/** Sums counters of the same day from several actors (or adds one batch's into a running total). */
export function mergeDay(into: DayCounters, from: DayCounters): DayCounters {
  for (const [currency, counters] of Object.entries(from.currencies)) {
    const target = (into.currencies[currency] ??= emptyCurrency());
    target.issued += counters.issued;
    target.redeemed += counters.redeemed;
    target.expired += counters.expired;
    target.adjusted += counters.adjusted;
    target.clawedBack += counters.clawedBack;
    target.liabilityDelta += counters.liabilityDelta;
    target.redemptions += counters.redemptions;
  }
  into.enrollments += from.enrollments;
  into.upgrades += from.upgrades;
  into.downgrades += from.downgrades;
  into.activeMembers += from.activeMembers;
  for (const [tier, delta] of Object.entries(from.tierDelta)) into.tierDelta[tier] = (into.tierDelta[tier] ?? 0) + delta;
  for (const [promotionId, usage] of Object.entries(from.promotions)) {
    const target = (into.promotions[promotionId] ??= { points: 0, uses: 0 });
    target.points += usage.points;
    target.uses += usage.uses;
  }
  return into;
}
