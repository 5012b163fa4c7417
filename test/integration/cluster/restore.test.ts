import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor, ActorFailedError } from '../../../src/actors/actor.js';
import { ensureChangelogStream, PartitionFencedError } from '../../../src/cluster/changelog.js';
import { changelogRecorder, restorePartition, takeSnapshot } from '../../../src/cluster/restore.js';
import { SnapshotSchedule } from '../../../src/cluster/snapshot-schedule.js';
import { PartitionSnapshots } from '../../../src/cluster/snapshots.js';
import { Encoding, type BatchRecord } from '../../../src/routing/batch-buffer.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { LmdbStore } from '../../../src/store/lmdb.js';
import { incompleteImports } from '../../../src/store/partition-transfer.js';
import { actorOptions, emptyStore, exportedPartition, filledStore, generatedRecords, PARTITIONS, partitionView, program, sameBytes } from '../../helpers/partition-stores.js';
import { ChangelogRig, feed, inBatches } from '../../helpers/changelog-restore.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * A partition restored by a new owner as snapshot + changelog tail, against a
 * real nats-server: the owner's store appends each batch's changes of a
 * partition to its changelog before writing them (changelogRecorder), takes a
 * snapshot midway, commits more; another store restores the partition and
 * holds it byte for byte, with the owner's input watermark, from the
 * snapshot and the tail or from the tail alone.
 */
let server: TestNatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let rig: ChangelogRig;
const STREAM = 'LOYALTY_CHANGELOG_RESTORE';
const root = mkdtempSync(join(tmpdir(), 'loyalty-restore-'));
/** After every purchase's return window and pending period (the generated traffic ends 2026-12-01). */
const SWEEP_AT_MS = Date.parse('2027-03-01T00:00:00Z');
const print = (line: string) => process.stdout.write(`[restore] ${line}\n`);

beforeAll(async () => {
  server = await startTestNatsServer();
  nc = await connectTest(server.url);
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  rig = new ChangelogRig(js, jsm, STREAM);
  for (const prefix of ['t1', 't2', 't4']) await ensureChangelogStream(jsm, { stream: rig.streamOf(prefix), subjectPrefix: prefix, replicas: 1 });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});

async function sweepAll(actor: Actor): Promise<void> {
  for (let sweeps = 0; sweeps < 50; sweeps++) if ((await actor.sweep(SWEEP_AT_MS, 500)).result.finished) return;
  throw new Error('the sweep did not finish');
}


describe('a partition restored from its snapshot and changelog tail', () => {
  it('is byte for byte the owner\'s, with its watermark, from snapshot + tail and from the tail alone; the new owner continues after its fence', async () => {
    const snapshots = await PartitionSnapshots.open(nc, { bucket: 'RESTORE_T1', replicas: 1 });
    const noSnapshots = await PartitionSnapshots.open(nc, { bucket: 'RESTORE_T1_NONE', replicas: 1 });
    const owner = await emptyStore(root, 'owner');
    const changelogs = await rig.fencedChangelogs('t1', Array.from({ length: PARTITIONS }, (_, partition) => partition), 'engine-a', 1);
    const recording = changelogRecorder(changelogs);
    owner.setChangeRecorder(recording.recorder);
    const actor = new Actor(owner, program, actorOptions);
    const watermarks = new Map<number, number>();
    const traffic = generatedRecords({ runId: 'restore', members: 300, count: 3_000 });
    const partition = partitionOf('m1', PARTITIONS);

    await feed(actor, inBatches(traffic.slice(0, 1_500), 128), PARTITIONS, watermarks);
    // Between commits: the last append's commit completed, so its position describes the store.
    const position = { ...recording.appended(partition), owner: 'engine-a', epoch: 1 };
    expect(position.watermark).toBe(watermarks.get(partition));
    const snapshot = await takeSnapshot({ snapshots, root: owner.root, partition, position });
    // Re-sent events (duplicates), more traffic, a sweep (pruned orders, moved due keys: deletes).
    await feed(actor, inBatches([...traffic.slice(1_500), ...traffic.slice(0, 300).map((record, index) => ({ ...record, streamSequence: 3_001 + index }))], 128), PARTITIONS, watermarks);
    await sweepAll(actor);

    // The new owner fences first: the old owner's next batch of the partition is refused and not committed.
    const taken = rig.changelogOf('t1', partition, 'engine-b');
    const fenceSeq = await taken.fence(2);
    const ownerBefore = exportedPartition(owner.root, partition);
    const members = [...new Set(traffic.map((record) => record.memberId))].filter((memberId) => partitionOf(memberId, PARTITIONS) === partition);
    const purchases = (prefix: string, firstSequence: number, count: number): BatchRecord[] =>
      members.slice(0, count).map((memberId, index) => {
        const event = { type: 'purchase', id: `${prefix}-${index}`, memberId, occurredAt: '2026-12-15T12:00:00Z', amountMinor: 4_200 + index, currency: 'EUR' };
        return { streamSequence: firstSequence + index, publishedAtMs: 0, encoding: Encoding.Json, memberId, payload: new TextEncoder().encode(JSON.stringify(event)) };
      });
    await expect(actor.process(purchases('zombie', 9_000, 5))).rejects.toThrow(ActorFailedError);
    await expect(changelogs.get(partition)!.append(new Uint8Array([1]))).rejects.toBeInstanceOf(PartitionFencedError);
    expect(sameBytes(exportedPartition(owner.root, partition), ownerBefore)).toBe(true);

    // Restored into a store that holds other, stale members of the partition: replaced.
    const target = await filledStore(root, 'target', 200, 800, 2);
    const untouched = exportedPartition(target.store.root, (partition + 1) % PARTITIONS);
    expect(exportedPartition(target.store.root, partition).summary.records).toBeGreaterThan(0);
    const restored = await restorePartition({ snapshots, changelog: taken, root: target.store.root, partition });
    expect(restored.snapshot).toMatchObject({ changelogSeq: snapshot.changelogSeq, watermark: snapshot.watermark, sha256: snapshot.sha256 });
    expect(restored.commits).toBeGreaterThan(5);
    expect(restored.fences).toBe(1);
    expect(restored.changelogSeq).toBe(fenceSeq);
    expect(restored.watermark).toBe(watermarks.get(partition));
    expect(sameBytes(exportedPartition(target.store.root, partition), ownerBefore)).toBe(true);
    expect(sameBytes(exportedPartition(target.store.root, (partition + 1) % PARTITIONS), untouched)).toBe(true);
    expect(incompleteImports(target.store.root)).toEqual([]);
    const ids = new Map<string, string[]>();
    for (const record of traffic) if (partitionOf(record.memberId, PARTITIONS) === partition) ids.set(record.memberId, []);
    expect(partitionView(target.store, partition, ids)).toEqual(partitionView(owner, partition, ids));

    // From the tail alone (no snapshot), every partition: the same bytes and watermarks.
    const fromTail = await emptyStore(root, 'from-tail');
    for (let each = 0; each < PARTITIONS; each++) {
      const changelog = each === partition ? taken : rig.changelogOf('t1', each, 'reader');
      const replayed = await restorePartition({ snapshots: noSnapshots, changelog, root: fromTail.root, partition: each });
      expect(replayed.snapshot).toBeUndefined();
      expect(replayed.watermark).toBe(watermarks.get(each));
      expect(replayed.changelogSeq).toBe(each === partition ? fenceSeq : recording.appended(each).changelogSeq);
      expect(sameBytes(exportedPartition(fromTail.root, each), exportedPartition(owner.root, each))).toBe(true);
    }

    // The new owner commits on the restored partition after its fence; the next restore picks that up too.
    // Its records carry its published watermark (outcomes acknowledged through 10,004), never past what they commit.
    expect(restored.publishedWatermark).toBe(0); // the first owner's recorder knew of no acknowledged outcomes
    let acknowledged = 10_004;
    const next = changelogRecorder(new Map([[partition, taken]]), new Map([[partition, restored.watermark]]), () => acknowledged);
    target.store.setChangeRecorder(next.recorder);
    const newActor = new Actor(target.store, program, { ...actorOptions, bootId: 2 });
    const later = purchases('later', 10_000, 10);
    expect(later.length).toBe(10);
    const { result } = await newActor.process(later);
    expect(result.counts).toEqual({ 'purchase|applied': 10 });
    expect(next.appended(partition)).toEqual({ changelogSeq: taken.lastSequence, watermark: 10_009, publishedWatermark: 10_004 });
    const again = await emptyStore(root, 'again');
    const second = await restorePartition({ snapshots, changelog: rig.changelogOf('t1', partition, 'engine-c'), root: again.root, partition });
    expect(second).toMatchObject({ changelogSeq: taken.lastSequence, watermark: 10_009, publishedWatermark: 10_004 });
    expect(sameBytes(exportedPartition(again.root, partition), exportedPartition(target.store.root, partition))).toBe(true);
    // A mark ahead of everything committed (a stale one) is written as the commit's own watermark at most.
    acknowledged = 99_999;
    await newActor.process(purchases('clipped', 10_010, 1));
    expect(next.appended(partition)).toMatchObject({ watermark: 10_010, publishedWatermark: 10_010 });

    for (const store of [owner, target.store, fromTail, again]) await store.close();
  }, 120_000);

  it('with snapshots taken by the schedule as the owner commits (compacting), every partition restores byte for byte at the owner\'s watermark', async () => {
    const snapshots = await PartitionSnapshots.open(nc, { bucket: 'RESTORE_T4', replicas: 1 });
    const owner = await emptyStore(root, 'scheduled');
    const partitions = Array.from({ length: PARTITIONS }, (_, each) => each);
    const changelogs = await rig.fencedChangelogs('t4', partitions, 'engine-a', 1);
    const recording = changelogRecorder(changelogs);
    owner.setChangeRecorder(recording.recorder);
    const actor = new Actor(owner, program, actorOptions);
    const errors: unknown[] = [];
    const schedule = new SnapshotSchedule({
      recordsMin: 6,
      bytesMin: 4 * 1024 * 1024,
      intervalMsMin: 0,
      retryMs: 100,
      take: async (partition, position) => {
        await takeSnapshot({ snapshots, root: owner.root, partition, position, compact: changelogs.get(partition)! });
      },
      onError: (_partition, error) => errors.push(error),
    });
    for (const each of partitions) schedule.own(each);
    const watermarks = new Map<number, number>();
    const traffic = generatedRecords({ runId: 'scheduled', members: 300, count: 3_000 });
    const commits = partitions.map(() => 0);
    // The engine's order: a batch's appends, then its LMDB commit, then the schedule is told (only a completed commit labels a snapshot).
    for (const batch of inBatches(traffic, 100)) {
      const before = partitions.map((each) => changelogs.get(each)!.lastSequence);
      await feed(actor, [batch], PARTITIONS, watermarks);
      for (const each of partitions) {
        if (changelogs.get(each)!.lastSequence === before[each]) continue;
        commits[each]! += 1;
        schedule.committed(each, { ...recording.appended(each), owner: 'engine-a', epoch: 1 }, 1);
      }
    }
    await schedule.stop();
    expect(errors).toEqual([]);
    const { taken } = schedule.stats();
    expect(taken).toBeGreaterThanOrEqual(PARTITIONS);
    let replayed = 0;
    for (const each of partitions) {
      const target = await emptyStore(root, `scheduled-${each}`);
      const restored = await restorePartition({ snapshots, changelog: rig.changelogOf('t4', each, 'reader'), root: target.root, partition: each });
      expect(restored.snapshot).toBeDefined();
      expect(restored.watermark).toBe(watermarks.get(each));
      // Only the records after the partition's last snapshot are replayed.
      expect(restored.commits).toBeLessThan(commits[each]!);
      replayed += restored.commits;
      expect(sameBytes(exportedPartition(target.root, each), exportedPartition(owner.root, each))).toBe(true);
      await target.close();
    }
    const stream = await jsm.streams.info(`${STREAM}_T4`);
    // Compacted: the stream keeps the fences, the record at each snapshot's position and the tails, not every commit.
    const appended = commits.reduce((sum, count) => sum + count, 0);
    expect(stream.state.messages).toBeLessThan(appended);
    print(`scheduled snapshots: ${taken} over ${PARTITIONS} partitions (${inBatches(traffic, 100).length} batches), ${replayed} records replayed after them in all, changelog left with ${stream.state.messages} messages`);
    await owner.close();
  }, 300_000);

  it('after a snapshot that compacted the changelog, restores from snapshot + tail, and refuses the tail alone (records missing)', async () => {
    const snapshots = await PartitionSnapshots.open(nc, { bucket: 'RESTORE_T2', replicas: 1 });
    const noSnapshots = await PartitionSnapshots.open(nc, { bucket: 'RESTORE_T2_NONE', replicas: 1 });
    const partition = partitionOf('m1', PARTITIONS);
    const owner = await emptyStore(root, 'compacted');
    const changelogs = await rig.fencedChangelogs('t2', Array.from({ length: PARTITIONS }, (_, each) => each), 'engine-a', 1);
    const recording = changelogRecorder(changelogs);
    owner.setChangeRecorder(recording.recorder);
    const actor = new Actor(owner, program, actorOptions);
    const watermarks = new Map<number, number>();
    const traffic = generatedRecords({ runId: 'compacted', members: 200, count: 1_200 });
    await feed(actor, inBatches(traffic.slice(0, 600), 100), PARTITIONS, watermarks);
    const position = { ...recording.appended(partition), owner: 'engine-a', epoch: 1 };
    await takeSnapshot({ snapshots, root: owner.root, partition, position, compact: changelogs.get(partition)! });
    await feed(actor, inBatches(traffic.slice(600), 100), PARTITIONS, watermarks);

    const target = await emptyStore(root, 'compacted-target');
    const restored = await restorePartition({ snapshots, changelog: rig.changelogOf('t2', partition, 'reader'), root: target.root, partition });
    expect(restored.snapshot?.changelogSeq).toBe(position.changelogSeq);
    expect(restored.watermark).toBe(watermarks.get(partition));
    expect(sameBytes(exportedPartition(target.root, partition), exportedPartition(owner.root, partition))).toBe(true);

    const tailOnly = await emptyStore(root, 'compacted-tail');
    await expect(restorePartition({ snapshots: noSnapshots, changelog: rig.changelogOf('t2', partition, 'reader'), root: tailOnly.root, partition })).rejects.toMatchObject({
      code: 'ERR_CHANGELOG_RECORD',
      message: expect.stringMatching(/a record is missing/),
    });
    expect(incompleteImports(tailOnly.root)).toEqual([partition]);
    for (const store of [owner, target, tailOnly]) await store.close();
  }, 60_000);
});
