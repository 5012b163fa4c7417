import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiContext } from '../../../src/api/context.js';
import { buildHttpServer } from '../../../src/api/http.js';
import { clusterReportReader, openClusterReports, reportProgramInfo, storeReportReader } from '../../../src/api/report-reader.js';
import { HEADER_REPORT_PARTIAL, kpisCsv, programKpisCsv } from '../../../src/api/routes/reports.js';
import { KpiAggregationError, KpiResponder, registerKpiHolder, type KpiAggregate } from '../../../src/cluster/kpi-aggregation.js';
import { assignPartitions } from '../../../src/cluster/rendezvous.js';
import { parseProgramText } from '../../../src/config/program-file.js';
import { applyEvent, createMemoryBudgets, globalBudgetLimits, validateEvent, type MemberState } from '../../../src/domain/index.js';
import { addKpis, emptyDay, type DayCounters, type KpiTarget } from '../../../src/reports/kpis.js';
import { buildProgramReport, buildReport, type ReportSource } from '../../../src/reports/report.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { prng } from '../../helpers/kill-loop.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';
import { auth, fakeContext, FakeEngine, testSettings } from '../../unit/api/fake-context.js';

/**
 * Cluster mode's HTTP reports (issue 17): two instances, each with its own
 * NATS connection, its KPI responder over the counters it committed and a
 * fastify app with the real routes, wired as src/api/worker.ts wires the API
 * thread (openClusterReports: a KpiAggregator expecting the KPI holders
 * bucket). The counters come from real events through the domain and
 * addKpis, each counted by the instance that owned its member's partition
 * that day: engine-a alone for a week, then engine-b joins and takes about
 * half of the partitions with their members' state. GET /v1/reports/kpis and
 * /v1/reports/program on either instance equal the reports of one instance
 * that counted everything (JSON and CSV, days, weeks, months, a range that
 * starts after the first counters); an instance whose responder answers an
 * error, then one stopped, make the report `complete: false` naming them
 * (200 and the Loyalty-Report-Partial header); nobody answering is 503
 * REPORT_INCOMPLETE; a range over 1,100 days 413 RANGE_TOO_LARGE.
 */

const PROGRAM = `
id: cluster-reports
name: Cluster reports
currency: EUR
utcOffsetMinutes: 60
currencies:
  - id: points
    value: { minor: 1, perPoints: 1 }
earn: { points: 1, perAmountMinor: 100, rounding: floor }
tiers:
  - { id: member, name: Member, qualifyingPointsMin: 0 }
  - { id: silver, name: Silver, qualifyingPointsMin: 300 }
reports: { inactiveAfterDays: 7 }
`;
const program = parseProgramText(PROGRAM);
const info = reportProgramInfo(program);
const PARTITIONS = 64;
const TIMEOUT_MS = 500;
const START_MS = Date.parse('2026-10-01T00:00:00+01:00'); // a Thursday
const DAYS = 24;
const DAY_MS = 86_400_000;

/** Counters as one store keeps them (merged over its actors). */
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

/** Who consumes each partition at the end (both instances live): the partitions each one's responder answers for. */
const FINAL_OWNERS = assignPartitions(PARTITIONS, ['engine-a', 'engine-b']);
const partitionsOf = (id: string) => [...FINAL_OWNERS].filter(([, owner]) => owner === id).map(([partition]) => partition);

/** The events of DAYS days, each counted into its partition's counters (at the partition's owner now) and by `single`, the truth. */
function scenario(): { single: Counters; perInstance: Map<string, Counters>; members: Set<string>; moved: number } {
  const single = new Counters();
  const perInstance = new Map(['engine-a', 'engine-b'].map((id) => [id, new Counters()]));
  const tierRank = new Map(program.tiers.map((tier, index) => [tier.id, index]));
  const budgets = createMemoryBudgets(globalBudgetLimits(program));
  const states = new Map<string, MemberState>();
  const members = new Set<string>();
  const next = prng(17);
  const liveOn = (day: number) => (day < 7 ? ['engine-a'] : ['engine-a', 'engine-b']);
  let moved = 0;
  for (let day = 0; day < DAYS; day++) {
    const owners = assignPartitions(PARTITIONS, liveOn(day));
    for (let index = 0; index < 25; index++) {
      const memberId = `m-${Math.floor(next() * 40)}`;
      const atMs = START_MS + day * DAY_MS + 7 * 3_600_000 + index * 600_000;
      const type = next() < 0.1 && states.has(memberId) ? 'adjustment' : 'purchase';
      const raw =
        type === 'purchase'
          ? { id: `e-${day}-${index}`, memberId, type, occurredAt: new Date(atMs).toISOString(), amountMinor: 500 + Math.floor(next() * 9_000), currency: 'EUR' }
          : { id: `e-${day}-${index}`, memberId, type, occurredAt: new Date(atMs).toISOString(), direction: 'credit', points: 5, currency: 'points', reason: 'goodwill', operator: 'support' };
      const validation = validateEvent(raw);
      if (!validation.ok) throw new Error(validation.reason);
      const before = states.get(memberId);
      const decision = applyEvent(before, validation.event, validation.occurredAtMs, program, { budgets });
      if (decision.state === undefined) continue; // refused: nothing counted
      states.set(memberId, decision.state);
      members.add(memberId);
      const input = { before, after: decision.state, ledger: decision.ledger, tierRank, atMs, utcOffsetMinutes: program.utcOffsetMinutes };
      addKpis(single, input);
      const partition = partitionOf(memberId, PARTITIONS);
      const owner = owners.get(partition)!;
      if (day > 0 && assignPartitions(PARTITIONS, liveOn(day - 1)).get(partition) !== owner) moved += 1;
      // Counted into the partition's counters, which move with it (cluster mode keeps KPIs per partition): they end at the partition's owner now.
      addKpis(perInstance.get(FINAL_OWNERS.get(partition)!)!, input);
    }
  }
  return { single, perInstance, members, moved };
}

interface Instance {
  readonly id: string;
  readonly app: FastifyInstance;
  readonly responder: KpiResponder;
}

let server: TestNatsServer;
const connections: NatsConnection[] = [];
const instances = new Map<string, Instance>();
const extraResponders: KpiResponder[] = [];
const partials: KpiAggregate[] = [];
const responderErrors: unknown[] = [];
const { single, perInstance, members, moved } = scenario();

/** One instance as the API thread wires it in cluster mode: its responder over its own counters, the routes over the aggregator. */
async function startInstance(id: string, counters: Counters): Promise<Instance> {
  const nc = await connectTest(server.url, { name: id });
  connections.push(nc);
  const responder = new KpiResponder(nc, { instanceId: id, read: () => ({ ...counters, partitions: partitionsOf(id) }), onError: (error) => responderErrors.push(error) });
  await responder.start();
  const engine = new FakeEngine();
  engine.program = program;
  const settings = testSettings();
  const api: ApiContext = {
    ...fakeContext(engine, settings),
    reports: storeReportReader({ reportSource: () => counters }, engine),
    clusterReports: await openClusterReports(nc, settings, engine, { timeoutMs: TIMEOUT_MS, onPartial: (aggregate) => partials.push(aggregate) }),
  };
  const app = await buildHttpServer({ host: '127.0.0.1', port: 0, registry: new Registry(), health: () => ({ ok: true, detail: {} }), api });
  const instance = { id, app, responder };
  instances.set(id, instance);
  return instance;
}

async function get(instance: Instance, url: string, accept?: string) {
  const started = performance.now();
  const response = await instance.app.inject({ method: 'GET', url, headers: { ...auth('read'), ...(accept !== undefined ? { accept } : {}) } });
  return { response, ms: performance.now() - started };
}

/** The rows as the HTTP body carries them. */
const asJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

beforeAll(async () => {
  server = await startTestNatsServer();
  const admin = await connectTest(server.url, { name: 'engine-main' });
  connections.push(admin);
  // What each engine's main thread does at start, before its first KPI commit.
  const holders = await new Kvm(admin).create(testSettings().kpiHoldersBucket, { history: 1 });
  for (const id of perInstance.keys()) await registerKpiHolder(holders, id);
  for (const [id, counters] of perInstance) await startInstance(id, counters);
}, 20_000);

afterAll(async () => {
  for (const instance of instances.values()) {
    await instance.responder.stop();
    await instance.app.close();
  }
  for (const responder of extraResponders) await responder.stop();
  for (const nc of connections) await nc.close();
  await server?.stop();
  expect(responderErrors).toEqual([]);
});

describe('HTTP reports across instances (cluster mode)', () => {
  const ranges = [
    { period: 'day', from: '2026-10-01', to: '2026-10-25' },
    // Starts after the first counters: the liability, tiers and members carried in come from the days before (`before`).
    { period: 'day', from: '2026-10-12', to: '2026-10-16' },
    { period: 'week', from: '2026-10-01', to: '2026-10-25' },
    { period: 'month', from: '2026-10-01', to: '2026-11-01' },
  ] as const;
  const msOf = (date: string) => Date.parse(`${date}T00:00:00+01:00`);

  it('the scenario spreads counters over both instances, members moving between them', () => {
    expect(moved).toBeGreaterThan(0);
    for (const counters of perInstance.values()) expect(counters.days.size).toBeGreaterThan(5);
    // Each instance alone is short of the program's figures: a local read would be wrong.
    const local = buildReport(perInstance.get('engine-a')!, info, 'month', msOf('2026-10-01'), msOf('2026-11-01'));
    const truth = buildReport(single, info, 'month', msOf('2026-10-01'), msOf('2026-11-01'));
    expect(local[0]!.pointsIssued).toBeLessThan(truth[0]!.pointsIssued);
    // Every member enrolled in October, each once, though some were counted on both instances that month.
    expect(truth[0]!.enrollments).toBe(members.size);
  });

  it('GET /v1/reports/kpis and /v1/reports/program on either instance equal the reports of one instance that counted everything, JSON and CSV', async () => {
    for (const instance of instances.values()) {
      for (const { period, from, to } of ranges) {
        const [fromMs, toMs] = [msOf(from), msOf(to)];
        const query = `period=${period}&from=${from}&to=${to}`;
        const kpis = (await get(instance, `/v1/reports/kpis?${query}`)).response;
        expect(kpis.statusCode, kpis.body).toBe(200);
        expect(kpis.headers[HEADER_REPORT_PARTIAL.toLowerCase()]).toBeUndefined();
        expect(kpis.json()).toEqual({ period, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), complete: true, rows: asJson(buildReport(single, info, period, fromMs, toMs)) });
        const programReport = (await get(instance, `/v1/reports/program?${query}`)).response;
        expect(programReport.statusCode, programReport.body).toBe(200);
        expect(programReport.json()).toEqual({ period, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), complete: true, rows: asJson(buildProgramReport(single, info, period, fromMs, toMs)) });
        const csv = (await get(instance, `/v1/reports/kpis?${query}`, 'text/csv')).response;
        expect(csv.headers['content-type']).toMatch(/^text\/csv/);
        expect(csv.body).toBe(kpisCsv(buildReport(single, info, period, fromMs, toMs)));
        const programCsv = (await get(instance, `/v1/reports/program?${query}&format=csv`)).response;
        expect(programCsv.body).toBe(programKpisCsv(buildProgramReport(single, info, period, fromMs, toMs)));
      }
    }
    expect(partials).toEqual([]);
  });

  it('a range over 1,100 days is refused before anything is asked: 413 RANGE_TOO_LARGE', async () => {
    const { response } = await get(instances.get('engine-a')!, '/v1/reports/kpis?period=week&from=2020-01-01&to=2026-01-01');
    expect(response.statusCode).toBe(413);
    expect(response.json().error).toMatchObject({ code: 'RANGE_TOO_LARGE', details: { aggregationCode: 'RANGE_TOO_LARGE' } });
    // Within the bound: answered.
    expect((await get(instances.get('engine-a')!, '/v1/reports/program?period=month&from=2024-01-01&to=2026-12-01')).response.statusCode).toBe(200);
  });

  it('an instance that answers an error, then one stopped: 200, complete false naming them, the figures of those that answered; nobody answering: 503', async () => {
    const query = 'period=day&from=2026-10-01&to=2026-10-25';
    const [fromMs, toMs] = [msOf('2026-10-01'), msOf('2026-10-25')];
    // A third KPI holder whose read fails: named in `failed`, at once (no timeout: every expected instance answered).
    const nc = await connectTest(server.url, { name: 'engine-c' });
    connections.push(nc);
    await registerKpiHolder(await new Kvm(nc).open(testSettings().kpiHoldersBucket), 'engine-c');
    const failing = new KpiResponder(nc, { instanceId: 'engine-c', read: () => Promise.reject(new Error('disk gone')), onError: (error) => responderErrors.push(error) });
    await failing.start();
    extraResponders.push(failing);
    const withFailure = await get(instances.get('engine-b')!, `/v1/reports/kpis?${query}`);
    expect(withFailure.response.statusCode).toBe(200);
    expect(withFailure.response.headers[HEADER_REPORT_PARTIAL.toLowerCase()]).toBe('missing=; failed=engine-c');
    expect(withFailure.response.json()).toMatchObject({ complete: false, missing: [], failed: ['engine-c'], rows: asJson(buildReport(single, info, 'day', fromMs, toMs)) });
    expect(withFailure.ms).toBeLessThan(TIMEOUT_MS);
    expect(partials.at(-1)?.failed).toEqual([expect.objectContaining({ instanceId: 'engine-c', code: 'INTERNAL_ERROR', message: 'disk gone' })]);
    await failing.stop();

    // engine-b's responder stopped (its counters unreachable): both instances' reports say so after the timeout,
    // with engine-a's counters only.
    await instances.get('engine-b')!.responder.stop();
    const uncovered = partitionsOf('engine-b');
    const partialHeader = `missing=engine-b,engine-c; failed=; uncovered=${uncovered.join(',')}`;
    for (const instance of instances.values()) {
      const partial = await get(instance, `/v1/reports/kpis?${query}`);
      expect(partial.response.statusCode).toBe(200);
      expect(partial.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
      expect(partial.response.headers[HEADER_REPORT_PARTIAL.toLowerCase()]).toBe(partialHeader);
      expect(partial.response.json()).toEqual({
        period: 'day',
        from: new Date(fromMs).toISOString(),
        to: new Date(toMs).toISOString(),
        complete: false,
        missing: ['engine-b', 'engine-c'],
        failed: [],
        // engine-b's partitions: nobody answered for their counters.
        uncoveredPartitions: uncovered,
        rows: asJson(buildReport(perInstance.get('engine-a')!, info, 'day', fromMs, toMs)),
      });
      // CSV carries no body field for it: the header says it.
      const csv = (await get(instance, `/v1/reports/program?${query}&format=csv`)).response;
      expect(csv.statusCode).toBe(200);
      expect(csv.headers[HEADER_REPORT_PARTIAL.toLowerCase()]).toBe(partialHeader);
      expect(csv.body).toBe(programKpisCsv(buildProgramReport(perInstance.get('engine-a')!, info, 'day', fromMs, toMs)));
    }

    // Nobody answers: no counters at all is not a report of zeros.
    await instances.get('engine-a')!.responder.stop();
    const none = await get(instances.get('engine-b')!, `/v1/reports/program?${query}`);
    expect(none.response.statusCode).toBe(503);
    expect(none.response.headers['retry-after']).toBe('1');
    expect(none.response.json().error).toMatchObject({ code: 'REPORT_INCOMPLETE', details: { missing: ['engine-a', 'engine-b', 'engine-c'], failed: [] } });
  });

  it('bounds the aggregations in flight on one thread (OVERLOADED); a request that could not be sent is REPORT_INCOMPLETE; a single instance reads its store as before, complete', async () => {
    const engine = new FakeEngine();
    engine.program = program;
    let release: () => void = () => undefined;
    const stalled = new Promise<never>((_, reject) => (release = () => reject(new Error('released'))));
    const reader = clusterReportReader({ aggregator: { aggregate: () => stalled }, programs: engine, inFlightMax: 2 });
    const app = await buildHttpServer({ host: '127.0.0.1', port: 0, registry: new Registry(), health: () => ({ ok: true, detail: {} }), api: { ...fakeContext(engine), clusterReports: reader } });
    const url = '/v1/reports/kpis?period=day&from=2026-10-01&to=2026-10-05';
    const waiting = [app.inject({ method: 'GET', url, headers: auth('read') }), app.inject({ method: 'GET', url, headers: auth('read') })];
    await new Promise((resolve) => setTimeout(resolve, 20));
    const refused = await app.inject({ method: 'GET', url, headers: auth('read') });
    expect(refused.statusCode).toBe(503);
    expect(refused.json().error.code).toBe('OVERLOADED');
    expect(refused.headers['retry-after']).toBe('1');
    release();
    for (const answer of await Promise.all(waiting)) expect(answer.statusCode).toBe(500); // a plain error from the aggregator: a bug, logged
    await app.close();

    // The request could not be sent (the connection closing), or the holders bucket not read: no counters at all.
    const unsent = await buildHttpServer({
      host: '127.0.0.1',
      port: 0,
      registry: new Registry(),
      health: () => ({ ok: true, detail: {} }),
      api: { ...fakeContext(engine), clusterReports: clusterReportReader({ aggregator: { aggregate: () => Promise.reject(new KpiAggregationError('REQUEST_FAILED', 'connection closed')) }, programs: engine }) },
    });
    const failed = await unsent.inject({ method: 'GET', url, headers: auth('read') });
    expect(failed.statusCode).toBe(503);
    expect(failed.json().error).toMatchObject({ code: 'REPORT_INCOMPLETE', details: { aggregationCode: 'REQUEST_FAILED' } });
    await unsent.close();

    // No clusterReports: the store's synchronous reader, unchanged, and the body says it is complete.
    const local = await buildHttpServer({ host: '127.0.0.1', port: 0, registry: new Registry(), health: () => ({ ok: true, detail: {} }), api: { ...fakeContext(engine), reports: storeReportReader({ reportSource: () => single }, engine) } });
    const answer = await local.inject({ method: 'GET', url: '/v1/reports/kpis?period=month&from=2026-10-01&to=2026-11-01', headers: auth('read') });
    expect(answer.json()).toEqual({ period: 'month', from: new Date(msOf('2026-10-01')).toISOString(), to: new Date(msOf('2026-11-01')).toISOString(), complete: true, rows: asJson(buildReport(single, info, 'month', msOf('2026-10-01'), msOf('2026-11-01'))) });
    expect(answer.headers[HEADER_REPORT_PARTIAL.toLowerCase()]).toBeUndefined();
    await local.close();
  });
});
