import { checkMilestones } from './benefits.js';
import type { ActivityEvent } from './events.js';
import { lotExpiryMs } from './expiry.js';
import { creditQualifying, creditSpendable } from './lots.js';
import { activityKey } from './program.js';
import { rejection, type Rejection } from './rejection.js';
import type { CapCounter } from './state.js';
import { bucketKeyFor } from './tier-measure.js';
import { upgradeIfQualified } from './tiers.js';
import { periodStartMs } from './time.js';
import { writeCurrency, writeRecord, type Work } from './work.js';

/**
 * Non-purchase activities (review, referral, profile completion, newsletter
 * sign-up, custom types): fixed points, spendable at once, with a per-member
 * frequency cap. An activity the program does not reward, or one over its
 * cap, is refused so the producer learns why nothing was credited.
 */

export function applyActivity(work: Work, event: ActivityEvent): Rejection | null {
  const program = work.program;
  const key = activityKey(event.activity, event.customType);
  const rule = program.activitiesByKey.get(key);
  if (rule === undefined) return rejection('UNKNOWN_ACTIVITY', `this program does not reward activity ${key}`);
  let counter: CapCounter | null = null;
  if (rule.cap !== undefined) {
    const periodStart = rule.cap.period === 'lifetime' ? 0 : periodStartMs(work.atMs, rule.cap.period, program.offsetMinutes);
    const previous = Object.hasOwn(work.state.activityCounts, rule.id) ? work.state.activityCounts[rule.id]! : undefined;
    // A late event from an earlier period counts against the current one: conservative, never over the cap.
    const count = previous !== undefined && previous.periodStartMs >= periodStart ? previous.count : 0;
    if (count >= rule.cap.count) {
      const per = rule.cap.period === 'lifetime' ? 'in total' : `per ${rule.cap.period}`;
      return rejection('ACTIVITY_CAP_REACHED', `activity ${key} is rewarded at most ${rule.cap.count} times ${per}`);
    }
    counter = { periodStartMs: Math.max(periodStart, previous?.periodStartMs ?? 0), count: count + 1 };
  }
  if (counter !== null) writeRecord(work, 'activityCounts')[rule.id] = counter;
  const currencyId = rule.currency ?? program.earn.currency;
  const details = { reference: key };
  creditSpendable(work, currencyId, rule.points, lotExpiryMs(program, currencyId, work.atMs), 'activity', rule.id, details);
  if (rule.qualifying && program.currencyById.get(currencyId)!.qualifying) {
    creditQualifying(work, currencyId, rule.points, bucketKeyFor(program, work.state, work.atMs), 'activity', rule.id, details);
  }
  writeCurrency(work, currencyId).lifetimeEarned += rule.points;
  work.state.lastActivityMs = Math.max(work.state.lastActivityMs, work.atMs);
  checkMilestones(work, currencyId);
  upgradeIfQualified(work);
  return null;
}
