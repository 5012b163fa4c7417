import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reportProgramInfo } from '../../src/api/report-reader.js';
import { instancesInBucket, KpiAggregator } from '../../src/cluster/kpi-aggregation.js';
import { parseProgramText } from '../../src/config/program-file.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { startEngineProcess, tempDataDir, type EngineProcess } from '../helpers/engine-process.js';

/**
 * GET /v1/reports/kpis against figures computed by hand. A small program (1 point per euro, no pending, no
 * expiry, tiers member/silver at 100 qualifying points, a promotion with a global budget, one reward), a
 * scenario on two days sent through the HTTP API (each event waited for, so the order is the order below
 * even across the two actor threads), then the report per day and per month, as JSON and CSV.
 */

const PROGRAM = `
id: kpi-test
name: KPI test
currency: EUR
utcOffsetMinutes: 60            # days are counted at UTC+01:00
currencies:
  - id: points
    value: { minor: 1, perPoints: 1 }   # 1 point = 1 cent
earn: { points: 1, perAmountMinor: 100, rounding: floor }
tiers:
  - { id: member, name: Member, qualifyingPointsMin: 0 }
  - { id: silver, name: Silver, qualifyingPointsMin: 100 }
redemption:
  rewards:
    - { id: mug, name: Mug, points: 30 }
promotions:
  - id: launch
    name: 20 points per order in October, 50 points in all
    startsAt: "2026-10-01T00:00:00+01:00"
    endsAt: "2026-11-01T00:00:00+01:00"
    award: { kind: bonus, points: 20 }
    budget:
      global: { points: 50 }
`;

const TOKEN = 'admin-token-0123456789';

/*
 * The scenario, and what each event does (D1 = 5 October 2026, D2 = 6 October, at +01:00):
 *
 *  #  local time    member  event                                   issued  redeemed  adjusted  launch budget left
 *  1  D1 10:00      alice   purchase 50.00 EUR, enrolls              50+20      -          -      30
 *  2  D1 12:00      bob     purchase 30.00 EUR, enrolls              30+20      -          -      10
 *  3  D1 15:00      alice   redeems the mug (30)                       -        30         -
 *  4  D1 16:00      bob     operator credit 15                         -         -        +15
 *  5  D1 17:00      bob     redeems the mug at 25: REWARD_PRICE_MISMATCH, changes nothing
 *  6  D2 00:30      carol   purchase 45.00 EUR at 23:30Z on D1 (= D2 at +01:00), enrolls   45+10 (the rest)   0
 *  7  D2 11:00      alice   purchase 40.00 EUR: 40 (budget gone); qualifying 70+40 = 110 ≥ 100 → Silver
 *  8  D2 12:00      dave    enrolls (operator endpoint)
 *  9  D2 13:00      bob     operator debit 5                           -         -         -5
 *
 * Balances (spendable = liability, nothing pending): alice 70-30+40 = 80, bob 50+15-5 = 60, carol 55, dave 0.
 *
 * D1: issued 70+50 = 120; redeemed 30; adjusted +15; liability 120-30+15 = 105 points = 105 cents;
 *     active 2 (alice, bob: purchases; bob's credit is no member activity); enrollments 2; redemptions 1
 *     (the refused one does not count); rate 30/120 = 0.25; tiers member 2; upgrades 0; launch 40 points / 2 uses.
 * D2: issued 55+40 = 95; redeemed 0; adjusted -5; liability 105+95-5 = 195 = 195 cents; active 3 (carol, alice,
 *     dave; bob's debit is not activity); enrollments 2 (carol, dave); redemptions 0; rate 0;
 *     tiers member 3 (bob, carol, dave), silver 1 (alice); upgrades 1; launch 10 points / 1 use.
 * 7 Oct: nothing happened: zeros, liability 195 and the tiers carried over.
 * October: issued 215; redeemed 30; adjusted +10; liability 195; active 4 distinct members (alice counts once);
 *     enrollments 4; redemptions 1; rate 30/215; tiers member 3, silver 1; upgrades 1; launch 50 points / 3 uses,
 *     which is the whole global budget of 50.
 */
interface Row {
  period: string;
  currency: string;
  pointsIssued: number;
  pointsRedeemed: number;
  pointsExpired: number;
  pointsAdjusted: number;
  pointsClawedBack: number;
  liabilityPoints: number;
  liabilityMinor: number;
  activeMembers: number;
  enrollments: number;
  redemptions: number;
  redemptionRate: number;
  breakageRate: number;
  breakageRateLifetime: number;
  liabilityNetPoints: number;
  liabilityNetMinor: number;
  tierDistribution: Record<string, number>;
  tierMovements: { upgrades: number; downgrades: number };
  promotions: { promotionId: string; points: number; uses: number; budgetPoints?: number }[];
}
const LAUNCH = { promotionId: 'launch', budgetPoints: 50 };
/** Nothing expires in this program: no breakage, and the liability net of it is the liability. */
type RowBeforeBreakage = Omit<Row, 'breakageRate' | 'breakageRateLifetime' | 'liabilityNetPoints' | 'liabilityNetMinor'>;
const withBreakage = (row: RowBeforeBreakage): Row => ({
  ...row,
  breakageRate: 0,
  breakageRateLifetime: 0,
  liabilityNetPoints: row.liabilityPoints,
  liabilityNetMinor: row.liabilityMinor,
});
const EXPECTED_DAYS: Row[] = (<RowBeforeBreakage[]>[
  {
    period: '2026-10-05',
    currency: 'points',
    pointsIssued: 120,
    pointsRedeemed: 30,
    pointsExpired: 0,
    pointsAdjusted: 15,
    pointsClawedBack: 0,
    liabilityPoints: 105,
    liabilityMinor: 105,
    activeMembers: 2,
    enrollments: 2,
    redemptions: 1,
    redemptionRate: 0.25,
    tierDistribution: { member: 2 },
    tierMovements: { upgrades: 0, downgrades: 0 },
    promotions: [{ ...LAUNCH, points: 40, uses: 2 }],
  },
  {
    period: '2026-10-06',
    currency: 'points',
    pointsIssued: 95,
    pointsRedeemed: 0,
    pointsExpired: 0,
    pointsAdjusted: -5,
    pointsClawedBack: 0,
    liabilityPoints: 195,
    liabilityMinor: 195,
    activeMembers: 3,
    enrollments: 2,
    redemptions: 0,
    redemptionRate: 0,
    tierDistribution: { member: 3, silver: 1 },
    tierMovements: { upgrades: 1, downgrades: 0 },
    promotions: [{ ...LAUNCH, points: 10, uses: 1 }],
  },
  {
    period: '2026-10-07',
    currency: 'points',
    pointsIssued: 0,
    pointsRedeemed: 0,
    pointsExpired: 0,
    pointsAdjusted: 0,
    pointsClawedBack: 0,
    liabilityPoints: 195,
    liabilityMinor: 195,
    activeMembers: 0,
    enrollments: 0,
    redemptions: 0,
    redemptionRate: 0,
    tierDistribution: { member: 3, silver: 1 },
    tierMovements: { upgrades: 0, downgrades: 0 },
    promotions: [],
  },
]).map(withBreakage);
const EXPECTED_OCTOBER: Row = withBreakage({
  period: '2026-10-01',
  currency: 'points',
  pointsIssued: 215,
  pointsRedeemed: 30,
  pointsExpired: 0,
  pointsAdjusted: 10,
  pointsClawedBack: 0,
  liabilityPoints: 195,
  liabilityMinor: 195,
  activeMembers: 4,
  enrollments: 4,
  redemptions: 1,
  redemptionRate: 30 / 215,
  tierDistribution: { member: 3, silver: 1 },
  tierMovements: { upgrades: 1, downgrades: 0 },
  promotions: [{ ...LAUNCH, points: 50, uses: 3 }],
});

describe('KPI report against a hand-computed scenario', () => {
  let server: TestNatsServer;
  let engine: EngineProcess;
  let data: { path: string; remove(): void };
  let base = '';

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    return { status: response.status, text, headers: response.headers, json: text.startsWith('{') ? JSON.parse(text) : undefined };
  };
  /** Sends a write, waits for its outcome, and checks the result. */
  const send = async (path: string, body: unknown, result: 'applied' | 'rejected' = 'applied') => {
    const reply = await call('POST', `${path}?wait=true`, body);
    expect(reply.status, reply.text).toBe(200);
    expect(reply.json.result, reply.text).toBe(result);
    return reply.json;
  };
  const purchase = (id: string, memberId: string, amountMinor: number, occurredAt: string) =>
    send('/v1/events', { id, memberId, type: 'purchase', occurredAt, amountMinor, currency: 'EUR' });
  const kpis = async (query: string) => {
    const reply = await call('GET', `/v1/reports/kpis?${query}`);
    expect(reply.status, reply.text).toBe(200);
    return reply.json;
  };

  beforeAll(async () => {
    server = await startTestNatsServer();
    data = tempDataDir('loyalty-reports-');
    const programFile = join(data.path, 'kpi-program.yaml');
    writeFileSync(programFile, PROGRAM);
    engine = await startEngineProcess({
      natsUrl: server.url,
      dataDir: data.path,
      programFile,
      env: { LOYALTY_API_TOKENS: `admin:${TOKEN}`, LOYALTY_ACTORS: '2', LOYALTY_INSTANCE_ID: 'reports-engine' },
    });
    base = `http://127.0.0.1:${engine.httpPort}`;

    // D1
    const first = await purchase('k-a1', 'alice', 5_000, '2026-10-05T10:00:00+01:00');
    expect(first.outcomes).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'balance', delta: 70, spendable: 70 })]));
    await purchase('k-b1', 'bob', 3_000, '2026-10-05T12:00:00+01:00');
    await send('/v1/events', { id: 'k-a-mug', memberId: 'alice', type: 'redemption', occurredAt: '2026-10-05T15:00:00+01:00', rewardId: 'mug', points: 30, currency: 'points' });
    await send('/v1/members/bob/adjustments', { direction: 'credit', points: 15, reason: 'late delivery', occurredAt: '2026-10-05T16:00:00+01:00' });
    const refused = await send('/v1/members/bob/redemptions', { rewardId: 'mug', points: 25, occurredAt: '2026-10-05T17:00:00+01:00' }, 'rejected');
    expect(refused.rejection.code).toBe('REWARD_PRICE_MISMATCH');
    // D2
    const carol = await purchase('k-c1', 'carol', 4_500, '2026-10-05T23:30:00Z');
    expect(carol.outcomes).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'balance', delta: 55 })]));
    const silver = await purchase('k-a2', 'alice', 4_000, '2026-10-06T11:00:00+01:00');
    expect(silver.outcomes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'tier', fromTierId: 'member', toTierId: 'silver', direction: 'up' }),
        expect.objectContaining({ kind: 'balance', delta: 40, spendable: 80, qualifying: 110 }),
      ]),
    );
    await send('/v1/members/dave/enroll', { occurredAt: '2026-10-06T12:00:00+01:00' });
    await send('/v1/members/bob/adjustments', { direction: 'debit', points: 5, reason: 'correction', occurredAt: '2026-10-06T13:00:00+01:00' });
  });

  afterAll(async () => {
    if (engine !== undefined) expect(await engine.stop()).toBe(0);
    await server?.stop();
    data?.remove();
  });

  it('the wallets agree with the hand computation', async () => {
    for (const [memberId, spendable, tier] of [
      ['alice', 80, 'silver'],
      ['bob', 60, 'member'],
      ['carol', 55, 'member'],
      ['dave', 0, 'member'],
    ] as const) {
      const wallet = (await call('GET', `/v1/members/${memberId}/wallet`)).json;
      expect(wallet.currencies[0], memberId).toMatchObject({ currency: 'points', spendable, pending: 0 });
      expect(wallet.tier.id, memberId).toBe(tier);
    }
  });

  it('per day (JSON): every figure as computed by hand', async () => {
    const report = await kpis('period=day&from=2026-10-05T00:00:00%2B01:00&to=2026-10-08T00:00:00%2B01:00&format=json');
    expect(report).toMatchObject({ period: 'day', from: '2026-10-04T23:00:00.000Z', to: '2026-10-07T23:00:00.000Z' });
    expect(report.rows).toEqual(EXPECTED_DAYS);
    // A day alone reads the same figures (running totals from before the range included).
    expect((await kpis('period=day&from=2026-10-06T00:00:00%2B01:00&to=2026-10-07T00:00:00%2B01:00')).rows).toEqual([EXPECTED_DAYS[1]]);
  });

  it('registers as a KPI holder and answers the KPI scatter over NATS as LOYALTY_INSTANCE_ID: an aggregator\'s day and month reports are the HTTP ones, complete', async () => {
    const nc = await connectTest(server.url);
    try {
      // The engine registered itself as a KPI holder at start: the expected set comes from the bucket.
      const holders = await new Kvm(nc).open('LOYALTY_KPI_HOLDERS');
      expect(await instancesInBucket(holders)).toEqual(['reports-engine']);
      expect((await holders.status()).ttl).toBe(0);
      const aggregator = new KpiAggregator(nc, { expected: () => instancesInBucket(holders), timeoutMs: 5_000 });
      const info = reportProgramInfo(parseProgramText(PROGRAM));
      const days = await aggregator.reports(info, 'day', Date.parse('2026-10-05T00:00:00+01:00'), Date.parse('2026-10-08T00:00:00+01:00'));
      expect(days.aggregate).toMatchObject({ complete: true, expected: ['reports-engine'], answered: ['reports-engine'], missing: [], failed: [], unexpected: [] });
      expect(JSON.parse(JSON.stringify(days.kpis))).toEqual(EXPECTED_DAYS);
      const month = await aggregator.reports(info, 'month', Date.parse('2026-10-01T00:00:00+01:00'), Date.parse('2026-11-01T00:00:00+01:00'));
      expect(JSON.parse(JSON.stringify(month.kpis))).toEqual([EXPECTED_OCTOBER]);
      // An instance expected but not running: the report says so instead of under-counting.
      const partial = await new KpiAggregator(nc, { expected: () => ['reports-engine', 'gone'], timeoutMs: 300 }).aggregate({ fromDay: 20_000, toDay: 20_400 });
      expect(partial).toMatchObject({ complete: false, answered: ['reports-engine'], missing: ['gone'] });
    } finally {
      await nc.close();
    }
  });

  it('per month (JSON): October as computed by hand', async () => {
    const report = await kpis('period=month&from=2026-10-01T00:00:00%2B01:00&to=2026-11-01T00:00:00%2B01:00');
    expect(report.rows).toEqual([EXPECTED_OCTOBER]);
    expect(report.rows[0].redemptionRate).toBeCloseTo(0.1395, 4);
  });

  it('CSV: the same figures, one column per tier and one for promotions', async () => {
    const expectedCsv = (rows: readonly Row[]) =>
      [
        'period,currency,pointsIssued,pointsRedeemed,pointsExpired,pointsAdjusted,pointsClawedBack,liabilityPoints,liabilityMinor,activeMembers,enrollments,redemptions,redemptionRate,breakageRate,breakageRateLifetime,liabilityNetPoints,liabilityNetMinor,tierUpgrades,tierDowngrades,tier:member,tier:silver,promotions',
        ...rows.map((row) =>
          [
            row.period,
            row.currency,
            row.pointsIssued,
            row.pointsRedeemed,
            row.pointsExpired,
            row.pointsAdjusted,
            row.pointsClawedBack,
            row.liabilityPoints,
            row.liabilityMinor,
            row.activeMembers,
            row.enrollments,
            row.redemptions,
            row.redemptionRate,
            row.breakageRate,
            row.breakageRateLifetime,
            row.liabilityNetPoints,
            row.liabilityNetMinor,
            row.tierMovements.upgrades,
            row.tierMovements.downgrades,
            row.tierDistribution.member ?? 0,
            row.tierDistribution.silver ?? 0,
            row.promotions.map((promotion) => `${promotion.promotionId}=${promotion.points}/${promotion.uses}`).join(';'),
          ].join(','),
        ),
      ].join('\n');
    const days = await call('GET', '/v1/reports/kpis?period=day&from=2026-10-05T00:00:00%2B01:00&to=2026-10-08T00:00:00%2B01:00', undefined, { accept: 'text/csv' });
    expect(days.status).toBe(200);
    expect(days.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(days.text.trim().split(/\r?\n/).join('\n')).toBe(expectedCsv(EXPECTED_DAYS));
    expect(days.text).toContain('\n2026-10-05,points,120,30,0,15,0,105,105,2,2,1,0.25,0,0,105,105,0,0,2,0,launch=40/2');

    const month = await call('GET', '/v1/reports/kpis?period=month&from=2026-10-01T00:00:00%2B01:00&to=2026-11-01T00:00:00%2B01:00&format=csv');
    expect(month.text.trim().split(/\r?\n/).join('\n')).toBe(expectedCsv([EXPECTED_OCTOBER]));
  });

  // Once a bug, now fixed (src/reports/kpis.ts addKpis): a member whose FIRST event already lifts them to a higher tier (here a
  // new member's first purchase of 150 EUR, 150 ≥ 100 → Silver; the engine publishes a `tier` outcome
  // member → silver, direction up) is counted as an enrollment into silver, but never as an upgrade: the
  // `before === undefined` branch adds the enrollment and the tier count, and the upgrade/downgrade branch is
  // only reached for members that existed before. Tier upgrades then disagree with the tier outcomes.
  // Fix: for a new member, count an upgrade when after.tierId ranks above the program's first tier.
  it('counts a new member whose first purchase reaches Silver as a tier upgrade', async () => {
    const erin = await purchase('k-e1', 'erin', 15_000, '2026-10-20T10:00:00+01:00');
    expect(erin.outcomes).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'tier', toTierId: 'silver', direction: 'up' })]));
    const day = await kpis('period=day&from=2026-10-20T00:00:00%2B01:00&to=2026-10-21T00:00:00%2B01:00');
    expect(day.rows).toEqual([
      expect.objectContaining({
        period: '2026-10-20',
        pointsIssued: 150, // the launch budget is spent
        enrollments: 1,
        tierDistribution: { member: 3, silver: 2 },
        tierMovements: { upgrades: 1, downgrades: 0 },
      }),
    ]);
  });

  // Once a bug, now fixed (src/api/routes/reports.ts with src/api/schema.ts instantMs): `from`/`to` given as dates are read as
  // midnight UTC, but periods are days/months at the program's offset (+01:00 here). to=2026-10-07 is then
  // 2026-10-07T01:00 at the program's offset, so the report adds a row for 7 October (whole-day counters although
  // only its first hour is before `to`); to=2026-11-01 adds a November row, whose activeMembers counts the whole
  // month. A negative offset would shift `from` into the previous day the same way. Expected: a date means the
  // start of that day at the program's offset, so from=2026-10-05&to=2026-10-07 gives exactly 5 and 6 October.
  it('reads date-only from/to as days at the program offset (no extra period at the end)', async () => {
    const days = await kpis('period=day&from=2026-10-05&to=2026-10-07');
    expect(days.rows.map((row: { period: string }) => row.period)).toEqual(['2026-10-05', '2026-10-06']);
    const months = await kpis('period=month&from=2026-10-01&to=2026-11-01');
    expect(months.rows.map((row: { period: string }) => row.period)).toEqual(['2026-10-01']);
  });
});
