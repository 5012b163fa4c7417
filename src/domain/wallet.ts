import { badgeViews } from './badges.js';
import { compiledOf, type CompiledProgram } from './compiled.js';
import { expiringWithin } from './expiry.js';
import { plansOf } from './paid-floor.js';
import type { Program } from './program.js';
import type { BenefitKind, MemberState, MemberStatus, PaidMembershipStatus } from './state.js';
import { nextDueMs, sweepMember } from './sweep.js';
import { tierMeasure } from './tier-measure.js';
import { tierOf } from './tiers.js';
import { readCurrency } from './work.js';

/**
 * What a member sees (the HTTP API serves it): balances, pending points with
 * release dates, expiring points by date, tier progress, active vouchers.
 * Pure: it first applies whatever is due at `nowMs` to a copy, so the view
 * never shows points that have already expired but not been swept.
 */

export interface WalletCurrencyView {
  readonly currency: string;
  readonly spendable: number;
  readonly pending: number;
  readonly qualifying: number;
  readonly debt: number;
  readonly pendingReleases: readonly { readonly releaseAtMs: number; readonly points: number }[];
  /** Every dated expiry (or the inactivity deadline of the whole balance), soonest first. */
  readonly expiring: readonly { readonly expiresAtMs: number; readonly points: number }[];
  readonly inactivityDeadlineMs: number | null;
}

export interface WalletTierView {
  readonly id: string;
  readonly name: string;
  readonly sinceMs: number;
  readonly basis: 'points' | 'spend';
  /** Qualifying points (or spend) in the current window. */
  readonly measure: number;
  /** When the current period ends and the tier is reviewed; null for a lifetime window. */
  readonly periodEndsAtMs: number | null;
  readonly next: { readonly id: string; readonly name: string; readonly threshold: number; readonly remaining: number } | null;
  /** What keeps the current tier at the next review. */
  readonly keep: { readonly threshold: number; readonly remaining: number; readonly byMs: number | null };
  readonly grace: { readonly untilMs: number; readonly targetTierId: string } | null;
}

export interface WalletView {
  readonly memberId: string;
  readonly status: MemberStatus;
  readonly asOfMs: number;
  readonly tier: WalletTierView;
  readonly currencies: readonly WalletCurrencyView[];
  readonly vouchers: readonly {
    readonly code: string;
    readonly benefitId: string;
    readonly kind: BenefitKind;
    readonly issuedAtMs: number;
    readonly expiresAtMs: number;
  }[];
  /** The paid membership, active or ended (null: never had one). */
  readonly paidMembership: WalletPaidView | null;
  /** Every badge of the program: when earned (null: not yet) and the progress toward it. */
  readonly badges: readonly WalletBadgeView[];
}

export interface WalletPaidView {
  readonly planId: string;
  readonly name: string;
  readonly status: PaidMembershipStatus;
  readonly sinceMs: number;
  readonly termEndsAtMs: number;
  readonly graceEndsAtMs: number;
  readonly endedAtMs: number | null;
}

export interface WalletBadgeView {
  readonly id: string;
  readonly name: string;
  readonly earnedAtMs: number | null;
  /** Purchases, activities or donations counted so far (spend: minor units; streaks: consecutive periods), up to target. */
  readonly progress: number;
  readonly target: number;
}

export function walletView(state: MemberState, program: Program | CompiledProgram, nowMs: number): WalletView {
  const compiled = compiledOf(program);
  return viewOf(state, compiled, nowMs, nextDueMs(state, compiled));
}

/**
 * walletView, and until when it stays the same but for asOfMs (see
 * walletStableUntilMs), computed together.
 */
export function walletViewStable(state: MemberState, program: Program | CompiledProgram, nowMs: number): { view: WalletView; stableUntilMs: number } {
  const compiled = compiledOf(program);
  const dueMs = nextDueMs(state, compiled);
  const view = viewOf(state, compiled, nowMs, dueMs);
  return { view, stableUntilMs: stableUntilMs(state, view, dueMs) };
}

function viewOf(state: MemberState, compiled: CompiledProgram, nowMs: number, dueMs: number | null): WalletView {
  // Before its next due time a sweep changes nothing the wallet shows (at most
  // noticeThroughMs, when it tells about points expiring soon): skip it then.
  const current = dueMs !== null && dueMs <= nowMs ? sweepMember(state, nowMs, compiled).state : state;
  return {
    memberId: current.memberId,
    status: current.status,
    asOfMs: nowMs,
    tier: tierView(current, compiled),
    currencies: compiled.currencies.map((currency) => currencyView(current, compiled, currency.id)),
    vouchers: current.vouchers
      .filter((voucher) => voucher.redeemedAtMs === null && voucher.expiresAtMs > nowMs)
      .map(({ code, benefitId, kind, issuedAtMs, expiresAtMs }) => ({ code, benefitId, kind, issuedAtMs, expiresAtMs })),
    paidMembership: paidView(current, compiled),
    badges: badgeViews(current, compiled),
  };
}

function paidView(state: MemberState, program: CompiledProgram): WalletPaidView | null {
  const paid = state.paid;
  if (paid === undefined) return null;
  return {
    planId: paid.planId,
    name: plansOf(program).get(paid.planId)?.name ?? paid.planId,
    status: paid.status,
    sinceMs: paid.sinceMs,
    termEndsAtMs: paid.termEndsAtMs,
    graceEndsAtMs: paid.graceEndsAtMs,
    endedAtMs: paid.endedAtMs,
  };
}

function tierView(state: MemberState, program: CompiledProgram): WalletTierView {
  const tier = tierOf(program, state.tierId);
  const measure = tierMeasure(state);
  const next = program.tiers[tier.index + 1];
  return {
    id: tier.id,
    name: tier.name,
    sinceMs: state.tierSinceMs,
    basis: program.tierBasis,
    measure,
    periodEndsAtMs: state.tierReviewAtMs,
    next: next === undefined ? null : { id: next.id, name: next.name, threshold: next.threshold, remaining: Math.max(0, next.threshold - measure) },
    keep: { threshold: tier.threshold, remaining: Math.max(0, tier.threshold - measure), byMs: state.tierReviewAtMs },
    grace: state.tierGrace,
  };
}

function currencyView(state: MemberState, program: CompiledProgram, currencyId: string): WalletCurrencyView {
  const currency = readCurrency(state, currencyId);
  const expiring = expiringWithin({ program, state }, currencyId, Number.MAX_SAFE_INTEGER);
  const inactivity = program.currencyById.get(currencyId)?.expiry.kind === 'inactivity';
  return {
    currency: currencyId,
    spendable: currency.spendable,
    pending: currency.pending,
    qualifying: currency.qualifying,
    debt: currency.debt,
    pendingReleases: currency.pendingLots.map((lot) => ({ releaseAtMs: lot.releaseAtMs, points: lot.points })),
    expiring,
    inactivityDeadlineMs: inactivity ? (expiring[0]?.expiresAtMs ?? null) : null,
  };
}

/**
 * Until when walletView(state, program, t) stays what it is at `nowMs` but for
 * asOfMs, for every t from `nowMs` up to (not including) the result: the
 * earliest time at which a sweep would change the state (nextDueMs: pending
 * releases, lot and inactivity expiry, tier reviews and grace, voucher
 * expiry...), and, in case the view filters by time on its own, every time it
 * shows (releases, expiries, voucher expiry, tier review and grace).
 * Number.POSITIVE_INFINITY when nothing in it depends on time; at or before
 * `nowMs` when something is already due (the view sweeps it): not stable.
 * `view` must be walletView(state, program, nowMs). The HTTP API reuses a
 * rendered wallet in that interval while the stored member is unchanged.
 */
export function walletStableUntilMs(state: MemberState, program: Program | CompiledProgram, view: WalletView): number {
  return stableUntilMs(state, view, nextDueMs(state, program));
}

function stableUntilMs(state: MemberState, view: WalletView, dueMs: number | null): number {
  let until = dueMs ?? Number.POSITIVE_INFINITY;
  const consider = (atMs: number | null) => {
    if (atMs !== null && atMs < until) until = atMs;
  };
  for (const voucher of state.vouchers) consider(voucher.expiresAtMs);
  for (const currency of view.currencies) {
    for (const release of currency.pendingReleases) consider(release.releaseAtMs);
    for (const item of currency.expiring) consider(item.expiresAtMs);
    consider(currency.inactivityDeadlineMs);
  }
  consider(view.tier.periodEndsAtMs);
  consider(view.tier.keep.byMs);
  consider(view.tier.grace === null ? null : view.tier.grace.untilMs);
  return until;
}
