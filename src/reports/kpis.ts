import { assert } from '../domain/assert.js';
import { monthIndexOf } from '../domain/time.js';
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
  /*
   * Program KPIs (not per currency). Fields added after the first release:
   * records written before them lack them, so every reader takes a missing
   * field as 0 (mergeDay, the report).
   */
  /** Purchases applied and their amounts; those whose order a redemption named (orders with redeemed points). */
  orders: number;
  revenueMinor: number;
  redeemedOrders: number;
  redeemedRevenueMinor: number;
  /** Return events and the money they gave back. */
  returns: number;
  returnedMinor: number;
  /** Members whose first purchase of the day, of the week, of the month holding this day, was on this day. */
  purchasersDay: number;
  purchasersWeek: number;
  purchasersMonth: number;
  /** Of those, members with at least two purchases so far (counted on the day they became one in that period). */
  repeatPurchasersDay: number;
  repeatPurchasersWeek: number;
  repeatPurchasersMonth: number;
  /** Members who left active status (unenroll, erase). */
  unenrollments: number;
  /** Of those, members already past the inactivity horizon. */
  unenrolledInactive: number;
  /**
   * Members who pass the inactivity horizon on this day: counted ahead, on
   * the day the horizon falls, at each activity, and taken back if the member
   * is active again before it. Days not yet over hold members who will lapse
   * unless they come back.
   */
  lapsed: number;
  /** Members past the horizon who were active again. */
  reactivated: number;
  /** Change in the number of members past the horizon. */
  inactiveDelta: number;
  /** Per paid plan. */
  paid: Record<string, PaidCounters>;
  /** Per cause: points donated (in the cause's currency) and donations. */
  donations: Record<string, { points: number; donations: number }>;
  /** Badges earned, per badge. */
  badges: Record<string, number>;
}

export interface PaidCounters {
  joined: number;
  renewed: number;
  /** Left the plan for another plan. */
  switched: number;
  lapsed: number;
  cancelled: number;
  /** Change in the plan's active members. */
  membersDelta: number;
  feesMinor: number;
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
  return {
    currencies: {},
    enrollments: 0,
    upgrades: 0,
    downgrades: 0,
    tierDelta: {},
    activeMembers: 0,
    promotions: {},
    orders: 0,
    revenueMinor: 0,
    redeemedOrders: 0,
    redeemedRevenueMinor: 0,
    returns: 0,
    returnedMinor: 0,
    purchasersDay: 0,
    purchasersWeek: 0,
    purchasersMonth: 0,
    repeatPurchasersDay: 0,
    repeatPurchasersWeek: 0,
    repeatPurchasersMonth: 0,
    unenrollments: 0,
    unenrolledInactive: 0,
    lapsed: 0,
    reactivated: 0,
    inactiveDelta: 0,
    paid: {},
    donations: {},
    badges: {},
  };
}

/** The scalar program counters of a day, summed by mergeDay (a missing one is 0). */
export const PROGRAM_COUNTERS = [
  'orders',
  'revenueMinor',
  'redeemedOrders',
  'redeemedRevenueMinor',
  'returns',
  'returnedMinor',
  'purchasersDay',
  'purchasersWeek',
  'purchasersMonth',
  'repeatPurchasersDay',
  'repeatPurchasersWeek',
  'repeatPurchasersMonth',
  'unenrollments',
  'unenrolledInactive',
  'lapsed',
  'reactivated',
  'inactiveDelta',
] as const satisfies readonly (keyof DayCounters)[];

const PAID_COUNTERS = ['joined', 'renewed', 'switched', 'lapsed', 'cancelled', 'membersDelta', 'feesMinor'] as const satisfies readonly (keyof PaidCounters)[];

function emptyPaid(): PaidCounters {
  return { joined: 0, renewed: 0, switched: 0, lapsed: 0, cancelled: 0, membersDelta: 0, feesMinor: 0 };
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
    day.unenrollments += 1;
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

  addProgramKpis(target, day, input);

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
      case 'donate':
        if (entry.balance === 'spendable' && entry.reference !== undefined) {
          const cause = (day.donations[entry.reference] ??= { points: 0, donations: 0 });
          cause.points -= entry.points;
          const donationKey = `\u0001${entry.reference}\u0000${entry.eventId}`;
          if (!redeemedEvents.has(donationKey)) {
            redeemedEvents.add(donationKey);
            cause.donations += 1;
          }
        }
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

/**
 * The program KPIs of one decision, from differences of the member's
 * lifetime counters (state.engagement, state.paid, state.badges) before and
 * after it: O(1), and the same on a replay.
 */
function addProgramKpis(target: KpiTarget, day: DayCounters, input: KpiInput): void {
  const { before, after, atMs, utcOffsetMinutes: offset } = input;
  const was = before?.engagement;
  const now = after.engagement;
  if (now !== undefined && now !== was) {
    const orders = now.orders - (was?.orders ?? 0);
    if (orders > 0) {
      day.orders += orders;
      day.revenueMinor += now.revenueMinor - (was?.revenueMinor ?? 0);
      day.redeemedOrders += now.redeemedOrders - (was?.redeemedOrders ?? 0);
      day.redeemedRevenueMinor += now.redeemedRevenueMinor - (was?.redeemedRevenueMinor ?? 0);
      // Purchasers and repeat purchasers per day, week and month; a purchase older than the member's latest (out of order) is not told apart.
      const lastBefore = was?.lastOrderMs ?? 0;
      if (atMs >= lastBefore) {
        // monthIndexOf is monthKeyOf in integer arithmetic (no Date per purchase).
        const sameDay = lastBefore > 0 && dayKeyOf(lastBefore, offset) === dayKeyOf(atMs, offset);
        const sameWeek = sameDay || (lastBefore > 0 && weekKeyOf(lastBefore, offset) === weekKeyOf(atMs, offset));
        const sameMonth = sameDay || (lastBefore > 0 && monthIndexOf(lastBefore, offset) === monthIndexOf(atMs, offset));
        const second = now.orders === 2;
        const repeat = now.orders >= 2;
        if (!sameDay) day.purchasersDay += 1;
        if (!sameWeek) day.purchasersWeek += 1;
        if (!sameMonth) day.purchasersMonth += 1;
        if (repeat && (second || !sameDay)) day.repeatPurchasersDay += 1;
        if (repeat && (second || !sameWeek)) day.repeatPurchasersWeek += 1;
        if (repeat && (second || !sameMonth)) day.repeatPurchasersMonth += 1;
      }
    }
    day.returns += now.returns - (was?.returns ?? 0);
    day.returnedMinor += now.returnedMinor - (was?.returnedMinor ?? 0);
  }
  const inactiveBefore = was?.inactiveAtMs ?? null;
  const inactiveAfter = now?.inactiveAtMs ?? null;
  if (inactiveBefore !== inactiveAfter) {
    if (inactiveBefore !== null) {
      if (inactiveBefore > atMs) {
        // Active again before the horizon: the lapse counted ahead does not happen.
        const ahead = target.day(dayKeyOf(inactiveBefore, offset));
        ahead.lapsed -= 1;
        ahead.inactiveDelta -= 1;
      } else {
        day.inactiveDelta -= 1;
        if (inactiveAfter !== null) day.reactivated += 1;
        else if (before !== undefined && before.status === 'active' && after.status !== 'active') day.unenrolledInactive += 1;
      }
    }
    if (inactiveAfter !== null) {
      const ahead = target.day(dayKeyOf(inactiveAfter, offset));
      ahead.lapsed += 1;
      ahead.inactiveDelta += 1;
    }
  }
  const paidBefore = before?.paid;
  const paidAfter = after.paid;
  if (paidAfter !== undefined && paidAfter !== paidBefore) {
    const activeBefore = paidBefore?.status === 'active';
    const activeAfter = paidAfter.status === 'active';
    const samePlan = activeBefore && activeAfter && paidBefore!.planId === paidAfter.planId && paidBefore!.sinceMs === paidAfter.sinceMs;
    const plan = (day.paid[paidAfter.planId] ??= emptyPaid());
    plan.feesMinor += paidAfter.feesMinor - (paidBefore?.feesMinor ?? 0);
    if (samePlan) {
      plan.renewed += paidAfter.fees - paidBefore!.fees;
    } else {
      if (activeBefore) {
        // A lapse counts on the day it took effect (the end of the grace), whenever it was applied.
        const endedOn = !activeAfter && paidAfter.endedAtMs !== null ? target.day(dayKeyOf(paidAfter.endedAtMs, offset)) : day;
        const left = (endedOn.paid[paidBefore!.planId] ??= emptyPaid());
        left.membersDelta -= 1;
        if (activeAfter) left.switched += 1;
        else if (paidAfter.status === 'lapsed') left.lapsed += 1;
        else left.cancelled += 1;
      }
      if (activeAfter) {
        plan.joined += 1;
        plan.membersDelta += 1;
      }
    }
  }
  const badgesBefore = before?.badges;
  const badgesAfter = after.badges;
  if (badgesAfter !== undefined && badgesAfter !== badgesBefore) {
    for (const badgeId in badgesAfter) {
      if (badgesBefore === undefined || !Object.hasOwn(badgesBefore, badgeId)) day.badges[badgeId] = (day.badges[badgeId] ?? 0) + 1;
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
  // Records written before the program counters lack them: a missing one is 0, on either side.
  for (const counter of PROGRAM_COUNTERS) into[counter] = (into[counter] ?? 0) + (from[counter] ?? 0);
  if (from.paid !== undefined) {
    into.paid ??= {};
    for (const [planId, counters] of Object.entries(from.paid)) {
      const target = (into.paid[planId] ??= emptyPaid());
      for (const counter of PAID_COUNTERS) target[counter] = (target[counter] ?? 0) + (counters[counter] ?? 0);
    }
  }
  if (from.donations !== undefined) {
    into.donations ??= {};
    for (const [causeId, totals] of Object.entries(from.donations)) {
      const target = (into.donations[causeId] ??= { points: 0, donations: 0 });
      target.points += totals.points;
      target.donations += totals.donations;
    }
  }
  if (from.badges !== undefined) {
    into.badges ??= {};
    for (const [badgeId, earned] of Object.entries(from.badges)) into.badges[badgeId] = (into.badges[badgeId] ?? 0) + earned;
  }
  return into;
}
