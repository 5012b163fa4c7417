import type { CompiledProgram } from './compiled.js';
import { expiringWithin } from './expiry.js';
import { paidActiveAt, paidFloorTier } from './paid-floor.js';
import type { BalanceDigestOutcome, MemberState } from './state.js';
import { tierMeasure } from './tier-measure.js';
import { tierOf } from './tiers.js';
import { DAY_MS, monthIndexOf, monthStartMs, periodStartMs } from './time.js';
import type { Work } from './work.js';

/**
 * Balance digests (communications.digest): at the start of every week or
 * month the sweep sends each active member a `balance_digest` outcome (points
 * per currency and what expires before the next one, tier progress, paid plan,
 * badges) for a mailing service to turn into a statement e-mail. The next
 * digest's time is kept in member state, so the sweep's due index finds it.
 */

/** The start of the digest period after the one holding `atMs`. */
export function nextDigestMs(program: CompiledProgram, atMs: number, period: 'week' | 'month'): number {
  const offset = program.offsetMinutes;
  if (period === 'week') return periodStartMs(atMs, 'week', offset) + 7 * DAY_MS;
  return monthStartMs(monthIndexOf(atMs, offset) + 1, offset);
}

/** After an accepted event: the first digest of an active member is due at the next period start. */
export function scheduleDigest(work: Work): void {
  const digest = work.program.program.communications?.digest;
  if (digest === undefined || work.state.status !== 'active' || work.state.digestAtMs !== undefined) return;
  work.changed = true;
  work.state.digestAtMs = nextDigestMs(work.program, work.atMs, digest.period);
}

/** When the sweep next owes this member a digest; null when none is configured or the member is not active. */
export function digestDueMs(program: CompiledProgram, state: MemberState): number | null {
  if (program.program.communications?.digest === undefined || state.status !== 'active') return null;
  return state.digestAtMs ?? null;
}

/** Sweep only: the digest, when one is due. */
export function sendDigest(work: Work, nowMs: number): void {
  const program = work.program;
  const digest = program.program.communications?.digest;
  const state = work.state;
  if (digest === undefined || state.status !== 'active' || state.digestAtMs === undefined || state.digestAtMs > nowMs) return;
  const nextAtMs = nextDigestMs(program, nowMs, digest.period);
  work.changed = true;
  work.state.digestAtMs = nextAtMs;
  const tier = tierOf(program, state.tierId);
  const measure = tierMeasure(state);
  const next = program.tiers[tier.index + 1];
  const outcome: BalanceDigestOutcome = {
    kind: 'balance_digest',
    eventId: work.eventId,
    memberId: state.memberId,
    occurredAtMs: nowMs,
    period: digest.period,
    currencies: program.currencies.map((currency) => {
      const balances = Object.hasOwn(state.currencies, currency.id) ? state.currencies[currency.id]! : undefined;
      const expiringPoints = expiringWithin(work, currency.id, nextAtMs).reduce((sum, item) => sum + item.points, 0);
      return { currency: currency.id, spendable: balances?.spendable ?? 0, pending: balances?.pending ?? 0, debt: balances?.debt ?? 0, expiringPoints };
    }),
    tierId: tier.id,
    nextTier: next === undefined ? null : { tierId: next.id, remaining: Math.max(0, next.threshold - measure) },
    // A paid plan holding the member at this tier keeps it whatever the measure.
    keepTier: { remaining: (paidFloorTier(program, state, nowMs)?.index ?? -1) >= tier.index ? 0 : Math.max(0, tier.threshold - measure), byMs: state.tierReviewAtMs },
    paidPlanId: paidActiveAt(state, nowMs) ? state.paid!.planId : null,
    badges: state.badges === undefined ? 0 : Object.keys(state.badges).length,
  };
  work.outcomes.push(outcome);
}
