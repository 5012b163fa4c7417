import { join } from 'node:path';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PartitionChangelog } from '../../../src/cluster/changelog.js';
import { restorePartition } from '../../../src/cluster/restore.js';
import { PartitionSnapshots } from '../../../src/cluster/snapshots.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { LmdbStore } from '../../../src/store/lmdb.js';
import { partitionConsumerName } from '../../../src/transport/topology.js';
import { publishAll, sleep, startEngineProcess, tempDataDir, type EngineProcess } from '../../helpers/engine-process.js';
import { health, waitForHealth } from '../../helpers/health.js';
import { memberView } from '../../helpers/member-view.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Cluster mode of `loyalty start` end to end (issue 17, docs/cluster.md):
 * engines as real processes on one nats-server whose mapping routes
 * `loyalty.tx.<member>` to `loyalty.txp.<partition>.<member>`. One engine
 * owns all 64 partitions; a second joins under load and takes its share with
 * the state (fence, restore from the changelog, consumer after the
 * watermark); the first is SIGKILLed under load and the second takes its
 * partitions after the lease TTL. Then every member's balance and ledger,
 * rebuilt from the changelogs alone, equal the sum of its distinct events,
 * and each event has one set of outcomes.
 */
const PARTITIONS = 64;
const MEMBERS = 240;
const TTL_MS = 3_000;
const TICK_MS = 500;
const LOG_LEVEL = process.env.CLUSTER_TEST_LOG_LEVEL ?? 'warn';
const encoder = new TextEncoder();
const purchase = (id: string, memberId: string, amountMinor: number) =>
  encoder.encode(JSON.stringify({ id, memberId, type: 'purchase', occurredAt: '2026-11-23T10:00:00.000Z', amountMinor, currency: 'EUR' }));

interface Sent {
  readonly id: string;
  readonly memberId: string;
  readonly points: number;
}

let server: TestNatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
const dirs: { remove(): void }[] = [];
const engines: EngineProcess[] = [];

beforeAll(async () => {
  server = await startTestNatsServer({ extraConfig: `mappings = {\n  "loyalty.tx.*": "loyalty.txp.{{partition(${PARTITIONS},1)}}.{{wildcard(1)}}"\n}` });
  nc = await connectTest(server.url);
  jsm = await jetstreamManager(nc);
}, 30_000);

afterAll(async () => {
  for (const engine of engines) if (engine.child.exitCode === null) await engine.kill();
  await nc?.close();
  await server?.stop();
  for (const dir of dirs) dir.remove();
});

function startInstance(instanceId: string): Promise<EngineProcess> {
  const dir = tempDataDir(`loyalty-cluster-${instanceId}-`);
  dirs.push(dir);
  return startEngineProcess({
    natsUrl: server.url,
    dataDir: dir.path,
    readyTimeoutMs: 60_000,
    env: {
      LOYALTY_CLUSTER: 'true',
      LOYALTY_INSTANCE_ID: instanceId,
      LOYALTY_CLUSTER_LEASE_TTL_MS: String(TTL_MS),
      LOYALTY_CLUSTER_TICK_MS: String(TICK_MS),
      LOYALTY_ACTORS: '1',
      LOYALTY_LOG_LEVEL: LOG_LEVEL,
      LOYALTY_EMBEDDED_NATS_AUTO_INSTALL: 'false',
    },
  }).then((engine) => {
    engines.push(engine);
    return engine;
  });
}

/** Partitions consuming, by the engine's /health (0 when it does not answer). */
async function consuming(engine: EngineProcess): Promise<number> {
  const answer = await health(engine.httpPort);
  return Number(answer.body?.partitionsConsuming ?? 0);
}

/** Waits until every partition's consumer has delivered and had acked everything the stream holds. */
async function waitDrained(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let behind: string[] = [];
  while (Date.now() < deadline) {
    behind = [];
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const info = await jsm.consumers.info('LOYALTY_TX', partitionConsumerName({ consumerName: 'loyalty-engine' }, partition)).catch(() => undefined);
      if (info === undefined || info.num_pending > 0 || info.num_ack_pending > 0) behind.push(`p${partition}:${info === undefined ? 'none' : `${info.num_pending}/${info.num_ack_pending}`}`);
    }
    if (behind.length === 0) return;
    await sleep(500);
  }
  const outputs = engines.map((engine, index) => `--- engine ${index} ---\n${engine.output().slice(-4_000)}`).join('\n');
  throw new Error(`partitions still behind after ${timeoutMs} ms: ${behind.join(' ')}\n${outputs}`);
}

function batchOf(phase: string, count: number, sent: Sent[]): { subject: string; payload: Uint8Array }[] {
  const messages: { subject: string; payload: Uint8Array }[] = [];
  for (let index = 0; index < count; index++) {
    const memberId = `m-${(index * 7 + phase.length) % MEMBERS}`;
    const id = `${phase}-${index}`;
    const amountMinor = 100 * (1 + (index % 9));
    messages.push({ subject: `loyalty.tx.${memberId}`, payload: purchase(id, memberId, amountMinor) });
    sent.push({ id, memberId, points: amountMinor / 100 });
    // Every tenth event sent twice: the copy is a duplicate wherever its partition lives by then.
    if (index % 10 === 0) messages.push({ subject: `loyalty.tx.${memberId}`, payload: purchase(id, memberId, amountMinor) });
  }
  return messages;
}

describe('loyalty start in cluster mode', () => {
  it('shares the partitions, moves them with their state on join and on a crash, and loses or doubles nothing', async () => {
    const sent: Sent[] = [];
    const a = await startInstance('engine-a');
    await waitForHealth(a.httpPort, (answer) => answer.body?.partitionsConsuming === PARTITIONS, 90_000, 'engine-a consuming every partition');
    await publishAll(nc, batchOf('one', 1_500, sent));
    await waitDrained(Number(process.env.CLUSTER_TEST_FIRST_DRAIN_MS ?? 90_000));

    // A second instance joins while events arrive: about half of the partitions move to it, state and all.
    const joining = startInstance('engine-b');
    await publishAll(nc, batchOf('two', 1_500, sent));
    const b = await joining;
    const joinedAt = Date.now();
    let split = [0, 0];
    while (Date.now() - joinedAt < 60_000) {
      split = [await consuming(a), await consuming(b)];
      if (split[0]! + split[1]! === PARTITIONS && split[1]! > 0 && split[0]! > 0) break;
      await sleep(200);
    }
    expect(split[0]! + split[1]!).toBe(PARTITIONS);
    expect(split[1]).toBeGreaterThanOrEqual(20);
    expect(split[1]).toBeLessThanOrEqual(44);
    await waitDrained(90_000);

    // engine-a dies under load: its partitions are free after the lease TTL and engine-b restores them.
    const load = publishAll(nc, batchOf('three', 1_500, sent));
    await sleep(300);
    await a.kill();
    const killedAt = Date.now();
    await load;
    await waitForHealth(b.httpPort, (answer) => answer.body?.partitionsConsuming === PARTITIONS, 60_000, 'engine-b consuming every partition');
    const takeoverMs = Date.now() - killedAt;
    await waitDrained(90_000);
    expect(b.child.exitCode).toBeNull();
    expect(await b.stop()).toBe(0);
    // The figure the issue asks for: every partition owned again within TTL + restore time.
    console.log(`cluster engines: ${split[1]} of ${PARTITIONS} partitions moved on join; after SIGKILL all ${PARTITIONS} owned again in ${takeoverMs} ms (lease TTL ${TTL_MS} ms)`);
    expect(takeoverMs).toBeLessThan(TTL_MS + 20_000);

    // The truth is the changelogs: every partition rebuilt from them alone into an empty store.
    const rebuiltDir = tempDataDir('loyalty-cluster-rebuilt-');
    dirs.push(rebuiltDir);
    const rebuilt = new LmdbStore({ dataDir: join(rebuiltDir.path, 'store'), mapSizeBytes: 512 * 1024 * 1024, partitions: PARTITIONS });
    await rebuilt.ensureMeta(PARTITIONS, 0);
    const snapshots = await PartitionSnapshots.open(nc, { replicas: 1 });
    const js = jetstream(nc);
    for (let partition = 0; partition < PARTITIONS; partition++) {
      await restorePartition({ snapshots, changelog: new PartitionChangelog(js, jsm, 'LOYALTY_CHANGELOG', 'loyalty', partition, 'test-reader'), root: rebuilt.root, partition });
    }

    const expected = new Map<string, Map<string, number>>();
    for (const { id, memberId, points } of sent) {
      const events = expected.get(memberId) ?? new Map<string, number>();
      events.set(id, points);
      expected.set(memberId, events);
    }
    let checked = 0;
    for (const [memberId, events] of expected) {
      const partition = partitionOf(memberId, PARTITIONS);
      const state = rebuilt.readMember(partition, memberId);
      expect(state, memberId).toBeDefined();
      const view = memberView(state!, [...rebuilt.ledgerOf(partition, memberId)]);
      const sum = [...events.values()].reduce((total, points) => total + points, 0);
      expect(view.spendable, memberId).toBe(sum);
      expect(view.ledgerSpendableSum, memberId).toBe(sum);
      expect(new Map([...view.pointsByEvent].filter(([, points]) => points !== 0)), memberId).toEqual(events);
      checked += 1;
    }
    expect(checked).toBe(MEMBERS);
    await rebuilt.close();

    // One set of outcomes per event: the outcome stream de-duplicates by message id, so a duplicate or a
    // redelivery after a handover adds nothing; every event has its balance outcome exactly once.
    const outcomes = await jsm.streams.info('LOYALTY_OUTCOMES');
    const balances = new Map<string, number>();
    const consumer = await jsm.consumers.add('LOYALTY_OUTCOMES', { filter_subject: 'loyalty.outcome.balance.>', ack_policy: AckPolicy.None });
    const reader = await js.consumers.get('LOYALTY_OUTCOMES', consumer.name);
    let read = 0;
    while (read < consumer.num_pending) {
      const messages = await reader.fetch({ max_messages: 1_000, expires: 2_000 });
      for await (const message of messages) {
        const eventId = (message.json() as { eventId: string }).eventId;
        balances.set(eventId, (balances.get(eventId) ?? 0) + 1);
        read += 1;
      }
    }
    expect(outcomes.state.messages).toBeGreaterThan(0);
    expect(balances.size).toBe(sent.length);
    expect([...balances.values()].every((count) => count === 1)).toBe(true);
  }, 480_000);
});
