import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync } from 'node:zlib';
import type { Database, Key } from 'lmdb';
import { pack, unpack } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';
import { Actor, ActorFailedError } from '../../../src/actors/actor.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import type { BatchRecord } from '../../../src/routing/batch-buffer.js';
import type { LmdbStore } from '../../../src/store/lmdb.js';
import {
  applyPartitionChanges,
  decodePartitionChanges,
  encodePartitionChanges,
  PARTITION_CHANGES_BODY_BYTES_MAX,
  PARTITION_CHANGES_VERSION,
  PARTITION_CHANGES_VERSION_COMPRESSED,
  storeIdentity,
  TREE_DUE,
  TREE_KPIS,
  TREE_MEMBERS,
  type DecodedPartitionChanges,
  type PartitionChanges,
} from '../../../src/store/partition-changes.js';
import { actorOptions, emptyStore, exportedPartition, generatedRecords, partitionEntries, PARTITIONS, partitionView, program, sameBytes } from '../../helpers/partition-stores.js';

/**
 * A partition's share of each committed batch, recorded by the store's
 * commit, encoded as a changelog record and applied to another store: the
 * replayed partition is byte for byte the recording one's.
 */
const root = mkdtempSync(join(tmpdir(), 'loyalty-partition-changes-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** After every purchase's return window and pending period (the traffic ends 2026-12-01). */
const SWEEP_AT_MS = Date.parse('2027-03-01T00:00:00Z');

interface Recording {
  readonly store: LmdbStore;
  readonly actor: Actor;
  /** Encoded records by partition, in commit order; record i was "appended" at sequence i + 1. */
  readonly records: Map<number, Uint8Array[]>;
  /** The highest committed input sequence by partition, from the actor's own results. */
  readonly watermarks: Map<number, number>;
}

/** Batches of generated traffic (and, re-sent later, some of its events: duplicates), then a sweep that prunes closed orders and moves due keys. */
function traffic(runId: string): BatchRecord[][] {
  const records = generatedRecords({ runId, members: 300, count: 3_000 });
  for (let index = 0; index < 3_000; index += 61) records.push({ ...records[index]!, streamSequence: records.length + 1 });
  const batches: BatchRecord[][] = [];
  for (let offset = 0; offset < records.length; offset += 128) batches.push(records.slice(offset, offset + 128));
  return batches;
}

async function run(store: LmdbStore, batches: BatchRecord[][], watermarks?: Map<number, number>): Promise<Actor> {
  const actor = new Actor(store, program, actorOptions);
  for (const batch of batches) {
    const { result } = await actor.process(batch);
    const partitionOfSequence = new Map(batch.map((record) => [record.streamSequence, partitionOf(record.memberId, PARTITIONS)]));
    for (const sequence of result.committedSequences) {
      const partition = partitionOfSequence.get(sequence)!;
      watermarks?.set(partition, Math.max(watermarks.get(partition) ?? 0, sequence));
    }
  }
  for (let sweeps = 0; sweeps < 20; sweeps++) if ((await actor.sweep(SWEEP_AT_MS, 500)).result.finished) break;
  return actor;
}

async function recording(name: string, batches: BatchRecord[][]): Promise<Recording> {
  const store = await emptyStore(root, name);
  const records = new Map<number, Uint8Array[]>();
  store.setChangeRecorder((changes) => {
    for (const partitionChanges of changes) {
      const list = records.get(partitionChanges.partition) ?? [];
      list.push(encodePartitionChanges(partitionChanges, list.length));
      records.set(partitionChanges.partition, list);
    }
  });
  const watermarks = new Map<number, number>();
  const actor = await run(store, batches, watermarks);
  return { store, actor, records, watermarks };
}

const decode = (store: LmdbStore, partition: number, bytes: Uint8Array): DecodedPartitionChanges => decodePartitionChanges(bytes, { partition, ...storeIdentity(store.root) });

function binary(store: LmdbStore, tree: 'members' | 'due'): Database<Buffer, Key[]> {
  return store.root.openDB({ name: tree, encoding: 'binary' });
}

describe('a partition rebuilt from the recorded changes of its batches', () => {
  it('is byte for byte the recording store\'s, deletes included, with its input watermark; recording changes nothing the store writes', async () => {
    const batches = traffic('changes');
    const owner = await recording('owner', batches);
    const plain = await emptyStore(root, 'plain');
    await run(plain, batches);
    const replica = await emptyStore(root, 'replica');

    const deletes = { members: 0, due: 0 };
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const expected = exportedPartition(owner.store.root, partition);
      expect(expected.summary.records).toBeGreaterThan(50);
      // The recorder only hands over what the store writes anyway: a store without one holds the same bytes, but
      // for the KPI counters, which a recording store keeps per partition (partitionKpis) and a plain one per actor.
      const notKpis = (tree: number): boolean => tree !== TREE_KPIS;
      expect(partitionEntries(plain.root, partition, notKpis).equals(partitionEntries(owner.store.root, partition, notKpis))).toBe(true);

      const records = (owner.records.get(partition) ?? []).map((bytes, index) => {
        const changes = decode(replica, partition, bytes);
        expect(changes.previousSeq).toBe(index);
        for (const [tree, , value] of changes.writes) {
          if (value === null && tree === TREE_MEMBERS) deletes.members += 1;
          if (value === null && tree === TREE_DUE) deletes.due += 1;
        }
        return changes;
      });
      for (const changes of records) await applyPartitionChanges(replica.root, partition, changes);
      expect(sameBytes(exportedPartition(replica.root, partition), expected)).toBe(true);
      expect(Math.max(...records.map((changes) => changes.watermark))).toBe(owner.watermarks.get(partition));
    }
    // The sweep pruned closed orders (members tree) and moved due keys (due tree): deletes were recorded and replayed.
    expect(deletes.members).toBeGreaterThan(10);
    expect(deletes.due).toBeGreaterThan(10);
    // What a reader sees is the same too (members, ledgers, first outcomes, member list, due index).
    const partition = partitionOf('m1', PARTITIONS);
    const ids = new Map<string, string[]>();
    for (const batch of batches) {
      for (const record of batch) {
        if (partitionOf(record.memberId, PARTITIONS) !== partition) continue;
        ids.set(record.memberId, [...(ids.get(record.memberId) ?? []), (unpack(record.payload) as { id: string }).id]);
      }
    }
    expect(partitionView(replica, partition, ids)).toEqual(partitionView(owner.store, partition, ids));

    // One delete, followed: the key is there before its record and gone after it.
    const records = owner.records.get(partition)!.map((bytes) => decode(replica, partition, bytes));
    const at = records.findIndex((changes) => changes.writes.some(([tree, , value]) => tree === TREE_MEMBERS && value === null));
    expect(at).toBeGreaterThan(0);
    const deleted = records[at]!.writes.find(([tree, , value]) => tree === TREE_MEMBERS && value === null)![1];
    const stepwise = await emptyStore(root, 'stepwise');
    await applyPartitionChanges(stepwise.root, partition, records.slice(0, at));
    expect(binary(stepwise, 'members').getBinary(deleted)).toBeDefined();
    await applyPartitionChanges(stepwise.root, partition, records[at]!);
    expect(binary(stepwise, 'members').getBinary(deleted)).toBeUndefined();

    for (const store of [owner.store, plain, replica, stepwise]) await store.close();
  });

  it('is the same when a record is applied twice, or the tail replayed over a state that already holds part of it', async () => {
    const owner = await recording('twice', traffic('twice'));
    const partition = [...owner.records.entries()].sort((a, b) => b[1].length - a[1].length)[0]![0];
    const expected = exportedPartition(owner.store.root, partition);
    const target = await emptyStore(root, 'twice-target');
    const records = owner.records.get(partition)!.map((bytes) => decode(target, partition, bytes));
    expect(records.length).toBeGreaterThan(10);
    const middle = Math.floor(records.length / 2);
    // Up to the middle, the middle one again (a tail overlapping its snapshot by one record), then the rest.
    await applyPartitionChanges(target.root, partition, records.slice(0, middle + 1));
    await applyPartitionChanges(target.root, partition, records[middle]!);
    await applyPartitionChanges(target.root, partition, records.slice(middle));
    expect(sameBytes(exportedPartition(target.root, partition), expected)).toBe(true);
    // The last record again; then the whole tail again from a third of the way.
    await applyPartitionChanges(target.root, partition, records.at(-1)!);
    await applyPartitionChanges(target.root, partition, records.slice(Math.floor(records.length / 3)));
    expect(sameBytes(exportedPartition(target.root, partition), expected)).toBe(true);
    await owner.store.close();
    await target.close();
  });

  it('refuses a record altered, cut short, of another version, store format, partition count or partition, or over its bound', async () => {
    const owner = await recording('damaged', traffic('damaged').slice(0, 4));
    const partition = [...owner.records.keys()][0]!;
    const bytes = owner.records.get(partition)![0]!;
    const identity = storeIdentity(owner.store.root);
    const expected = { partition, ...identity };
    expect(decodePartitionChanges(bytes, expected).writes.length).toBeGreaterThan(0);

    const altered = Uint8Array.from(bytes);
    altered[Math.floor(altered.length / 2)]! ^= 1;
    expect(() => decodePartitionChanges(altered, expected)).toThrow(expect.objectContaining({ code: 'ERR_CHANGELOG_RECORD', message: expect.stringMatching(/SHA-256 does not match/) }));
    expect(() => decodePartitionChanges(bytes.subarray(0, bytes.length - 10), expected)).toThrow(/SHA-256 does not match/);
    expect(() => decodePartitionChanges(bytes.subarray(0, 20), expected)).toThrow(/too short/);
    const otherVersion = Uint8Array.from(bytes);
    otherVersion[0] = PARTITION_CHANGES_VERSION_COMPRESSED + 1;
    expect(() => decodePartitionChanges(otherVersion, expected)).toThrow(/record version 3, this engine reads 1 and 2/);
    const relabelled = Uint8Array.from(bytes);
    relabelled[0] = PARTITION_CHANGES_VERSION_COMPRESSED; // a plain body claimed compressed: its digest no longer matches
    expect(() => decodePartitionChanges(relabelled, expected)).toThrow(/SHA-256 does not match/);
    expect(() => decodePartitionChanges(bytes, { ...expected, partition: (partition + 1) % PARTITIONS })).toThrow(/holds partition/);
    expect(() => decodePartitionChanges(bytes, { ...expected, partitions: 8 })).toThrow(/16 partitions, this one has 8/);
    expect(() => decodePartitionChanges(bytes, { ...expected, storeFormat: identity.storeFormat + 1 })).toThrow(/store format/);
    // A record that claims another partition's keys, well formed and digested: refused before anything is applied.
    const decoded = decodePartitionChanges(bytes, expected);
    const foreign: PartitionChanges = { ...decoded, writes: [...decoded.writes, [TREE_MEMBERS, [(partition + 1) % PARTITIONS, 'x', 0], new Uint8Array([1])]] };
    expect(() => decodePartitionChanges(encodePartitionChanges(foreign, 0), expected)).toThrow(/outside the partition/);
    // Bounded: the encoder refuses a record over its bound, the decoder too.
    expect(() => encodePartitionChanges(decoded, 0, 64)).toThrow(expect.objectContaining({ code: 'ERR_CHANGELOG_RECORD_TOO_LARGE' }));
    expect(() => decodePartitionChanges(bytes, expected, 64)).toThrow(/more than a record holds/);
    await owner.store.close();
  });

  it('compresses a record only when it does not fit as it is, and reads it back to the same bytes; a body that expands past its bound is refused', async () => {
    const owner = await recording('compressed', traffic('compressed').slice(0, 4));
    const identity = storeIdentity(owner.store.root);
    // The partition with the largest record of the first batches: a real mix of cores, ledger rows, orders and outcomes.
    const [partition, bytes] = [...owner.records].map(([p, records]) => [p, records[0]!] as const).sort((a, b) => b[1].length - a[1].length)[0]!;
    const expected = { partition, ...identity };
    expect(bytes[0]).toBe(PARTITION_CHANGES_VERSION);
    const decoded = decodePartitionChanges(bytes, expected);
    // Fits as it is: written as it is (no compression cost on the common path).
    expect(encodePartitionChanges(decoded, decoded.previousSeq, bytes.length)).toEqual(bytes);
    // One byte too large: compressed, smaller, and back to the same writes byte for byte.
    const compressed = encodePartitionChanges(decoded, decoded.previousSeq, bytes.length - 1);
    expect(compressed[0]).toBe(PARTITION_CHANGES_VERSION_COMPRESSED);
    expect(compressed.length).toBeLessThan(bytes.length / 2);
    const back = decodePartitionChanges(compressed, expected, bytes.length - 1);
    expect({ ...back, writes: back.writes.length }).toEqual({ ...decoded, writes: decoded.writes.length });
    for (let index = 0; index < decoded.writes.length; index++) {
      const [tree, key, value] = decoded.writes[index]!;
      const [treeBack, keyBack, valueBack] = back.writes[index]!;
      expect([treeBack, keyBack]).toEqual([tree, key]);
      expect(value === null ? valueBack === null : valueBack !== null && Buffer.from(value).equals(Buffer.from(valueBack))).toBe(true);
    }
    // A compressed record is applied like a plain one: the same partition view.
    const plainTarget = await emptyStore(root, 'compressed-plain');
    const compressedTarget = await emptyStore(root, 'compressed-brotli');
    await applyPartitionChanges(plainTarget.root, partition, decoded);
    await applyPartitionChanges(compressedTarget.root, partition, back);
    expect(sameBytes(exportedPartition(compressedTarget.root, partition), exportedPartition(plainTarget.root, partition))).toBe(true);
    expect(exportedPartition(compressedTarget.root, partition).body.length).toBeGreaterThan(0);
    // A compressed body that expands past PARTITION_CHANGES_BODY_BYTES_MAX (a bomb, well digested): refused before it is read.
    const bomb = brotliCompressSync(new Uint8Array(PARTITION_CHANGES_BODY_BYTES_MAX + 1024));
    const record = new Uint8Array(1 + bomb.length + 32);
    record[0] = PARTITION_CHANGES_VERSION_COMPRESSED;
    record.set(bomb, 1);
    record.set(createHash('sha256').update(record.subarray(0, 1 + bomb.length)).digest(), 1 + bomb.length);
    expect(() => decodePartitionChanges(record, expected)).toThrow(expect.objectContaining({ code: 'ERR_CHANGELOG_RECORD', message: expect.stringMatching(/does not expand within/) }));
    await plainTarget.close();
    await compressedTarget.close();
    await owner.store.close();
  });

  it('carries the appender\'s published watermark; a record written before the field reads as 0', async () => {
    const owner = await recording('published', traffic('published').slice(0, 2));
    const identity = storeIdentity(owner.store.root);
    const [partition, records] = [...owner.records][0]!;
    const expected = { partition, ...identity };
    const decoded = decodePartitionChanges(records[0]!, expected);
    expect(decoded.publishedWatermark).toBe(0);
    const marked = decodePartitionChanges(encodePartitionChanges(decoded, decoded.previousSeq, undefined, 17), expected);
    expect(marked.publishedWatermark).toBe(17);
    expect({ ...marked, publishedWatermark: 0 }).toEqual(decoded);
    expect(() => encodePartitionChanges(decoded, 0, undefined, -1)).toThrow(/published watermark/);
    // The body as written before the field: no publishedWatermark key at all.
    const { publishedWatermark: _dropped, ...legacy } = unpack(records[0]!.subarray(1, records[0]!.length - 32)) as Record<string, unknown>;
    const body = pack(legacy);
    const old = new Uint8Array(1 + body.length + 32);
    old[0] = PARTITION_CHANGES_VERSION;
    old.set(body, 1);
    old.set(createHash('sha256').update(old.subarray(0, 1 + body.length)).digest(), 1 + body.length);
    expect(decodePartitionChanges(old, expected).publishedWatermark).toBe(0);
    await owner.store.close();
  });

  it('commits nothing of a batch whose recorder refuses it (a fenced changelog), and the actor stops', async () => {
    const batches = traffic('refused').slice(0, 3);
    const store = await emptyStore(root, 'refused');
    let calls = 0;
    store.setChangeRecorder(async () => {
      calls += 1;
      await new Promise((resolve) => setTimeout(resolve, 5)); // an append in flight: nothing may be written meanwhile
      if (calls === 2) throw new Error('refused by the changelog');
    });
    const actor = new Actor(store, program, actorOptions);
    await actor.process(batches[0]!);
    const before = Array.from({ length: PARTITIONS }, (_, partition) => exportedPartition(store.root, partition));
    await expect(actor.process(batches[1]!)).rejects.toBeInstanceOf(ActorFailedError);
    for (let partition = 0; partition < PARTITIONS; partition++) expect(sameBytes(exportedPartition(store.root, partition), before[partition]!)).toBe(true);
    await expect(actor.process(batches[2]!)).rejects.toBeInstanceOf(ActorFailedError);
    expect(calls).toBe(2);
    await store.close();
  });
});
