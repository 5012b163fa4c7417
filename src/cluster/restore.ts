import type { RootDatabase } from 'lmdb';
import { EngineError } from '../config/errors.js';
import { assert } from '../domain/assert.js';
import {
  applyPartitionChanges,
  beginRestore,
  decodePartitionChanges,
  encodePartitionChanges,
  finishRestore,
  storeIdentity,
  type ChangeRecorder,
  type DecodedPartitionChanges,
  type PartitionChanges,
} from '../store/partition-changes.js';
import type { PartitionChangelog } from './changelog.js';
import type { PartitionSnapshots, SnapshotContent, SnapshotPosition } from './snapshots.js';

/**
 * A partition restored where it was left (issue 17): its last snapshot
 * (snapshots.ts), then every changelog commit record after the snapshot's
 * changelog sequence (changelog.ts; the records are partition-changes.ts's),
 * in order. The owner side is `changelogRecorder`: each batch's changes of a
 * partition are appended to its changelog before the store writes them, so
 * the changelog holds every commit, and a snapshot plus the tail after it is
 * the partition as its last owner committed it (and possibly one batch more:
 * appended, not yet written locally when it stopped; its input was not acked
 * either, and the watermark says so: the consumer resumes after it).
 *
 * The new owner fences the changelog with its lease epoch FIRST, then
 * restores: the tail it reads then ends at its own fence marker, and no
 * record of the old owner can land after it (changelog.ts). The position
 * returned is where it continues: the changelog sequence its appends follow
 * (its fence marker's, when it fenced first) and the input watermark its
 * consumer resumes after.
 */

/** Records applied per LMDB transaction during a replay: fewer commits, still each record whole and in order. */
const REPLAY_RECORDS_PER_TRANSACTION = 64;
const REPLAY_BYTES_PER_TRANSACTION = 8 * 1024 * 1024;

export interface RestoreOptions {
  readonly snapshots: PartitionSnapshots;
  /** The partition's changelog (any owner's handle: only read here). */
  readonly changelog: PartitionChangelog;
  /** The store to restore into; the partition is replaced. No actor of this process may serve it meanwhile. */
  readonly root: RootDatabase;
  readonly partition: number;
}

export interface RestoredPartition {
  readonly partition: number;
  /** The snapshot restored, or undefined when the partition had none (replayed from the changelog alone). */
  readonly snapshot: SnapshotContent | undefined;
  /** The last changelog sequence accounted for (a commit applied or a fence passed): the partition's appends continue after it. */
  readonly changelogSeq: number;
  /** The highest input stream sequence committed. */
  readonly watermark: number;
  /**
   * The highest input stream sequence whose outcomes the last owner knew
   * acknowledged (≤ watermark): the partition's consumer resumes after it, so
   * the events between it and `watermark` come again as duplicates and their
   * first outcomes are published again (an event batch's outbox entry does
   * not move; a sweep's does: LmdbStore.usePartitionOutbox). A graceful
   * release ends with a watermark-only record (no writes, or removals of
   * acknowledged outbox entries) carrying the complete mark, so after one it
   * equals `watermark` and nothing is read again.
   */
  readonly publishedWatermark: number;
  /** Commit records replayed, fence markers passed, and the records' bytes. */
  readonly commits: number;
  readonly fences: number;
  readonly bytes: number;
  readonly snapshotMs: number;
  readonly replayMs: number;
}

function gap(partition: number, why: string): EngineError {
  return new EngineError('ERR_CHANGELOG_RECORD', `partition ${partition} cannot be restored: ${why}`);
}

/**
 * Replaces the partition in `root` with its snapshot and the changelog tail
 * after it. The partition stays marked incomplete (incompleteImports) until
 * the last record is applied; on a damaged record, or one missing from the
 * tail (ERR_CHANGELOG_RECORD), it stays marked and the error is thrown.
 */
export async function restorePartition(options: RestoreOptions): Promise<RestoredPartition> {
  const { snapshots, changelog, root, partition } = options;
  assert(changelog.partition === partition, `the changelog of partition ${changelog.partition} given to restore partition ${partition}`);
  const identity = storeIdentity(root);
  assert(Number.isInteger(partition) && partition >= 0 && partition < identity.partitions, `partition must be 0..${identity.partitions - 1}`);
  const started = performance.now();
  // Marked and cleared first: with no snapshot the partition starts empty, and a restore cut short says so.
  await beginRestore(root, partition);
  const snapshot = await snapshots.restore(root, partition);
  const snapshotMs = performance.now() - started;

  let changelogSeq = snapshot?.changelogSeq ?? 0;
  let watermark = snapshot?.watermark ?? 0;
  let publishedWatermark = snapshot?.publishedWatermark ?? 0;
  let fenceEpoch: number | undefined;
  let commits = 0;
  let fences = 0;
  let bytes = 0;
  let pending: DecodedPartitionChanges[] = [];
  let pendingBytes = 0;
  const flush = async (): Promise<void> => {
    if (pending.length === 0) return;
    await applyPartitionChanges(root, partition, pending);
    pending = [];
    pendingBytes = 0;
  };
  for await (const record of changelog.readAfter(changelogSeq)) {
    if (record.kind === 'fence') {
      fenceEpoch = record.epoch;
      fences += 1;
      changelogSeq = record.seq;
      continue;
    }
    // Copied: the decoded values are views of it, and they wait for their transaction.
    const changes = decodePartitionChanges(record.data.slice(), { partition, ...identity });
    // Every record names the one it was appended after, so a record lost from the tail (a compaction
    // past the snapshot, a snapshot older than the purge) is noticed. The first after a fence follows the fence.
    if (changes.previousSeq !== changelogSeq) {
      throw gap(partition, `the record at changelog sequence ${record.seq} follows ${changes.previousSeq}, the last one read is ${changelogSeq}: a record is missing (the log compacted past ${snapshot === undefined ? 'the start, with no snapshot' : 'the snapshot'}?)`);
    }
    if (fenceEpoch !== undefined && record.epoch !== fenceEpoch) {
      throw gap(partition, `the commit at changelog sequence ${record.seq} has epoch ${record.epoch} after a fence of epoch ${fenceEpoch}`);
    }
    pending.push(changes);
    pendingBytes += record.data.length;
    commits += 1;
    bytes += record.data.length;
    changelogSeq = record.seq;
    watermark = Math.max(watermark, changes.watermark);
    publishedWatermark = Math.max(publishedWatermark, changes.publishedWatermark);
    if (pending.length >= REPLAY_RECORDS_PER_TRANSACTION || pendingBytes >= REPLAY_BYTES_PER_TRANSACTION) await flush();
  }
  await flush();
  await finishRestore(root, partition);
  assert(publishedWatermark <= watermark, `partition ${partition}: a published watermark (${publishedWatermark}) past the committed one (${watermark})`);
  return { partition, snapshot, changelogSeq, watermark, publishedWatermark, commits, fences, bytes, snapshotMs, replayMs: performance.now() - started - snapshotMs };
}

export interface TakeSnapshotOptions {
  readonly snapshots: PartitionSnapshots;
  readonly root: RootDatabase;
  readonly partition: number;
  /**
   * Where the snapshot stands: the last changelog record whose LMDB commit
   * completed before this call, and the watermark as of it. The snapshot may
   * catch a later commit too (its read starts after this call); its record is
   * replayed again on restore, harmlessly. A position LATER than what the
   * store holds would lose that record: never label a snapshot with an
   * append whose commit has not completed.
   */
  readonly position: SnapshotPosition;
  /** When given, the records the snapshot holds are purged from it once the snapshot is stored, all but the last. */
  readonly compact?: PartitionChangelog;
}

/** Saves the partition's snapshot at `position`, then (with `compact`) drops the changelog records it holds. */
export async function takeSnapshot(options: TakeSnapshotOptions): Promise<SnapshotContent> {
  const { snapshots, root, partition, position, compact } = options;
  assert(compact === undefined || compact.partition === partition, 'the changelog to compact is the partition\'s');
  const saved = await snapshots.save(root, partition, position);
  // Only after the object is stored: until then the last snapshot and the records after it are what a restore needs.
  // The record AT the snapshot's position stays: purging a subject's last message makes its last sequence read as
  // 0, and the owner's next append, conditioned on its own last sequence, would be refused as fenced. A restore reads
  // after that record, so keeping it costs one message per partition.
  if (compact !== undefined && position.changelogSeq > 0) await compact.compact(position.changelogSeq);
  return saved;
}

/** Where an owner's changelog of a partition stands: the last record appended and the watermark it carried. */
export interface AppendedPosition {
  readonly changelogSeq: number;
  readonly watermark: number;
  readonly publishedWatermark: number;
}

export interface ChangelogRecorder {
  /** For LmdbStore.setChangeRecorder. */
  readonly recorder: ChangeRecorder;
  /** The partition's last append by this recorder (the changelog's last sequence and the highest watermark appended). */
  appended(partition: number): AppendedPosition;
  /**
   * The partition was won and restored at `position`: the watermarks its
   * records carry start from there (a watermark-only record at release
   * names the restored watermark when this owner committed nothing).
   */
  own(partition: number, position: { readonly watermark: number; readonly publishedWatermark: number }): void;
  /** The partition was let go: what this recorder knew of it goes (owned again, it starts from its new restore). */
  release(partition: number): void;
  /**
   * Appends a record of one partition outside a batch commit (a
   * watermark-only record at release, removals of acknowledged outbox
   * entries), after the partition's appends in flight and conditioned like
   * them; `publishedWatermark` is bounded by the watermark appended. Writes
   * nothing to the store: the caller applies `changes` once it resolved.
   * Rejects as the append does (PartitionFencedError once another owner fenced).
   */
  appendRecord(changes: PartitionChanges, publishedWatermark: number): Promise<{ readonly position: AppendedPosition; readonly bytes: number }>;
}

/**
 * The owner side of a restore: a change recorder that appends each
 * partition's share of a batch to that partition's changelog before the
 * store writes the batch (the store waits for it, and writes nothing if an
 * append is refused, e.g. PartitionFencedError). `changelogs`: one fenced
 * PartitionChangelog per partition this instance owns; a batch touching
 * another partition is a bug (assertion). The partitions' appends run side
 * by side; if one is refused after others landed, those others are in
 * their changelogs but not in this store, so the instance must restore
 * every partition from its changelog before serving it again.
 *
 * The appends of ONE partition run one after another, each encoded on the
 * sequence the one before it landed at: every append is conditioned on the
 * changelog's last sequence, so two in flight at once would see the second
 * refused as fenced. The actor commits one batch at a time, but a record
 * appended outside a batch (`appendRecord`) may meet one.
 */
export function changelogRecorder(
  changelogs: ReadonlyMap<number, PartitionChangelog>,
  initial?: ReadonlyMap<number, number>,
  /** The owner's published watermark of a partition now, written into each record (0: not known). */
  publishedWatermark: (partition: number) => number = () => 0,
  /** Told, once a batch's LMDB write completed, of each partition's position after it and the record's size (a snapshot schedule). */
  onWritten?: (partition: number, position: AppendedPosition, bytes: number) => void,
): ChangelogRecorder {
  const published = new Map<number, number>();
  const watermarks = new Map<number, number>(initial);
  /** Per partition, its last append (settled either way): the next one starts after it. */
  const tails = new Map<number, Promise<unknown>>();
  const append = (partitionChanges: PartitionChanges, markNow: number): Promise<{ position: AppendedPosition; bytes: number }> => {
    const { partition } = partitionChanges;
    const changelog = changelogs.get(partition);
    assert(changelog !== undefined, `a batch changed partition ${partition}, which this instance has no changelog of`);
    const run = (tails.get(partition) ?? Promise.resolve()).then(async () => {
      // Never past what this record commits: a mark from an earlier term of the same owner may run ahead of a restored tail.
      const mark = Math.min(markNow, Math.max(watermarks.get(partition) ?? 0, partitionChanges.watermark));
      const record = encodePartitionChanges(partitionChanges, changelog.lastSequence, undefined, mark);
      const changelogSeq = await changelog.append(record);
      published.set(partition, Math.max(published.get(partition) ?? 0, mark));
      watermarks.set(partition, Math.max(watermarks.get(partition) ?? 0, partitionChanges.watermark));
      return { position: { changelogSeq, watermark: watermarks.get(partition)!, publishedWatermark: published.get(partition)! }, bytes: record.length };
    });
    const settled = run.catch(() => undefined);
    tails.set(partition, settled);
    void settled.then(() => {
      if (tails.get(partition) === settled) tails.delete(partition);
    });
    return run;
  };
  const recorder: ChangeRecorder = async (changes) => {
    const positions: [number, AppendedPosition, number][] = [];
    await Promise.all(
      changes.map(async (partitionChanges) => {
        const { position, bytes } = await append(partitionChanges, publishedWatermark(partitionChanges.partition));
        positions.push([partitionChanges.partition, position, bytes]);
      }),
    );
    if (onWritten === undefined) return undefined;
    return () => {
      for (const [partition, position, bytes] of positions) onWritten(partition, position, bytes);
    };
  };
  return {
    recorder,
    appended(partition) {
      const changelog = changelogs.get(partition);
      assert(changelog !== undefined, `no changelog of partition ${partition}`);
      return { changelogSeq: changelog.lastSequence, watermark: watermarks.get(partition) ?? 0, publishedWatermark: published.get(partition) ?? 0 };
    },
    own(partition, position) {
      assert(position.publishedWatermark <= position.watermark, `partition ${partition}: a published watermark past the committed one`);
      watermarks.set(partition, position.watermark);
      published.set(partition, position.publishedWatermark);
    },
    release(partition) {
      watermarks.delete(partition);
      published.delete(partition);
    },
    appendRecord(changes, mark) {
      assert(Number.isSafeInteger(mark) && mark >= 0, 'a published watermark is a non-negative integer');
      return append(changes, mark);
    },
  };
}
