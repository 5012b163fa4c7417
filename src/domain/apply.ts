import { assert } from './assert.js';
import type { LoyaltyEvent, PurchaseEvent } from './events.js';
import { pointsForAmount } from './money.js';
import type { Program } from './program.js';
import type { Decision, LedgerEntry, MemberState, Outcome } from './state.js';

/**
 * The pure core: (state, event, program) → decision. No I/O, no clock: the
 * event's own time drives every rule, so replaying the same events gives the
 * same state.
 */
export function applyEvent(
  current: MemberState | undefined,
  event: LoyaltyEvent,
  occurredAtMs: number,
  program: Program,
): Decision {
  assert(current === undefined || current.memberId === event.memberId, 'state belongs to another member');
  const state = current ?? enroll(event.memberId, occurredAtMs, program);
  switch (event.type) {
    case 'purchase':
      return applyPurchase(state, event, occurredAtMs, program);
  }
}

export function enroll(memberId: string, atMs: number, program: Program): MemberState {
  const firstTier = program.tiers[0];
  assert(firstTier !== undefined, 'program has no tiers');
  return {
    memberId,
    enrolledAtMs: atMs,
    balances: {},
    qualifying: {},
    tierId: firstTier.id,
    ledgerSeq: 0,
    lastActivityMs: atMs,
    eventCount: 0,
  };
}

function applyPurchase(state: MemberState, event: PurchaseEvent, occurredAtMs: number, program: Program): Decision {
  if (event.currency !== program.currency) {
    return reject(state, event.id, occurredAtMs, 'CURRENCY_NOT_ACCEPTED', `the program accepts ${program.currency}, not ${event.currency}`);
  }
  const currency = program.pointsCurrency;
  const points = pointsForAmount(event.amountMinor, program.earn.points, program.earn.perAmountMinor, program.earn.rounding);
  const balance = (state.balances[currency] ?? 0) + points;
  const qualifying = (state.qualifying[currency] ?? 0) + points;
  const ledger: LedgerEntry[] = [];
  let ledgerSeq = state.ledgerSeq;
  if (points !== 0) {
    for (const kind of ['spendable', 'qualifying'] as const) {
      ledgerSeq += 1;
      ledger.push({
        seq: ledgerSeq,
        memberId: state.memberId,
        eventId: event.id,
        kind: 'earn',
        balance: kind,
        currency,
        points,
        ruleId: 'base-earn',
        occurredAtMs,
      });
    }
  }
  const tierId = tierFor(qualifying, program, state.tierId);
  const next: MemberState = {
    ...state,
    balances: { ...state.balances, [currency]: balance },
    qualifying: { ...state.qualifying, [currency]: qualifying },
    tierId,
    ledgerSeq,
    lastActivityMs: Math.max(state.lastActivityMs, occurredAtMs),
    eventCount: state.eventCount + 1,
  };
  const outcomes: Outcome[] = [
    { kind: 'balance', eventId: event.id, memberId: state.memberId, currency, delta: points, balance, qualifying, tierId, occurredAtMs },
  ];
  if (tierId !== state.tierId) {
    outcomes.push({
      kind: 'tier',
      eventId: event.id,
      memberId: state.memberId,
      fromTierId: state.tierId,
      toTierId: tierId,
      reason: `qualifying points reached ${qualifying}`,
      occurredAtMs,
    });
  }
  return { state: next, ledger, outcomes };
}

/** Upgrades are immediate; this foundation rule never downgrades. */
function tierFor(qualifying: number, program: Program, currentTierId: string): string {
  let best = currentTierId;
  let bestIndex = program.tiers.findIndex((tier) => tier.id === currentTierId);
  program.tiers.forEach((tier, index) => {
    if (index > bestIndex && qualifying >= tier.qualifyingPointsMin) {
      best = tier.id;
      bestIndex = index;
    }
  });
  return best;
}

function reject(state: MemberState, eventId: string, occurredAtMs: number, code: string, reason: string): Decision {
  return {
    state,
    ledger: [],
    outcomes: [{ kind: 'rejected', eventId, memberId: state.memberId, code, reason, occurredAtMs }],
  };
}
