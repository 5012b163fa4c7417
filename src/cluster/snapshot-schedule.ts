import { assert } from '../domain/assert.js';
import type { SnapshotPosition } from './snapshots.js';

/**
 * When an owner snapshots its partitions (issue 17: "snapshots taken
 * periodically, by records or bytes since the last one, at a position whose
 * commit completed").
 *
 * A snapshot bounds what a new owner replays (the changelog tail after it)
 * and, with compaction, the changelog's storage. Each costs an export of the
 * partition (~86 ms of one core for ~10,000 records, docs/cluster.md) and its
 * upload, so it is taken when enough has been appended since the last one,
 * not on a timer alone, and one at a time, so a burst of busy partitions
 * does not stall the actors' core.
 *
 * The owner tells the schedule of every completed commit of a partition
 * (`committed`, after the LMDB commit of that changelog record finished: only
 * such a position may label a snapshot) with the record's size. When a
 * partition's records or bytes since its last snapshot reach a threshold, and
 * at least `intervalMsMin` passed since its last one (else when it has), it is queued; the
 * queue is served one partition at a time with the partition's latest
 * completed position. A failed snapshot is retried after `retryMs` (its
 * counts are kept: nothing is forgotten); `release` forgets a partition handed
 * over (a snapshot of it in flight still finishes: it is the old owner's
 * position, labelled with its epoch, and a restore takes the newest one).
 *
 * The schedule holds no NATS or LMDB handle: `take` does the work
 * (src/cluster/restore.ts `takeSnapshot` with compaction, in the engine).
 */
export interface SnapshotScheduleOptions {
  /** Records appended since the partition's last snapshot that call for a new one. */
  readonly recordsMin: number;
  /** Bytes appended since the last snapshot that call for a new one (whichever comes first). */
  readonly bytesMin: number;
  /** Least time between two snapshots of one partition. */
  readonly intervalMsMin: number;
  /** Wait before a failed snapshot of a partition is tried again. */
  readonly retryMs: number;
  /** Saves the partition's snapshot at `position` (and compacts its changelog). */
  readonly take: (partition: number, position: SnapshotPosition) => Promise<void>;
  /** Told of every failed snapshot (the schedule retries it). */
  readonly onError: (partition: number, error: unknown) => void;
  readonly now?: () => number;
}

interface PartitionCounts {
  records: number;
  bytes: number;
  position: SnapshotPosition | undefined;
  /** When the last snapshot of the partition was taken (or the partition owned), and when it may be tried again after a failure. */
  lastMs: number;
  notBeforeMs: number;
  queued: boolean;
}

export interface SnapshotScheduleStats {
  readonly taken: number;
  readonly failed: number;
  readonly queued: number;
  readonly running: number | null;
}

export class SnapshotSchedule {
  private readonly partitions = new Map<number, PartitionCounts>();
  private readonly queue: number[] = [];
  private running: number | null = null;
  private runningPromise: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private wakeAtMs: number | undefined;
  private stopped = false;
  private taken = 0;
  private failed = 0;
  private readonly now: () => number;

  constructor(private readonly options: SnapshotScheduleOptions) {
    assert(Number.isSafeInteger(options.recordsMin) && options.recordsMin >= 1, 'recordsMin is a positive integer');
    assert(Number.isSafeInteger(options.bytesMin) && options.bytesMin >= 1, 'bytesMin is a positive integer');
    assert(Number.isFinite(options.intervalMsMin) && options.intervalMsMin >= 0, 'intervalMsMin is not negative');
    assert(Number.isFinite(options.retryMs) && options.retryMs > 0, 'retryMs is positive');
    this.now = options.now ?? Date.now;
  }

  /** The partition is owned from now (won, restored): its counts start at zero. */
  own(partition: number): void {
    assert(!this.stopped, 'the schedule is stopped');
    this.partitions.set(partition, { records: 0, bytes: 0, position: undefined, lastMs: this.now(), notBeforeMs: 0, queued: false });
  }

  /** The partition was handed over: no more snapshots of it by this owner. */
  release(partition: number): void {
    this.partitions.delete(partition);
    const index = this.queue.indexOf(partition);
    if (index >= 0) this.queue.splice(index, 1);
  }

  /** A changelog record of the partition (`bytes` long) is committed locally; `position` is where the partition stands after it. */
  committed(partition: number, position: SnapshotPosition, bytes: number): void {
    const counts = this.partitions.get(partition);
    assert(counts !== undefined, `partition ${partition} committed but not owned by the schedule`);
    assert(counts.position === undefined || position.changelogSeq >= counts.position.changelogSeq, 'a partition\'s positions only move forward');
    counts.records += 1;
    counts.bytes += bytes;
    counts.position = position;
    this.consider(partition, counts);
  }

  stats(): SnapshotScheduleStats {
    return { taken: this.taken, failed: this.failed, queued: this.queue.length, running: this.running };
  }

  /** No more snapshots are started; resolves when the one in flight is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.runningPromise;
  }

  private consider(partition: number, counts: PartitionCounts): void {
    if (this.stopped || counts.queued || this.running === partition) return;
    if (counts.records < this.options.recordsMin && counts.bytes < this.options.bytesMin) return;
    const allowedAtMs = Math.max(counts.lastMs + this.options.intervalMsMin, counts.notBeforeMs);
    if (this.now() < allowedAtMs) {
      this.wakeAt(allowedAtMs); // a partition that goes quiet past its threshold is snapshotted all the same
      return;
    }
    counts.queued = true;
    this.queue.push(partition);
    this.pump();
  }

  private pump(): void {
    if (this.stopped || this.running !== null) return;
    const partition = this.queue.shift();
    if (partition === undefined) return;
    const counts = this.partitions.get(partition);
    if (counts === undefined || counts.position === undefined) return this.pump();
    counts.queued = false;
    const position = counts.position;
    // What is appended while the snapshot runs counts toward the next one.
    const recordsAt = counts.records;
    const bytesAt = counts.bytes;
    this.running = partition;
    this.runningPromise = this.options.take(partition, position).then(
      () => {
        this.taken += 1;
        const current = this.partitions.get(partition);
        if (current !== undefined) {
          current.records -= recordsAt;
          current.bytes -= bytesAt;
          current.lastMs = this.now();
        }
        this.finished(partition);
      },
      (error: unknown) => {
        this.failed += 1;
        this.options.onError(partition, error);
        const current = this.partitions.get(partition);
        if (current !== undefined) current.notBeforeMs = this.now() + this.options.retryMs;
        this.finished(partition);
      },
    );
  }

  private finished(partition: number): void {
    this.running = null;
    const counts = this.partitions.get(partition);
    if (counts !== undefined) this.consider(partition, counts);
    this.pump();
  }

  /** One timer, for the earliest time a partition waiting on its interval or retry may go; then every partition is considered again. */
  private wakeAt(atMs: number): void {
    if (this.stopped || (this.wakeAtMs !== undefined && this.wakeAtMs <= atMs)) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.wakeAtMs = atMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.wakeAtMs = undefined;
      for (const [partition, counts] of this.partitions) this.consider(partition, counts);
    }, Math.max(0, atMs - this.now()));
    this.timer.unref();
  }
}
