import { describe, expect, it } from 'vitest';
import { programSchema } from '../../../src/domain/index.js';
import { loadProgram, makeProgram, Member, ms, purchase } from './helpers.js';

/** Issue 16, item 1: paid membership (a hybrid program), with config/programs/hybrid.yaml. */

const hybrid = loadProgram('hybrid');
const fee = (id: string, occurredAt: string, planId = 'premium-yearly', amountMinor = planId === 'premium-yearly' ? 3999 : 499, currency = 'EUR') => ({
  id,
  type: 'membership_fee',
  occurredAt,
  planId,
  amountMinor,
  currency,
});

describe('paid membership', () => {
  it('a fee joins the plan: a term of 12 months, the plan tier, its benefit, and its multiplier on later purchases', () => {
    const member = new Member(hybrid, 'alice');
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 10_000));
    expect(member.tier).toBe('member');
    const joined = member.ok(fee('f1', '2026-03-02T10:00:00Z'));
    // No points moved: no balance outcome.
    expect(joined.outcomes.map((outcome) => outcome.kind)).toEqual(['paid_membership', 'tier', 'benefit']);
    expect(member.outcomesOf('paid_membership', joined)).toEqual([
      {
        kind: 'paid_membership',
        eventId: 'f1',
        memberId: 'alice',
        occurredAtMs: ms('2026-03-02T10:00:00Z'),
        planId: 'premium-yearly',
        action: 'joined',
        termEndsAtMs: ms('2027-03-02T10:00:00Z'),
        graceEndsAtMs: ms('2027-03-16T10:00:00Z'),
      },
    ]);
    expect(member.outcomesOf('tier', joined)).toMatchObject([{ fromTierId: 'member', toTierId: 'silver', direction: 'up', reason: 'paid membership Premium (yearly)' }]);
    expect(member.outcomesOf('benefit', joined)).toMatchObject([{ benefitId: 'premium-shipping', benefitKind: 'free_shipping' }]);
    expect(joined.ledger).toEqual([]); // a fee is money, not points

    const bought = member.ok(purchase('p2', '2026-03-03T10:00:00Z', 10_000));
    // base 100, Silver +25 %, Premium +100 % (on base points), the plan's points not qualifying.
    expect(bought.ledger.filter((entry) => entry.balance === 'spendable').map((entry) => [entry.ruleId, entry.points])).toEqual([
      ['earn:base', 100],
      ['earn:tier:silver', 25],
      ['earn:paid:premium-yearly', 100],
    ]);
    expect(member.spendable).toBe(100 + 225);
    expect(member.qualifying).toBe(100 + 125);
    expect(member.wallet('2026-03-04T00:00:00Z').paidMembership).toEqual({
      planId: 'premium-yearly',
      name: 'Premium (yearly)',
      status: 'active',
      sinceMs: ms('2026-03-02T10:00:00Z'),
      termEndsAtMs: ms('2027-03-02T10:00:00Z'),
      graceEndsAtMs: ms('2027-03-16T10:00:00Z'),
      endedAtMs: null,
    });
  });

  it('refuses an unknown plan, a wrong fee or currency, and a second term paid ahead', () => {
    const member = new Member(hybrid, 'bob');
    member.rejected(fee('x1', '2026-03-02T10:00:00Z', 'platinum', 100), 'PLAN_UNKNOWN');
    member.rejected(fee('x2', '2026-03-02T10:00:00Z', 'premium-yearly', 3000), 'FEE_MISMATCH');
    member.rejected(fee('x3', '2026-03-02T10:00:00Z', 'premium-yearly', 3999, 'USD'), 'CURRENCY_NOT_ACCEPTED');
    member.ok(fee('f1', '2026-03-02T10:00:00Z'));
    // One term ahead is fine (paid until 2028), a third term in advance is most likely a double charge.
    const renewed = member.ok(fee('f2', '2026-03-04T10:00:00Z'));
    expect(member.outcomesOf('paid_membership', renewed)).toMatchObject([{ action: 'renewed', termEndsAtMs: ms('2028-03-02T10:00:00Z') }]);
    expect(member.rejected(fee('f3', '2026-03-05T10:00:00Z'), 'RENEWAL_TOO_EARLY')).toContain('2028-03-02');
  });

  it('a renewal notice from the sweep once per term, then the lapse at the end of the grace, back to the tier held before', () => {
    const member = new Member(hybrid, 'carol');
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 10_000));
    member.ok(fee('f1', '2026-03-02T10:00:00Z'));
    expect(member.sweep('2027-01-30T12:00:00Z').outcomes.filter((outcome) => outcome.kind === 'paid_membership')).toEqual([]);
    // 30 days before the term end; a tier review on 1 January kept Silver (below 500 points, held by the plan).
    const notice = member.sweep('2027-02-01T12:00:00Z');
    expect(member.outcomesOf('paid_membership', notice)).toMatchObject([{ action: 'renewal_due', termEndsAtMs: ms('2027-03-02T10:00:00Z') }]);
    expect(member.tier).toBe('silver');
    expect(member.sweep('2027-02-02T12:00:00Z').outcomes.filter((outcome) => outcome.kind === 'paid_membership')).toEqual([]);
    // In the grace days the plan still holds.
    member.sweep('2027-03-10T12:00:00Z');
    expect(member.state!.paid!.status).toBe('active');
    const lapse = member.sweep('2027-03-20T12:00:00Z');
    expect(member.outcomesOf('paid_membership', lapse)).toMatchObject([{ action: 'lapsed', occurredAtMs: ms('2027-03-16T10:00:00Z') }]);
    expect(member.outcomesOf('tier', lapse)).toMatchObject([{ fromTierId: 'silver', toTierId: 'member', direction: 'down', reason: 'paid membership Premium (yearly) lapsed' }]);
    expect(member.state!.paid).toMatchObject({ status: 'lapsed', endedAtMs: ms('2027-03-16T10:00:00Z') });
    // The multiplier is gone; a new fee joins again (a new membership).
    const after = member.ok(purchase('p2', '2027-03-21T10:00:00Z', 10_000));
    expect(after.ledger.some((entry) => entry.ruleId.startsWith('earn:paid:'))).toBe(false);
    const again = member.ok(fee('f2', '2027-03-22T10:00:00Z'));
    expect(member.outcomesOf('paid_membership', again)).toMatchObject([{ action: 'joined' }]);
    expect(member.state!.paid).toMatchObject({ sinceMs: ms('2027-03-22T10:00:00Z'), fees: 2, feesMinor: 7998 });
  });

  it('a renewal in the grace days continues the membership without a gap; the tier floor holds through a review', () => {
    const member = new Member(hybrid, 'dan');
    member.ok(fee('f1', '2026-03-02T10:00:00Z'));
    const renewed = member.ok(fee('f2', '2027-03-10T10:00:00Z'));
    expect(member.outcomesOf('paid_membership', renewed)).toMatchObject([{ action: 'renewed', termEndsAtMs: ms('2028-03-02T10:00:00Z') }]);
    expect(member.state!.paid).toMatchObject({ status: 'active', sinceMs: ms('2026-03-02T10:00:00Z'), termStartMs: ms('2027-03-02T10:00:00Z') });
    expect(member.outcomesOf('tier')).toHaveLength(1); // the join; never a downgrade
    expect(member.tier).toBe('silver');
  });

  it('switching plans starts the new term now; cancel ends at once; each monthly term issues its voucher', () => {
    const member = new Member(hybrid, 'erin');
    member.ok(fee('f1', '2026-03-02T10:00:00Z'));
    const switched = member.ok(fee('f2', '2026-04-02T10:00:00Z', 'premium-monthly'));
    expect(member.outcomesOf('paid_membership', switched)).toMatchObject([
      { action: 'switched', planId: 'premium-monthly', fromPlanId: 'premium-yearly', termEndsAtMs: ms('2026-05-02T10:00:00Z') },
    ]);
    expect(member.outcomesOf('tier', switched)).toEqual([]); // both plans hold Silver
    member.ok(fee('f3', '2026-05-01T10:00:00Z', 'premium-monthly'));
    expect(member.state!.vouchers.filter((voucher) => voucher.benefitId === 'premium-coffee')).toHaveLength(2);
    const cancelled = member.ok({ id: 'c1', type: 'membership_cancel', occurredAt: '2026-05-10T10:00:00Z' });
    expect(member.outcomesOf('paid_membership', cancelled)).toMatchObject([{ action: 'cancelled', planId: 'premium-monthly' }]);
    expect(member.outcomesOf('tier', cancelled)).toMatchObject([{ toTierId: 'member', reason: 'paid membership Premium (monthly) cancelled' }]);
    member.rejected({ id: 'c2', type: 'membership_cancel', occurredAt: '2026-05-11T10:00:00Z' }, 'PAID_MEMBERSHIP_NOT_ACTIVE');
  });

  it('a member above the plan tier keeps their own tier; unenroll cancels the plan', () => {
    const member = new Member(hybrid, 'fay');
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 250_000)); // 2500 qualifying: Gold
    expect(member.tier).toBe('gold');
    const joined = member.ok(fee('f1', '2026-03-02T10:00:00Z'));
    expect(member.outcomesOf('tier', joined)).toEqual([]);
    expect(member.state!.paid!.baseTierId).toBeNull();
    const left = member.ok({ id: 'u1', type: 'unenroll', occurredAt: '2026-03-03T10:00:00Z' });
    expect(left.outcomes.map((outcome) => outcome.kind)).toEqual(['tier', 'membership', 'paid_membership', 'balance']);
    expect(member.outcomesOf('paid_membership', left)).toMatchObject([{ action: 'cancelled' }]);
  });

  it('the program file names every bad plan reference', () => {
    const result = programSchema.safeParse({
      ...makeProgram(),
      paidMemberships: [
        { id: 'plus', name: 'Plus', feeMinor: 100, termMonths: 1, tierId: 'platinum' },
        { id: 'plus', name: 'Plus again', feeMinor: 100, termMonths: 0 },
      ],
      benefits: [{ id: 'b', name: 'B', trigger: { kind: 'paid_term_started', planId: 'nope' }, issue: { kind: 'custom', validDays: 1 } }],
    });
    expect(result.success).toBe(false);
    const paths = result.error!.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    expect(paths).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^paidMemberships\.1\.termMonths: /),
        'paidMemberships.1.id: duplicate id plus',
        'paidMemberships.0.tierId: unknown tier platinum',
        'benefits.0.trigger.planId: unknown paid membership plan nope',
      ]),
    );
  });
});

describe('paid membership and tier reviews in time order', () => {
  it('a lapse before a period end drops the tier at the lapse; a review before the lapse keeps the plan tier', () => {
    // Seen long after: the plan lapsed on 9 April 2025, the year's review came on 1 January 2026.
    const late = new Member(hybrid, 'gil');
    late.ok(purchase('p1', '2025-03-05T10:00:00Z', 2_000));
    late.ok(fee('f1', '2025-03-06T10:00:00Z', 'premium-monthly'));
    const swept = late.sweep('2026-12-01T10:00:00Z');
    expect(late.outcomesOf('tier', swept)).toMatchObject([{ toTierId: 'member', occurredAtMs: ms('2025-04-09T10:00:00Z'), reason: 'paid membership Premium (monthly) lapsed' }]);
    expect(late.outcomesOf('paid_membership', swept)).toMatchObject([{ action: 'lapsed' }]);
  });
});
