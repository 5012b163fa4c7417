import type { CompiledProgram } from './compiled.js';
import type { DonationEvent } from './events.js';
import { debitSpendable } from './lots.js';
import type { Cause } from './program.js';
import { rejection, type Rejection } from './rejection.js';
import { readCurrency, type Work } from './work.js';

/**
 * Donations (value-based programs): a member gives spendable points to a
 * cause of the program's catalog. The points leave the member's balance like
 * a redemption (soonest-expiring lots first, ledger kind `donate`, rule and
 * reference = the cause id), and cannot be taken back: a cause is paid by the
 * program operator from the reports' totals per cause.
 */

const causesCache = new WeakMap<CompiledProgram, ReadonlyMap<string, Cause>>();

function causesOf(program: CompiledProgram): ReadonlyMap<string, Cause> {
  let causes = causesCache.get(program);
  if (causes === undefined) {
    causes = new Map((program.program.donations?.causes ?? []).map((cause) => [cause.id, cause]));
    causesCache.set(program, causes);
  }
  return causes;
}

export function applyDonation(work: Work, event: DonationEvent): Rejection | null {
  const program = work.program;
  const cause = causesOf(program).get(event.causeId);
  if (cause === undefined) {
    return rejection('CAUSE_UNKNOWN', program.program.donations === undefined ? 'this program takes no donations' : `cause ${event.causeId} is not in the catalog`);
  }
  if (!program.currencyById.has(event.currency)) return rejection('UNKNOWN_CURRENCY', `this program has no points currency ${event.currency}`);
  const currencyId = cause.currency ?? program.earn.currency;
  if (event.currency !== currencyId) return rejection('CAUSE_CURRENCY_MISMATCH', `cause ${cause.id} takes ${currencyId}, not ${event.currency}`);
  if (event.points < cause.minPoints) return rejection('DONATION_BELOW_MINIMUM', `cause ${cause.id} takes donations of at least ${cause.minPoints} ${currencyId}`);
  const currency = readCurrency(work.state, currencyId);
  if (currency.spendable < event.points) {
    const pending = currency.pending > 0 ? ` (${currency.pending} more are pending)` : '';
    return rejection('INSUFFICIENT_POINTS', `a donation of ${event.points} ${currencyId} needs as many spendable; the member has ${Math.max(0, currency.spendable)}${pending}`);
  }
  debitSpendable(work, currencyId, event.points, 'donate', cause.id, { reference: cause.id });
  work.state.lastActivityMs = Math.max(work.state.lastActivityMs, work.atMs);
  work.outcomes.push({
    kind: 'donation',
    eventId: work.eventId,
    memberId: work.state.memberId,
    occurredAtMs: work.atMs,
    causeId: cause.id,
    currency: currencyId,
    points: event.points,
  });
  return null;
}
