import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor } from '../../../src/actors/actor.js';
import { ClusterPartitions } from '../../../src/actors/cluster-partitions.js';
import type { ActorWorkerData } from '../../../src/actors/protocol.js';
import { createBudgetLayout } from '../../../src/actors/budgets.js';
import { ensureChangelogStream, PartitionChangelog } from '../../../src/cluster/changelog.js';
import { restorePartition } from '../../../src/cluster/restore.js';
import { PartitionSnapshots } from '../../../src/cluster/snapshots.js';
import { loadSettings } from '../../../src/config/settings.js';
import { createLogger } from '../../../src/log.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { actorOptions, emptyStore, exportedPartition, generatedRecords, PARTITIONS, program, sameBytes } from '../../helpers/partition-stores.js';
import { waitFor } from '../../helpers/engine-process.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Cluster mode's actor side against a real nats-server: the partitions an
 * owner holds are snapshotted by the schedule as it commits (thresholds from
 * the settings), their changelogs compacted behind the snapshots, and another
 * store restores each partition from snapshot + tail byte for byte. A
 * partition released is no longer snapshotted.
 */
let server: TestNatsServer;
let nc: NatsConnection;
const root = mkdtempSync(join(tmpdir(), 'loyalty-cluster-partitions-'));
const STREAM = 'LOYALTY_CHANGELOG_CP';
const BUCKET = 'LOYALTY_SNAPSHOTS_CP';

beforeAll(async () => {
  server = await startTestNatsServer();
  nc = await connectTest(server.url);
  await ensureChangelogStream(await jetstreamManager(nc), { stream: STREAM, subjectPrefix: 'loyalty', replicas: 1 });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});

function workerData(): ActorWorkerData {
  const settings = loadSettings(
    {},
    { cluster: 'true', natsUrl: server.url, partitions: String(PARTITIONS), changelogStreamName: STREAM, snapshotBucket: BUCKET, snapshotRecordsMin: '5', snapshotBytesMin: String(1024 * 1024), snapshotIntervalMsMin: '0', logLevel: 'warn' },
  );
  return { actorIndex: 0, settings, program, budgets: createBudgetLayout({}, new Map()), bootId: 1, natsUrl: server.url, instanceId: 'engine-a' };
}

describe('an actor thread\'s partitions in cluster mode', () => {
  it('snapshots its partitions as it commits and compacts their changelogs; each restores elsewhere byte for byte; a released one is left alone', async () => {
    const data = workerData();
    const store = await emptyStore(root, 'owner');
    const actor = new Actor(store, program, { ...actorOptions, ownsPartitions: 'given' });
    const partitions = await ClusterPartitions.open(nc, store, actor, data, createLogger('warn'));
    const all = Array.from({ length: PARTITIONS }, (_, partition) => partition);
    for (const partition of all) await partitions.exclusive(() => partitions.own(partition, 10 + partition));
    const released = 3;
    const traffic = generatedRecords({ runId: 'cp', members: 200, count: 4_000 });
    const half = traffic.length / 2;
    for (let offset = 0; offset < half; offset += 100) await actor.process(traffic.slice(offset, offset + 100));
    await waitFor(() => partitions.snapshotStats().queued === 0 && partitions.snapshotStats().running === null, 20_000, 'the snapshots queued to be taken');
    await partitions.exclusive(async () => partitions.release(released));
    const takenBefore = partitions.snapshotStats().taken;
    const rest = traffic.slice(half).filter((record) => partitionOf(record.memberId, PARTITIONS) !== released);
    for (let offset = 0; offset < rest.length; offset += 100) await actor.process(rest.slice(offset, offset + 100));
    await partitions.close();
    const stats = partitions.snapshotStats();
    expect(stats.failed).toBe(0);
    expect(takenBefore).toBeGreaterThanOrEqual(PARTITIONS);
    expect(stats.taken).toBeGreaterThan(takenBefore);

    const snapshots = await PartitionSnapshots.open(nc, { bucket: BUCKET, replicas: 1 });
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const releasedInfo = await snapshots.info(released);
    let replayed = 0;
    for (const partition of all) {
      const target = await emptyStore(root, `restored-${partition}`);
      const restored = await restorePartition({ snapshots, changelog: new PartitionChangelog(js, jsm, STREAM, 'loyalty', partition, 'reader'), root: target.root, partition });
      expect(restored.snapshot, `partition ${partition}`).toBeDefined();
      expect(restored.snapshot!.owner).toBe('engine-a');
      expect(restored.snapshot!.epoch).toBe(10 + partition);
      replayed += restored.commits;
      expect(sameBytes(exportedPartition(target.root, partition), exportedPartition(store.root, partition)), `partition ${partition}`).toBe(true);
      await target.close();
    }
    // The released partition's last snapshot was taken while it was owned: none after its release.
    expect((await snapshots.info(released))?.changelogSeq).toBe(releasedInfo?.changelogSeq);
    // Compacted: far fewer records left than were appended (one per partition per batch touching it).
    const left = (await jsm.streams.info(STREAM)).state.messages;
    expect(left).toBeLessThan(traffic.length / 100 * PARTITIONS / 2);
    process.stdout.write(`[cluster-partitions] ${stats.taken} snapshots over ${PARTITIONS} partitions, ${replayed} records replayed after them, ${left} changelog messages left\n`);

    // Another actor takes every partition over at once (owning: takeovers side by side, up to 4): each restored byte
    // for byte as its last owner left it; a release asked for while its own runs waits for it and lets it go.
    const takerStore = await emptyStore(root, 'taker');
    const taker = await ClusterPartitions.open(nc, takerStore, new Actor(takerStore, program, { ...actorOptions, ownsPartitions: 'given' }), { ...data, instanceId: 'engine-b' }, createLogger('warn'));
    const owned = all.filter((partition) => partition !== released);
    const restoredAll = await Promise.all(owned.map((partition) => taker.owning(partition, 100 + partition)));
    expect(restoredAll.map((position) => position.partition)).toEqual(owned);
    for (const partition of owned) expect(sameBytes(exportedPartition(takerStore.root, partition), exportedPartition(store.root, partition)), `partition ${partition} taken over side by side`).toBe(true);
    const again = taker.owning(released, 200);
    await taker.exclusive(() => taker.release(released));
    expect((await again).partition).toBe(released);
    await taker.close();
    await takerStore.close();
    await store.close();
  }, 120_000);
});
