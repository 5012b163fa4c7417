import { DeliverPolicy, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { EngineError } from '../config/errors.js';
import { assert } from '../domain/assert.js';

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
    const last = await this.lastSubjectSequence();
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

  private async write(kind: ChangelogRecord['kind'], data: Uint8Array): Promise<number> {
    const h = headers();
    h.set(HEADER_KIND, kind);
    h.set(HEADER_EPOCH, String(this.epoch));
    h.set(HEADER_OWNER, this.owner);
    try {
      const ack = await this.js.publish(this.subject, data, { headers: h, expect: { lastSubjectSequence: this.lastSeq, streamName: this.stream } });
      this.lastSeq = ack.seq;
      return ack.seq;
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === STREAM_WRONG_LAST_SEQUENCE) {
        throw new PartitionFencedError(
          this.partition,
          this.epoch,
          `partition ${this.partition}: the changelog moved past sequence ${this.lastSeq} (another owner fenced it): epoch ${this.epoch} of ${this.owner} may not commit`,
        );
      }
      throw error;
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

  /** Every record after `afterSeq`, in order, up to the last one now (a new owner's restore). */
  async *readAfter(afterSeq: number): AsyncGenerator<ChangelogRecord> {
    const end = await this.lastSubjectSequence();
    if (end <= afterSeq) return;
    // An ordered consumer; the filter as a string (filter_subject): nats-server 2.9 has no filter_subjects.
    const consumer = await this.js.consumers.get(this.stream, {
      filter_subjects: this.subject,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: afterSeq + 1,
    });
    const messages = await consumer.consume();
    try {
      for await (const message of messages) {
        const kind = message.headers?.get(HEADER_KIND);
        yield {
          seq: message.seq,
          kind: kind === 'fence' ? 'fence' : 'commit',
          epoch: Number(message.headers?.get(HEADER_EPOCH) ?? 0),
          owner: message.headers?.get(HEADER_OWNER) ?? '',
          data: message.data,
        };
        if (message.seq >= end) break;
      }
    } finally {
      await messages.close();
    }
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
