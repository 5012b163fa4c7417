import { JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { EngineError } from '../config/errors.js';
import { assert } from '../domain/assert.js';
import { nextOnSubject } from '../transport/stream-reads.js';

/**
 * A partition's changelog in JetStream: the commit point of cluster mode
 * (issue 17). Every commit of a partition is appended to
 * `<prefix>.changelog.<partition>` with `Nats-Expected-Last-Subject-Sequence`
 * set to the last sequence this owner wrote, before the local LMDB commit.
 * A new owner first appends a fence marker (its lease epoch) on the sequence
 * it read: from then on, an old owner that wakes up (a SIGSTOP past its lease)
 * has a stale expected sequence and every append it tries is refused by the
 * stream, so it can neither commit nor ack. The tail after the last snapshot
 * is what a new owner replays to restore the partition.
 */

const STREAM_WRONG_LAST_SEQUENCE = 10071;
const HEADER_KIND = 'Loyalty-Changelog';
const HEADER_EPOCH = 'Loyalty-Epoch';
const HEADER_OWNER = 'Loyalty-Owner';
/** An append not answered for this long fails (the engine stops: crash-only). Above 2.9.10's ~6 s leader election with room. */
export const APPEND_RETRY_MS = 30_000;
/** A tail read's ranges hold about this many records each, READ_RANGES_IN_FLIGHT of them read side by side (readAfter). */
const RECORDS_PER_RANGE = 8;
const READ_RANGES_IN_FLIGHT = 16;
/** Bounds the ranges (and so the gets that find no record) of one tail read. */
const RANGES_MAX = 4_096;

/** The stream did not answer: a timeout, or nobody serves its subject right now (no leader). Not a refusal. */
function unanswered(error: unknown): boolean {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    if (cause.name === 'TimeoutError' || cause.name === 'NoResponders' || /no responders|timeout/i.test(cause.message)) return true;
  }
  return false;
}

export class PartitionFencedError extends EngineError {
  constructor(
    readonly partition: number,
    readonly epoch: number,
    message: string,
  ) {
    super('ERR_PARTITION_FENCED', message);
    this.name = 'PartitionFencedError';
  }
}

export interface ChangelogRecord {
  readonly seq: number;
  readonly kind: 'fence' | 'commit';
  readonly epoch: number;
  readonly owner: string;
  readonly data: Uint8Array;
}

export interface ChangelogStreamOptions {
  readonly stream: string;
  readonly subjectPrefix: string;
  /** 3 on a 3-node cluster: a commit is durable when a majority has it. */
  readonly replicas: number;
}

export function changelogSubject(subjectPrefix: string, partition: number): string {
  return `${subjectPrefix}.changelog.${partition}`;
}

/** Creates the changelog stream if it is missing (file storage, limits retention: snapshots compact it). */
export async function ensureChangelogStream(jsm: JetStreamManager, options: ChangelogStreamOptions): Promise<void> {
  try {
    await jsm.streams.info(options.stream);
  } catch {
    await jsm.streams.add({ name: options.stream, subjects: [`${options.subjectPrefix}.changelog.*`], num_replicas: options.replicas, max_msg_size: 8 * 1024 * 1024 });
  }
}

export class PartitionChangelog {
  private lastSeq = 0;
  private epoch = 0;
  private fenced = false;
  private readonly subject: string;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    subjectPrefix: string,
    readonly partition: number,
    private readonly owner: string,
    /** How long an unanswered append is asked again before it fails (above a leader election). */
    private readonly retryMs = APPEND_RETRY_MS,
    private readonly onRetry?: (attempt: number, error: unknown) => void,
  ) {
    this.subject = changelogSubject(subjectPrefix, partition);
  }

  /** The sequence of this owner's last append (its fence marker right after fence()). */
  get lastSequence(): number {
    return this.lastSeq;
  }

  /**
   * Takes the partition's log for `epoch` (the lease's): appends a fence marker
   * conditioned on the last sequence seen now. Fails if another writer appends
   * between the read and the marker; the caller retries or gives the lease up.
   */
  async fence(epoch: number): Promise<number> {
    assert(Number.isSafeInteger(epoch) && epoch > 0, 'a fence needs a positive lease epoch');
    const last = await this.whileUnanswered(() => this.lastSubjectSequence());
    this.epoch = epoch;
    this.lastSeq = last;
    this.fenced = true;
    return this.write('fence', new Uint8Array(0));
  }

  /** Appends one commit; refused (PartitionFencedError) once another owner fenced the log. Returns its sequence. */
  append(data: Uint8Array): Promise<number> {
    assert(this.fenced, 'append before fence: an owner fences the log with its epoch first');
    return this.write('commit', data);
  }

  /**
   * One append, asked again while the stream does not answer (a timeout, or
   * "no responders" while an R3 stream elects a leader: ~6 s on 2.9.10 when
   * a server dies). Each attempt carries the same message id, one per
   * (owner, epoch, expected sequence). If an earlier attempt was stored and
   * only its acknowledgement lost, a single server answers the retry as a
   * duplicate with the sequence it stored; a clustered stream (2.9.10)
   * checks the expected sequence first and refuses it, so a refused retry
   * reads the subject's last record: when it carries our message id, the
   * commit is ours and stored once. Only another writer's record is a fence.
   */
  private async write(kind: ChangelogRecord['kind'], data: Uint8Array): Promise<number> {
    const h = headers();
    h.set(HEADER_KIND, kind);
    h.set(HEADER_EPOCH, String(this.epoch));
    h.set(HEADER_OWNER, this.owner);
    const msgID = `${this.owner}:${this.epoch}:${this.partition}:${this.lastSeq}`;
    let retried = false;
    try {
      const ack = await this.whileUnanswered(
        () => this.js.publish(this.subject, data, { headers: h, msgID, expect: { lastSubjectSequence: this.lastSeq, streamName: this.stream } }),
        () => (retried = true),
      );
      this.lastSeq = ack.seq;
      return ack.seq;
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === STREAM_WRONG_LAST_SEQUENCE) {
        // An attempt stored and its answer lost: a clustered stream (2.9.10) checks the expected sequence before duplicates.
        const stored = retried ? await this.whileUnanswered(() => this.lastOf(msgID)) : undefined;
        if (stored !== undefined) {
          this.lastSeq = stored;
          return stored;
        }
        throw new PartitionFencedError(
          this.partition,
          this.epoch,
          `partition ${this.partition}: the changelog moved past sequence ${this.lastSeq} (another owner fenced it): epoch ${this.epoch} of ${this.owner} may not commit`,
        );
      }
      throw error;
    }
  }

  /** The sequence of the subject's last record when its message id is `msgID` (an attempt of ours was stored), else undefined. */
  private async lastOf(msgID: string): Promise<number | undefined> {
    const message = await this.jsm.streams.getMessage(this.stream, { last_by_subj: this.subject });
    return message !== null && message.header.get('Nats-Msg-Id') === msgID ? message.seq : undefined;
  }

  /** Runs `request` again while the stream does not answer, for up to retryMs; any other error is thrown at once. */
  private async whileUnanswered<T>(request: () => Promise<T>, onRetry?: () => void): Promise<T> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await request();
      } catch (error) {
        if (!unanswered(error) || Date.now() - started >= this.retryMs) throw error;
        this.onRetry?.(attempt, error);
        onRetry?.();
        await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 100 * attempt)));
      }
    }
  }

  private async lastSubjectSequence(): Promise<number> {
    try {
      const message = await this.jsm.streams.getMessage(this.stream, { last_by_subj: this.subject });
      return message?.seq ?? 0;
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === 10037) return 0; // no message found
      throw error;
    }
  }

  /**
   * Every record after `afterSeq`, in order, up to the last one now (a new
   * owner's restore). Read by subject with STREAM.MSG.GET next_by_subj
   * (answered by the stream's leader) rather than through an ordered
   * consumer: creating a consumer goes through the meta leader, which after
   * a nats-server's death took over 15 s to answer on 2.9.10 while 64
   * partition consumers were recreated, and a restore waiting on it held up
   * every other takeover of its actor.
   *
   * One get per record, one after another, made a restore cost a round trip
   * per record: ~100 records took 1-2 s under load, and an actor's restores
   * run one at a time, so 20 partitions taken over at 200,000 events took
   * 30 s. So the stream sequences after `afterSeq` are cut into ranges, each
   * read one get after another, READ_RANGES_IN_FLIGHT ranges side by side,
   * and yielded in order (memory: at most that many ranges' records).
   * Ranges are sized from the subject's record count (stream info with a
   * subject filter) to hold about RECORDS_PER_RANGE records each.
   */
  async *readAfter(afterSeq: number): AsyncGenerator<ChangelogRecord> {
    const end = await this.whileUnanswered(() => this.lastSubjectSequence());
    if (end <= afterSeq) return;
    const count = await this.whileUnanswered(() => this.recordsOnSubject());
    const ranges = Math.max(1, Math.min(RANGES_MAX, Math.ceil(count / RECORDS_PER_RANGE)));
    const span = Math.ceil((end - afterSeq) / ranges);
    const bounds: [number, number][] = [];
    for (let from = afterSeq + 1; from <= end; from += span) bounds.push([from, Math.min(end, from + span - 1)]);
    const reads: Promise<ChangelogRecord[]>[] = [];
    let next = 0;
    const refill = () => {
      while (next < bounds.length && reads.length < READ_RANGES_IN_FLIGHT) {
        const [from, to] = bounds[next++]!;
        reads.push(this.readRange(from, to));
      }
    };
    refill();
    while (reads.length > 0) {
      const records = await reads.shift()!;
      refill();
      yield* records;
    }
  }

  /** The records with stream sequences from..to, one get after another. */
  private async readRange(from: number, to: number): Promise<ChangelogRecord[]> {
    const records: ChangelogRecord[] = [];
    for (let seq = from; seq <= to; ) {
      const message = await this.whileUnanswered(() => nextOnSubject(this.jsm, this.stream, this.subject, seq));
      if (message === null || message.seq > to) break;
      const kind = message.header.get(HEADER_KIND);
      records.push({
        seq: message.seq,
        kind: kind === 'fence' ? 'fence' : 'commit',
        epoch: Number(message.header.get(HEADER_EPOCH) || 0),
        owner: message.header.get(HEADER_OWNER) || '',
        data: message.data,
      });
      seq = message.seq + 1;
    }
    return records;
  }

  /** How many records the partition's subject holds now (what the ranges of a tail read are sized by). */
  private async recordsOnSubject(): Promise<number> {
    const info = await this.jsm.streams.info(this.stream, { subjects_filter: this.subject });
    return info.state.subjects?.[this.subject] ?? 0;
  }

  /**
   * Drops the records before `keepFromSeq` (a snapshot holds them now).
   * `keepFromSeq` must not pass the partition's last record: with none left,
   * the subject's last sequence reads 0 and the owner's next append
   * (conditioned on its own last sequence) is refused as fenced.
   */
  async compact(keepFromSeq: number): Promise<void> {
    await this.jsm.streams.purge(this.stream, { filter: this.subject, seq: keepFromSeq });
  }
}
