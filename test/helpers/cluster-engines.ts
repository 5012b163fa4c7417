import { join } from 'node:path';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/nats-core';
import { expect } from 'vitest';
import { PartitionChangelog } from '../../src/cluster/changelog.js';
import { restorePartition } from '../../src/cluster/restore.js';
import { PartitionSnapshots } from '../../src/cluster/snapshots.js';
import { partitionOf } from '../../src/routing/partitioner.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import { partitionConsumerName, withCreateRetries } from '../../src/transport/topology.js';
import { publishAll, sleep, startEngineProcess, tempDataDir, type EngineProcess } from './engine-process.js';
import { health, waitForHealth } from './health.js';
import { memberView } from './member-view.js';

/**
 * Engines in cluster mode as real processes, the events sent to them, and the
 * checks of issue 17 (test/integration/cluster/engines*.test.ts): every
 * member rebuilt from the changelogs alone equals the sum of its distinct
 * events, and each event has one set of outcomes.
 */
export const PARTITIONS = 64;
export const MEMBERS = 240;
const encoder = new TextEncoder();

/** The nats-server mapping cluster mode needs, for a server's config. */
export const PARTITION_MAPPING = `mappings = {\n  "loyalty.tx.*": "loyalty.txp.{{partition(${PARTITIONS},1)}}.{{wildcard(1)}}"\n}`;

export interface Sent {
  readonly id: string;
  readonly memberId: string;
  readonly points: number;
}

export interface Message {
  readonly subject: string;
  readonly payload: Uint8Array;
  /** For a JetStream publish: the message id (a copy sent on purpose has its own). */
  readonly messageId: string;
}

export interface ClusterRigOptions {
  readonly natsUrl: string;
  readonly leaseTtlMs: number;
  readonly tickMs: number;
  readonly replicas: 1 | 3;
}

export class ClusterRig {
  readonly sent: Sent[] = [];
  readonly engines: EngineProcess[] = [];
  private readonly dataDirs: string[] = [];
  private readonly dirs: { remove(): void }[] = [];
  private copies = 0;
  /** Starts not finished yet: close waits for them, or an engine that became ready after a failed Promise.all would outlive the test. */
  private readonly starting = new Set<Promise<EngineProcess>>();

  private constructor(
    readonly nc: NatsConnection,
    readonly jsm: JetStreamManager,
    private readonly options: ClusterRigOptions,
  ) {}

  static async open(nc: NatsConnection, options: ClusterRigOptions): Promise<ClusterRig> {
    return new ClusterRig(nc, await jetstreamManager(nc, { timeout: 30_000 }), options);
  }

  /** Starts an instance; `reuse`: the index of an earlier one whose data directory it starts on. */
  async startInstance(instanceId: string, reuse?: number): Promise<EngineProcess> {
    let dataDir = reuse === undefined ? undefined : this.dataDirs[reuse];
    if (dataDir === undefined) {
      const dir = tempDataDir(`loyalty-cluster-${instanceId}-`);
      this.dirs.push(dir);
      dataDir = dir.path;
    }
    const started = startEngineProcess({
      natsUrl: this.options.natsUrl,
      dataDir,
      readyTimeoutMs: 90_000,
      // CLUSTER_TEST_LOG_DIR: each instance's whole log in <dir>/<instance>.log.
      ...(process.env.CLUSTER_TEST_LOG_DIR === undefined ? {} : { logFile: join(process.env.CLUSTER_TEST_LOG_DIR, `${instanceId}.log`) }),
      env: {
        LOYALTY_CLUSTER: 'true',
        LOYALTY_INSTANCE_ID: instanceId,
        LOYALTY_CLUSTER_LEASE_TTL_MS: String(this.options.leaseTtlMs),
        LOYALTY_CLUSTER_TICK_MS: String(this.options.tickMs),
        LOYALTY_CLUSTER_REPLICAS: String(this.options.replicas),
        LOYALTY_ACTORS: '1',
        LOYALTY_LOG_LEVEL: process.env.CLUSTER_TEST_LOG_LEVEL ?? 'warn',
        LOYALTY_EMBEDDED_NATS_AUTO_INSTALL: 'false',
      },
    });
    this.starting.add(started);
    try {
      const engine = await started;
      this.engines.push(engine);
      this.dataDirs.push(dataDir);
      return engine;
    } finally {
      this.starting.delete(started);
    }
  }

  indexOf(engine: EngineProcess): number {
    return this.engines.indexOf(engine);
  }

  /** Partitions consuming, by the engine's /health (0 when it does not answer). */
  async consuming(engine: EngineProcess): Promise<number> {
    const answer = await health(engine.httpPort);
    return Number(answer.body?.partitionsConsuming ?? 0);
  }

  /** Waits until the engines' consuming partitions add up to all of them and `accept` holds; returns the split. */
  async waitSplit(live: readonly EngineProcess[], timeoutMs: number, accept: (split: number[]) => boolean): Promise<number[]> {
    const deadline = Date.now() + timeoutMs;
    let split: number[] = [];
    while (Date.now() < deadline) {
      split = await Promise.all(live.map((engine) => this.consuming(engine)));
      if (split.reduce((a, b) => a + b, 0) === PARTITIONS && accept(split)) return split;
      await sleep(100);
    }
    throw new Error(`partitions not shared as expected within ${timeoutMs} ms: ${JSON.stringify(split)}\n${this.outputs()}`);
  }

  /**
   * The zombie: `paused` stopped (SIGSTOP) past its lease TTL while `load`
   * is sent; `survivor` fences and restores its partitions. Resumed, its
   * appends are refused, so it commits and publishes nothing of what it held:
   * it either stopped (a refused commit stops an engine, crash-only, exit not
   * 0) or came back as a member before any append and owns partitions again
   * only from the survivor's handover (then it is stopped here). Returns the
   * time until the survivor consumed every partition, and the zombie's exit.
   */
  async zombie(paused: EngineProcess, survivor: EngineProcess, load: () => Promise<unknown>, tickMs: number): Promise<{ takeoverMs: number; exit: number | null }> {
    paused.child.kill('SIGSTOP');
    const pausedAt = Date.now();
    const sending = load();
    await waitForHealth(survivor.httpPort, (answer) => answer.body?.partitionsConsuming === PARTITIONS, 120_000, 'the survivor consuming every partition while the other is paused');
    const takeoverMs = Date.now() - pausedAt;
    await sending;
    paused.child.kill('SIGCONT');
    await sleep(2 * tickMs + 1_000);
    // A refused append may come later than that (a batch in flight at the SIGSTOP waits for its append's answer): until the
    // split is shared again, an exit is still the first outcome.
    let exit = paused.child.exitCode;
    if (exit === null) {
      const deadline = Date.now() + 60_000;
      let split: number[] = [];
      while (paused.child.exitCode === null && Date.now() < deadline) {
        split = await Promise.all([survivor, paused].map((engine) => this.consuming(engine)));
        if (split.reduce((a, b) => a + b, 0) === PARTITIONS && split.every((count) => count > 0)) break;
        await sleep(100);
      }
      exit = paused.child.exitCode;
      if (exit === null) {
        expect(split.every((count) => count > 0), `the zombie shares the partitions again: ${JSON.stringify(split)}\n${this.outputs()}`).toBe(true);
        expect(await paused.stop()).toBe(0);
      }
    }
    if (exit !== null) {
      expect(exit).not.toBe(0);
      expect(paused.output()).toMatch(/ERR_PARTITION_FENCED|another owner fenced it/);
    }
    return { takeoverMs, exit };
  }

  /** Waits until every partition's consumer has delivered and had acked everything the stream holds. */
  async waitDrained(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let behind: string[] = [];
    while (Date.now() < deadline) {
      behind = [];
      for (let partition = 0; partition < PARTITIONS; partition++) {
        const info = await this.jsm.consumers.info('LOYALTY_TX', partitionConsumerName({ consumerName: 'loyalty-engine' }, partition)).catch(() => undefined);
        if (info === undefined || info.num_pending > 0 || info.num_ack_pending > 0) behind.push(`p${partition}:${info === undefined ? 'none' : `${info.num_pending}/${info.num_ack_pending}`}`);
      }
      if (behind.length === 0) return;
      await sleep(500);
    }
    throw new Error(`partitions still behind after ${timeoutMs} ms: ${behind.join(' ')}\n${this.outputs()}`);
  }

  outputs(): string {
    return this.engines.map((engine, index) => `--- engine ${index} ---\n${engine.output().slice(-4_000)}`).join('\n');
  }

  /** `count` purchases over the members, every tenth sent twice (the copy a duplicate wherever its partition lives by then). */
  batchOf(phase: string, count: number): Message[] {
    const messages: Message[] = [];
    for (let index = 0; index < count; index++) {
      const memberId = `m-${(index * 7 + phase.length) % MEMBERS}`;
      const id = `${phase}-${index}`;
      const amountMinor = 100 * (1 + (index % 9));
      const payload = encoder.encode(JSON.stringify({ id, memberId, type: 'purchase', occurredAt: '2026-11-23T10:00:00.000Z', amountMinor, currency: 'EUR' }));
      messages.push({ subject: `loyalty.tx.${memberId}`, payload, messageId: id });
      this.sent.push({ id, memberId, points: amountMinor / 100 });
      if (index % 10 === 0) messages.push({ subject: `loyalty.tx.${memberId}`, payload, messageId: `${id}#copy-${this.copies++}` });
    }
    return messages;
  }

  /** Core NATS publishes, then checks the stream stored them all (one server: nothing is lost on the way). */
  publishCore(messages: readonly Message[]): Promise<number> {
    return publishAll(this.nc, messages);
  }

  /**
   * JetStream publishes with message ids, each retried until acknowledged: what
   * a producer must do across a stream leader's death (the stream drops a
   * retried one it already has). At most 64 in flight.
   */
  async publishAcked(messages: readonly Message[]): Promise<void> {
    const js = jetstream(this.nc, { timeout: 5_000 });
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < messages.length) {
        const message = messages[next++]!;
        for (let attempt = 0; ; attempt++) {
          try {
            await js.publish(message.subject, message.payload, { msgID: message.messageId });
            break;
          } catch (error) {
            if (attempt >= 200) throw error;
            await sleep(100);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
  }

  /** Each member's expected spendable balance from the distinct events sent so far. */
  expectedBalances(): Map<string, number> {
    const sums = new Map<string, number>();
    for (const [memberId, events] of this.expectedEvents()) sums.set(memberId, [...events.values()].reduce((total, points) => total + points, 0));
    return sums;
  }

  private expectedEvents(): Map<string, Map<string, number>> {
    const expected = new Map<string, Map<string, number>>();
    for (const { id, memberId, points } of this.sent) {
      const events = expected.get(memberId) ?? new Map<string, number>();
      events.set(id, points);
      expected.set(memberId, events);
    }
    return expected;
  }

  /**
   * The truth is the changelogs: every partition rebuilt from them alone into
   * an empty store equals, member by member, the sum of its distinct events
   * (balance, ledger, points per event). And one set of outcomes per event:
   * every event has its balance outcome exactly once in the outcome stream.
   */
  async verify(): Promise<void> {
    const rebuiltDir = tempDataDir('loyalty-cluster-rebuilt-');
    this.dirs.push(rebuiltDir);
    const rebuilt = new LmdbStore({ dataDir: join(rebuiltDir.path, 'store'), mapSizeBytes: 512 * 1024 * 1024, partitions: PARTITIONS });
    await rebuilt.ensureMeta(PARTITIONS, 0);
    const snapshots = await PartitionSnapshots.open(this.nc, { replicas: this.options.replicas });
    const js = jetstream(this.nc);
    for (let partition = 0; partition < PARTITIONS; partition++) {
      await restorePartition({ snapshots, changelog: new PartitionChangelog(js, this.jsm, 'LOYALTY_CHANGELOG', 'loyalty', partition, 'test-reader'), root: rebuilt.root, partition });
    }
    let checked = 0;
    for (const [memberId, events] of this.expectedEvents()) {
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

    // The outcome stream de-duplicates by message id, so a duplicate or a redelivery after a handover adds nothing.
    const balances = new Map<string, number>();
    // One replica in memory: with a server of three dead, an R3 consumer's create can wait out the API timeout.
    const consumer = await withCreateRetries(
      () => this.jsm.consumers.add('LOYALTY_OUTCOMES', { filter_subject: 'loyalty.outcome.balance.>', ack_policy: AckPolicy.None, num_replicas: 1, mem_storage: true, inactive_threshold: nanos(300_000) }),
      'the test\'s outcome reader',
    );
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
    expect(balances.size).toBe(new Set(this.sent.map((each) => each.id)).size);
    expect([...balances.entries()].filter(([, count]) => count !== 1)).toEqual([]);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.starting]);
    for (const engine of this.engines) {
      if (engine.child.exitCode !== null) continue;
      engine.child.kill('SIGCONT');
      await engine.kill();
    }
    for (const dir of this.dirs) dir.remove();
  }
}
