import { assert } from '../domain/assert.js';
import type { BatchResult } from '../actors/actor.js';
import { AckTracker } from './ack-tracker.js';
import { Batcher } from './batcher.js';
import { type Encoding } from './batch-buffer.js';
import { actorOfPartition, partitionOf } from './partitioner.js';

/**
 * The main thread's whole job per message: read the member token from the
 * subject, pick the actor, copy the raw payload into that actor's batch. It
 * never decodes a payload. Acks follow the committed watermark.
 */

/** What ingest needs of a JetStream message (nats.js JsMsg satisfies it). */
export interface InboundMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly info: { readonly streamSequence: number; readonly timestampNanos: number; readonly pending: number };
  ack(): void;
}

export interface ActorRunner {
  readonly actors: number;
  hasRoom(actor: number): boolean;
  batchesInFlight(actor: number): number;
  runBatch(actor: number, buffer: ArrayBuffer): Promise<BatchResult>;
}

export interface IngestOptions {
  readonly partitions: number;
  readonly subjectPrefixLength: number;
  readonly batchSizeMax: number;
  readonly batchAgeMsMax: number;
  readonly payloadBytesMax: number;
  readonly runner: ActorRunner;
  readonly encodingOf: (message: InboundMessage) => Encoding;
  /**
   * What to keep until the message can be acked. The message itself by
   * default; the engine keeps only its reply subject, so that tens of
   * thousands of unacked deliveries do not hold their parsed messages and
   * payload buffers in memory after their payload was copied into a batch.
   */
  readonly ackHandleOf?: (message: InboundMessage) => AckHandle;
  /** Dead-letters a message the main thread rejects unread (oversized); resolves once stored. */
  readonly deadLetter: (message: InboundMessage, memberToken: string, reason: string, encoding: Encoding) => Promise<void>;
  readonly onBatch: (actor: number, result: BatchResult, nowMs: number) => void;
  readonly onAck?: (count: number) => void;
  /** A batch failed: its actor's memory may be ahead of its store. Intake must stop. */
  readonly onFatal: (error: unknown) => void;
  readonly now?: () => number;
}

/** Acks one delivery (with ack-all, every delivery before it too). */
export interface AckHandle {
  ack(): void;
}

export class Ingest {
  private readonly tracker = new AckTracker<AckHandle>();
  private readonly batcher: Batcher;
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;
  private failed = false;
  /** While paused, full batches wait here in order instead of going to the actors. */
  private paused = false;
  private readonly held: [actor: number, buffer: ArrayBuffer][] = [];
  private lastPending = 0;
  private readonly now: () => number;

  constructor(private readonly options: IngestOptions) {
    assert(options.partitions > 0, 'partitions must be positive');
    this.now = options.now ?? Date.now;
    this.batcher = new Batcher({
      actors: options.runner.actors,
      batchSizeMax: options.batchSizeMax,
      batchAgeMsMax: options.batchAgeMsMax,
      hasRoom: (actor) => !this.paused && options.runner.hasRoom(actor),
      // Caught up with the stream and the actor idle: latency matters more than batch size.
      isIdle: (actor) => this.lastPending === 0 && options.runner.batchesInFlight(actor) === 0,
      send: (actor, buffer) => this.send(actor, buffer),
    });
  }

  get ackPending(): number {
    return this.tracker.inFlight;
  }

  /** The consumer's pending count as of the last delivered message (its lag). */
  get consumerPending(): number {
    return this.lastPending;
  }

  pendingEvents(actor: number): number {
    return this.batcher.pending(actor);
  }

  onMessage(message: InboundMessage): void {
    const info = message.info;
    const sequence = info.streamSequence;
    if (this.stopped) {
      // Delivered after intake stopped: left unacked for redelivery, but
      // tracked, so an ack-all watermark can never pass (and so ack) it.
      this.tracker.track(sequence, this.ackHandleOf(message));
      return;
    }
    this.lastPending = info.pending;
    this.tracker.track(sequence, this.ackHandleOf(message));
    const memberToken = message.subject.substring(this.options.subjectPrefixLength);
    const encoding = this.options.encodingOf(message);
    const data = message.data;
    if (data.length > this.options.payloadBytesMax) {
      const reason = `payload of ${data.length} bytes exceeds the limit of ${this.options.payloadBytesMax}`;
      this.track(
        this.options.deadLetter(message, memberToken, reason, encoding).then(() => this.complete(sequence)),
      );
      return;
    }
    const actor = actorOfPartition(partitionOf(memberToken, this.options.partitions), this.options.runner.actors);
    this.batcher.add(actor, sequence, info.timestampNanos / 1e6, encoding, memberToken, data);
  }

  /** Stops taking messages, sends partial batches, waits for every in-flight batch and its ack. */
  async drain(): Promise<void> {
    this.stopped = true;
    this.batcher.close();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /**
   * Runs `action` while no batch is in flight (for a program switch): new
   * batches are held, in order, until it is done. Intake itself keeps going,
   * bounded by the consumer's ack-pending limit.
   */
  async exclusive<T>(action: () => Promise<T>): Promise<T> {
    this.paused = true;
    try {
      while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
      return await action();
    } finally {
      this.paused = false;
      for (const [actor, buffer] of this.held.splice(0)) this.send(actor, buffer);
      for (let actor = 0; actor < this.options.runner.actors; actor++) this.batcher.poke(actor);
    }
  }

  private send(actor: number, buffer: ArrayBuffer): void {
    if (this.paused) {
      this.held.push([actor, buffer]);
      return;
    }
    const promise = this.options.runner.runBatch(actor, buffer).then((result) => {
      const nowMs = this.now();
      this.options.onBatch(actor, result, nowMs);
      let acked: AckHandle | undefined;
      for (const sequence of result.committedSequences) acked = this.tracker.complete(sequence) ?? acked;
      for (const letter of result.deadLetters) acked = this.tracker.complete(letter.streamSequence) ?? acked;
      this.ack(acked);
      this.batcher.poke(actor);
    });
    this.track(promise);
  }

  private complete(sequence: number): void {
    this.ack(this.tracker.complete(sequence));
  }

  private ackHandleOf(message: InboundMessage): AckHandle {
    return this.options.ackHandleOf?.(message) ?? message;
  }

  private ack(handle: AckHandle | undefined): void {
    if (handle === undefined || this.failed) return;
    handle.ack();
    this.options.onAck?.(1);
  }

  private track(promise: Promise<void>): void {
    const tracked = promise.catch((error: unknown) => {
      if (!this.failed) {
        this.failed = true;
        this.stopped = true;
        this.options.onFatal(error);
      }
    });
    this.inFlight.add(tracked);
    void tracked.finally(() => this.inFlight.delete(tracked));
  }
}
