import { issueBenefit } from './benefits.js';
import { BUILTIN_RULE, type CompiledProgram, type CompiledTier } from './compiled.js';
import { paidFloorTier } from './paid-floor.js';
import { lapseBuckets, tierMeasure, windowMonths } from './tier-measure.js';
import { monthIndexOf, monthStartMs } from './time.js';
import { post, writeCurrency, type Work } from './work.js';

/**
 * Tiers: upgrades are immediate (the moment the measure reaches a higher
 * threshold); downgrades only at the end of a qualification period (a year
 * for calendar_year, each month for rolling windows), optionally after a
 * grace period in which the member can requalify.
 */

/**
 * The member's tier in this program. A tier id a newer program dropped counts
 * as the first tier, so the next evaluation places the member by the measure
 * instead of stopping the actor on every event of theirs.
 */
export function tierOf(program: CompiledProgram, tierId: string): CompiledTier {
  return program.tierById.get(tierId) ?? program.tiers[0]!;
}

/** The tier the measure supports at `atMs`, or the tier a paid membership holds the member at, whichever is higher. */
function supportedOrPaid(work: Work, measure: number, atMs: number): CompiledTier {
  const supported = supportedTier(work.program, measure);
  const floor = work.state.paid === undefined ? null : paidFloorTier(work.program, work.state, atMs);
  return floor !== null && floor.index > supported.index ? floor : supported;
}

/** The highest tier whose threshold the measure reaches. */
export function supportedTier(program: CompiledProgram, measure: number): CompiledTier {
  let best = program.tiers[0]!;
  for (const tier of program.tiers) {
    if (tier.threshold <= measure) best = tier;
    else break;
  }
  return best;
}

function describeMeasure(program: CompiledProgram, measure: number): string {
  return program.tierBasis === 'points' ? `${measure} qualifying ${program.tierCurrency}` : `spend of ${measure} minor units`;
}

/** Upgrades at once when the measure supports a higher tier; issues the benefits of each tier reached. */
export function upgradeIfQualified(work: Work): void {
  const program = work.program;
  const current = tierOf(program, work.state.tierId);
  const measure = tierMeasure(work.state);
  const supported = supportedTier(program, measure);
  if (supported.index === current.index && work.state.tierGrace !== null) {
    // Requalified during the grace period: the pending downgrade is off.
    work.changed = true;
    work.state.tierGrace = null;
  }
  if (supported.index <= current.index) return;
  const reason = `${describeMeasure(program, measure)} reached ${supported.name} (${supported.threshold})`;
  changeTier(work, current, supported, reason, work.atMs);
  for (let index = current.index + 1; index <= supported.index; index++) {
    for (const benefit of program.benefitsByTier.get(program.tiers[index]!.id) ?? []) {
      issueBenefit(work, benefit, `reached tier ${program.tiers[index]!.name}`);
    }
  }
}

export function changeTier(work: Work, from: CompiledTier, to: CompiledTier, reason: string, atMs: number): void {
  work.changed = true;
  work.state.tierId = to.id;
  work.state.tierSinceMs = atMs;
  work.state.tierGrace = null;
  work.outcomes.push({
    kind: 'tier',
    eventId: work.eventId,
    memberId: work.state.memberId,
    occurredAtMs: atMs,
    fromTierId: from.id,
    toTierId: to.id,
    direction: to.index > from.index ? 'up' : 'down',
    reason,
  });
}

/**
 * Runs every period end and grace deadline up to `atMs`, in time order, so a
 * member seen after a long absence lands exactly where a daily sweep would
 * have put them. The loop is bounded: with no measure, no grace and the
 * lowest tier, it jumps straight to the next period end.
 */
export function applyTierReviews(work: Work, atMs: number): void {
  const program = work.program;
  for (;;) {
    const reviewAtMs = work.state.tierReviewAtMs;
    if (reviewAtMs === null) return;
    const grace = work.state.tierGrace;
    if (grace !== null && grace.untilMs <= reviewAtMs && grace.untilMs <= atMs) {
      resolveGrace(work, grace.untilMs, grace.targetTierId);
      continue;
    }
    if (reviewAtMs > atMs) return;
    if (work.state.tierBuckets.length === 0 && grace === null && work.state.tierId === program.tiers[0]!.id) {
      // Nothing to review: jump straight past `atMs` instead of stepping period by period.
      work.changed = true;
      work.state.tierReviewAtMs = nextReviewAfter(program, reviewAtMs, atMs);
      return;
    }
    reviewAtPeriodEnd(work, reviewAtMs);
    work.changed = true;
    work.state.tierReviewAtMs = nextReviewAfter(program, reviewAtMs, reviewAtMs);
  }
}

/** The first period boundary after max(boundaryMs, atMs), stepping from a boundary. */
function nextReviewAfter(program: CompiledProgram, boundaryMs: number, atMs: number): number {
  const step = program.tierWindow.kind === 'calendar_year' ? 12 : 1;
  const offset = program.offsetMinutes;
  const boundary = monthIndexOf(boundaryMs, offset);
  const target = monthIndexOf(atMs, offset);
  const steps = Math.max(1, Math.floor((target - boundary) / step) + 1);
  return monthStartMs(boundary + steps * step, offset);
}

function reviewAtPeriodEnd(work: Work, boundaryMs: number): void {
  const program = work.program;
  const measure = tierMeasure(work.state);
  const current = tierOf(program, work.state.tierId);
  const supported = supportedOrPaid(work, measure, boundaryMs);
  if (supported.index >= current.index) {
    if (work.state.tierGrace !== null) {
      work.changed = true;
      work.state.tierGrace = null;
    }
  } else if (work.state.tierGrace === null) {
    const target = program.tierDowngrade === 'one_step' ? program.tiers[Math.max(supported.index, current.index - 1)]! : supported;
    const reason = `${describeMeasure(program, measure)} in the period ending ${new Date(boundaryMs).toISOString()} is below ${current.name} (${current.threshold})`;
    if (program.tierGraceMs > 0) {
      work.changed = true;
      work.state.tierGrace = { untilMs: boundaryMs + program.tierGraceMs, targetTierId: target.id };
    } else {
      changeTier(work, current, target, reason, boundaryMs);
    }
  }
  lapseWindow(work, boundaryMs);
}

/** Moves the window past the boundary; qualifying points that leave it are ledgered out. */
function lapseWindow(work: Work, boundaryMs: number): void {
  const program = work.program;
  const boundaryMonth = monthIndexOf(boundaryMs, program.offsetMinutes);
  const firstKept = program.tierWindow.kind === 'calendar_year' ? boundaryMonth : boundaryMonth - windowMonths(program) + 1;
  const lapsed = lapseBuckets(work, firstKept);
  if (lapsed === 0 || program.tierBasis !== 'points') return;
  const currency = writeCurrency(work, program.tierCurrency);
  post(work, currency, program.tierCurrency, 'qualifying', -lapsed, 'qualifying_lapse', BUILTIN_RULE.qualification, {
    occurredAtMs: boundaryMs,
  });
}

function resolveGrace(work: Work, untilMs: number, targetTierId: string): void {
  const program = work.program;
  const current = tierOf(program, work.state.tierId);
  const measure = tierMeasure(work.state);
  const supported = supportedOrPaid(work, measure, untilMs);
  work.changed = true;
  work.state.tierGrace = null;
  if (supported.index >= current.index) return;
  const target = tierOf(program, targetTierId);
  const landing = supported.index > target.index ? supported : target;
  if (landing.index >= current.index) return;
  const reason = `grace period ended: ${describeMeasure(program, measure)} is below ${current.name} (${current.threshold})`;
  changeTier(work, current, landing, reason, untilMs);
}
