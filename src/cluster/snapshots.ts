import type { NatsConnection } from '@nats-io/nats-core';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { jetstream, StorageType } from '@nats-io/jetstream';
import type { RootDatabase } from 'lmdb';
import { EngineError } from '../config/errors.js';
import { assert } from '../domain/assert.js';
import { exportPartition, importPartition, type PartitionUnitSummary } from '../store/partition-transfer.js';

/**
 * Partition snapshots in the JetStream object store (issue 17, item 3): the
 * unit of src/store/partition-transfer.ts, one object per partition
 * (`p<N>`; a new snapshot replaces the last), with where it stands in
 * metadata: the changelog sequence it includes, the input watermark (the
 * highest stream sequence committed in it), and the owner and lease epoch
 * that took it. A new owner restores the snapshot, then replays the
 * changelog after `changelogSeq` and resumes the partition's consumer after
 * `watermark`.
 *
 * The unit's frames go into the object's byte stream each behind a 4-byte
 * length; the object store checks its own SHA-256 over the bytes and the
 * unit's trailer checks its records, so a damaged object is refused, and the
 * partition stays marked incomplete in the target store.
 */

export const SNAPSHOT_BUCKET = 'LOYALTY_SNAPSHOTS';
/** Largest frame accepted from an object: a unit never writes more than 512 KiB of entries per frame. */
const FRAME_BYTES_MAX = 16 * 1024 * 1024;

export interface SnapshotPosition {
  /** The last changelog sequence whose effect the snapshot holds. */
  readonly changelogSeq: number;
  /** The highest input stream sequence committed in it: the consumer resumes after it. */
  readonly watermark: number;
  /** Every input message up to it had its outcomes acknowledged (see DecodedPartitionChanges); 0 when not known. */
  readonly publishedWatermark?: number;
  readonly owner: string;
  readonly epoch: number;
}

/** A snapshot as the object store describes it: where it stands, its size and when it was taken. */
export interface SnapshotInfo extends SnapshotPosition {
  readonly partition: number;
  readonly bytes: number;
  readonly takenAtMs: number;
}

/** A snapshot just written or read whole: also its record count and the unit's SHA-256. */
export interface SnapshotContent extends SnapshotInfo {
  readonly records: number;
  readonly sha256: string;
}

export interface SnapshotStoreOptions {
  readonly bucket?: string;
  /** 3 on a cluster (the snapshot must survive a server), 1 on one server. */
  readonly replicas: number;
  /** JetStream request timeout of the store's reads and writes (default: the client's, 5 s). */
  readonly timeoutMs?: number;
}

export class PartitionSnapshots {
  private constructor(private readonly store: ObjectStore) {}

  static async open(nc: NatsConnection, options: SnapshotStoreOptions): Promise<PartitionSnapshots> {
    assert(options.replicas === 1 || options.replicas === 3 || options.replicas === 5, 'snapshot replicas must be 1, 3 or 5');
    const store = await new Objm(options.timeoutMs === undefined ? nc : jetstream(nc, { timeout: options.timeoutMs })).create(options.bucket ?? SNAPSHOT_BUCKET, { replicas: options.replicas, storage: StorageType.File });
    return new PartitionSnapshots(store);
  }

  /**
   * Writes the partition's state as it is now (one LMDB read snapshot, held
   * open while the object is written) with its position. The caller takes it
   * between commits of the partition, so `position` describes that state.
   */
  async save(root: RootDatabase, partition: number, position: SnapshotPosition): Promise<SnapshotContent> {
    const frames = exportPartition(root, partition);
    let summary: PartitionUnitSummary | undefined;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = frames.next();
        if (next.done) {
          summary = next.value;
          controller.close();
          return;
        }
        const framed = new Uint8Array(4 + next.value.length);
        new DataView(framed.buffer).setUint32(0, next.value.length);
        framed.set(next.value, 4);
        controller.enqueue(framed);
      },
      cancel() {
        frames.return(undefined as never);
      },
    });
    const takenAtMs = Date.now();
    const info = await this.store.put(
      {
        name: objectName(partition),
        metadata: { changelogSeq: String(position.changelogSeq), watermark: String(position.watermark), publishedWatermark: String(position.publishedWatermark ?? 0), owner: position.owner, epoch: String(position.epoch), takenAtMs: String(takenAtMs) },
      },
      stream,
    );
    assert(summary !== undefined, 'the object store read the whole unit');
    return { partition, ...position, records: summary.records, bytes: info.size, sha256: summary.sha256, takenAtMs };
  }

  /** The last snapshot's position, or undefined when the partition has none. */
  async info(partition: number): Promise<SnapshotInfo | undefined> {
    const info = await this.store.info(objectName(partition));
    if (info === null || info.deleted) return undefined;
    return infoOf(partition, info.metadata, info.size);
  }

  /**
   * Replaces the partition in `root` with its last snapshot. Undefined when
   * there is none (a partition never snapshotted: restore from the changelog
   * alone). Rejects when the object or the unit is damaged.
   */
  async restore(root: RootDatabase, partition: number): Promise<SnapshotContent | undefined> {
    const result = await this.store.get(objectName(partition));
    if (result === null) return undefined;
    const summary = await importPartition(root, partition, framesOf(result.data, partition));
    const error = await result.error;
    if (error !== null && error !== undefined) throw new EngineError('ERR_STORE_FORMAT', `snapshot of partition ${partition} is damaged: ${error.message}`, { cause: error });
    return { ...infoOf(partition, result.info.metadata, result.info.size), records: summary.records, sha256: summary.sha256 };
  }
}

function objectName(partition: number): string {
  assert(Number.isInteger(partition) && partition >= 0, 'partition must be a non-negative integer');
  return `p${partition}`;
}

function infoOf(partition: number, metadata: Record<string, string> | undefined, bytes: number): SnapshotInfo {
  const number = (name: string): number => {
    const value = Number(metadata?.[name]);
    if (!Number.isSafeInteger(value)) throw new EngineError('ERR_STORE_FORMAT', `snapshot of partition ${partition} has no valid ${name} in its metadata`);
    return value;
  };
  // Absent from snapshots taken before the field: 0, the whole partition's input is delivered again (as duplicates).
  const publishedWatermark = metadata?.publishedWatermark === undefined ? 0 : number('publishedWatermark');
  return { partition, changelogSeq: number('changelogSeq'), watermark: number('watermark'), publishedWatermark, owner: metadata?.owner ?? '', epoch: number('epoch'), bytes, takenAtMs: number('takenAtMs') };
}

/** The unit's frames back out of the object's byte stream (4-byte length, then the frame). */
async function* framesOf(data: ReadableStream<Uint8Array>, partition: number): AsyncGenerator<Uint8Array> {
  let buffered = new Uint8Array(0);
  const reader = data.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (value !== undefined && value.length > 0) {
      const joined = new Uint8Array(buffered.length + value.length);
      joined.set(buffered);
      joined.set(value, buffered.length);
      buffered = joined;
    }
    while (buffered.length >= 4) {
      const length = new DataView(buffered.buffer, buffered.byteOffset, 4).getUint32(0);
      if (length > FRAME_BYTES_MAX) throw new EngineError('ERR_STORE_FORMAT', `snapshot of partition ${partition}: a frame of ${length} bytes is not a unit frame`);
      if (buffered.length < 4 + length) break;
      yield buffered.slice(4, 4 + length);
      buffered = buffered.subarray(4 + length);
    }
    if (done) break;
  }
  if (buffered.length > 0) throw new EngineError('ERR_STORE_FORMAT', `snapshot of partition ${partition} ends inside a frame (${buffered.length} bytes left)`);
}
