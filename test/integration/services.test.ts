import { jetstreamManager } from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/settings.js';
import { startLoyaltyServices, type LoyaltyServices } from '../../src/transport/services.js';
import { JetStreamSubmitter } from '../../src/transport/submit.js';
import { ensureTopology } from '../../src/transport/topology.js';
import { sleep } from '../helpers/engine-process.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { FakeActor } from '../unit/api/fake-actor.js';
import { FakeEngine, purchase, TOKEN_LIST } from '../unit/api/fake-context.js';

/**
 * The NATS services (micro protocol) and JetStreamSubmitter against a real
 * nats-server, with a fake actor answering outcomes.
 */
describe('NATS services and the JetStream submitter', () => {
  let server: TestNatsServer;
  let nc: NatsConnection;
  let client: NatsConnection;
  let actorConnection: NatsConnection;
  let engine: FakeEngine;
  let actor: FakeActor;
  let submitter: JetStreamSubmitter;
  let services: LoyaltyServices;

  beforeAll(async () => {
    server = await startTestNatsServer();
    nc = await connectTest(server.url, { noAsyncTraces: true });
    client = await connectTest(server.url);
    actorConnection = await connectTest(server.url);
    const settings = loadSettings({}, { natsUrl: server.url, apiTokens: TOKEN_LIST, actors: 1 });
    await ensureTopology(await jetstreamManager(nc), settings);
    engine = new FakeEngine();
    engine.apply(purchase('ann', 'seed-ann', 10_000));
    actor = new FakeActor(actorConnection, engine);
    actor.start();
    await actorConnection.flush();
    submitter = new JetStreamSubmitter(nc, { idleUnsubscribeMs: 200 });
    services = await startLoyaltyServices(nc, { settings, reads: engine, submitter, programs: engine, reports: engine, health: () => ({ ok: true, detail: {} }) });
  });

  afterAll(async () => {
    await services?.stop();
    submitter?.close();
    await actor?.stop();
    for (const connection of [client, actorConnection, nc]) await connection?.close();
    await server?.stop();
  });

  it('is discoverable with the micro protocol ($SRV.PING, INFO, STATS), as `nats micro ls` does', async () => {
    const ping = (await client.request('$SRV.PING.loyalty', '')).json<Record<string, unknown>>();
    expect(ping).toMatchObject({ type: 'io.nats.micro.v1.ping_response', name: 'loyalty', id: services.id, version: '1.0.0' });
    const info = (await client.request('$SRV.INFO.loyalty', '')).json<{ type: string; endpoints: { name: string; subject: string; queue_group: string }[] }>();
    expect(info.type).toBe('io.nats.micro.v1.info_response');
    expect(info.endpoints.map((endpoint) => [endpoint.name, endpoint.subject, endpoint.queue_group])).toEqual([
      ['wallet', 'loyalty.svc.wallet', 'loyalty'],
      ['submit', 'loyalty.svc.submit', 'loyalty'],
    ]);
    await client.request('loyalty.svc.wallet', JSON.stringify({ memberId: 'ann' }));
    const stats = (await client.request(`$SRV.STATS.loyalty.${services.id}`, '')).json<{ type: string; endpoints: { name: string; num_requests: number }[] }>();
    expect(stats.type).toBe('io.nats.micro.v1.stats_response');
    expect(stats.endpoints.find((endpoint) => endpoint.name === 'wallet')!.num_requests).toBeGreaterThanOrEqual(1);
  });

  it('answers wallet requests, and errors with the service error headers and our code', async () => {
    const wallet = (await client.request('loyalty.svc.wallet', JSON.stringify({ memberId: 'ann' }))).json<Record<string, unknown>>();
    expect(wallet).toMatchObject({ memberId: 'ann', status: 'active', currencies: [expect.objectContaining({ currency: 'points', spendable: 100 })] });

    const missing = await client.request('loyalty.svc.wallet', JSON.stringify({ memberId: 'nobody' }));
    expect(missing.headers?.get('Nats-Service-Error-Code')).toBe('404');
    expect(missing.headers?.get('Loyalty-Error-Code')).toBe('MEMBER_NOT_FOUND');
    expect(missing.json()).toMatchObject({ error: { code: 'MEMBER_NOT_FOUND' } });

    const bad = await client.request('loyalty.svc.wallet', 'not json');
    expect(bad.headers?.get('Loyalty-Error-Code')).toBe('VALIDATION_FAILED');
  });

  it('submits events and waits for their outcome; refuses invalid events and erase', async () => {
    const event = { id: 'svc-1', memberId: 'ann', type: 'adjustment', occurredAt: new Date().toISOString(), direction: 'credit', points: 7, currency: 'points', reason: 'svc', operator: 'bot' };
    const result = (await client.request('loyalty.svc.submit', JSON.stringify({ event, waitMs: 5_000 }), { timeout: 10_000 })).json<Record<string, unknown>>();
    expect(result).toMatchObject({ eventId: 'svc-1', duplicate: false, outcomes: [expect.objectContaining({ kind: 'balance', delta: 7, spendable: 107 })] });

    const waitHeader = headers();
    waitHeader.set('Loyalty-Wait-Ms', '5000');
    const again = (await client.request('loyalty.svc.submit', JSON.stringify(event), { headers: waitHeader, timeout: 10_000 })).json<Record<string, unknown>>();
    expect(again).toMatchObject({ eventId: 'svc-1', duplicate: true, sequence: result.sequence, outcomes: result.outcomes });

    const noWait = (await client.request('loyalty.svc.submit', JSON.stringify({ ...event, id: 'svc-2' }))).json<Record<string, unknown>>();
    expect(noWait).toMatchObject({ eventId: 'svc-2', duplicate: false });
    expect(noWait.outcomes).toBeUndefined();

    const invalid = await client.request('loyalty.svc.submit', JSON.stringify({ ...event, points: -1, currency: 'Points!' }));
    expect(invalid.headers?.get('Loyalty-Error-Code')).toBe('VALIDATION_FAILED');
    expect(invalid.json<{ error: { message: string } }>().error.message).toMatch(/points.*currency|currency.*points/s);

    const erase = await client.request('loyalty.svc.submit', JSON.stringify({ id: 'e-1', memberId: 'ann', type: 'erase', occurredAt: new Date().toISOString() }));
    expect(erase.headers?.get('Loyalty-Error-Code')).toBe('FORBIDDEN');
  });

  it('collects every outcome of an event, and drops its outcome subscription when idle', async () => {
    // 600 points cross the Silver threshold (500): balance and tier outcomes, published back to back.
    const result = await submitter.submit(purchase('cy', 'big-order', 60_000, new Date().toISOString()), { waitMs: 5_000 });
    expect(result.outcomes!.map((outcome) => outcome.kind).sort()).toEqual(expect.arrayContaining(['balance', 'tier']));
    expect(submitter.outcomeListeners).toBe(0);
    const subscriptions = () => (nc as unknown as { protocol: { subscriptions: { size(): number } } }).protocol.subscriptions.size();
    const withOutcomes = subscriptions();
    await sleep(400);
    expect(subscriptions()).toBe(withOutcomes - 1);
  });

  it('tracks outcomes for many events on one subscription (bulk jobs)', async () => {
    const seen = new Map<string, string>();
    const stops = Array.from({ length: 500 }, (_, index) =>
      submitter.trackOutcomes(`t-${index % 50}`, `track-${index}`, (outcome) => seen.set(String(outcome.eventId), String(outcome.kind))),
    );
    await Promise.all(Array.from({ length: 500 }, (_, index) => submitter.submit(purchase(`t-${index % 50}`, `track-${index}`, 100, new Date().toISOString()))));
    const deadline = Date.now() + 10_000;
    while (seen.size < 500 && Date.now() < deadline) await sleep(20);
    expect(seen.size).toBe(500);
    stops.forEach((stop) => stop());
    expect(submitter.outcomeListeners).toBe(0);
  });

  it('keeps many publishes in flight at once, each with its own acknowledgement', async () => {
    const before = submitter.publishesInFlight;
    const events = Array.from({ length: 2_000 }, (_, index) => purchase(`f-${index % 100}`, `flight-${index}`, 100, new Date().toISOString()));
    const pending = events.map((event) => submitter.submit(event));
    // All of them were handed over before any acknowledgement came back.
    expect(submitter.publishesInFlight - before).toBe(2_000);
    const results = await Promise.all(pending);
    expect(submitter.publishesInFlight).toBe(0);
    expect(new Set(results.map((result) => result.sequence)).size).toBe(2_000);
    expect(results.every((result, index) => result.eventId === `flight-${index}` && !result.duplicate)).toBe(true);
    // The stream's duplicate window still sees the message id.
    const again = await submitter.submit(events[0]!);
    expect(again).toMatchObject({ eventId: 'flight-0', duplicate: true, sequence: results[0]!.sequence });
  });

  it('fails a publish at once when no stream stores its subject', async () => {
    const other = new JetStreamSubmitter(nc, { subjectPrefix: 'nostream', publishTimeoutMs: 30_000 });
    try {
      await expect(other.submit(purchase('ann', 'lost-1', 100))).rejects.toThrow(/no stream stores nostream\.tx\.ann/);
      expect(other.publishesInFlight).toBe(0);
    } finally {
      other.close();
    }
  });
});
