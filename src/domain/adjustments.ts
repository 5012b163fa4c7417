import { BUILTIN_RULE } from './compiled.js';
import type { AdjustmentEvent } from './events.js';
import { lotExpiryMs } from './expiry.js';
import { creditQualifying, creditSpendable, debitQualifying, debitSpendable } from './lots.js';
import { rejection, type Rejection } from './rejection.js';
import { bucketKeyFor } from './tier-measure.js';
import { upgradeIfQualified } from './tiers.js';
import { readCurrency, type Work } from './work.js';

/**
 * Manual adjustments by an operator (support goodwill, corrections, bulk
 * files fed as events). The reason and operator go into every ledger entry.
 * A debit never takes more than the member has: an operator who wants less
 * should ask for less, and the refusal says how much there is. Adjustments
 * are not member activity, so they do not extend inactivity expiry.
 */
export function applyAdjustment(work: Work, event: AdjustmentEvent): Rejection | null {
  const program = work.program;
  const currencyId = event.currency;
  const currencyProgram = program.currencyById.get(currencyId);
  if (currencyProgram === undefined) return rejection('UNKNOWN_CURRENCY', `this program has no points currency ${currencyId}`);
  if (event.qualifying === true && !currencyProgram.qualifying) {
    return rejection('QUALIFYING_NOT_SUPPORTED', `${currencyId} has no qualifying balance`);
  }
  const details = { reason: event.reason, operator: event.operator };
  const bucketKey = bucketKeyFor(program, work.state, work.atMs);
  if (event.direction === 'credit') {
    creditSpendable(work, currencyId, event.points, lotExpiryMs(program, currencyId, work.atMs), 'adjustment', BUILTIN_RULE.adjustment, details);
    if (event.qualifying === true) creditQualifying(work, currencyId, event.points, bucketKey, 'adjustment', BUILTIN_RULE.adjustment, details);
    upgradeIfQualified(work);
    return null;
  }
  const spendable = readCurrency(work.state, currencyId).spendable;
  if (spendable < event.points) {
    return rejection('INSUFFICIENT_POINTS', `cannot debit ${event.points} ${currencyId}: the member has ${Math.max(0, spendable)} spendable`);
  }
  debitSpendable(work, currencyId, event.points, 'adjustment', BUILTIN_RULE.adjustment, details);
  // A qualifying debit takes from the newest months of the window first; tiers still only drop at period end.
  if (event.qualifying === true) debitQualifying(work, currencyId, event.points, null, 'adjustment', BUILTIN_RULE.adjustment, details);
  return null;
}
