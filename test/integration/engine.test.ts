import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { jetstreamManager } from '@nats-io/jetstream';
import { headers, type Msg, type NatsConnection } from '@nats-io/nats-core';
import { pack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { threadNice } from '../../src/actors/priority.js';
import { loadSettings } from '../../src/config/settings.js';
import { partitionOf } from '../../src/routing/partitioner.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import { memberView } from '../helpers/member-view.js';
import { ensureTopology } from '../../src/transport/topology.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { consumerProgress, PROJECT_ROOT, publishAll, sleep, startEngineProcess, tempDataDir, waitFor, waitForAckFloor } from '../helpers/engine-process.js';

const encoder = new TextEncoder();
const purchase = (id: string, memberId: string, amountMinor: number) =>
  encoder.encode(JSON.stringify({ id, memberId, type: 'purchase', occurredAt: '2026-11-23T10:00:00.000Z', amountMinor, currency: 'EUR' }));

/** Collects core-NATS outcome messages by event id. */
function collectOutcomes(nc: NatsConnection): { byEvent: Map<string, Msg[]>; all: Msg[] } {
  const byEvent = new Map<string, Msg[]>();
  const all: Msg[] = [];
  nc.subscribe('loyalty.outcome.>', {
    callback: (_error, message) => {
      all.push(message);
      const eventId = (message.json() as { eventId: string }).eventId;
      byEvent.set(eventId, [...(byEvent.get(eventId) ?? []), message]);
    },
  });
  return { byEvent, all };
}

describe('engine end to end', () => {
  let server: TestNatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    server = await startTestNatsServer();
    nc = await connectTest(server.url);
    await ensureTopology(await jetstreamManager(nc), loadSettings({}, { natsUrl: server.url }));
  });

  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('applies JSON and msgpack events, answers a duplicate with its first outcome, and keeps outcomes in the outcome stream', async () => {
    const data = tempDataDir();
    const engine = await startEngineProcess({ natsUrl: server.url, dataDir: data.path, env: { LOYALTY_ACTOR_NICE: '7' } });
    try {
      const outcomes = collectOutcomes(nc);
      await nc.flush();
      const msgpackHeaders = headers();
      msgpackHeaders.set('Content-Type', 'application/msgpack');
      const last = await publishAll(nc, [
        { subject: 'loyalty.tx.ann', payload: purchase('p1', 'ann', 12_345) },
        {
          subject: 'loyalty.tx.ann',
          payload: pack({ id: 'p2', memberId: 'ann', type: 'purchase', occurredAt: '2026-11-23T11:00:00.000Z', amountMinor: 1_000, currency: 'EUR' }),
          headers: msgpackHeaders,
        },
        { subject: 'loyalty.tx.ann', payload: purchase('p1', 'ann', 12_345) },
        { subject: 'loyalty.tx.ann', payload: purchase('p1', 'ann', 99_999) }, // same id, other content: still the first outcome
      ]);
      await waitForAckFloor(nc, last, 20_000);
      // ann's first event enrolls her: a membership outcome, then the balance outcome.
      const balanceOf = (eventId: string) => (outcomes.byEvent.get(eventId) ?? []).filter((message) => message.subject === 'loyalty.outcome.balance.ann');
      await waitFor(() => balanceOf('p1').length >= 3 && balanceOf('p2').length >= 1, 10_000, 'outcomes');

      const p1 = outcomes.byEvent.get('p1')!;
      // Every delivery of p1 (first, and two duplicates) carries the same outcomes, byte for byte.
      const deliveries = p1.length / 3;
      expect(Number.isInteger(deliveries)).toBe(true);
      const first = p1.slice(0, deliveries).map((message) => `${message.subject} ${message.headers?.get('Nats-Msg-Id')} ${message.string()}`);
      expect(p1.slice(deliveries, 2 * deliveries).map((message) => `${message.subject} ${message.headers?.get('Nats-Msg-Id')} ${message.string()}`)).toEqual(first);
      expect(p1.slice(2 * deliveries).map((message) => `${message.subject} ${message.headers?.get('Nats-Msg-Id')} ${message.string()}`)).toEqual(first);
      expect(balanceOf('p1')[0]!.json()).toMatchObject({ kind: 'balance', eventId: 'p1', memberId: 'ann', delta: 123, spendable: 123 });
      expect(balanceOf('p1')[0]!.headers?.get('Nats-Msg-Id')).toMatch(/^ann:p1:\d+$/);
      expect(balanceOf('p2')[0]!.json()).toMatchObject({ kind: 'balance', delta: 10, spendable: 133 });

      // The outcome stream keeps each outcome once (de-duplicated by message id), for replay.
      const jsm = await jetstreamManager(nc);
      const stream = await jsm.streams.info('LOYALTY_OUTCOMES');
      expect(stream.state.messages).toBe(deliveries + (outcomes.byEvent.get('p2')?.length ?? 0));

      // The actor threads, and only they, run LOYALTY_ACTOR_NICE (7 here) above the engine's own nice.
      if (process.platform === 'linux') {
        const pid = engine.child.pid!;
        const nices = readdirSync(`/proc/${pid}/task`).map((tid) => threadNice(Number(tid), pid));
        const own = nices[0]!; // the main thread's task comes first
        expect(nices.filter((nice) => nice === Math.min(19, own + 7)).length).toBe(loadSettings({}).actors);
        expect(nices.filter((nice) => nice !== own && nice !== Math.min(19, own + 7))).toEqual([]);
      }

      const metrics = await (await fetch(`http://127.0.0.1:${engine.httpPort}/metrics`)).text();
      expect(metrics).toMatch(/loyalty_events_total\{type="purchase",result="applied"\} 2/);
      expect(metrics).toMatch(/loyalty_events_total\{type="purchase",result="duplicate"\} 2/);
      for (const name of [
        'loyalty_event_commit_latency_seconds_bucket',
        'loyalty_batch_size_events_bucket',
        'loyalty_store_commit_duration_seconds_bucket',
        'loyalty_actor_batches_in_flight',
        'loyalty_consumer_pending_messages',
        'process_resident_memory_bytes',
      ]) {
        expect(metrics).toContain(name);
      }
    } finally {
      expect(await engine.stop()).toBe(0);
      data.remove();
    }
  }, 60_000);

  it('stops gracefully on SIGTERM while consuming: commits and acks what it took, exits 0', async () => {
    const data = tempDataDir();
    const engine = await startEngineProcess({ natsUrl: server.url, dataDir: data.path, env: { LOYALTY_CONSUMER_NAME: 'graceful' } });
    const jsm = await jetstreamManager(nc);
    const messages = Array.from({ length: 20_000 }, (_, index) => ({
      subject: `loyalty.tx.g-${index % 500}`,
      payload: purchase(`g-${index}`, `g-${index % 500}`, 500),
    }));
    const last = await publishAll(nc, messages);
    expect(await engine.stop()).toBe(0);
    const stopped = await consumerProgress(jsm, 'LOYALTY_TX', 'graceful');
    // What it took in was committed and acked before exit; at most one pull's
    // worth, delivered after intake stopped, is left for redelivery.
    expect(stopped.ackFloor).toBeGreaterThan(0);
    expect(stopped.ackPending).toBeLessThanOrEqual(8192);
    // A restart consumes the rest and ends at the last sequence.
    const again = await startEngineProcess({ natsUrl: server.url, dataDir: data.path, env: { LOYALTY_CONSUMER_NAME: 'graceful' } });
    try {
      await waitForAckFloor(nc, last, 60_000, 'graceful');
    } finally {
      expect(await again.stop()).toBe(0);
    }
    // 40 purchases of 5 points per member: nothing lost, nothing counted twice across the stop.
    const store = new LmdbStore({ dataDir: data.path, mapSizeBytes: 256 * 1024 * 1024 });
    try {
      for (let member = 0; member < 500; member++) {
        const memberId = `g-${member}`;
        const partition = partitionOf(memberId, 64);
        const view = memberView(store.readMember(partition, memberId)!, [...store.ledgerOf(partition, memberId)]);
        expect(view.spendable, memberId).toBe(200);
        expect(view.ledgerSpendableSum, memberId).toBe(200);
      }
    } finally {
      await store.close();
      data.remove();
    }
  }, 120_000);

  it('exits at once on a second signal (past the half-second that joins a repeated Ctrl-C)', async () => {
    const data = tempDataDir();
    // One actor with a deep queue: the graceful stop has many batches to finish.
    const engine = await startEngineProcess({
      natsUrl: server.url,
      dataDir: data.path,
      env: { LOYALTY_CONSUMER_NAME: 'second-signal', LOYALTY_ACTORS: '1', LOYALTY_ACTOR_BATCHES_IN_FLIGHT_MAX: '64', LOYALTY_LOG_LEVEL: 'info' },
    });
    try {
      // A backlog keeps the graceful stop busy long enough for the second signal.
      await publishAll(
        nc,
        Array.from({ length: 30_000 }, (_, index) => ({ subject: `loyalty.tx.s-${index % 300}`, payload: purchase(`s-${index}`, `s-${index % 300}`, 500) })),
      );
      engine.child.kill('SIGTERM');
      await waitFor(() => engine.output().includes('stopping: finishing in-flight batches'), 5_000, 'the graceful stop to begin');
      await sleep(600);
      // Without a running engine there is nothing for the second signal to cut short: the test proves nothing.
      expect(engine.child.exitCode, `the graceful stop finished before the second signal (raise the backlog): ${engine.output().slice(-500)}`).toBeNull();
      engine.child.kill('SIGTERM');
      const code = await Promise.race([engine.exited, sleep(5_000).then(() => 'still running' as const)]);
      // Killed by itself (no exit handler may hold it up; recovery is the crash path): only
      // the engine sends SIGKILL here, the finally below only if it is still running.
      expect(code, 'the engine survived the second signal').not.toBe('still running');
      expect(engine.child.signalCode, `exit ${String(code)}`).toBe('SIGKILL');
    } finally {
      if (engine.child.exitCode === null && engine.child.signalCode === null) await engine.kill();
      data.remove();
    }
  }, 60_000);

  it('re-publishes outcomes left in the outbox by a crash, then empties it', async () => {
    const data = tempDataDir();
    const store = new LmdbStore({ dataDir: data.path, mapSizeBytes: 256 * 1024 * 1024 });
    await store.ensureMeta(64, Date.now());
    const payload = JSON.stringify({ kind: 'balance', eventId: 'lost-1', memberId: 'zed', delta: 5, balance: 5 });
    // An outbox entry nests each event's packed outcome messages.
    await store.commit({ members: [], ledger: [], processed: [], outbox: { key: [1, 0, 1], messages: pack([pack([['loyalty.outcome.balance.zed', 'zed:lost-1:0', payload]])]) } });
    await store.durable();
    await store.close();

    const outcomes = collectOutcomes(nc);
    await nc.flush();
    const engine = await startEngineProcess({ natsUrl: server.url, dataDir: data.path, env: { LOYALTY_CONSUMER_NAME: 'outbox' } });
    try {
      await waitFor(() => outcomes.byEvent.has('lost-1'), 10_000, 'the re-published outcome');
      expect(outcomes.byEvent.get('lost-1')![0]!.headers?.get('Nats-Msg-Id')).toBe('zed:lost-1:0');
    } finally {
      expect(await engine.stop()).toBe(0);
    }
    const reopened = new LmdbStore({ dataDir: data.path, mapSizeBytes: 256 * 1024 * 1024 });
    expect([...reopened.outboxEntries()]).toEqual([]);
    await reopened.close();
    data.remove();
  }, 60_000);

  it('refuses to start on bad settings, naming every bad field', async () => {
    const result = await runCli(['start'], { LOYALTY_PARTITIONS: 'many', LOYALTY_BATCH_SIZE_MAX: '0', LOYALTY_TYPO: '1' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('LOYALTY_PARTITIONS');
    expect(result.stderr).toContain('LOYALTY_BATCH_SIZE_MAX');
    expect(result.stderr).toContain('LOYALTY_TYPO: unknown setting');
  });

  it('refuses a data directory created with another partition count', async () => {
    const data = tempDataDir();
    const store = new LmdbStore({ dataDir: data.path, mapSizeBytes: 256 * 1024 * 1024 });
    await store.ensureMeta(32, Date.now());
    await store.close();
    const result = await runCli(['start'], { LOYALTY_NATS_URL: server.url, LOYALTY_DATA_DIR: data.path, LOYALTY_HTTP_PORT: '0' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('ERR_PARTITIONS_MISMATCH');
    data.remove();
  });

  it('validates program files from the CLI', async () => {
    const good = await runCli(['program', 'validate', 'config/programs/simple.yaml'], {});
    expect(good.code).toBe(0);
    const bad = await runCli(['program', 'validate', 'package.json'], {});
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/invalid program file/);
  });
});

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: PROJECT_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
