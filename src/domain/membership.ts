import { BUILTIN_RULE, type CompiledProgram } from './compiled.js';
import type { EnrollEvent } from './events.js';
import { removeLots } from './lots.js';
import type { MemberState } from './state.js';
import { firstReviewAfter, lapseBuckets } from './tier-measure.js';
import { changeTier, tierOf } from './tiers.js';
import { markCopied, post, readCurrency, writeCurrency, writeList, writeRecord, type Work } from './work.js';

/**
 * Membership: enrollment (explicit, or automatic on a first event when the
 * program says so), attribute updates, unenrollment with a forfeit policy,
 * and erasure of personal data that keeps balances and the ledger for the
 * accountants.
 */

export function newMember(memberId: string, atMs: number, program: CompiledProgram): MemberState {
  return {
    memberId,
    status: 'active',
    enrolledAtMs: atMs,
    attributes: {},
    segments: [],
    tierId: program.tiers[0]!.id,
    tierSinceMs: atMs,
    tierReviewAtMs: firstReviewAfter(program, atMs),
    tierGrace: null,
    tierBuckets: [],
    currencies: {},
    ledgerSeq: 0,
    lastActivityMs: atMs,
    eventCount: 0,
    orders: [],
    redemptions: [],
    vouchers: [],
    activityCounts: {},
    promotionUsage: {},
    challenges: {},
    benefitsIssued: {},
  };
}

export function membershipOutcome(work: Work, action: 'enrolled' | 'updated' | 'reenrolled' | 'unenrolled' | 'erased'): void {
  work.outcomes.push({ kind: 'membership', eventId: work.eventId, memberId: work.state.memberId, occurredAtMs: work.atMs, action });
}

/** Enroll on a known member: re-activates an unenrolled one, or updates attributes and segments. */
export function applyEnroll(work: Work, event: EnrollEvent, isNew: boolean): void {
  const reactivated = work.state.status === 'unenrolled';
  if (reactivated) work.state.status = 'active';
  if (event.attributes !== undefined) {
    const attributes = writeRecord(work, 'attributes');
    for (const key in event.attributes) attributes[key] = event.attributes[key]!;
  }
  if (event.segments !== undefined) {
    const segments = writeList(work, 'segments');
    segments.length = 0;
    for (const segment of new Set(event.segments)) segments.push(segment);
  }
  work.changed = true;
  work.state.lastActivityMs = Math.max(work.state.lastActivityMs, work.atMs);
  membershipOutcome(work, isNew ? 'enrolled' : reactivated ? 'reenrolled' : 'updated');
}

/**
 * Unenroll. With `forfeit`, every spendable, pending and qualifying point is
 * ledgered out, the tier drops to the first, and open orders, redemptions,
 * vouchers and challenge progress go; a debt stays owed. With `keep`,
 * everything stays for a later re-enrollment (expiry and pruning keep running).
 */
export function applyUnenroll(work: Work): void {
  work.changed = true;
  work.state.status = 'unenrolled';
  if (work.program.unenrollPolicy === 'forfeit') forfeitAll(work);
  membershipOutcome(work, 'unenrolled');
}

function forfeitAll(work: Work): void {
  forfeitBalances(work);
  // The points are gone, so nothing is left to claw back, cancel or redeem.
  if (work.state.orders.length > 0) writeList(work, 'orders').length = 0;
  if (work.state.redemptions.length > 0) writeList(work, 'redemptions').length = 0;
  if (work.state.vouchers.length > 0) writeList(work, 'vouchers').length = 0;
  if (Object.keys(work.state.challenges).length > 0) {
    work.state.challenges = {};
    markCopied(work, 'challenges');
  }
}

function forfeitBalances(work: Work): void {
  const program = work.program;
  for (const currencyId in work.state.currencies) {
    const current = readCurrency(work.state, currencyId);
    if (current.lots.length === 0 && current.pendingLots.length === 0 && current.qualifying === 0) continue;
    const currency = writeCurrency(work, currencyId);
    removeLots(work, currency, currencyId, currency.lots.length, 'forfeit', BUILTIN_RULE.membership, () => work.atMs);
    for (const lot of currency.pendingLots.splice(0)) {
      post(work, currency, currencyId, 'pending', -lot.points, 'forfeit', BUILTIN_RULE.membership, undefined, lot.expiresAtMs, lot.releaseAtMs);
    }
    if (currency.qualifying > 0) post(work, currency, currencyId, 'qualifying', -currency.qualifying, 'forfeit', BUILTIN_RULE.membership);
  }
  lapseBuckets(work, Number.MAX_SAFE_INTEGER);
  const first = program.tiers[0]!;
  const current = tierOf(program, work.state.tierId);
  if (current.index > 0) changeTier(work, current, first, 'unenrolled: points and tier forfeited', work.atMs);
  work.state.tierGrace = null;
}

/**
 * Erasure of personal data: attributes and segments go; balances, lots and
 * the ledger stay, because accounting must still add up. The member can no
 * longer take part (every later event is refused).
 */
export function applyErase(work: Work): void {
  work.changed = true;
  work.state.status = 'erased';
  work.state.attributes = {};
  work.state.segments = [];
  markCopied(work, 'attributes');
  markCopied(work, 'segments');
  membershipOutcome(work, 'erased');
}
