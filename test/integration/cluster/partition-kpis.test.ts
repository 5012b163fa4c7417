import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor } from '../../../src/actors/actor.js';
import { ensureChangelogStream, PartitionChangelog } from '../../../src/cluster/changelog.js';
import { changelogRecorder, restorePartition, takeSnapshot } from '../../../src/cluster/restore.js';
import { PartitionSnapshots } from '../../../src/cluster/snapshots.js';
import type { ReportSource } from '../../../src/reports/report.js';
import type { BatchRecord } from '../../../src/routing/batch-buffer.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { actorOptions, emptyStore, exportedPartition, generatedRecords, PARTITIONS, program, sameBytes } from '../../helpers/partition-stores.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Cluster mode's KPI counters move with their partition (issue 17): the
 * owner's changelog records and snapshots carry each partition's counters
 * (tree `partitionKpis`), so an instance that restores a partition as
 * snapshot + changelog tail reports for it what the old owner did, and what
 * it counts after goes on from there and moves on again. Real nats-server.
 */
let server: TestNatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const STREAM = 'LOYALTY_CHANGELOG_KPIS';
const PREFIX = 'kpis';
const root = mkdtempSync(join(tmpdir(), 'loyalty-partition-kpis-restore-'));
/** After every purchase's return window and pending period (the generated traffic ends 2026-12-01). */
const SWEEP_AT_MS = Date.parse('2027-03-01T00:00:00Z');
const ALL = Array.from({ length: PARTITIONS }, (_, partition) => partition);

beforeAll(async () => {
  server = await startTestNatsServer();
  nc = await connectTest(server.url);
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  await ensureChangelogStream(jsm, { stream: STREAM, subjectPrefix: PREFIX, replicas: 1 });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});

const changelogOf = (partition: number, owner: string) => new PartitionChangelog(js, jsm, STREAM, PREFIX, partition, owner);

async function feed(actor: Actor, records: readonly BatchRecord[]): Promise<void> {
  for (let offset = 0; offset < records.length; offset += 128) await actor.process(records.slice(offset, offset + 128));
}

describe('KPI counters of a partition restored from its snapshot and changelog tail', () => {
  it('are the old owner\'s for it on the new owner, and what the new owner counts after moves on with the partition again', async () => {
    const snapshots = await PartitionSnapshots.open(nc, { bucket: 'KPIS_RESTORE', replicas: 1 });
    const noSnapshots = await PartitionSnapshots.open(nc, { bucket: 'KPIS_RESTORE_NONE', replicas: 1 });
    const owner = await emptyStore(root, 'owner');
    const changelogs = new Map<number, PartitionChangelog>();
    for (const partition of ALL) {
      const changelog = changelogOf(partition, 'engine-a');
      await changelog.fence(1);
      changelogs.set(partition, changelog);
    }
    const recording = changelogRecorder(changelogs);
    owner.setChangeRecorder(recording.recorder);
    const actor = new Actor(owner, program, actorOptions);
    const traffic = generatedRecords({ runId: 'kpis_restore', members: 300, count: 3_000 });
    const moved = [partitionOf('m1', PARTITIONS), (partitionOf('m1', PARTITIONS) + 5) % PARTITIONS];

    await feed(actor, traffic.slice(0, 1_500));
    // Snapshots midway: the counters so far are in them, the rest in the tail after them.
    const atSnapshot = new Map<number, ReportSource>();
    for (const partition of moved) {
      await takeSnapshot({ snapshots, root: owner.root, partition, position: { ...recording.appended(partition), owner: 'engine-a', epoch: 1 } });
      atSnapshot.set(partition, owner.reportSource([partition]));
    }
    await feed(actor, traffic.slice(1_500));
    for (let sweeps = 0; sweeps < 50; sweeps++) if ((await actor.sweep(SWEEP_AT_MS, 500)).result.finished) break;
    for (const partition of moved) {
      expect(atSnapshot.get(partition)!.days.size).toBeGreaterThan(0);
      expect(owner.reportSource([partition])).not.toEqual(atSnapshot.get(partition));
    }

    // The new owner fences, restores, and reports for the partitions exactly what the old owner did.
    const next = await emptyStore(root, 'next');
    const taken = new Map<number, PartitionChangelog>();
    const restoredAt = new Map<number, number>();
    for (const partition of moved) {
      const changelog = changelogOf(partition, 'engine-b');
      await changelog.fence(2);
      taken.set(partition, changelog);
      const restored = await restorePartition({ snapshots, changelog, root: next.root, partition });
      expect(restored.snapshot).toBeDefined();
      expect(restored.commits).toBeGreaterThan(0);
      restoredAt.set(partition, restored.watermark);
      expect(sameBytes(exportedPartition(next.root, partition), exportedPartition(owner.root, partition))).toBe(true);
    }
    expect(next.reportSource(moved)).toEqual(owner.reportSource(moved));
    expect(next.reportSource()).toEqual({ days: new Map(), weeks: new Map(), months: new Map() });
    // From the tail alone (no snapshot): the same.
    const fromTail = await emptyStore(root, 'from-tail');
    for (const partition of moved) await restorePartition({ snapshots: noSnapshots, changelog: changelogOf(partition, 'reader'), root: fromTail.root, partition });
    expect(fromTail.reportSource(moved)).toEqual(owner.reportSource(moved));

    // The new owner counts more of them; a third store restoring them now gets its counts too.
    const nextRecording = changelogRecorder(taken, restoredAt);
    next.setChangeRecorder(nextRecording.recorder);
    const nextActor = new Actor(next, program, { ...actorOptions, bootId: 2, ownsPartitions: 'given' });
    for (const partition of moved) nextActor.ownPartition(partition);
    const more = generatedRecords({ runId: 'kpis_restore_more', members: 300, count: 1_000, keep: (memberId) => moved.includes(partitionOf(memberId, PARTITIONS)) });
    expect(more.length).toBeGreaterThan(50);
    const before = next.reportSource(moved);
    await feed(nextActor, more.map((record) => ({ ...record, streamSequence: 10_000 + record.streamSequence })));
    expect(next.reportSource(moved)).not.toEqual(before);
    const third = await emptyStore(root, 'third');
    for (const partition of moved) await restorePartition({ snapshots, changelog: changelogOf(partition, 'engine-c'), root: third.root, partition });
    expect(third.reportSource(moved)).toEqual(next.reportSource(moved));

    for (const store of [owner, next, fromTail, third]) await store.close();
  }, 120_000);
});
