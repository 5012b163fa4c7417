import { createHash } from 'node:crypto';
import { brotliCompressSync, brotliDecompressSync, constants as zlib } from 'node:zlib';
import type { Database, Key, RootDatabase } from 'lmdb';
import { pack, unpack } from 'msgpackr';
import { EngineError } from '../config/errors.js';
import { assert } from '../domain/assert.js';

/**
 * A partition's share of one committed batch, as raw changes to the
 * partition's key ranges (issue 17: what a changelog record holds, so that a
 * new owner restores a partition as snapshot + changelog tail).
 *
 * The changes are the store's own writes: puts with the exact value bytes
 * the store wrote (or writes) and deletes, in the trees a partition unit
 * moves (src/store/partition-transfer.ts: `members`, `index`, `due`, and in
 * cluster mode `partitionOutbox` and `partitionKpis`),
 * plus the partition's due-index mark. Bytes, not a re-derivation from
 * domain objects: replaying them gives records byte-identical to the old
 * owner's, whatever version of the domain or of member-records.ts the new
 * owner runs, and costs no encoding on replay.
 *
 * Every put carries its whole value (never a delta), so applying a record
 * again is harmless: the tail a new owner replays may overlap what its
 * snapshot holds (a snapshot labelled with an earlier changelog position
 * than the commits it caught), and replaying in order from any earlier
 * position converges on the same state.
 *
 * With each record goes its batch's input watermark for the partition (the
 * highest input stream sequence of the partition the batch committed), so a
 * restore knows where the partition's consumer resumes, and the changelog
 * sequence of the partition's previous record (the expected last sequence
 * it was appended on), so a restore notices a record missing from the tail.
 *
 * The store (src/store/lmdb.ts) fills a `BatchChangeRecorder` in its commit
 * only when a recorder is set (cluster mode): it encodes each value once,
 * hands the changes over, then writes those same bytes. Without a recorder
 * nothing here runs.
 *
 * This module is a leaf (no import of lmdb.ts), because lmdb.ts builds on it.
 */

/**
 * The trees that hold a partition's records, in the order units and changelog records number them.
 * `partitionOutbox` (cluster mode only, LmdbStore.usePartitionOutbox): a committed sweep's outcomes of
 * the partition not yet acknowledged by the outcome stream, `[partition, owner, bootId, actor, batch]` →
 * the packed outcomes (the outbox's value format), so they move with the partition: a new owner publishes
 * again what the last one committed but did not publish (no input redelivers a sweep's outcomes).
 * `partitionKpis` (cluster mode only, BatchWrite.partitionKpis): the partition's KPI counters,
 * `[partition, 'd'|'w'|'m', periodKey]` → the running total (the `kpis` tree's values), so a new owner
 * carries on counting from what the last one counted and the reports see one copy per partition.
 * Appended last: the numbers of the trees before it (in records and units already written) stay what they were.
 */
export const PARTITION_TREES = ['members', 'index', 'due', 'partitionOutbox', 'partitionKpis'] as const;
export type PartitionTree = (typeof PARTITION_TREES)[number];
export const TREE_MEMBERS = 0;
export const TREE_INDEX = 1;
export const TREE_DUE = 2;
export const TREE_OUTBOX = 3;
export const TREE_KPIS = 4;

/** A record whose body is msgpack as it is. */
export const PARTITION_CHANGES_VERSION = 1;
/**
 * A record whose body is msgpack compressed with brotli (quality 1): written
 * only when the plain record would not fit in one message, so a batch whose
 * share of a hot partition is large still commits (a default batch of 1,024
 * retail events in one partition: 1.18–1.36 MB plain, 4.6–5.1× smaller;
 * bench/cluster/changelog-record-size.ts, docs/cluster.md).
 */
export const PARTITION_CHANGES_VERSION_COMPRESSED = 2;
/** Largest body a compressed record may expand to, so a damaged or hostile record cannot exhaust memory. */
export const PARTITION_CHANGES_BODY_BYTES_MAX = 16 * 1024 * 1024;
/**
 * Largest encoded record: one JetStream message under nats-server's default
 * max_payload (1 MiB) with room for the changelog's headers. A batch whose
 * share of one partition is larger even compressed cannot be appended
 * (cluster mode must bound the events of a partition per batch: docs/cluster.md).
 */
export const PARTITION_CHANGES_BYTES_MAX = 1024 * 1024 - 8 * 1024;
const DIGEST_BYTES = 32;

/** A put (`value`: the stored bytes) or a delete (`value` null) of one key of a partition's trees. */
export type ChangeWrite = readonly [tree: number, key: Key[], value: Uint8Array | null];

export interface PartitionChanges {
  readonly partition: number;
  /** The partition count and store format of the store that recorded them: a record applies only to a store of the same. */
  readonly partitions: number;
  readonly storeFormat: number;
  /** In commit order. Keys of one batch are distinct, so the order matters only to read them the way they were written. */
  readonly writes: readonly ChangeWrite[];
  /** The program digest the partition's due index was marked as built for in this batch (meta `due:<p>`), or null. */
  readonly dueMark: number | null;
  /** The highest input stream sequence of the partition this batch committed; 0 when it committed none (a sweep). */
  readonly watermark: number;
}

/** A record as read back: also the changelog sequence of the partition's record before it. */
export interface DecodedPartitionChanges extends PartitionChanges {
  readonly previousSeq: number;
  /**
   * The appender's published watermark when it appended this record: every
   * input message of the partition up to it had its outcomes acknowledged by
   * the outcome stream. A new owner resumes the input after it, not after
   * `watermark`, so the events committed but maybe not yet published are
   * delivered again, found to be duplicates, and their first outcomes
   * published again (same message ids). 0 in records written before the field.
   */
  readonly publishedWatermark: number;
}

/**
 * What the store hands a recorder: each partition's share, in partition
 * order. A function the recorder returns (or resolves to) is called once the
 * batch's LMDB write completed, and only then (a snapshot may be labelled
 * only with a position the store holds).
 */
export type ChangeRecorder = (changes: readonly PartitionChanges[]) => void | (() => void) | Promise<void | (() => void)>;

/** What the store encodes a tree's values with (its lmdb-js database's msgpackr encoder). */
export interface ValueEncoder {
  encode(value: unknown): Uint8Array;
}

interface Collected {
  partition: number;
  writes: ChangeWrite[];
  dueMark: number | null;
  watermark: number;
}

/**
 * One batch's changes by partition, collected by the store's commit. `put`
 * encodes the value with the tree's own encoder and returns the bytes, which
 * the store then writes as they are: the encoding is done once, and the
 * record holds exactly what is stored.
 */
export class BatchChangeRecorder {
  private readonly byPartition = new Map<number, Collected>();

  constructor(
    private readonly encoders: readonly ValueEncoder[],
    private readonly partitions: number,
    private readonly storeFormat: number,
  ) {
    assert(encoders.length === PARTITION_TREES.length, 'one encoder per partition tree');
  }

  private of(partition: number): Collected {
    let collected = this.byPartition.get(partition);
    if (collected === undefined) {
      assert(Number.isInteger(partition) && partition >= 0 && partition < this.partitions, `a change of partition ${partition} outside 0..${this.partitions - 1}`);
      collected = { partition, writes: [], dueMark: null, watermark: 0 };
      this.byPartition.set(partition, collected);
    }
    return collected;
  }

  put(partition: number, tree: number, key: Key[], value: unknown): void {
    // msgpackr's encode without buffer-reuse flags returns a view of its buffer that later encodes never overwrite (it only moves forward).
    this.of(partition).writes.push([tree, key, this.encoders[tree]!.encode(value)]);
  }

  remove(partition: number, tree: number, key: Key[]): void {
    this.of(partition).writes.push([tree, key, null]);
  }

  dueMark(partition: number, programDigest: number): void {
    this.of(partition).dueMark = programDigest;
  }

  /** The partitions this batch has changes of so far (each gets a record appended anyway). */
  partitionsChanged(): IterableIterator<number> {
    return this.byPartition.keys();
  }

  watermark(partition: number, sequence: number): void {
    assert(Number.isSafeInteger(sequence) && sequence > 0, 'an input watermark is a positive stream sequence');
    const collected = this.of(partition);
    collected.watermark = Math.max(collected.watermark, sequence);
  }

  /** The batch's changes, one entry per partition it touched (or advanced the watermark of), in partition order. */
  changes(): PartitionChanges[] {
    return [...this.byPartition.values()]
      .sort((a, b) => a.partition - b.partition)
      .map((collected) => ({ ...collected, partitions: this.partitions, storeFormat: this.storeFormat }));
  }
}

interface Body {
  readonly storeFormat: number;
  readonly partitions: number;
  readonly partition: number;
  readonly previousSeq: number;
  readonly watermark: number;
  /** Absent in records written before it (read as 0). */
  readonly publishedWatermark?: number;
  readonly dueMark: number | null;
  readonly writes: readonly ChangeWrite[];
}

/**
 * A changelog record: one version byte, the msgpack body, and a SHA-256 of
 * both, so a record cut short, altered or of another version is refused
 * before anything of it is applied. `previousSeq`: the changelog sequence the
 * record is appended after (the appender's expected last subject sequence).
 * A body too large for `bytesMax` as it is goes compressed (version 2);
 * refuses (ERR_CHANGELOG_RECORD_TOO_LARGE) one over `bytesMax` even so.
 */
export function encodePartitionChanges(changes: PartitionChanges, previousSeq: number, bytesMax = PARTITION_CHANGES_BYTES_MAX, publishedWatermark = 0): Uint8Array {
  assert(Number.isSafeInteger(previousSeq) && previousSeq >= 0, 'the previous changelog sequence is a non-negative integer');
  assert(Number.isSafeInteger(publishedWatermark) && publishedWatermark >= 0, 'the published watermark is a non-negative integer');
  const body = pack({
    storeFormat: changes.storeFormat,
    partitions: changes.partitions,
    partition: changes.partition,
    previousSeq,
    watermark: changes.watermark,
    publishedWatermark,
    dueMark: changes.dueMark,
    writes: changes.writes,
  } satisfies Body);
  let version = PARTITION_CHANGES_VERSION;
  let stored: Uint8Array = body;
  if (1 + body.length + DIGEST_BYTES > bytesMax) {
    // Too large as it is: compressed, if that makes it fit (the body bound keeps the decoder's expansion bounded too).
    const compressed = body.length <= PARTITION_CHANGES_BODY_BYTES_MAX ? brotliCompressSync(body, { params: { [zlib.BROTLI_PARAM_QUALITY]: 1, [zlib.BROTLI_PARAM_SIZE_HINT]: body.length } }) : undefined;
    if (compressed === undefined || 1 + compressed.length + DIGEST_BYTES > bytesMax) {
      throw new EngineError(
        'ERR_CHANGELOG_RECORD_TOO_LARGE',
        `partition ${changes.partition}: one batch's changes take ${1 + body.length + DIGEST_BYTES} bytes (${changes.writes.length} writes)${compressed === undefined ? '' : `, ${1 + compressed.length + DIGEST_BYTES} compressed`}, more than a changelog record holds (${bytesMax}): lower LOYALTY_BATCH_SIZE_MAX`,
      );
    }
    version = PARTITION_CHANGES_VERSION_COMPRESSED;
    stored = compressed;
  }
  const length = 1 + stored.length + DIGEST_BYTES;
  const record = new Uint8Array(length);
  record[0] = version;
  record.set(stored, 1);
  record.set(createHash('sha256').update(record.subarray(0, 1 + stored.length)).digest(), 1 + stored.length);
  return record;
}

function refused(partition: number, why: string): EngineError {
  return new EngineError('ERR_CHANGELOG_RECORD', `a changelog record of partition ${partition} is refused: ${why}`);
}

function isKeyPart(part: unknown): boolean {
  return typeof part === 'string' || (typeof part === 'number' && Number.isFinite(part));
}

/**
 * A record back, checked whole before it is returned: its version, digest,
 * store format, partition count and partition, and every write inside the
 * partition's ranges. Refuses (ERR_CHANGELOG_RECORD) anything else. The
 * values of a plain record are views of `bytes`: keep `bytes` unchanged until
 * they are applied (a compressed record's are views of its expanded body).
 */
export function decodePartitionChanges(bytes: Uint8Array, expected: { readonly partition: number; readonly partitions: number; readonly storeFormat: number }, bytesMax = PARTITION_CHANGES_BYTES_MAX): DecodedPartitionChanges {
  const { partition } = expected;
  if (bytes.length > bytesMax) throw refused(partition, `${bytes.length} bytes, more than a record holds (${bytesMax})`);
  if (bytes.length < 1 + 1 + DIGEST_BYTES) throw refused(partition, `${bytes.length} bytes, too short for a record (cut short?)`);
  const version = bytes[0];
  if (version !== PARTITION_CHANGES_VERSION && version !== PARTITION_CHANGES_VERSION_COMPRESSED) {
    throw refused(partition, `record version ${version}, this engine reads ${PARTITION_CHANGES_VERSION} and ${PARTITION_CHANGES_VERSION_COMPRESSED}`);
  }
  const end = bytes.length - DIGEST_BYTES;
  const digest = createHash('sha256').update(bytes.subarray(0, end)).digest();
  if (!digest.equals(bytes.subarray(end))) throw refused(partition, 'its SHA-256 does not match (altered or cut short)');
  let plain = bytes.subarray(1, end);
  if (version === PARTITION_CHANGES_VERSION_COMPRESSED) {
    try {
      plain = brotliDecompressSync(plain, { maxOutputLength: PARTITION_CHANGES_BODY_BYTES_MAX });
    } catch (error) {
      throw refused(partition, `its compressed body does not expand within ${PARTITION_CHANGES_BODY_BYTES_MAX} bytes: ${(error as Error).message}`);
    }
  }
  let body: Body;
  try {
    body = unpack(plain) as Body;
  } catch (error) {
    throw refused(partition, `its body does not decode: ${(error as Error).message}`);
  }
  if (body === null || typeof body !== 'object' || !Array.isArray(body.writes)) throw refused(partition, 'its body is not a record');
  if (body.storeFormat !== expected.storeFormat) throw refused(partition, `recorded by store format ${body.storeFormat}, this store is ${expected.storeFormat}`);
  if (body.partitions !== expected.partitions) throw refused(partition, `recorded by a store of ${body.partitions} partitions, this one has ${expected.partitions}`);
  if (body.partition !== partition) throw refused(partition, `it holds partition ${body.partition}`);
  if (!Number.isSafeInteger(body.previousSeq) || body.previousSeq < 0) throw refused(partition, 'no valid previous sequence');
  if (!Number.isSafeInteger(body.watermark) || body.watermark < 0) throw refused(partition, 'no valid watermark');
  const publishedWatermark = body.publishedWatermark ?? 0;
  if (!Number.isSafeInteger(publishedWatermark) || publishedWatermark < 0) throw refused(partition, 'no valid published watermark');
  if (body.dueMark !== null && !Number.isFinite(body.dueMark)) throw refused(partition, 'no valid due-index mark');
  for (const write of body.writes) {
    const [tree, key, value] = write as unknown[];
    if (PARTITION_TREES[tree as number] === undefined || !Array.isArray(key) || key[0] !== partition || !key.every(isKeyPart)) throw refused(partition, 'a write outside the partition');
    if (value !== null && !(value instanceof Uint8Array)) throw refused(partition, 'a put without its stored bytes');
  }
  return {
    partition,
    partitions: body.partitions,
    storeFormat: body.storeFormat,
    previousSeq: body.previousSeq,
    watermark: body.watermark,
    publishedWatermark,
    dueMark: body.dueMark,
    writes: body.writes,
  };
}

type Trees = readonly Database<Buffer, Key[]>[];
const treesByRoot = new WeakMap<RootDatabase, { trees: Trees; meta: Database<unknown, string> }>();

/** The partition trees with values as raw bytes (written as given, never encoded), and meta; opened once per root. */
function handlesOf(root: RootDatabase): { trees: Trees; meta: Database<unknown, string> } {
  let handles = treesByRoot.get(root);
  if (handles === undefined) {
    handles = {
      trees: PARTITION_TREES.map((name) => root.openDB<Buffer, Key[]>({ name, encoding: 'binary' })),
      meta: root.openDB<unknown, string>({ name: 'meta', encoding: 'msgpack' }),
    };
    treesByRoot.set(root, handles);
  }
  return handles;
}

function asBuffer(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.length);
}

/**
 * Applies records of `partition` in order, all in ONE LMDB transaction (a
 * restore passes several at a time: fewer commits, each record still whole).
 * Idempotent: a record applied again, or a run of records replayed from an
 * earlier position, leaves the same state. The caller applies only to a
 * partition no actor of this process serves (its member cache would be stale).
 */
export async function applyPartitionChanges(root: RootDatabase, partition: number, records: PartitionChanges | readonly PartitionChanges[]): Promise<void> {
  const list: readonly PartitionChanges[] = Array.isArray(records) ? records : [records as PartitionChanges];
  for (const changes of list) {
    assert(changes.partition === partition, `changes of partition ${changes.partition} applied to partition ${partition}`);
    for (const [tree, key] of changes.writes) assert(PARTITION_TREES[tree] !== undefined && key[0] === partition, 'a change outside its partition');
  }
  const { trees, meta } = handlesOf(root);
  await root.transaction(() => {
    for (const changes of list) {
      for (const [tree, key, value] of changes.writes) {
        if (value === null) void trees[tree]!.remove(key);
        else void trees[tree]!.put(key, asBuffer(value));
      }
      if (changes.dueMark !== null) void meta.put(`due:${partition}`, changes.dueMark);
    }
  });
}

/**
 * The start of a restore: marks the partition incomplete (`restore:<p>`,
 * listed by incompleteImports) and clears its ranges and due mark, in one
 * transaction, so a restore that stops half-way (a crash, a refused record)
 * leaves a partition that says so instead of one that looks whole but is
 * behind. `finishRestore` clears the mark.
 */
export async function beginRestore(root: RootDatabase, partition: number): Promise<void> {
  const { trees, meta } = handlesOf(root);
  await root.transaction(() => {
    void meta.put(`restore:${partition}`, { startedAtMs: Date.now() });
    for (const tree of trees) {
      for (const key of tree.getKeys({ start: [partition], end: [partition + 1] })) void tree.remove(key as Key[]);
    }
    void meta.remove(`due:${partition}`);
  });
}

/** The end of a restore: the partition is whole again. Resolves once flushed. */
export async function finishRestore(root: RootDatabase, partition: number): Promise<void> {
  const { meta } = handlesOf(root);
  await meta.remove(`restore:${partition}`);
  await root.flushed;
}

/** The partition count and store format of a store's data directory (what records must match). */
export function storeIdentity(root: RootDatabase): { readonly partitions: number; readonly storeFormat: number } {
  const stored = handlesOf(root).meta.get('meta') as { partitions: number; formatVersion: number } | undefined;
  if (stored === undefined) throw new EngineError('ERR_STORE_FORMAT', 'the store has no meta record yet: start the engine on it once (or call ensureMeta) before restoring partitions');
  return { partitions: stored.partitions, storeFormat: stored.formatVersion };
}
