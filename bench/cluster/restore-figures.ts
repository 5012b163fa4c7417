/**
 * Restore figures (issue 17): what a changelog record weighs per event, how long a new owner
 * takes to restore a realistic partition from its snapshot and tail (and from the tail alone),
 * and what recording costs a commit. One partition's share of generated retail traffic goes
 * through the actor and the store's changelog recorder against a real nats-server: the first
 * half before a snapshot, the rest the tail. The restored partitions are checked byte for byte
 * against the owner's before any figure is printed.
 *
 *   npx tsx bench/cluster/restore-figures.ts [--events 400000] [--members 100000] [--partitions 64]
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Actor } from '../../src/actors/actor.js';
import { ensureChangelogStream } from '../../src/cluster/changelog.js';
import { changelogRecorder, restorePartition, takeSnapshot } from '../../src/cluster/restore.js';
import { PartitionSnapshots } from '../../src/cluster/snapshots.js';
import type { BatchRecord } from '../../src/routing/batch-buffer.js';
import { partitionOf } from '../../src/routing/partitioner.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import { encodePartitionChanges, type ChangeRecorder } from '../../src/store/partition-changes.js';
import { ChangelogRig, feed, inBatches } from '../../test/helpers/changelog-restore.js';
import { connectTest, startTestNatsServer } from '../../test/helpers/nats-server.js';
import { actorOptions, exportedPartition, generatedRecords, program, sameBytes } from '../../test/helpers/partition-stores.js';

const { values } = parseArgs({ options: { events: { type: 'string', default: '400000' }, members: { type: 'string', default: '100000' }, partitions: { type: 'string', default: '64' } } });
const events = Number(values.events);
const members = Number(values.members);
const print = (line: string) => process.stdout.write(`[restore] ${line}\n`);
const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const round = (value: number, digits = 2) => Number(value.toFixed(digits));

const root = mkdtempSync(join(tmpdir(), 'loyalty-restore-bench-'));
const server = await startTestNatsServer();
const nc = await connectTest(server.url);
try {
  const jsm = await jetstreamManager(nc);
  const rig = new ChangelogRig(jetstream(nc), jsm, 'LOYALTY_CHANGELOG_RESTORE');
  await ensureChangelogStream(jsm, { stream: rig.streamOf('t3'), subjectPrefix: 't3', replicas: 1 });
  // --members over --partitions; one partition's share of --events generated events (the others only take their
  // stream sequences): the first half before the snapshot, the rest the tail.
  const partitions = Number(values.partitions);
  const partition = 5;
  const options = { ...actorOptions, partitions, memberCacheMax: 50_000 };
  const open = async (name: string) => {
    const store = new LmdbStore({ dataDir: join(root, name), mapSizeBytes: 1024 * 1024 * 1024, partitions });
    await store.ensureMeta(partitions, 0);
    return store;
  };
  const traffic = generatedRecords({ runId: 'figures', members, count: events, keep: (memberId) => partitionOf(memberId, partitions) === partition });
  const before = inBatches(traffic.filter((record) => record.streamSequence <= events / 2), 64);
  const tail = inBatches(traffic.filter((record) => record.streamSequence > events / 2), 32);

  const snapshots = await PartitionSnapshots.open(nc, { bucket: 'RESTORE_T3', replicas: 1 });
  const noSnapshots = await PartitionSnapshots.open(nc, { bucket: 'RESTORE_T3_NONE', replicas: 1 });
  const owner = await open('figures-owner');
  const changelogs = await rig.fencedChangelogs('t3', [partition], 'engine-a', 1);
  const recording = changelogRecorder(changelogs);
  const records: { bytes: number; events: number }[] = [];
  const appendMs: number[] = [];
  let batchEvents = 0;
  owner.setChangeRecorder(async (changes) => {
    const started = performance.now();
    for (const each of changes) records.push({ bytes: encodePartitionChanges(each, 0).length, events: batchEvents });
    await recording.recorder(changes);
    appendMs.push(performance.now() - started);
  });
  // The same batches, interleaved, on a store without a recorder and one whose recorder encodes the records and
  // appends nothing: the difference of their commits' synchronous part (the actor thread's work) is the recording's.
  const plain = await open('figures-plain');
  const encoding = await open('figures-encoding');
  const encodeMs: number[] = [];
  const encodeOnly: ChangeRecorder = (changes) => {
    const started = performance.now();
    for (const each of changes) encodePartitionChanges(each, 0);
    encodeMs.push(performance.now() - started);
  };
  encoding.setChangeRecorder(encodeOnly);
  const syncMs = new Map<LmdbStore, number[]>([
    [plain, []],
    [encoding, []],
  ]);
  for (const [store, times] of syncMs) {
    const commit = store.commit.bind(store);
    store.commit = (write) => {
      const started = performance.now();
      const committed = commit(write);
      times.push(performance.now() - started);
      return committed;
    };
  }
  const actors = new Map([owner, plain, encoding].map((store) => [store, new Actor(store, program, options)]));
  const watermarks = new Map<number, number>();
  let turn = 0;
  const run = async (batches: BatchRecord[][]) => {
    for (const batch of batches) {
      batchEvents = batch.length;
      await feed(actors.get(owner)!, [batch], partitions, watermarks);
      const order = turn++ % 2 === 0 ? [plain, encoding] : [encoding, plain];
      for (const store of order) await actors.get(store)!.process(batch);
    }
  };
  await run(before);
  const position = { ...recording.appended(partition), owner: 'engine-a', epoch: 1 };
  const snapshot = await takeSnapshot({ snapshots, root: owner.root, partition, position });
  await run(tail);
  const expected = exportedPartition(owner.root, partition);

  const target = await open('figures-target');
  const restored = await restorePartition({ snapshots, changelog: rig.changelogOf('t3', partition, 'reader'), root: target.root, partition });
  assert.equal(restored.commits, tail.length);
  assert.equal(restored.watermark, watermarks.get(partition));
  assert.ok(sameBytes(exportedPartition(target.root, partition), expected), 'the restored partition is byte for byte the owner\'s');
  const fromTail = await open('figures-tail');
  const replayed = await restorePartition({ snapshots: noSnapshots, changelog: rig.changelogOf('t3', partition, 'reader'), root: fromTail.root, partition });
  assert.equal(replayed.commits, before.length + tail.length);
  assert.equal(replayed.watermark, watermarks.get(partition));
  assert.ok(sameBytes(exportedPartition(fromTail.root, partition), expected), 'the partition restored from the tail alone is byte for byte the owner\'s');

  const perEvent = records.map((record) => record.bytes / record.events);
  const tailRecords = records.slice(before.length);
  const [plainMs, encodingMs] = [syncMs.get(plain)!, syncMs.get(encoding)!];
  const sum = (values: readonly number[]) => values.reduce((total, value) => total + value, 0);
  print(`partition ${partition} of ${partitions}, ${members} members: ${traffic.length} events, ${expected.summary.records} records, ${round(expected.summary.valueBytes / 1e6)} MB stored`);
  print(
    `changelog records: batches of 64 events ${median(records.slice(0, before.length).map((record) => record.bytes))} bytes median, of 32 ${median(tailRecords.map((record) => record.bytes))}; ` +
      `per event median ${Math.round(median(perEvent))} bytes (min ${Math.round(Math.min(...perEvent))}, max ${Math.round(Math.max(...perEvent))}); largest record ${Math.max(...records.map((record) => record.bytes))} bytes`,
  );
  print(
    `restore = snapshot (${snapshot.records} records, ${round(snapshot.bytes / 1e6)} MB, ${before.length} batches) + tail of ${restored.commits} records (${round(restored.bytes / 1e6)} MB): ` +
      `${Math.round(restored.snapshotMs + restored.replayMs)} ms (snapshot ${Math.round(restored.snapshotMs)} ms, tail ${Math.round(restored.replayMs)} ms, ${round(restored.replayMs / restored.commits)} ms/record)`,
  );
  print(`restore from the tail alone: ${replayed.commits} records (${round(replayed.bytes / 1e6)} MB) in ${Math.round(replayed.snapshotMs + replayed.replayMs)} ms`);
  print(
    `commit, synchronous part (the actor thread), ${plainMs.length} batches each: without recorder median ${round(median(plainMs), 3)} ms (${round((1000 * sum(plainMs)) / traffic.length, 1)} µs/event), ` +
      `recording + encoding the records ${round(median(encodingMs), 3)} ms (${round((1000 * sum(encodingMs)) / traffic.length, 1)} µs/event): ` +
      `+${round(((sum(encodingMs) - sum(plainMs)) * 1000) / traffic.length, 1)} µs/event, of which encoding the records (msgpack + SHA-256) ${round(median(encodeMs), 3)} ms median (${round((1000 * sum(encodeMs)) / traffic.length, 1)} µs/event)`,
  );
  print(`changelog append per commit (the commit waits for it): median ${round(median(appendMs))} ms, max ${round(Math.max(...appendMs))} ms, ${appendMs.length} commits`);
  for (const store of [owner, plain, encoding, target, fromTail]) await store.close();
} finally {
  await nc.close();
  await server.stop();
  rmSync(root, { recursive: true, force: true });
}
