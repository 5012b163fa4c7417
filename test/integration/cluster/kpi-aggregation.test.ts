import { Kvm } from '@nats-io/kv';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reportProgramInfo } from '../../../src/api/report-reader.js';
import {
  HEADER_KPI_BYTES,
  HEADER_KPI_CHUNK,
  instancesInBucket,
  kpiReportSource,
  kpiScatterSubject,
  KpiAggregationError,
  KpiAggregator,
  KpiResponder,
  registerKpiHolder,
  type KpiAggregate,
  type KpiAggregatorOptions,
  type KpiResponderOptions,
} from '../../../src/cluster/kpi-aggregation.js';
import { assignPartitions } from '../../../src/cluster/rendezvous.js';
import { HEADER_INSTANCE } from '../../../src/cluster/wallet-routing.js';
import { applyEvent, createMemoryBudgets, globalBudgetLimits, programSchema, validateEvent, type MemberState, type Program } from '../../../src/domain/index.js';
import { addKpis, DAY_MS, emptyDay, mergeDay, monthKeyOf, weekKeyOf, type DayCounters, type KpiTarget } from '../../../src/reports/kpis.js';
import { buildProgramReport, buildReport, type ReportProgramInfo, type ReportSource } from '../../../src/reports/report.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { sleep } from '../../helpers/engine-process.js';
import { prng } from '../../helpers/kill-loop.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * KPI counters summed across instances against a real nats-server: each
 * instance (its own connection) answers <prefix>.svc.kpis.scatter with its
 * own counters; the aggregator sums them and says whether every expected
 * instance answered. Checked against mergeDay done locally over the same
 * counters, and against the reports built from them; then the counters of a
 * real event stream whose partitions move mid-week between instances (active
 * members and purchasers of a week summed across instances count each member
 * once); a missing and a slow instance; ranges and replies refused; and the
 * time of a year's aggregate over three instances.
 */

let server: TestNatsServer;
let client: NatsConnection;
let run = 0;
const connections: NatsConnection[] = [];
const responders: KpiResponder[] = [];
/** Failures a responder could not answer with: none expected. */
const responderErrors: unknown[] = [];

beforeAll(async () => {
  server = await startTestNatsServer();
  client = await connectTest(server.url, { name: 'kpi-aggregator' });
});

afterAll(async () => {
  for (const responder of responders) await responder.stop();
  expect(responderErrors).toEqual([]);
  for (const connection of [client, ...connections]) await connection?.close();
  await server?.stop();
});

function nextPrefix(): string {
  run += 1;
  return `ka${run}`;
}

async function responder(id: string, prefix: string, source: ReportSource | (() => ReportSource | Promise<ReportSource>), extra: Partial<KpiResponderOptions> = {}): Promise<KpiResponder> {
  const nc = await connectTest(server.url, { name: id });
  connections.push(nc);
  const read = typeof source === 'function' ? source : () => source;
  const one = new KpiResponder(nc, { instanceId: id, subjectPrefix: prefix, read, onError: (error) => responderErrors.push(error), ...extra });
  await one.start();
  responders.push(one);
  return one;
}

function aggregator(prefix: string, expected: KpiAggregatorOptions['expected'], extra: Partial<KpiAggregatorOptions> = {}): KpiAggregator {
  return new KpiAggregator(client, { subjectPrefix: prefix, expected, ...extra });
}

// ---- counters as an instance's store holds them ----

/** A busy program's day: two currencies, four tiers, five promotions, two paid plans, three causes, six badges. */
function someDay(next: () => number): DayCounters {
  const int = (max: number) => Math.floor(next() * max);
  const signed = (max: number) => int(2 * max + 1) - max;
  const day = emptyDay();
  for (const currency of ['points', 'miles']) {
    day.currencies[currency] = {
      issued: int(2_000_000),
      redeemed: int(800_000),
      expired: int(100_000),
      adjusted: signed(5_000),
      clawedBack: int(20_000),
      liabilityDelta: signed(1_000_000),
      redemptions: int(3_000),
    };
  }
  day.enrollments = int(500);
  day.upgrades = int(80);
  day.downgrades = int(40);
  for (const tier of ['member', 'silver', 'gold', 'platinum']) day.tierDelta[tier] = signed(60);
  day.activeMembers = int(20_000);
  for (let index = 1; index <= 5; index++) day.promotions[`promo-${index}`] = { points: int(300_000), uses: int(4_000) };
  day.orders = int(30_000);
  day.revenueMinor = int(300_000_000);
  day.redeemedOrders = int(3_000);
  day.redeemedRevenueMinor = int(30_000_000);
  day.returns = int(1_000);
  day.returnedMinor = int(5_000_000);
  day.purchasersDay = int(15_000);
  day.purchasersWeek = int(5_000);
  day.purchasersMonth = int(2_000);
  day.repeatPurchasersDay = int(3_000);
  day.repeatPurchasersWeek = int(2_000);
  day.repeatPurchasersMonth = int(1_000);
  day.unenrollments = int(50);
  day.unenrolledInactive = int(20);
  day.lapsed = signed(300);
  day.reactivated = int(100);
  day.inactiveDelta = signed(300);
  for (const plan of ['plus', 'premium']) {
    day.paid[plan] = { joined: int(50), renewed: int(200), switched: int(5), lapsed: int(10), cancelled: int(5), membersDelta: signed(50), feesMinor: int(1_000_000) };
  }
  for (const cause of ['trees', 'water', 'school']) day.donations[cause] = { points: int(50_000), donations: int(200) };
  for (let index = 1; index <= 6; index++) day.badges[`badge-${index}`] = int(100);
  return day;
}

/** An instance's counters over days [firstDay, lastDay], with the week and month active members of those days. */
function instanceSource(seed: number, firstDay: number, lastDay: number): ReportSource {
  const next = prng(seed);
  const days = new Map<number, DayCounters>();
  const weeks = new Map<number, number>();
  const months = new Map<number, number>();
  for (let day = firstDay; day <= lastDay; day++) {
    days.set(day, someDay(next));
    const week = weekKeyOf(day * DAY_MS, 0);
    const month = monthKeyOf(day * DAY_MS, 0);
    weeks.set(week, (weeks.get(week) ?? 0) + Math.floor(next() * 10_000));
    months.set(month, (months.get(month) ?? 0) + Math.floor(next() * 10_000));
  }
  return { days, weeks, months };
}

/** The local truth: every instance's counters summed with mergeDay (as one store sums its actors'). */
function mergedLocally(sources: readonly ReportSource[]): ReportSource {
  const days = new Map<number, DayCounters>();
  const weeks = new Map<number, number>();
  const months = new Map<number, number>();
  for (const source of sources) {
    for (const [day, counters] of source.days) days.set(day, mergeDay(days.get(day) ?? emptyDay(), counters));
    for (const [week, active] of source.weeks) weeks.set(week, (weeks.get(week) ?? 0) + active);
    for (const [month, active] of source.months) months.set(month, (months.get(month) ?? 0) + active);
  }
  return { days, weeks, months };
}

/** What the aggregate of [fromDay, toDay] must hold, from the local truth. */
function expectedAggregate(truth: ReportSource, fromDay: number, toDay: number) {
  const before = emptyDay();
  const days = new Map<number, DayCounters>();
  for (const [day, counters] of [...truth.days].sort((a, b) => a[0] - b[0])) {
    if (day < fromDay) mergeDay(before, counters);
    else if (day <= toDay) days.set(day, counters);
  }
  const firstWeek = weekKeyOf(fromDay * DAY_MS, 0);
  const [firstMonth, lastMonth] = [monthKeyOf(fromDay * DAY_MS, 0), monthKeyOf(toDay * DAY_MS, 0)];
  return {
    days,
    before,
    weeks: new Map([...truth.weeks].filter(([week]) => week >= firstWeek && week <= toDay).sort((a, b) => a[0] - b[0])),
    months: new Map([...truth.months].filter(([month]) => month >= firstMonth && month <= lastMonth).sort((a, b) => a[0] - b[0])),
  };
}

function expectSums(aggregate: KpiAggregate, truth: ReportSource): void {
  const wanted = expectedAggregate(truth, aggregate.fromDay, aggregate.toDay);
  expect(aggregate.days).toEqual(wanted.days);
  expect(aggregate.before).toEqual(wanted.before);
  expect(aggregate.weeks).toEqual(wanted.weeks);
  expect(aggregate.months).toEqual(wanted.months);
}

const info: ReportProgramInfo = {
  utcOffsetMinutes: 0,
  pointValues: new Map([
    ['points', { minor: 1, perPoints: 100 }],
    ['miles', { minor: 3, perPoints: 200 }],
  ]),
  promotionBudgets: new Map([['promo-1', { points: 100_000_000 }]]),
  causeCurrencies: new Map([
    ['trees', 'points'],
    ['water', 'points'],
    ['school', 'miles'],
  ]),
};

const D0 = Date.UTC(2025, 0, 1) / DAY_MS; // Wednesday 1 January 2025

function percentile(sorted: readonly number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

async function rejection(promise: Promise<unknown>): Promise<KpiAggregationError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(KpiAggregationError);
    return error as KpiAggregationError;
  }
  throw new Error('expected the aggregate to be refused');
}

describe('KPI counters aggregated across instances', () => {
  it('three instances with overlapping days: the aggregate is their mergeDay sum exactly, and so are the reports built from it', async () => {
    const prefix = nextPrefix();
    // a: January-July, b: April-October, c: June-December: up to three instances hold a day.
    const sources = { 'engine-a': instanceSource(1, D0, D0 + 200), 'engine-b': instanceSource(2, D0 + 90, D0 + 300), 'engine-c': instanceSource(3, D0 + 150, D0 + 364) };
    const truth = mergedLocally(Object.values(sources));
    // The expected set from a heartbeat bucket like ownership's (TTL'd keys of the live instances).
    const heartbeats = await new Kvm(client).create(`${prefix}-instances`, { ttl: 30_000, history: 1 });
    for (const [id, source] of Object.entries(sources)) {
      await responder(id, prefix, source);
      await heartbeats.put(id, JSON.stringify({ instanceId: id }));
    }
    const kpis = aggregator(prefix, () => instancesInBucket(heartbeats));

    // Starting mid-data (day 120 holds a and b): the days before it come summed in `before`.
    const aggregate = await kpis.aggregate({ fromDay: D0 + 120, toDay: D0 + 340 });
    expect(aggregate).toMatchObject({ complete: true, expected: ['engine-a', 'engine-b', 'engine-c'], answered: ['engine-a', 'engine-b', 'engine-c'], missing: [], failed: [], unexpected: [] });
    expectSums(aggregate, truth);
    expect(aggregate.days.size).toBe(221);
    expect(aggregate.before.enrollments).toBe([...truth.days].filter(([day]) => day < D0 + 120).reduce((sum, [, day]) => sum + day.enrollments, 0));

    // The reports from the aggregate equal those from the local sum over all history, per day, week and month.
    const fromMs = (D0 + 120) * DAY_MS;
    const toMs = (D0 + 341) * DAY_MS;
    for (const period of ['day', 'week', 'month'] as const) {
      const reports = await kpis.reports(info, period, fromMs, toMs);
      expect(reports.aggregate.complete).toBe(true);
      expect(reports.kpis).toEqual(buildReport(truth, info, period, fromMs, toMs));
      expect(reports.programKpis).toEqual(buildProgramReport(truth, info, period, fromMs, toMs));
      expect(reports.kpis.length).toBeGreaterThan(0);
    }
    // At another UTC offset the day range follows the report's (dayRangeOf), and still matches.
    const east = { ...info, utcOffsetMinutes: 120 };
    const eastReports = await kpis.reports(east, 'week', fromMs - 2 * 3_600_000, toMs - 2 * 3_600_000);
    expect(eastReports.kpis).toEqual(buildReport(truth, east, 'week', fromMs - 2 * 3_600_000, toMs - 2 * 3_600_000));
    expect(kpiReportSource(aggregate).days.get(D0 + 119)).toBe(aggregate.before);

    // The whole year in 16 KiB chunks: the same sums.
    const chunkedPrefix = nextPrefix();
    for (const [id, source] of Object.entries(sources)) await responder(id, chunkedPrefix, source, { chunkBytes: 16 * 1024 });
    const chunked = await aggregator(chunkedPrefix, () => Object.keys(sources)).aggregate({ fromDay: D0, toDay: D0 + 364 });
    expect(chunked.complete).toBe(true);
    expectSums(chunked, truth);
    expect(Math.min(...chunked.replyBytes.values())).toBeGreaterThan(16 * 1024 * 10);
  }, 30_000);

  it('partitions moving mid-week between instances: active members and purchasers summed across instances count each member once', async () => {
    // Real events through the domain and addKpis, as the actors do; each event counted on the
    // instance owning its member's partition that day, with the member's state moving with the partition.
    const program: Program = programSchema.parse({
      id: 'moving-program',
      name: 'Moving program',
      currency: 'EUR',
      currencies: [{ id: 'points', value: { minor: 1, perPoints: 1 } }],
      earn: { points: 1, perAmountMinor: 100, rounding: 'floor' },
      tiers: [
        { id: 'member', name: 'Member', qualifyingPointsMin: 0 },
        { id: 'silver', name: 'Silver', qualifyingPointsMin: 500 },
      ],
      reports: { inactiveAfterDays: 10 },
    });
    const tierRank = new Map(program.tiers.map((tier, index) => [tier.id, index]));
    const budgets = createMemoryBudgets(globalBudgetLimits(program));
    const single = new Counters(); // one instance doing it all: the truth
    const perInstance = new Map(['engine-a', 'engine-b', 'engine-c'].map((id) => [id, new Counters()]));
    const states = new Map<string, MemberState>();
    // Live sets over 6 weeks from Monday 3 March 2025: c joins on a Thursday, b leaves on a Wednesday.
    const start = Date.UTC(2025, 2, 3);
    const liveOn = (dayIndex: number) => (dayIndex < 10 ? ['engine-a', 'engine-b'] : dayIndex < 23 ? ['engine-a', 'engine-b', 'engine-c'] : ['engine-a', 'engine-c']);
    const next = prng(42);
    const members = Array.from({ length: 80 }, (_, index) => `m-${index}`);
    let moved = 0;
    /** The truth of active members: distinct member ids per week and month. */
    const activeIn = { weeks: new Map<number, Set<string>>(), months: new Map<number, Set<string>>() };
    /** (week, member, instance) triples: a member seen by two instances in one week appears twice. */
    const seenOn = new Set<string>();
    for (let dayIndex = 0; dayIndex < 42; dayIndex++) {
      const owners = assignPartitions(64, liveOn(dayIndex));
      for (let event = 0; event < 40; event++) {
        const memberId = members[Math.floor(next() * members.length)]!;
        const atMs = start + dayIndex * DAY_MS + 8 * 3_600_000 + event * 60_000;
        const validation = validateEvent({ memberId, id: `e-${dayIndex}-${event}`, type: 'purchase', occurredAt: new Date(atMs).toISOString(), amountMinor: 1_000 + Math.floor(next() * 20_000), currency: 'EUR' });
        if (!validation.ok) throw new Error(validation.reason);
        const before = states.get(memberId);
        const decision = applyEvent(before, validation.event, validation.occurredAtMs, program, { budgets });
        states.set(memberId, decision.state!);
        const input = { before, after: decision.state!, ledger: decision.ledger, tierRank, atMs, utcOffsetMinutes: 0 };
        addKpis(single, input);
        const owner = owners.get(partitionOf(memberId, 64))!;
        if (dayIndex > 0 && assignPartitions(64, liveOn(dayIndex - 1)).get(partitionOf(memberId, 64)) !== owner) moved += 1;
        addKpis(perInstance.get(owner)!, input);
        for (const [map, key] of [[activeIn.weeks, weekKeyOf(atMs, 0)], [activeIn.months, monthKeyOf(atMs, 0)]] as const) {
          if (!map.has(key)) map.set(key, new Set());
          map.get(key)!.add(memberId);
          if (map === activeIn.weeks) seenOn.add(`${key}\u0000${memberId}\u0000${owner}`);
        }
      }
    }
    expect(moved).toBeGreaterThan(0); // members were active on both sides of a move
    const distinctWeekMembers = [...activeIn.weeks.values()].reduce((sum, ids) => sum + ids.size, 0);
    expect(seenOn.size).toBeGreaterThan(distinctWeekMembers); // some were seen by two instances in one week

    const prefix = nextPrefix();
    const handles = new Map<string, KpiResponder>();
    for (const [id, counters] of perInstance) handles.set(id, await responder(id, prefix, counters));
    // b left on day 23, and its heartbeat with it; its counters stay on its disk (here it still answers).
    const holders = await new Kvm(client).create(`${prefix}-holders`, { history: 1 });
    for (const id of perInstance.keys()) await registerKpiHolder(holders, id);
    await registerKpiHolder(holders, 'engine-a'); // idempotent
    const kpis = aggregator(prefix, () => instancesInBucket(holders));
    const fromDay = start / DAY_MS;
    const aggregate = await kpis.aggregate({ fromDay, toDay: fromDay + 41 });
    expect(aggregate).toMatchObject({ complete: true, answered: ['engine-a', 'engine-b', 'engine-c'], missing: [] });
    expectSums(aggregate, single);
    // Each week's and month's active members: the distinct members with a purchase in it, not one per instance they were seen on.
    expect(aggregate.weeks).toEqual(new Map([...activeIn.weeks].map(([week, ids]) => [week, ids.size])));
    expect(aggregate.months).toEqual(new Map([...activeIn.months].map(([month, ids]) => [month, ids.size])));
    const purchasersWeek = new Map<number, number>();
    for (const [day, counters] of aggregate.days) purchasersWeek.set(weekKeyOf(day * DAY_MS, 0), (purchasersWeek.get(weekKeyOf(day * DAY_MS, 0)) ?? 0) + counters.purchasersWeek);
    expect(purchasersWeek).toEqual(new Map([...activeIn.weeks].map(([week, ids]) => [week, ids.size])));
    // Each instance's own week counts add up to the distinct members, though some were seen by two instances in one week.
    const seenPerInstance = [...perInstance.values()].reduce((sum, counters) => sum + [...counters.weeks.values()].reduce((a, b) => a + b, 0), 0);
    expect(seenPerInstance).toBe([...activeIn.weeks.values()].reduce((sum, ids) => sum + ids.size, 0));
    const [fromMs, toMs] = [start, start + 42 * DAY_MS];
    const programInfo = reportProgramInfo(program);
    for (const period of ['week', 'month'] as const) {
      const reports = await kpis.reports(programInfo, period, fromMs, toMs);
      expect(reports.programKpis).toEqual(buildProgramReport(single, programInfo, period, fromMs, toMs));
      expect(reports.kpis).toEqual(buildReport(single, programInfo, period, fromMs, toMs));
    }

    // b gone for good: the holders still name it, so the aggregate says it is partial; the live set would not.
    await handles.get('engine-b')!.stop();
    const partial = await aggregator(prefix, () => instancesInBucket(holders), { timeoutMs: 300 }).aggregate({ fromDay, toDay: fromDay + 41 });
    expect(partial).toMatchObject({ complete: false, answered: ['engine-a', 'engine-c'], missing: ['engine-b'] });
    const live = await aggregator(prefix, () => liveOn(41)).aggregate({ fromDay, toDay: fromDay + 41 });
    expect(live.complete).toBe(true); // "complete" against the live set…
    expect([...live.weeks.values()].reduce((a, b) => a + b, 0)).toBeLessThan([...single.weeks.values()].reduce((a, b) => a + b, 0)); // …and short of b's members
  }, 30_000);

  it('an instance that does not answer is named missing after the timeout; a slow one too, and its late reply is dropped', async () => {
    const prefix = nextPrefix();
    const a = instanceSource(11, D0, D0 + 60);
    const b = instanceSource(12, D0 + 30, D0 + 90);
    const slowSource = instanceSource(13, D0, D0 + 90);
    await responder('engine-a', prefix, a);
    await responder('engine-b', prefix, b);
    let slowAnswered = false;
    await responder('engine-slow', prefix, () => sleep(1_200).then(() => ((slowAnswered = true), slowSource)));
    const timeoutMs = 400;
    // engine-c is expected but not running at all; engine-slow answers after 1.2 s.
    const kpis = aggregator(prefix, () => ['engine-a', 'engine-b', 'engine-c', 'engine-slow'], { timeoutMs });
    const startedAt = performance.now();
    const aggregate = await kpis.aggregate({ fromDay: D0 + 10, toDay: D0 + 80 });
    const elapsedMs = performance.now() - startedAt;
    expect(aggregate).toMatchObject({ complete: false, answered: ['engine-a', 'engine-b'], missing: ['engine-c', 'engine-slow'], failed: [] });
    expect(elapsedMs).toBeGreaterThanOrEqual(timeoutMs - 5);
    expect(elapsedMs).toBeLessThan(timeoutMs + 500);
    expectSums(aggregate, mergedLocally([a, b])); // what came is summed exactly, and nothing else
    await sleep(1_000);
    expect(slowAnswered).toBe(true); // its reply went to an inbox nobody listens to any more
    process.stdout.write(`[kpi aggregation] 2 of 4 expected instances answered: complete false after ${Math.round(elapsedMs)} ms (timeoutMs ${timeoutMs}), missing ${aggregate.missing.join(', ')}\n`);

    // Every expected instance answered: no wait for the timeout.
    const quick = aggregator(prefix, () => ['engine-a', 'engine-b'], { timeoutMs: 5_000 });
    const quickStartedAt = performance.now();
    const all = await quick.aggregate({ fromDay: D0 + 10, toDay: D0 + 80 });
    expect(all.complete).toBe(true);
    expect(performance.now() - quickStartedAt).toBeLessThan(1_000);

    // Nobody subscribed at all: the server says so at once (no responders), every expected instance missing.
    const empty = aggregator(nextPrefix(), () => ['engine-x', 'engine-y'], { timeoutMs: 5_000 });
    const emptyStartedAt = performance.now();
    const none = await empty.aggregate({ fromDay: D0, toDay: D0 + 10 });
    expect(none).toMatchObject({ complete: false, answered: [], missing: ['engine-x', 'engine-y'] });
    expect(none.days.size).toBe(0);
    expect(performance.now() - emptyStartedAt).toBeLessThan(1_000);
  }, 30_000);

  it('an answer from an instance not expected is merged and named; an empty expected set is never complete', async () => {
    const prefix = nextPrefix();
    const a = instanceSource(21, D0, D0 + 20);
    const b = instanceSource(22, D0, D0 + 20);
    await responder('engine-a', prefix, a);
    await responder('engine-b', prefix, b);
    const aggregate = await aggregator(prefix, () => ['engine-a'], { timeoutMs: 300 }).aggregate({ fromDay: D0, toDay: D0 + 20 });
    // Returned once engine-a answered: engine-b's reply, sent at the same time, may or may not be in.
    expect(aggregate.complete).toBe(true);
    expect(aggregate.answered).toContain('engine-a');
    const withB = await aggregator(prefix, () => ['engine-a', 'engine-b', 'engine-z'], { timeoutMs: 300 }).aggregate({ fromDay: D0, toDay: D0 + 20 });
    expect(withB).toMatchObject({ complete: false, answered: ['engine-a', 'engine-b'], missing: ['engine-z'] });
    const unexpected = await aggregator(prefix, () => [], { timeoutMs: 300 }).aggregate({ fromDay: D0, toDay: D0 + 20 });
    expect(unexpected).toMatchObject({ complete: false, answered: ['engine-a', 'engine-b'], unexpected: ['engine-a', 'engine-b'], missing: [] });
    expectSums(unexpected, mergedLocally([a, b]));
  }, 30_000);

  it('with counters per partition: complete only when every partition is covered by exactly one reply', async () => {
    const prefix = nextPrefix();
    const a = instanceSource(31, D0, D0 + 10);
    const b = instanceSource(32, D0, D0 + 10);
    const range = (from: number, to: number) => Array.from({ length: to - from }, (_, index) => from + index);
    let aCovers = range(0, 32);
    let bCovers = range(32, 64);
    await responder('engine-a', prefix, () => ({ ...a, partitions: aCovers }));
    await responder('engine-b', prefix, () => ({ ...b, partitions: bCovers }));
    const ask = () => aggregator(prefix, () => ['engine-a', 'engine-b'], { timeoutMs: 1_000, partitions: 64 }).aggregate({ fromDay: D0, toDay: D0 + 10 });
    const whole = await ask();
    expect(whole).toMatchObject({ complete: true, uncovered: [], overlapping: [] });
    expectSums(whole, mergedLocally([a, b]));
    // Partition 31 between owners (released by a, not yet restored by b): covered by nobody.
    aCovers = range(0, 31);
    expect(await ask()).toMatchObject({ complete: false, uncovered: [31], overlapping: [], missing: [], failed: [] });
    // Counted by both (what fencing prevents; a reader that reported a released partition's stale copy would do it).
    aCovers = range(0, 33);
    expect(await ask()).toMatchObject({ complete: false, uncovered: [], overlapping: [32] });
    // A reply naming a partition out of range is refused whole.
    bCovers = [...range(33, 64), 64];
    const refused = await ask();
    expect(refused.complete).toBe(false);
    expect(refused.failed).toMatchObject([{ instanceId: 'engine-b', code: 'INVALID_REPLY' }]);
    // Without the option the partitions named are not checked (a single instance's reply names none).
    bCovers = range(33, 64);
    const unchecked = await aggregator(prefix, () => ['engine-a', 'engine-b'], { timeoutMs: 1_000 }).aggregate({ fromDay: D0, toDay: D0 + 10 });
    expect(unchecked).toMatchObject({ complete: true, uncovered: [], overlapping: [] });
  }, 30_000);

  it('refuses a range too large (before sending, and at the instance), a reply too large, a malformed request and a malformed reply, with codes', async () => {
    const prefix = nextPrefix();
    const source = instanceSource(31, D0, D0 + 400);
    await responder('engine-a', prefix, source, { rangeDaysMax: 366 });
    await responder('engine-b', prefix, source, { rangeDaysMax: 366 });
    const seen: string[] = [];
    const spy = client.subscribe(kpiScatterSubject(prefix), { callback: (_, message) => void seen.push(message.string()) });
    await client.flush();
    try {
      // The aggregator's own bound: refused before anything is sent.
      const tooLarge = await rejection(aggregator(prefix, () => ['engine-a'], { rangeDaysMax: 366 }).aggregate({ fromDay: D0, toDay: D0 + 366 }));
      expect([tooLarge.code, tooLarge.status]).toEqual(['RANGE_TOO_LARGE', 413]);
      expect(tooLarge.message).toBe('367 days requested, at most 366 in one request: ask for a shorter range');
      const backwards = await rejection(aggregator(prefix, () => ['engine-a']).aggregate({ fromDay: D0 + 1, toDay: D0 }));
      expect(backwards.code).toBe('VALIDATION_FAILED');
      await rejection(aggregator(prefix, () => ['engine-a']).aggregate({ fromDay: 1.5, toDay: 3 }));
      await client.flush();
      expect(seen).toEqual([]);

      // An aggregator allowing more than the instances do: each refuses with a code, the aggregate fails them (at once, not at the timeout).
      const startedAt = performance.now();
      const refused = await aggregator(prefix, () => ['engine-a', 'engine-b'], { timeoutMs: 5_000 }).aggregate({ fromDay: D0, toDay: D0 + 399 });
      expect(performance.now() - startedAt).toBeLessThan(1_000);
      expect(refused).toMatchObject({ complete: false, answered: [], missing: [] });
      expect(refused.failed).toEqual(['engine-a', 'engine-b'].map((instanceId) => ({ instanceId, code: 'RANGE_TOO_LARGE', message: '400 days requested, at most 366 in one request: ask for a shorter range' })));
      expect(refused.days.size).toBe(0);

      // The instance's answer on the wire: the service error headers and a body with the code.
      const raw = await client.request(kpiScatterSubject(prefix), JSON.stringify({ fromDay: D0, toDay: D0 + 366 }), { timeout: 2_000 });
      expect(raw.headers?.get('Nats-Service-Error-Code')).toBe('413');
      expect(raw.headers?.get('Loyalty-Error-Code')).toBe('RANGE_TOO_LARGE');
      expect(raw.json<{ error: { code: string } }>().error.code).toBe('RANGE_TOO_LARGE');
      const malformed = await client.request(kpiScatterSubject(prefix), '{"from": 1}', { timeout: 2_000 });
      expect(malformed.headers?.get('Loyalty-Error-Code')).toBe('VALIDATION_FAILED');
      const huge = await client.request(kpiScatterSubject(prefix), JSON.stringify({ fromDay: D0, toDay: D0, padding: 'x'.repeat(2_000) }), { timeout: 2_000 });
      expect(huge.headers?.get('Loyalty-Error-Code')).toBe('VALIDATION_FAILED');
    } finally {
      spy.unsubscribe();
    }

    // Counters too large for replyBytesMax: refused by the instance with a code, not sent in a thousand chunks.
    const smallPrefix = nextPrefix();
    await responder('engine-small', smallPrefix, source, { replyBytesMax: 64 * 1024 });
    const small = await aggregator(smallPrefix, () => ['engine-small']).aggregate({ fromDay: D0, toDay: D0 + 300 });
    expect(small.failed).toMatchObject([{ instanceId: 'engine-small', code: 'REPLY_TOO_LARGE' }]);
    expect(small.failed[0]!.message).toMatch(/^the counters of days \d+\.\.\d+ are \d+ bytes, over 65536: ask for a shorter range$/);
    // A read that fails, and reads beyond readsInFlightMax: coded answers, not silence.
    const failingPrefix = nextPrefix();
    await responder('engine-broken', failingPrefix, () => {
      throw new Error('the store is closed');
    });
    let release: () => void = () => {};
    const gate = new Promise<void>((resolveGate) => (release = resolveGate));
    await responder('engine-busy', failingPrefix, () => gate.then(() => source), { readsInFlightMax: 1 });
    const busyKpis = aggregator(failingPrefix, () => ['engine-broken', 'engine-busy'], { timeoutMs: 3_000 });
    const first = busyKpis.aggregate({ fromDay: D0, toDay: D0 + 10 }); // holds engine-busy's one read
    await sleep(100);
    const second = await busyKpis.aggregate({ fromDay: D0, toDay: D0 + 10 });
    expect(second.failed).toEqual([
      { instanceId: 'engine-broken', code: 'INTERNAL_ERROR', message: 'the store is closed' },
      { instanceId: 'engine-busy', code: 'OVERLOADED', message: 'instance engine-busy has 1 KPI reads in flight' },
    ]);
    release();
    const firstDone = await first;
    expect(firstDone).toMatchObject({ complete: false, answered: ['engine-busy'], failed: [{ instanceId: 'engine-broken', code: 'INTERNAL_ERROR' }] });
    expectSums(firstDone, source);

    // The aggregator's bound on what it accepts from one instance.
    const boundPrefix = nextPrefix();
    await responder('engine-big', boundPrefix, source);
    const bounded = await aggregator(boundPrefix, () => ['engine-big'], { replyBytesMax: 64 * 1024 }).aggregate({ fromDay: D0, toDay: D0 + 300 });
    expect(bounded.failed).toMatchObject([{ instanceId: 'engine-big', code: 'INVALID_REPLY' }]);
    expect(bounded.days.size).toBe(0);

    // A reply that is not whole or not counters: refused whole, the others still summed.
    const badPrefix = nextPrefix();
    const good = instanceSource(32, D0, D0 + 5);
    await responder('engine-good', badPrefix, good);
    const fakeNc = await connectTest(server.url, { name: 'engine-fake' });
    connections.push(fakeNc);
    fakeNc.subscribe(kpiScatterSubject(badPrefix), {
      callback: (_, message) => {
        const { fromDay, toDay } = message.json<{ fromDay: number; toDay: number }>();
        const send = (id: string, body: unknown, chunk = '0/1') => {
          const bytes = new TextEncoder().encode(JSON.stringify(body));
          const headers = natsHeaders();
          headers.set(HEADER_INSTANCE, id);
          headers.set(HEADER_KPI_CHUNK, chunk);
          headers.set(HEADER_KPI_BYTES, String(bytes.length));
          message.respond(bytes, { headers });
        };
        const day = emptyDay();
        send('engine-nan', { instanceId: 'engine-nan', fromDay, toDay, days: [[fromDay, { ...day, enrollments: 'many' }]], before: emptyDay(), weeks: [], months: [] });
        send('engine-outside', { instanceId: 'engine-outside', fromDay, toDay, days: [[toDay + 1, day]], before: emptyDay(), weeks: [], months: [] });
        send('engine-cut', { instanceId: 'engine-cut', fromDay, toDay, days: [], before: emptyDay(), weeks: [], months: [] }, '0/2'); // the second chunk never comes
      },
    });
    await fakeNc.flush();
    const mixed = await aggregator(badPrefix, () => ['engine-good', 'engine-nan', 'engine-outside', 'engine-cut'], { timeoutMs: 400 }).aggregate({ fromDay: D0, toDay: D0 + 5 });
    expect(mixed).toMatchObject({ complete: false, answered: ['engine-good'], missing: ['engine-cut'] });
    expect(mixed.failed.map((failure) => [failure.instanceId, failure.code])).toEqual([
      ['engine-nan', 'INVALID_REPLY'],
      ['engine-outside', 'INVALID_REPLY'],
    ]);
    expectSums(mixed, good);
  }, 30_000);

  it('measures a year over three instances', async () => {
    const prefix = nextPrefix();
    const year = [instanceSource(41, D0, D0 + 365), instanceSource(42, D0, D0 + 365), instanceSource(43, D0, D0 + 365)];
    const ids = ['engine-a', 'engine-b', 'engine-c'];
    for (const [index, id] of ids.entries()) await responder(id, prefix, year[index]!);
    const chunkedPrefix = nextPrefix();
    for (const [index, id] of ids.entries()) await responder(id, chunkedPrefix, year[index]!, { chunkBytes: 64 * 1024 });
    const truth = mergedLocally(year);
    const range = { fromDay: D0, toDay: D0 + 365 };
    const measure = async (kpis: KpiAggregator, runs: number) => {
      for (let warm = 0; warm < 5; warm++) await kpis.aggregate(range);
      const times: number[] = [];
      let last: KpiAggregate | undefined;
      for (let index = 0; index < runs; index++) {
        last = await kpis.aggregate(range);
        expect(last.complete).toBe(true);
        times.push(last.elapsedMs);
        await sleep(20); // a report is occasional; leave the shared cores some air
      }
      expectSums(last!, truth);
      times.sort((a, b) => a - b);
      return { times, last: last! };
    };
    const whole = await measure(aggregator(prefix, () => ids), 30);
    const chunked = await measure(aggregator(chunkedPrefix, () => ids), 30);
    // Where the time goes: an instance's encoding (three of them here in this one process; on their own
    // machines in a cluster, in parallel), and the aggregator's decoding and summing.
    const encodeStartedAt = performance.now();
    const encoded = year.map((source) => JSON.stringify({ days: [...source.days], weeks: [...source.weeks], months: [...source.months] }));
    const encodeMs = (performance.now() - encodeStartedAt) / 3;
    const decodeStartedAt = performance.now();
    mergedLocally(encoded.map((text) => {
      const body = JSON.parse(text) as { days: [number, DayCounters][]; weeks: [number, number][]; months: [number, number][] };
      return { days: new Map(body.days), weeks: new Map(body.weeks), months: new Map(body.months) };
    }));
    const decodeMergeMs = performance.now() - decodeStartedAt;
    const bytes = [...whole.last.replyBytes.values()];
    const reportStartedAt = performance.now();
    const reports = await aggregator(prefix, () => ids).reports(info, 'month', D0 * DAY_MS, (D0 + 366) * DAY_MS);
    const reportMs = performance.now() - reportStartedAt;
    expect(reports.kpis).toEqual(buildReport(truth, info, 'month', D0 * DAY_MS, (D0 + 366) * DAY_MS));
    const chunks = (size: number, chunkBytes: number) => Math.ceil(size / chunkBytes);
    process.stdout.write(
      `[kpi aggregation] 3 instances × 366 days (2 currencies, 5 promotions, 2 plans, 3 causes, 6 badges a day): reply ${Math.round(Math.min(...bytes) / 1024)}-${Math.round(Math.max(...bytes) / 1024)} KiB per instance ` +
        `(${Math.round(Math.max(...bytes) / 366)} bytes a day); 512 KiB chunks (${chunks(Math.max(...bytes), 512 * 1024)} per instance): median ${percentile(whole.times, 0.5).toFixed(1)} ms, p99 ${percentile(whole.times, 0.99).toFixed(1)} ms, ` +
        `max ${whole.times.at(-1)!.toFixed(1)} ms; 64 KiB chunks (${chunks(Math.max(...bytes), 64 * 1024)} per instance): median ${percentile(chunked.times, 0.5).toFixed(1)} ms, p99 ${percentile(chunked.times, 0.99).toFixed(1)} ms; ` +
        `a month report from it ${reportMs.toFixed(1)} ms (${whole.times.length} runs each); of which encoding one instance's reply ~${encodeMs.toFixed(1)} ms, decoding and summing the three ~${decodeMergeMs.toFixed(1)} ms\n`,
    );
  }, 60_000);
});

class Counters implements KpiTarget, ReportSource {
  readonly days = new Map<number, DayCounters>();
  readonly weeks = new Map<number, number>();
  readonly months = new Map<number, number>();
  day(key: number): DayCounters {
    if (!this.days.has(key)) this.days.set(key, emptyDay());
    return this.days.get(key)!;
  }
  week(key: number) {
    return period(this.weeks, key);
  }
  month(key: number) {
    return period(this.months, key);
  }
}

function period(map: Map<number, number>, key: number): { activeMembers: number } {
  return {
    get activeMembers() {
      return map.get(key) ?? 0;
    },
    set activeMembers(value: number) {
      map.set(key, value);
    },
  };
}
