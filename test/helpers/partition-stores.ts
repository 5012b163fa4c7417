import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Database, Key, RootDatabase } from 'lmdb';
import { pack, unpack } from 'msgpackr';
import { DEFAULT_GENERATOR_OPTIONS, EventGenerator } from '../../bench/generator/events.js';
import { programModelOf } from '../../bench/generator/program-model.js';
import { encodeEvent } from '../../bench/generator/spool.js';
import { Actor } from '../../src/actors/actor.js';
import { parseProgramText } from '../../src/config/program-file.js';
import { unlimitedBudgets } from '../../src/domain/ports.js';
import { Encoding, type BatchRecord } from '../../src/routing/batch-buffer.js';
import { partitionOf } from '../../src/routing/partitioner.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import { PARTITION_TREES } from '../../src/store/partition-changes.js';
import { exportPartition, type PartitionUnitSummary } from '../../src/store/partition-transfer.js';
import { subjectsFor } from '../../src/transport/subjects.js';

/** Stores filled by the actor with the retail program, and what a reader sees of one partition: for the tests that move partitions. */
export const PARTITIONS = 16;
export const program = parseProgramText(readFileSync(new URL('../../config/programs/retail.yaml', import.meta.url), 'utf8'));
export const actorOptions = { actorIndex: 0, actors: 1, ports: { budgets: unlimitedBudgets }, partitions: PARTITIONS, memberCacheMax: 10_000, payloadBytesMax: 65_536, subjects: subjectsFor('loyalty'), bootId: 1 };

let sequence = 0;
export function purchase(memberId: string, id: string, amountMinor: number, day: number): BatchRecord {
  sequence += 1;
  const event = { type: 'purchase', id, memberId, occurredAt: `2026-03-${String(1 + (day % 28)).padStart(2, '0')}T12:00:00Z`, amountMinor, currency: 'EUR' };
  return { streamSequence: sequence, publishedAtMs: 0, encoding: Encoding.Json, memberId, payload: new TextEncoder().encode(JSON.stringify(event)) };
}

export interface FilledStore {
  readonly store: LmdbStore;
  readonly actor: Actor;
  /** Event ids by member. */
  readonly ids: Map<string, string[]>;
}

/** A store under `root`/`name` with `events` purchases over `members` members named `<name>-m<n>`. */
export async function filledStore(root: string, name: string, members: number, events: number, seed: number): Promise<FilledStore> {
  const store = new LmdbStore({ dataDir: join(root, name), mapSizeBytes: 256 * 1024 * 1024, partitions: PARTITIONS });
  await store.ensureMeta(PARTITIONS, 0);
  const actor = new Actor(store, program, actorOptions);
  const ids = new Map<string, string[]>();
  const records: BatchRecord[] = [];
  for (let index = 0; index < events; index++) {
    const memberId = `${name}-m${(index * 7919 + seed) % members}`;
    const id = `${name}-e${index}`;
    ids.set(memberId, [...(ids.get(memberId) ?? []), id]);
    records.push(purchase(memberId, id, 500 + ((index * 37) % 20_000), index));
  }
  for (let offset = 0; offset < records.length; offset += 256) await actor.process(records.slice(offset, offset + 256));
  return { store, actor, ids };
}

export async function emptyStore(root: string, name: string, partitions = PARTITIONS): Promise<LmdbStore> {
  const store = new LmdbStore({ dataDir: join(root, name), mapSizeBytes: 256 * 1024 * 1024, partitions });
  await store.ensureMeta(partitions, 0);
  return store;
}

/** Everything a reader sees of one partition: members, ledgers, idempotency records, the member list, the due index. */
export function partitionView(store: LmdbStore, partition: number, ids: Map<string, string[]>): unknown {
  const members = [...ids.keys()].filter((memberId) => partitionOf(memberId, PARTITIONS) === partition).sort();
  return {
    members: members.map((memberId) => ({
      state: store.readMember(partition, memberId),
      ledger: [...store.ledgerOf(partition, memberId)],
      processed: ids.get(memberId)!.map((id) => store.readProcessed(partition, memberId, id)),
    })),
    listed: store.scanMembers(partition, undefined, 100_000).map((state) => state.memberId),
    due: store.dueMembers(partition, Number.MAX_SAFE_INTEGER, undefined, 100_000),
  };
}

/**
 * Generated retail traffic (purchases, returns of earlier orders, redemptions,
 * activities; from 2026-09-28 to 2026-12-01), numbered as one input stream
 * from sequence 1; `keep` picks the events kept (e.g. one partition's), the
 * others still take their sequence, as on a stream shared by partitions.
 */
export function generatedRecords(options: { runId: string; members: number; count: number; keep?: (memberId: string) => boolean }): BatchRecord[] {
  const generator = new EventGenerator({ ...DEFAULT_GENERATOR_OPTIONS, runId: options.runId, members: options.members, count: options.count, program: programModelOf(program) });
  const records: BatchRecord[] = [];
  for (let index = 0; index < options.count; index++) {
    const { event } = generator.next();
    if (options.keep !== undefined && !options.keep(event.memberId)) continue;
    records.push({ streamSequence: index + 1, publishedAtMs: 0, encoding: Encoding.Msgpack, memberId: event.memberId, payload: encodeEvent(event, 'msgpack') });
  }
  return records;
}

export interface ExportedPartition {
  /** The unit's header without its export time. */
  readonly header: Record<string, unknown>;
  /** Every entry frame and the trailer, joined: equal exactly when the partition's stored keys and bytes are. */
  readonly body: Buffer;
  readonly summary: PartitionUnitSummary;
}

/** One partition's unit as exportPartition gives it, for byte-for-byte comparisons. */
export function exportedPartition(root: RootDatabase, partition: number): ExportedPartition {
  const frames: Uint8Array[] = [];
  const exporter = exportPartition(root, partition);
  let next = exporter.next();
  for (; !next.done; next = exporter.next()) frames.push(next.value);
  const { exportedAtMs: _exportedAtMs, ...header } = unpack(frames[0]!) as Record<string, unknown>;
  return { header, body: Buffer.concat(frames.slice(1)), summary: next.value };
}

/** True when two partitions' units are byte-identical (Buffer.equals: a deep equal of megabytes is slow). */
export function sameBytes(actual: ExportedPartition, expected: ExportedPartition): boolean {
  return JSON.stringify(actual.header) === JSON.stringify(expected.header) && actual.body.equals(expected.body) && actual.summary.sha256 === expected.summary.sha256;
}

/**
 * One partition's stored keys and value bytes in the trees `keep` picks (by
 * their PARTITION_TREES number), packed in order: equal exactly when those
 * trees' entries are (to compare stores that differ in one tree on purpose).
 */
export function partitionEntries(root: RootDatabase, partition: number, keep: (tree: number) => boolean): Buffer {
  const parts: Uint8Array[] = [];
  PARTITION_TREES.forEach((name, tree) => {
    if (!keep(tree)) return;
    const database: Database<Buffer, Key[]> = root.openDB({ name, encoding: 'binary' });
    for (const { key, value } of database.getRange({ start: [partition], end: [partition + 1] })) parts.push(pack([tree, key]), Uint8Array.from(value));
  });
  return Buffer.concat(parts);
}
