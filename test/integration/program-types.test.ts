import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Msg, NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { PROJECT_ROOT, publishAll, startEngineProcess, tempDataDir, waitFor, waitForAckFloor, type EngineProcess } from '../helpers/engine-process.js';

/**
 * Issue 16 through NATS and the actors: the hybrid sample program (paid memberships, donations, badges, digests,
 * churn horizon) with events published on loyalty.tx.<member>, outcomes read on loyalty.outcome.>, the wallet and
 * the program KPIs read over HTTP. The sample's points do not expire here (so the scheduled sweep, which runs at
 * wall time while the events come in, cannot take points a later event of the scenario spends).
 *
 * The KPI scenario, March 2025 at the program's UTC+01:00:
 *   3 Mar  ka  purchase 600.00 of books → 600 points, Silver, badges first-order and big-spender
 *   4 Mar  ka  redeems reward-5 (500) for order ka-o2, then buys it: 40.00 → 40 + 10 (Silver): an order with points
 *   5 Mar  kb  purchase 20.00 → 20 points, badge first-order
 *   6 Mar  kb  Premium (monthly) fee 4.99 → Silver, a coffee voucher; term to 6 Apr, grace to 9 Apr: lapsed by the sweep
 *   7 Mar  ka  donates 100 points to literacy → badge giver
 *   8 Mar  kb  refund of 10.00 of kb-1 (10 points back; a refund is no member activity)
 *  10 Mar  kc  enrolls; 11 Mar kc unenrolls
 * March: 3 orders, 66,000 revenue (AOV 22,000; with points 1 at 4,000; without 2 at 31,000), 1 return (1,000; rate 1/3),
 *   3 active members (frequency 1), 2 purchasers of whom ka repeats (0.5), 2 members, 3 enrollments, 1 unenrollment
 *   = 1 churned, Premium (monthly) joined 1 (4.99), literacy 100 points, badges first-order 2, big-spender 1, giver 1.
 *   Points: issued 650 + 20 = 670, liability ka 50 + kb 10 = 60, net of the expected 20 % breakage 48.
 * April: the plan lapsed on 9 April (members 0). September: both members pass the 180-day horizon (kb on 2 Sep,
 *   180 days after the fee; ka on 3 Sep, after the donation): 2 lapsed, 2 inactive, churn 2 of 2.
 * Beside it, two members whose plans the sweep handles at wall time: one lapsed long ago, one ending within 30 days.
 */

const TOKEN = 'admin-token-0123456789abcdef';
const DAY_MS = 86_400_000;
const encoder = new TextEncoder();
const event = (body: Record<string, unknown>) => ({ subject: `loyalty.tx.${body.memberId as string}`, payload: encoder.encode(JSON.stringify(body)) });
const at = (local: string) => `${local}+01:00`;
const fee = (id: string, memberId: string, occurredAt: string, planId: string) =>
  event({ id, memberId, type: 'membership_fee', occurredAt, planId, amountMinor: planId === 'premium-yearly' ? 3999 : 499, currency: 'EUR' });

describe('paid memberships, donations, badges, digests and program KPIs through NATS', () => {
  let server: TestNatsServer;
  let nc: NatsConnection;
  let engine: EngineProcess;
  let data: { path: string; remove(): void };
  let base = '';
  const messages: Msg[] = [];
  const outcomes = (memberId: string) => messages.map((message) => message.json<Record<string, unknown>>()).filter((outcome) => outcome.memberId === memberId);
  const subjects = (memberId: string) => messages.filter((message) => message.subject.endsWith(`.${memberId}`)).map((message) => message.subject);
  const get = async (path: string, accept = 'application/json') => {
    const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}`, accept } });
    const text = await response.text();
    expect(response.status, text).toBe(200);
    return text;
  };

  beforeAll(async () => {
    server = await startTestNatsServer();
    nc = await connectTest(server.url);
    nc.subscribe('loyalty.outcome.>', {
      callback: (_error, message) => {
        messages.push(message);
      },
    });
    await nc.flush();
    data = tempDataDir('loyalty-program-types-');
    const program = parseYaml(readFileSync(join(PROJECT_ROOT, 'config/programs/hybrid.yaml'), 'utf8')) as { currencies: Record<string, unknown>[] };
    program.currencies[0]!.expiry = { kind: 'none' };
    delete program.currencies[0]!.expiringSoonDays;
    const programFile = join(data.path, 'hybrid.yaml');
    writeFileSync(programFile, stringifyYaml(program));
    engine = await startEngineProcess({
      natsUrl: server.url,
      dataDir: data.path,
      programFile,
      env: { LOYALTY_API_TOKENS: `admin:${TOKEN}`, LOYALTY_ACTORS: '2', LOYALTY_SWEEP_INTERVAL_MS: '500' },
    });
    base = `http://127.0.0.1:${engine.httpPort}`;
    const now = Date.now();
    const book = (amountMinor: number) => [{ sku: 'BOOK-1', category: 'books', quantity: 1, unitPriceMinor: amountMinor }];
    const last = await publishAll(nc, [
      event({ id: 'ka-1', memberId: 'ka', type: 'purchase', occurredAt: at('2025-03-03T10:00:00'), amountMinor: 60_000, currency: 'EUR', items: book(60_000) }),
      event({ id: 'ka-r', memberId: 'ka', type: 'redemption', occurredAt: at('2025-03-04T10:00:00'), rewardId: 'reward-5', points: 500, currency: 'points', orderId: 'ka-o2' }),
      event({ id: 'ka-2', memberId: 'ka', type: 'purchase', occurredAt: at('2025-03-04T10:05:00'), amountMinor: 4_000, currency: 'EUR', orderId: 'ka-o2' }),
      event({ id: 'kb-1', memberId: 'kb', type: 'purchase', occurredAt: at('2025-03-05T10:00:00'), amountMinor: 2_000, currency: 'EUR' }),
      fee('kb-fee', 'kb', at('2025-03-06T10:00:00'), 'premium-monthly'),
      event({ id: 'ka-d', memberId: 'ka', type: 'donation', occurredAt: at('2025-03-07T10:00:00'), causeId: 'literacy', points: 100, currency: 'points' }),
      event({ id: 'ka-d2', memberId: 'ka', type: 'donation', occurredAt: at('2025-03-07T11:00:00'), causeId: 'whales', points: 100, currency: 'points' }),
      event({ id: 'kb-ret', memberId: 'kb', type: 'return', occurredAt: at('2025-03-08T10:00:00'), orderId: 'kb-1', amountMinor: 1_000 }),
      event({ id: 'kc-in', memberId: 'kc', type: 'enroll', occurredAt: at('2025-03-10T10:00:00') }),
      event({ id: 'kc-out', memberId: 'kc', type: 'unenroll', occurredAt: at('2025-03-11T10:00:00') }),
      fee('old-fee', 'pm-old', new Date(now - 400 * DAY_MS).toISOString(), 'premium-yearly'),
      fee('due-fee', 'pm-due', new Date(now - 350 * DAY_MS).toISOString(), 'premium-yearly'),
    ]);
    await waitForAckFloor(nc, last, 30_000);
    // What the sweep does at wall time: kb's and pm-old's plans lapse, pm-due is told to renew, and every active member gets a digest.
    await waitFor(
      () =>
        outcomes('kb').some((outcome) => outcome.kind === 'paid_membership' && outcome.action === 'lapsed') &&
        outcomes('pm-old').some((outcome) => outcome.kind === 'paid_membership' && outcome.action === 'lapsed') &&
        outcomes('pm-due').some((outcome) => outcome.kind === 'paid_membership' && outcome.action === 'renewal_due') &&
        ['ka', 'kb', 'pm-old', 'pm-due'].every((memberId) => outcomes(memberId).some((outcome) => outcome.kind === 'balance_digest')),
      30_000,
      'the sweep: lapses, a renewal notice, digests',
    );
  }, 120_000);

  afterAll(async () => {
    if (engine !== undefined) expect(await engine.stop()).toBe(0);
    await nc?.close();
    await server?.stop();
    data?.remove();
  });

  it('publishes the outcomes of each program type on loyalty.outcome.<kind>.<member>', () => {
    const ka = outcomes('ka');
    expect(ka.filter((outcome) => outcome.kind === 'badge').map((outcome) => outcome.badgeId)).toEqual(['first-order', 'big-spender', 'giver']);
    expect(ka.find((outcome) => outcome.kind === 'donation')).toMatchObject({ eventId: 'ka-d', causeId: 'literacy', currency: 'points', points: 100 });
    expect(ka.find((outcome) => outcome.eventId === 'ka-d2')).toMatchObject({ kind: 'rejected', code: 'CAUSE_UNKNOWN' });
    expect(ka.find((outcome) => outcome.kind === 'membership')).toMatchObject({ action: 'enrolled' }); // the welcome mail
    expect(subjects('ka')).toEqual(expect.arrayContaining(['loyalty.outcome.badge.ka', 'loyalty.outcome.donation.ka', 'loyalty.outcome.balance_digest.ka']));

    const kb = outcomes('kb');
    const joined = kb.find((outcome) => outcome.eventId === 'kb-fee' && outcome.kind === 'paid_membership');
    expect(joined).toMatchObject({ planId: 'premium-monthly', action: 'joined', termEndsAtMs: Date.parse(at('2025-04-06T10:00:00')), graceEndsAtMs: Date.parse(at('2025-04-09T10:00:00')) });
    expect(kb.filter((outcome) => outcome.eventId === 'kb-fee').map((outcome) => outcome.kind)).toEqual(['paid_membership', 'tier', 'benefit']);
    const lapsed = kb.find((outcome) => outcome.kind === 'paid_membership' && outcome.action === 'lapsed')!;
    expect(lapsed).toMatchObject({ occurredAtMs: Date.parse(at('2025-04-09T10:00:00')) });
    expect(String(lapsed.eventId)).toMatch(/^sweep:kb:/);
    expect(kb.find((outcome) => outcome.kind === 'tier' && outcome.direction === 'down')).toMatchObject({ toTierId: 'member', reason: 'paid membership Premium (monthly) lapsed' });

    expect(outcomes('pm-due').find((outcome) => outcome.action === 'renewal_due')).toMatchObject({ kind: 'paid_membership', planId: 'premium-yearly' });
    expect(outcomes('pm-due').some((outcome) => outcome.action === 'lapsed')).toBe(false);
    const digest = outcomes('ka').find((outcome) => outcome.kind === 'balance_digest')!;
    expect(digest).toMatchObject({ period: 'month', tierId: 'silver', paidPlanId: null, badges: 3, currencies: [{ currency: 'points', spendable: 50, pending: 0, debt: 0, expiringPoints: 0 }] });
  });

  it('shows badges and the paid membership in the wallet', async () => {
    const ka = JSON.parse(await get('/v1/members/ka/wallet'));
    expect(ka.paidMembership).toBeNull();
    expect(ka.badges.filter((badge: { earnedAt: string | null }) => badge.earnedAt !== null).map((badge: { id: string }) => badge.id)).toEqual(['first-order', 'big-spender', 'giver']);
    expect(ka.badges.find((badge: { id: string }) => badge.id === 'bookworm')).toEqual({ id: 'bookworm', name: 'Bookworm', earnedAt: null, progress: 1, target: 5 });
    expect(ka.currencies[0]).toMatchObject({ spendable: 50 });
    const kb = JSON.parse(await get('/v1/members/kb/wallet'));
    expect(kb.paidMembership).toEqual({
      planId: 'premium-monthly',
      name: 'Premium (monthly)',
      status: 'lapsed',
      since: new Date(Date.parse(at('2025-03-06T10:00:00'))).toISOString(),
      termEndsAt: new Date(Date.parse(at('2025-04-06T10:00:00'))).toISOString(),
      graceEndsAt: new Date(Date.parse(at('2025-04-09T10:00:00'))).toISOString(),
      endedAt: new Date(Date.parse(at('2025-04-09T10:00:00'))).toISOString(),
    });
    const ledger = JSON.parse(await get('/v1/members/ka/ledger?kind=donate'));
    expect(ledger.entries).toMatchObject([{ kind: 'donate', balance: 'spendable', points: -100, ruleId: 'literacy', reference: 'literacy' }]);
  });

  it('reports the program KPIs per month as computed by hand (JSON and CSV)', async () => {
    const report = JSON.parse(await get('/v1/reports/program?period=month&from=2025-03-01&to=2025-10-01'));
    const [march, april, , , , , september] = report.rows;
    expect(march).toEqual({
      period: '2025-03-01',
      orders: 3,
      revenueMinor: 66_000,
      averageOrderMinor: 22_000,
      ordersWithPoints: 1,
      revenueWithPointsMinor: 4_000,
      averageOrderWithPointsMinor: 4_000,
      ordersWithoutPoints: 2,
      revenueWithoutPointsMinor: 62_000,
      averageOrderWithoutPointsMinor: 31_000,
      returns: 1,
      returnedMinor: 1_000,
      returnRate: 1 / 3,
      activeMembers: 3,
      orderFrequency: 1,
      purchasers: 2,
      repeatPurchasers: 1,
      repeatPurchaseRate: 0.5,
      members: 2,
      enrollments: 3,
      unenrollments: 1,
      lapsed: 0,
      reactivated: 0,
      inactiveMembers: 0,
      churned: 1,
      churnRate: 0,
      retentionRate: 0,
      paidMemberships: [{ planId: 'premium-monthly', members: 1, joined: 1, renewed: 0, switched: 0, lapsed: 0, cancelled: 0, feesMinor: 499 }],
      donations: [{ causeId: 'literacy', currency: 'points', points: 100, donations: 1, valueMinor: 100 }],
      badges: { 'big-spender': 1, 'first-order': 2, giver: 1 },
    });
    expect(april).toMatchObject({ period: '2025-04-01', orders: 0, members: 2, paidMemberships: [{ planId: 'premium-monthly', members: 0, lapsed: 1, joined: 0 }] });
    expect(september).toMatchObject({ period: '2025-09-01', members: 2, lapsed: 2, inactiveMembers: 2, churned: 2, churnRate: 1, retentionRate: 0 });

    const csv = (await get('/v1/reports/program?period=month&from=2025-03-01&to=2025-04-01&format=csv')).trim().split(/\r?\n/);
    expect(csv[0]).toBe(
      'period,orders,revenueMinor,averageOrderMinor,ordersWithPoints,revenueWithPointsMinor,averageOrderWithPointsMinor,ordersWithoutPoints,revenueWithoutPointsMinor,averageOrderWithoutPointsMinor,returns,returnedMinor,returnRate,activeMembers,orderFrequency,purchasers,repeatPurchasers,repeatPurchaseRate,members,enrollments,unenrollments,lapsed,reactivated,inactiveMembers,churned,churnRate,retentionRate,paid:premium-monthly:members,paid:premium-monthly:joined,paid:premium-monthly:renewed,paid:premium-monthly:switched,paid:premium-monthly:lapsed,paid:premium-monthly:cancelled,paid:premium-monthly:feesMinor,donated:literacy,badge:big-spender,badge:first-order,badge:giver',
    );
    expect(csv[1]).toBe(`2025-03-01,3,66000,22000,1,4000,4000,2,62000,31000,1,1000,${1 / 3},3,1,2,1,0.5,2,3,1,0,0,0,1,0,0,1,1,0,0,0,0,499,100,1,2,1`);

    const points = JSON.parse(await get('/v1/reports/kpis?period=month&from=2025-03-01&to=2025-04-01'));
    expect(points.rows).toMatchObject([{ currency: 'points', pointsIssued: 670, pointsRedeemed: 500, pointsClawedBack: 10, liabilityPoints: 60, liabilityNetPoints: 48, liabilityNetMinor: 48 }]);
  });
});
