import { issueBenefit } from './benefits.js';
import type { CompiledProgram } from './compiled.js';
import type { LoyaltyEvent } from './events.js';
import { lotExpiryMs } from './expiry.js';
import { creditSpendable } from './lots.js';
import { activityKey, type Badge, type Benefit } from './program.js';
import type { BadgeProgress, MemberState } from './state.js';
import { DAY_MS, monthIndexOf, periodStartMs } from './time.js';
import type { Work } from './work.js';

/**
 * Badges and milestones (gamification): each badge is earned once per member
 * by a rule over the member's accepted events: purchase counts, purchases in
 * categories, lifetime spend, streaks of consecutive weeks or months with a
 * purchase, counts of an activity, donations. Earning one is a `badge`
 * outcome, optionally credits points (ledger kind `activity`, rule = the
 * badge id) and issues the `badge_earned` benefits. State: one time per badge
 * earned, and a small progress record per badge not yet earned (at most one
 * per badge of the program).
 */

interface CompiledBadges {
  readonly purchase: readonly Badge[];
  readonly byActivity: ReadonlyMap<string, readonly Badge[]>;
  readonly donation: readonly Badge[];
  readonly categories: ReadonlyMap<string, ReadonlySet<string>>;
  readonly benefits: ReadonlyMap<string, readonly Benefit[]>;
}

const cache = new WeakMap<CompiledProgram, CompiledBadges>();

function compiledBadges(program: CompiledProgram): CompiledBadges {
  let compiled = cache.get(program);
  if (compiled !== undefined) return compiled;
  const purchase: Badge[] = [];
  const byActivity = new Map<string, Badge[]>();
  const donation: Badge[] = [];
  const categories = new Map<string, ReadonlySet<string>>();
  for (const badge of program.program.badges) {
    const rule = badge.rule;
    if (rule.kind === 'activity_count') {
      const key = activityKey(rule.activity, rule.customType);
      byActivity.set(key, [...(byActivity.get(key) ?? []), badge]);
    } else if (rule.kind === 'donation_count') {
      donation.push(badge);
    } else {
      purchase.push(badge);
      if (rule.kind === 'category_purchases') categories.set(badge.id, new Set(rule.categories));
    }
  }
  const benefits = new Map<string, Benefit[]>();
  for (const benefit of program.program.benefits) {
    if (benefit.trigger.kind !== 'badge_earned') continue;
    benefits.set(benefit.trigger.badgeId, [...(benefits.get(benefit.trigger.badgeId) ?? []), benefit]);
  }
  compiled = { purchase, byActivity, donation, categories, benefits };
  cache.set(program, compiled);
  return compiled;
}

export function hasBadge(state: MemberState, badgeId: string): boolean {
  return state.badges !== undefined && Object.hasOwn(state.badges, badgeId);
}

function progressOf(state: MemberState, badgeId: string): BadgeProgress | undefined {
  return state.badgeProgress !== undefined && Object.hasOwn(state.badgeProgress, badgeId) ? state.badgeProgress[badgeId] : undefined;
}

function writeProgress(work: Work, badgeId: string, progress: BadgeProgress | undefined): void {
  work.changed = true;
  if (work.state.badgeProgress === work.original.badgeProgress) work.state.badgeProgress = { ...(work.original.badgeProgress ?? {}) };
  const record = work.state.badgeProgress as Record<string, BadgeProgress>;
  if (progress === undefined) delete record[badgeId];
  else record[badgeId] = progress;
}

/** Counts an accepted event toward the program's badges and awards those now reached. */
export function evaluateBadges(work: Work, event: LoyaltyEvent): void {
  if (work.program.program.badges.length === 0) return;
  const compiled = compiledBadges(work.program);
  if (event.type === 'purchase') {
    for (const badge of compiled.purchase) {
      if (hasBadge(work.state, badge.id)) continue;
      const rule = badge.rule;
      if (rule.kind === 'purchase_count') {
        if (event.amountMinor >= rule.minAmountMinor) count(work, badge, rule.count, plural(rule.count, 'purchase'));
      } else if (rule.kind === 'category_purchases') {
        const wanted = compiled.categories.get(badge.id)!;
        if ((event.items ?? []).some((item) => item.category !== undefined && wanted.has(item.category))) {
          count(work, badge, rule.count, `${plural(rule.count, 'purchase')} in ${rule.categories.join(', ')}`);
        }
      } else if (rule.kind === 'spend') {
        const spent = work.state.engagement?.revenueMinor ?? 0;
        if (spent >= rule.amountMinor) award(work, badge, `spent ${spent} minor units in total (badge at ${rule.amountMinor})`);
      } else if (rule.kind === 'streak') {
        streak(work, badge, rule.period, rule.count);
      }
    }
  } else if (event.type === 'activity') {
    for (const badge of compiled.byActivity.get(activityKey(event.activity, event.customType)) ?? []) {
      if (hasBadge(work.state, badge.id) || badge.rule.kind !== 'activity_count') continue;
      count(work, badge, badge.rule.count, plural(badge.rule.count, `${activityKey(event.activity, event.customType)} activity`, 'activities'));
    }
  } else if (event.type === 'donation') {
    const donations = work.state.engagement?.donations ?? 0;
    for (const badge of compiled.donation) {
      if (hasBadge(work.state, badge.id) || badge.rule.kind !== 'donation_count') continue;
      if (donations >= badge.rule.count) award(work, badge, plural(donations, 'donation'));
    }
  }
}

function plural(count: number, singular: string, pluralEnding?: string): string {
  if (count === 1) return `1 ${singular}`;
  return pluralEnding === undefined ? `${count} ${singular}s` : `${count} ${singular.slice(0, singular.lastIndexOf(' ') + 1)}${pluralEnding}`;
}

function count(work: Work, badge: Badge, target: number, reason: string): void {
  const reached = (progressOf(work.state, badge.id)?.count ?? 0) + 1;
  if (reached >= target) award(work, badge, reason);
  else writeProgress(work, badge.id, { count: reached });
}

/** Period key: the Monday's day number of a week, or the month index. */
function periodKey(work: Work, period: 'week' | 'month', atMs: number): number {
  const offset = work.program.offsetMinutes;
  return period === 'week' ? Math.floor((periodStartMs(atMs, 'week', offset) + offset * 60_000) / DAY_MS) : monthIndexOf(atMs, offset);
}

function streak(work: Work, badge: Badge, period: 'week' | 'month', target: number): void {
  const key = periodKey(work, period, work.atMs);
  const previous = progressOf(work.state, badge.id);
  if (previous?.periodKey !== undefined && key <= previous.periodKey) return; // this period already counted (or a late event)
  const step = period === 'week' ? 7 : 1;
  const length = previous?.periodKey === key - step ? previous.count + 1 : 1;
  if (length >= target) award(work, badge, `a purchase in each of ${target} consecutive ${period}s`);
  else writeProgress(work, badge.id, { count: length, periodKey: key });
}

function award(work: Work, badge: Badge, reason: string): void {
  work.changed = true;
  work.state.badges = { ...(work.state.badges ?? {}), [badge.id]: work.atMs };
  if (progressOf(work.state, badge.id) !== undefined) writeProgress(work, badge.id, undefined);
  work.outcomes.push({ kind: 'badge', eventId: work.eventId, memberId: work.state.memberId, occurredAtMs: work.atMs, badgeId: badge.id, name: badge.name, reason });
  if (badge.points !== undefined) {
    const currencyId = badge.currency ?? work.program.earn.currency;
    creditSpendable(work, currencyId, badge.points, lotExpiryMs(work.program, currencyId, work.atMs), 'activity', badge.id, { reference: badge.id });
  }
  for (const benefit of compiledBadges(work.program).benefits.get(badge.id) ?? []) issueBenefit(work, benefit, `earned badge ${badge.name}`);
}

/** What the wallet shows of every badge of the program: earned (when) or the progress toward it. */
export function badgeViews(state: MemberState, program: CompiledProgram): { id: string; name: string; earnedAtMs: number | null; progress: number; target: number }[] {
  return program.program.badges.map((badge) => {
    const earnedAtMs = hasBadge(state, badge.id) ? state.badges![badge.id]! : null;
    const target = targetOf(badge);
    let progress: number;
    if (earnedAtMs !== null) progress = target;
    else if (badge.rule.kind === 'spend') progress = Math.min(target, state.engagement?.revenueMinor ?? 0);
    else if (badge.rule.kind === 'donation_count') progress = Math.min(target, state.engagement?.donations ?? 0);
    else progress = progressOf(state, badge.id)?.count ?? 0;
    return { id: badge.id, name: badge.name, earnedAtMs, progress, target };
  });
}

function targetOf(badge: Badge): number {
  const rule = badge.rule;
  return rule.kind === 'spend' ? rule.amountMinor : rule.count;
}
