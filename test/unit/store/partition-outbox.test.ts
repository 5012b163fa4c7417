import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Key } from 'lmdb';
import { afterAll, describe, expect, it } from 'vitest';
import { Actor, unpackOutbox } from '../../../src/actors/actor.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import type { LmdbStore } from '../../../src/store/lmdb.js';
import {
  applyPartitionChanges,
  decodePartitionChanges,
  encodePartitionChanges,
  storeIdentity,
  TREE_OUTBOX,
  type PartitionChanges,
} from '../../../src/store/partition-changes.js';
import type { OutcomeMessage } from '../../../src/transport/outcomes.js';
import { actorOptions, emptyStore, exportedPartition, generatedRecords, PARTITIONS, program, sameBytes } from '../../helpers/partition-stores.js';

/**
 * Cluster mode's outbox (LmdbStore.usePartitionOutbox): a sweep's outcomes
 * (no input redelivers them) are split by partition into the partitions'
 * changes, so they are in each partition's changelog records and move with
 * it; acknowledged ones are removed by a later record of the same partition
 * only. An event batch's stay in the per-boot outbox. And a record with no
 * writes (a release's watermark-only record) encodes, decodes and applies.
 */
const root = mkdtempSync(join(tmpdir(), 'loyalty-partition-outbox-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A store recording every partition's changes as "appended" records. */
async function recordingStore(name: string): Promise<{ store: LmdbStore; records: PartitionChanges[] }> {
  const store = await emptyStore(root, name);
  const records: PartitionChanges[] = [];
  store.setChangeRecorder((changes) => {
    records.push(...changes);
  });
  store.usePartitionOutbox('engine-a');
  return { store, records };
}

/** After every purchase's return window and pending period (the generated traffic ends 2026-12-01): the sweep has work. */
const SWEEP_AT_MS = Date.parse('2027-03-01T00:00:00Z');

const outboxWrites = (records: readonly PartitionChanges[]) => records.flatMap((changes) => changes.writes.filter(([tree]) => tree === TREE_OUTBOX).map(([, key, value]) => ({ partition: changes.partition, key, value })));

describe('the partition outbox', () => {
  it('splits a sweep\'s outcomes by partition into its records, under the owner\'s keys; an event batch\'s stay in the per-boot outbox', async () => {
    const { store, records } = await recordingStore('split');
    const actor = new Actor(store, program, actorOptions);
    const batch = await actor.process(generatedRecords({ runId: 'split', members: 200, count: 400 }));
    expect(outboxWrites(records)).toEqual([]);
    expect([...store.outboxEntries()].map((entry) => entry.key)).toEqual([batch.outboxKey]);
    actor.outboxPublished(batch.outboxKey!);
    records.length = 0;
    const { outcomes, outboxKey } = await actor.sweep(SWEEP_AT_MS, 10_000);
    expect(outcomes.length).toBeGreaterThan(20);
    const puts = outboxWrites(records);
    expect(new Set(puts.map(({ partition }) => partition)).size).toBeGreaterThan(PARTITIONS / 2);
    const messages: OutcomeMessage[] = [];
    for (const { partition, key, value } of puts) {
      expect(key).toEqual([partition, 'engine-a', ...outboxKey!]);
      const part = unpackOutbox(value!);
      for (const [, messageId] of part) expect(partitionOf(messageId.slice(0, messageId.indexOf(':')), PARTITIONS)).toBe(partition);
      messages.push(...part);
      // Stored as recorded, readable as the partition's entries.
      expect([...store.partitionOutboxEntries(partition)].map((entry) => entry.key)).toEqual([key]);
    }
    expect(messages.map(([, id]) => id).sort()).toEqual(outcomes.map(([, id]) => id).sort());
    // The event batch's entry, acknowledged, left the per-boot outbox with the sweep's commit; the sweep's is not there.
    expect([...store.outboxEntries()]).toEqual([]);
    await store.close();
  });

  it('removes an acknowledged entry with its partition\'s next record, never in another partition\'s; a released partition\'s are left to its next owner', async () => {
    const { store, records } = await recordingStore('removals');
    const actor = new Actor(store, program, actorOptions);
    await actor.process(generatedRecords({ runId: 'removals', members: 200, count: 300 }));
    records.length = 0;
    const first = await actor.sweep(SWEEP_AT_MS, 10_000);
    const entryPartitions = new Set(outboxWrites(records).map(({ partition }) => partition));
    expect(entryPartitions.size).toBeGreaterThan(2);
    actor.outboxPublished(first.outboxKey!);
    // The next batch touches only one of those partitions: it carries the removal, the others wait.
    const touched = new Set<number>([[...entryPartitions][0]!]);
    const next = generatedRecords({ runId: 'removals_next', members: 200, count: 600 }).filter((record) => touched.has(partitionOf(record.memberId, PARTITIONS)));
    expect(next.length).toBeGreaterThan(0);
    records.length = 0;
    await actor.process(next);
    const removals = records.flatMap((changes) => changes.writes.filter(([tree, , value]) => tree === TREE_OUTBOX && value === null).map(([, key]) => [changes.partition, key] as const));
    expect(removals.map(([partition]) => partition)).toEqual([...touched]);
    for (const [partition, key] of removals) expect(key).toEqual([partition, 'engine-a', ...first.outboxKey!]);
    const waiting = [...entryPartitions].filter((partition) => !touched.has(partition)).sort((a, b) => a - b);
    expect(store.partitionsWithAcknowledgedOutbox()).toEqual(waiting);

    // Taken by an owner's own record of the partition (idle or at release): handed over once.
    const [taken, released] = waiting;
    expect(store.takeAcknowledgedOutbox(taken!)).toEqual([[taken, 'engine-a', ...first.outboxKey!]]);
    expect(store.takeAcknowledgedOutbox(taken!)).toEqual([]);
    store.releasePartitionOutbox(released!);
    expect(store.partitionsWithAcknowledgedOutbox()).not.toContain(released);
    // A restored entry published again by the new owner: removed with the partition's next record too.
    const restoredKey: Key[] = [taken!, 'engine-z', 1, 0, 9];
    store.acknowledgePartitionOutbox(taken!, restoredKey);
    expect(store.takeAcknowledgedOutbox(taken!)).toEqual([restoredKey]);
    await store.close();
  });

  it('is off in single-instance mode: the per-boot outbox as before, nothing in the partitions', async () => {
    const store = await emptyStore(root, 'single');
    const actor = new Actor(store, program, actorOptions);
    const { outboxKey } = await actor.process(generatedRecords({ runId: 'single', members: 50, count: 100 }));
    expect([...store.outboxEntries()].map((entry) => entry.key)).toEqual([outboxKey]);
    for (let partition = 0; partition < PARTITIONS; partition++) expect([...store.partitionOutboxEntries(partition)]).toEqual([]);
    actor.outboxPublished(outboxKey!);
    await actor.removePublishedOutbox();
    expect([...store.outboxEntries()]).toEqual([]);
    await store.close();
  });

  it('a record without writes (a release\'s watermark record) follows its previous one and changes nothing when applied', async () => {
    const { store } = await recordingStore('empty-record');
    const actor = new Actor(store, program, actorOptions);
    await actor.process(generatedRecords({ runId: 'empty', members: 50, count: 100 }));
    const partition = 3;
    const before = exportedPartition(store.root, partition);
    const identity = storeIdentity(store.root);
    const empty: PartitionChanges = { partition, ...identity, writes: [], dueMark: null, watermark: 120 };
    const decoded = decodePartitionChanges(encodePartitionChanges(empty, 41, undefined, 120), { partition, ...identity });
    expect(decoded).toMatchObject({ previousSeq: 41, watermark: 120, publishedWatermark: 120, writes: [], dueMark: null });
    await applyPartitionChanges(store.root, partition, decoded);
    expect(sameBytes(exportedPartition(store.root, partition), before)).toBe(true);
    await store.close();
  });
});
