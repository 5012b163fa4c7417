import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHttpServer } from '../../src/api/http.js';
import { loadSettings } from '../../src/config/settings.js';
import { JetStreamSubmitter } from '../../src/transport/submit.js';
import { ensureTopology } from '../../src/transport/topology.js';
import { sleep } from '../helpers/engine-process.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { FakeActor } from '../unit/api/fake-actor.js';
import { auth, FakeEngine, purchase, TOKEN_LIST } from '../unit/api/fake-context.js';

/**
 * The HTTP API over a real nats-server and JetStreamSubmitter, with a fake
 * actor (the real domain behind a core subscription) answering outcomes.
 * The full-engine version (real actors, LMDB reads) is the lead's, once wired.
 */
describe('HTTP API over JetStream', () => {
  let server: TestNatsServer;
  let nc: NatsConnection;
  let actorConnection: NatsConnection;
  let engine: FakeEngine;
  let actor: FakeActor;
  let submitter: JetStreamSubmitter;
  let app: FastifyInstance;

  const streamLastSequence = async () => (await (await jetstreamManager(nc)).streams.info('LOYALTY_TX')).state.last_seq;

  beforeAll(async () => {
    server = await startTestNatsServer();
    nc = await connectTest(server.url, { noAsyncTraces: true });
    actorConnection = await connectTest(server.url);
    const settings = loadSettings({}, { natsUrl: server.url, apiTokens: TOKEN_LIST, actors: 1 });
    await ensureTopology(await jetstreamManager(nc), settings);
    engine = new FakeEngine();
    actor = new FakeActor(actorConnection, engine);
    actor.start();
    await actorConnection.flush();
    submitter = new JetStreamSubmitter(nc, { subjectPrefix: 'loyalty' });
    app = await buildHttpServer({
      host: '127.0.0.1',
      port: 0,
      registry: new Registry(),
      health: () => ({ ok: true, detail: {} }),
      api: { settings, reads: engine, submitter, programs: engine, reports: engine, health: () => ({ ok: true, detail: {} }) },
      routes: { bulk: { outcomeWaitMs: 10_000 } },
    });
    for (const member of ['ann', 'bob', 'quiet']) engine.apply(purchase(member, `seed-${member}`, 10_000));
  });

  afterAll(async () => {
    await app?.close();
    submitter?.close();
    await actor?.stop();
    await actorConnection?.close();
    await nc?.close();
    await server?.stop();
  });

  it('waits for the real outcome of an adjustment, and answers a retry with the same Idempotency-Key with the first outcome', async () => {
    const request = () =>
      app.inject({
        method: 'POST',
        url: '/v1/members/ann/adjustments?wait=true&timeoutMs=5000',
        headers: { ...auth('write'), 'idempotency-key': 'goodwill-ann-1' },
        payload: { direction: 'credit', points: 25, reason: 'late delivery' },
      });
    const first = await request();
    expect(first.statusCode, first.body).toBe(200);
    const body = first.json();
    expect(body).toMatchObject({ eventId: 'goodwill-ann-1', duplicate: false, result: 'applied' });
    expect(body.sequence).toBeGreaterThan(0);
    expect(body.outcomes[0]).toMatchObject({ kind: 'balance', eventId: 'goodwill-ann-1', memberId: 'ann', delta: 25, spendable: 125 });
    expect(engine.submitted).toHaveLength(0); // nothing went around JetStream

    const again = await request();
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json()).toMatchObject({ eventId: 'goodwill-ann-1', duplicate: true, sequence: body.sequence, result: 'applied' });
    expect(again.json().outcomes).toEqual(body.outcomes);
    expect(engine.states.get('ann')!.currencies.points!.spendable).toBe(125);
    expect(engine.ledgers.get('ann')!.filter((entry) => entry.eventId === 'goodwill-ann-1')).toHaveLength(1);
  });

  it('reports a rejection with its reason, and a missing outcome as 504 OUTCOME_TIMEOUT with the event still accepted', async () => {
    const rejected = await app.inject({
      method: 'POST',
      url: '/v1/members/bob/adjustments?wait=true',
      headers: auth('write'),
      payload: { direction: 'debit', points: 1_000_000, reason: 'oops' },
    });
    expect(rejected.statusCode, rejected.body).toBe(200);
    expect(rejected.json()).toMatchObject({ result: 'rejected', rejection: { code: expect.any(String) } });

    actor.silent.add('quiet');
    const before = await streamLastSequence();
    const timedOut = await app.inject({
      method: 'POST',
      url: '/v1/members/quiet/adjustments?wait=true&timeoutMs=300',
      headers: auth('write'),
      payload: { direction: 'credit', points: 1, reason: 'x' },
    });
    // The wait ends on its own timeout (504), not the test's: no wall-clock bound here.
    expect(timedOut.statusCode).toBe(504);
    const error = timedOut.json().error;
    expect(error.code).toBe('OUTCOME_TIMEOUT');
    expect(error.message).toMatch(/accepted/);
    expect(error.details).toMatchObject({ accepted: true, sequence: before + 1 });
    expect(await streamLastSequence()).toBe(before + 1);
  });

  it('submits without waiting: 202 with the stream sequence', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: auth('write'),
      payload: purchase('ann', 'order-202', 5_000, new Date().toISOString()),
    });
    expect(response.statusCode, response.body).toBe(202);
    expect(response.json()).toMatchObject({ eventId: 'order-202', accepted: true, duplicate: false });
    expect(response.json().sequence).toBe(await streamLastSequence());
  });

  it('publishes a 20,000-line bulk file fast, follows every line to its outcome, and a re-upload with ids changes nothing', async () => {
    const members = 200;
    for (let member = 0; member < members; member++) engine.apply(purchase(`bulk-${member}`, `seed-bulk-${member}`, 100));
    const lines = ['memberId,direction,points,currency,reason,id'];
    for (let index = 0; index < 20_000; index++) lines.push(`bulk-${index % members},credit,2,points,campaign,camp-${index}`);
    lines.push('nobody!,credit,2,points,campaign,bad-1');
    lines.push('bulk-1,debit,999999,points,too much,bad-2');
    const file = `${lines.join('\n')}\n`;
    const before = await streamLastSequence();

    const started = performance.now();
    const upload = await app.inject({ method: 'POST', url: '/v1/bulk/adjustments', headers: { ...auth('write'), 'content-type': 'text/csv' }, payload: file });
    expect(upload.statusCode, upload.body).toBe(202);
    const jobId = upload.json().jobId as string;
    const status = await waitForJob(app, jobId, 30_000);
    const seconds = (performance.now() - started) / 1000;
    expect(status.state).toBe('completed');
    expect(status.counts).toMatchObject({ total: 20_002, invalid: 1, submitted: 20_001, applied: 20_000, rejected: 1, pending: 0, failed: 0 });
    expect(await streamLastSequence()).toBe(before + 20_001);
    console.log(`bulk: 20,001 events published and followed to their outcomes in ${seconds.toFixed(2)} s (${status.publishedPerSecond} published/s)`);
    for (let member = 0; member < members; member++) expect(engine.states.get(`bulk-${member}`)!.currencies.points!.spendable).toBe(1 + 200);

    const report = await app.inject({ method: 'GET', url: `/v1/bulk/${jobId}/report?status=invalid,rejected`, headers: auth('read') });
    const bad = report.body.trim().split('\n').map((line) => JSON.parse(line));
    expect(bad).toEqual([
      expect.objectContaining({ line: 20_002, status: 'invalid', reason: expect.stringMatching(/memberId/) }),
      expect.objectContaining({ line: 20_003, id: 'bad-2', status: 'rejected', reason: expect.any(String) }),
    ]);

    // The same file again: every id is known, so nothing moves (the actor returns the first outcomes).
    const again = await app.inject({ method: 'POST', url: '/v1/bulk/adjustments', headers: { ...auth('write'), 'content-type': 'text/csv' }, payload: file });
    const second = await waitForJob(app, again.json().jobId, 30_000);
    expect(second.counts).toMatchObject({ applied: 20_000, rejected: 1, invalid: 1, duplicates: 20_001 });
    for (let member = 0; member < members; member++) expect(engine.states.get(`bulk-${member}`)!.currencies.points!.spendable).toBe(201);
  }, 60_000);
});

async function waitForJob(app: FastifyInstance, jobId: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = (await app.inject({ method: 'GET', url: `/v1/bulk/${jobId}`, headers: auth('read') })).json();
    if (status.state !== 'running' && status.state !== 'awaiting_outcomes') return status;
    if (Date.now() > deadline) throw new Error(`bulk job ${jobId} still ${status.state}: ${JSON.stringify(status.counts)}`);
    await sleep(50);
  }
}
