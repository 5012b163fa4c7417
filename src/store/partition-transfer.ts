import { createHash } from 'node:crypto';
import type { Database, Key, RootDatabase } from 'lmdb';
import { pack, unpack } from 'msgpackr';
import { EngineError } from '../config/errors.js';
import { assert } from '../domain/assert.js';
import { STORE_FORMAT_VERSION } from './lmdb.js';
import { PARTITION_TREES } from './partition-changes.js';
import type { StoreMeta } from './types.js';

/**
 * A partition's state as a unit that can move to another store (issue 17:
 * a new owner restores what the old one held). Keys start with the
 * partition (src/store/lmdb.ts), so a partition is one key range in each of
 * the trees that hold member state: `members` (core, ledger rows, the
 * idempotency records with their first outcomes, orders, redemptions,
 * vouchers), `index` (the member list) and `due` (the sweep's index), plus
 * the partition's due-index mark in `meta`, and in cluster mode
 * `partitionOutbox` (a sweep's outcomes not yet acknowledged, which a new
 * owner publishes again) and `partitionKpis` (the partition's KPI counters,
 * so a new owner's reports of the partition go on from the old owner's).
 * Every tree of PARTITION_TREES is in the unit, by its number there: a unit
 * exported before a tree existed just has no entries of it.
 *
 * Not in the unit: the KPI counters single-instance mode keeps per actor
 * (tree `kpis`, still read by reports alongside the partitions'); budget usage is the
 * cluster's KV counter in cluster mode (src/runtime/cluster-globals.ts); an
 * event batch's outbox stays per boot and actor (its events are delivered
 * again after the published watermark, with their first outcomes).
 *
 * Export reads all three ranges in ONE read transaction, so the unit is a
 * snapshot of one commit: a write committed meanwhile is either wholly in
 * it or wholly out. Values are copied as stored (no decoding). The unit is a
 * sequence of frames of bounded size (each fits a JetStream message or an
 * object-store chunk): a header, entry frames, a trailer with the count
 * and a SHA-256 over every entry, so a truncated or altered unit is refused.
 *
 * Import replaces the partition in this store. It is streamed, in several
 * transactions, so it is not atomic; instead the first transaction marks the
 * partition incomplete and clears its range, and only the last one, after the
 * trailer checked out, clears the mark. A store with an incomplete import
 * (a crash, a unit that did not check out) says so (`incompleteImports`), and
 * importing the unit again starts over. The caller imports only a partition
 * no actor of this process serves (its member cache would be stale).
 */

export const PARTITION_UNIT_VERSION = 1;
/** Largest frame the export writes: well under nats-server's default max_payload (1 MiB) once framed. */
export const PARTITION_FRAME_BYTES_MAX = 512 * 1024;

const TREES = PARTITION_TREES;
type Tree = (typeof TREES)[number];

interface HeaderFrame {
  readonly kind: 'header';
  readonly version: number;
  readonly storeFormat: number;
  readonly partitions: number;
  readonly partition: number;
  /** The program digest the partition's due index was built for, if any (meta `due:<p>`). */
  readonly dueMark: number | null;
  readonly exportedAtMs: number;
}

interface EntriesFrame {
  readonly kind: 'entries';
  /** [tree index in TREES, key, stored value bytes] */
  readonly entries: [number, Key[], Uint8Array][];
}

interface TrailerFrame {
  readonly kind: 'trailer';
  readonly records: number;
  readonly valueBytes: number;
  readonly sha256: string;
}

type Frame = HeaderFrame | EntriesFrame | TrailerFrame;

export interface PartitionUnitSummary {
  readonly partition: number;
  readonly records: number;
  readonly valueBytes: number;
  readonly frames: number;
  readonly sha256: string;
}

function binaryTrees(root: RootDatabase): Record<Tree, Database<Buffer, Key[]>> {
  // The same named databases as LmdbStore opens, with values as raw bytes: copied, never decoded.
  return Object.fromEntries(TREES.map((name) => [name, root.openDB({ name, encoding: 'binary' })])) as Record<Tree, Database<Buffer, Key[]>>;
}

function metaOf(root: RootDatabase): Database<unknown, string> {
  return root.openDB({ name: 'meta', encoding: 'msgpack' });
}

function partitionsOf(meta: Database<unknown, string>): number {
  const stored = meta.get('meta') as StoreMeta | undefined;
  if (stored === undefined) throw new EngineError('ERR_STORE_FORMAT', 'the store has no meta record yet: start the engine on it once (or call ensureMeta) before moving partitions');
  return stored.partitions;
}

function digestEntry(hash: ReturnType<typeof createHash>, tree: number, key: Key[], value: Uint8Array): void {
  hash.update(pack([tree, key]));
  hash.update(value);
}

/**
 * The partition's records as frames, read in one snapshot. The read
 * transaction stays open until the generator is finished or closed (LMDB
 * keeps the pages it sees meanwhile): consume it promptly.
 */
export function* exportPartition(root: RootDatabase, partition: number, frameBytesMax = PARTITION_FRAME_BYTES_MAX): Generator<Uint8Array, PartitionUnitSummary> {
  const meta = metaOf(root);
  const partitions = partitionsOf(meta);
  assert(Number.isInteger(partition) && partition >= 0 && partition < partitions, `partition must be 0..${partitions - 1}`);
  assert(frameBytesMax >= 1024, 'frames must hold at least 1 KiB');
  const trees = binaryTrees(root);
  const transaction = root.useReadTransaction();
  const hash = createHash('sha256');
  let records = 0;
  let valueBytes = 0;
  let frames = 0;
  try {
    const header: HeaderFrame = {
      kind: 'header',
      version: PARTITION_UNIT_VERSION,
      storeFormat: STORE_FORMAT_VERSION,
      partitions,
      partition,
      dueMark: (meta.get(`due:${partition}`, { transaction }) as number | undefined) ?? null,
      exportedAtMs: Date.now(),
    };
    frames += 1;
    yield pack(header);
    let entries: [number, Key[], Uint8Array][] = [];
    let entryBytes = 0;
    for (let tree = 0; tree < TREES.length; tree++) {
      for (const { key, value } of trees[TREES[tree]!].getRange({ start: [partition], end: [partition + 1], transaction })) {
        const bytes = Uint8Array.from(value); // lmdb-js may reuse the buffer of a range read
        const entryKey = key as Key[];
        digestEntry(hash, tree, entryKey, bytes);
        records += 1;
        valueBytes += bytes.length;
        const size = bytes.length + 64 + JSON.stringify(entryKey).length;
        if (entries.length > 0 && entryBytes + size > frameBytesMax) {
          frames += 1;
          yield pack({ kind: 'entries', entries } satisfies EntriesFrame);
          entries = [];
          entryBytes = 0;
        }
        entries.push([tree, entryKey, bytes]);
        entryBytes += size;
      }
    }
    if (entries.length > 0) {
      frames += 1;
      yield pack({ kind: 'entries', entries } satisfies EntriesFrame);
    }
    const sha256 = hash.digest('hex');
    frames += 1;
    yield pack({ kind: 'trailer', records, valueBytes, sha256 } satisfies TrailerFrame);
    return { partition, records, valueBytes, frames, sha256 };
  } finally {
    transaction.done();
  }
}

function refuse(partition: number, why: string): EngineError {
  return new EngineError('ERR_STORE_FORMAT', `partition ${partition} cannot be imported: ${why}; the partition is marked incomplete until a whole unit is imported`);
}

/**
 * Replaces `partition` in this store with an exported unit. Resolves with the
 * unit's summary once the last frame is committed and flushed; rejects
 * (ERR_STORE_FORMAT) on a unit of another store format, partition count or
 * partition, on frames out of order, or on a trailer that does not match,
 * leaving the partition marked incomplete.
 */
export async function importPartition(root: RootDatabase, partition: number, frames: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<PartitionUnitSummary> {
  const meta = metaOf(root);
  const partitions = partitionsOf(meta);
  assert(Number.isInteger(partition) && partition >= 0 && partition < partitions, `partition must be 0..${partitions - 1}`);
  const trees = binaryTrees(root);
  const hash = createHash('sha256');
  let header: HeaderFrame | undefined;
  let records = 0;
  let valueBytes = 0;
  let frameCount = 0;
  let trailer: TrailerFrame | undefined;
  for await (const bytes of frames) {
    frameCount += 1;
    const frame = unpack(bytes) as Frame;
    if (trailer !== undefined) throw refuse(partition, 'frames after the trailer');
    if (header === undefined) {
      if (frame.kind !== 'header') throw refuse(partition, 'the unit does not start with its header');
      if (frame.version !== PARTITION_UNIT_VERSION) throw refuse(partition, `unit version ${frame.version}, this engine reads ${PARTITION_UNIT_VERSION}`);
      if (frame.storeFormat !== STORE_FORMAT_VERSION) throw refuse(partition, `exported from store format ${frame.storeFormat}, this store is ${STORE_FORMAT_VERSION}`);
      if (frame.partitions !== partitions) throw refuse(partition, `exported from a store of ${frame.partitions} partitions, this one has ${partitions}`);
      if (frame.partition !== partition) throw refuse(partition, `the unit holds partition ${frame.partition}`);
      header = frame;
      await root.transaction(() => {
        void meta.put(`import:${partition}`, { startedAtMs: Date.now(), exportedAtMs: frame.exportedAtMs });
        for (const name of TREES) {
          for (const key of trees[name].getKeys({ start: [partition], end: [partition + 1] })) void trees[name].remove(key as Key[]);
        }
        void meta.remove(`due:${partition}`);
      });
      continue;
    }
    if (frame.kind === 'trailer') {
      trailer = frame;
      continue;
    }
    if (frame.kind !== 'entries') throw refuse(partition, `unexpected frame ${(frame as { kind?: unknown }).kind}`);
    // Checked before the transaction: nothing of a bad frame is written.
    for (const [tree, key, value] of frame.entries) {
      if (TREES[tree] === undefined || !Array.isArray(key) || key[0] !== partition || !(value instanceof Uint8Array)) throw refuse(partition, 'an entry outside the partition');
      digestEntry(hash, tree, key, value);
      records += 1;
      valueBytes += value.length;
    }
    await root.transaction(() => {
      for (const [tree, key, value] of frame.entries) void trees[TREES[tree]!].put(key, Buffer.from(value.buffer, value.byteOffset, value.length));
    });
  }
  if (header === undefined) throw refuse(partition, 'the unit is empty');
  if (trailer === undefined) throw refuse(partition, 'the unit ends without its trailer (cut short?)');
  const sha256 = hash.digest('hex');
  if (trailer.records !== records || trailer.valueBytes !== valueBytes || trailer.sha256 !== sha256) {
    throw refuse(partition, `the trailer says ${trailer.records} records, ${trailer.valueBytes} bytes, sha256 ${trailer.sha256.slice(0, 12)}…; read ${records}, ${valueBytes}, ${sha256.slice(0, 12)}…`);
  }
  const dueMark = header.dueMark;
  await root.transaction(() => {
    if (dueMark !== null) void meta.put(`due:${partition}`, dueMark);
    void meta.remove(`import:${partition}`);
  });
  await root.flushed;
  return { partition, records, valueBytes, frames: frameCount, sha256 };
}

/**
 * Partitions whose last import, or restore (snapshot + changelog tail,
 * src/cluster/restore.ts, marked `restore:<p>`), did not finish: not to be
 * served until imported or restored again.
 */
export function incompleteImports(root: RootDatabase): number[] {
  const meta = metaOf(root);
  const partitions = new Set<number>();
  for (const prefix of ['import:', 'restore:']) {
    // ';' sorts right after ':': the range is every key with the prefix.
    for (const key of meta.getKeys({ start: prefix, end: `${prefix.slice(0, -1)};` })) partitions.add(Number(String(key).slice(prefix.length)));
  }
  return [...partitions].sort((a, b) => a - b);
}
