import { EngineError } from '../config/errors.js';
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
  /** A redelivery of a message still in flight, left out (its first copy's commit acks it). */
  readonly onRedeliverySkipped?: () => void;
  /** A batch failed: its actor's memory may be ahead of its store. Intake must stop. */
  readonly onFatal: (error: unknown) => void;
  /**
   * Whether the stream still holds a message: asked of a sequence held open
   * for a lost delivery that the server has not redelivered after
   * `redeliveryCheckMs` (deleted meanwhile: max_age, a purge). Without it such
   * a sequence is waited for until the engine stops.
   */
  readonly streamHas?: (sequence: number) => Promise<boolean>;
  /**
   * How far the consumer has delivered (its info's delivered.stream_seq and
   * delivered.consumer_seq): where lost deliveries end.
   */
  readonly consumerDelivered?: () => Promise<{ readonly streamSequence: number; readonly deliverySequence: number }>;
  /**
   * The stream sequences from..to the consumer delivers at all, for a
   * consumer filtered to a part of the stream (cluster mode: one partition).
   * Absent: every one (the engine's single consumer takes the whole stream).
   * Without it, a filtered consumer's lost deliveries would be awaited over
   * every sequence of the range, others' included, which never come: the
   * watermark stayed held (3 partitions' acks stuck after a server's death).
   */
  readonly consumerSequences?: (from: number, to: number) => Promise<readonly number[]>;
  /**
   * Asks the server to deliver these stream sequences again now rather than
   * after ack_wait (a NAK on their behalf; `deliverySequence` is the
   * consumer's current one). Optional: without it, they come after ack_wait.
   */
  readonly requestRedelivery?: (streamSequences: readonly number[], deliverySequence: number) => void;
  /** How long to wait for lost deliveries before asking the stream about them (about twice ack_wait). */
  readonly redeliveryCheckMs?: number;
  readonly now?: () => number;
}

/**
 * Most sequences one delivery gap may hold open. The server cannot have more
 * than max_ack_pending deliveries unacked; a larger stream sequence jump
 * means messages deleted meanwhile, and waiting on each costs memory and a
 * stream lookup. Past it the engine stops (crash-only: a start resets the
 * consumer to its ack floor, which redelivers everything after it).
 */
export const REDELIVERY_HOLD_MAX = 1_048_576;
/** How often lost deliveries still awaited are asked for again. */
const REDELIVERY_NUDGE_MS = 3_000;
/** Lost deliveries asked for again at once (the rest come after ack_wait). */
const REDELIVERY_REQUESTS_MAX = 65_536;
/** Stream lookups for sequences still awaited, per check. */
const REDELIVERY_LOOKUPS_MAX = 4_096;

/** Acks one delivery (with ack-all, every delivery before it too). */
export interface AckHandle {
  ack(): void;
}

export class Ingest {
  private tracker = new AckTracker<AckHandle>();
  /** ackedThrough of the trackers forgotten by restartDeliveries. */
  private ackedBefore = 0;
  /** Bumped by restartDeliveries: a gap being closed for the old consumer is dropped. */
  private deliveryEpoch = 0;
  private readonly batcher: Batcher;
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;
  private failed = false;
  /** While paused, full batches wait here in order instead of going to the actors. */
  private paused = false;
  private readonly held: [actor: number, buffer: ArrayBuffer][] = [];
  private lastPending = 0;
  private redeliveryTimer: NodeJS.Timeout | undefined;
  private nudgeTimer: NodeJS.Timeout | undefined;
  /** The lowest stream sequence the watermark is held at for lost deliveries not yet located. */
  private gapFrom: number | undefined;
  private gapEpoch = 0;
  private closingGap = false;
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

  /**
   * The highest stream sequence acked so far: everything at or below it is
   * committed (or dead-lettered, or given up as deleted). The consumer's ack
   * floor can never be above it; a delivery at or below it is a duplicate.
   */
  get ackedThrough(): number {
    return Math.max(this.ackedBefore, this.tracker.ackedThrough);
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
    if (!this.tracker.track(sequence, this.ackHandleOf(message))) {
      // Redelivered (ack_wait passed) while its first copy is still in a batch or waits for the watermark: that copy's
      // commit acks it. Applying the copy again would change nothing (its processed record) yet cost a lookup and a
      // republish of its outcomes; under a long hold with a short ack_wait, such copies piled up faster than they drained.
      this.options.onRedeliverySkipped?.();
      return;
    }
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

  /**
   * Why the ack watermark stands where it does, for /health: the lowest
   * sequence not acked, and while deliveries were lost on the way, the
   * sequence acks are held at and how many lost deliveries are awaited.
   */
  describeAcks(): { lowestOpen?: { sequence: number; delivered: boolean; done: boolean }; heldAt?: number; redeliveriesAwaited?: number } {
    const lowest = this.tracker.lowest;
    const heldAt = this.tracker.holding;
    const awaited = this.tracker.awaitedCount;
    return { ...(lowest === undefined ? {} : { lowestOpen: lowest }), ...(heldAt === undefined ? {} : { heldAt }), ...(awaited === 0 ? {} : { redeliveriesAwaited: awaited }) };
  }

  /**
   * Deliveries were lost on the way (a gap in the consumer's delivery
   * sequence: the connection was cut while the server sent them), after
   * stream sequence `streamSequenceSeen`, the highest delivered before. With
   * ack-all, acking past them would ack them unread (measured: 10 of 60,000
   * events lost in 6 cuts before this). So the watermark stops at
   * `streamSequenceSeen`; the consumer's info then tells the highest stream
   * sequence delivered so far, and every sequence up to it that did not
   * arrive is held open until nats-server redelivers it (asked for at once
   * with requestRedelivery, else after ack_wait) and it is committed. A lost redelivery is of a message tracked or acked
   * already: nothing to hold. Sequences the stream no longer holds are given
   * up (streamHas).
   */
  deliveriesLost(streamSequenceSeen: number): void {
    if (this.failed) return;
    this.tracker.holdAt(streamSequenceSeen);
    this.gapFrom = this.gapFrom === undefined ? streamSequenceSeen : Math.min(this.gapFrom, streamSequenceSeen);
    this.gapEpoch += 1;
    if (!this.closingGap) void this.closeGap();
  }

  private async closeGap(): Promise<void> {
    const consumerDelivered = this.options.consumerDelivered;
    if (consumerDelivered === undefined) return; // held until the engine stops: a start resets the consumer to its ack floor
    this.closingGap = true;
    const deliveryEpoch = this.deliveryEpoch;
    try {
      for (let attempt = 0; this.gapFrom !== undefined && !this.failed; attempt++) {
        const epoch = this.gapEpoch;
        let delivered: number;
        let deliverySequence: number;
        try {
          ({ streamSequence: delivered, deliverySequence } = await consumerDelivered());
        } catch {
          await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 250 * 2 ** Math.min(attempt, 5))).unref());
          continue; // NATS away: ask again
        }
        if (deliveryEpoch !== this.deliveryEpoch || this.gapFrom === undefined) return; // the consumer was recreated meanwhile
        const from = this.gapFrom + 1;
        if (delivered - from + 1 > REDELIVERY_HOLD_MAX) {
          this.failed = true;
          this.stopped = true;
          this.options.onFatal(
            new EngineError('ERR_INTAKE_GAP', `deliveries after stream sequence ${from - 1} were lost on the way, up to ${delivered}: more than ${REDELIVERY_HOLD_MAX} to hold open; stopping without acking past them (a start resets the consumer to its ack floor and they are delivered again)`),
          );
          return;
        }
        let delivers: ReadonlySet<number> | undefined;
        if (this.options.consumerSequences !== undefined && delivered >= from) {
          try {
            delivers = new Set(await this.options.consumerSequences(from, delivered));
          } catch {
            await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 250 * 2 ** Math.min(attempt, 5))).unref());
            continue; // NATS away: ask again
          }
          if (deliveryEpoch !== this.deliveryEpoch || this.gapFrom === undefined) return;
        }
        this.tracker.expectRedelivery(from, delivered, delivers);
        // All that are awaited, not only this gap's: a redelivery asked for earlier may have been lost in this cut.
        this.requestAwaited(deliverySequence);
        if (epoch !== this.gapEpoch) continue; // another gap meanwhile: its deliveries may lie past `delivered`
        this.gapFrom = undefined;
        this.ack(this.tracker.releaseHold());
        this.scheduleRedeliveryCheck();
        this.scheduleNudge();
      }
    } finally {
      this.closingGap = false;
    }
  }

  private requestAwaited(deliverySequence: number): void {
    const awaited = this.tracker.awaitedSequences(REDELIVERY_REQUESTS_MAX);
    if (awaited.length > 0) this.options.requestRedelivery?.(awaited, deliverySequence);
  }

  /** While lost deliveries are awaited, they are asked for again every few seconds (a NAK can be lost too). */
  private scheduleNudge(): void {
    if (this.nudgeTimer !== undefined || this.options.requestRedelivery === undefined || this.options.consumerDelivered === undefined) return;
    this.nudgeTimer = setTimeout(() => {
      this.nudgeTimer = undefined;
      if (this.failed || this.tracker.awaitedCount === 0) return;
      void this.options.consumerDelivered!()
        .then(({ deliverySequence }) => this.requestAwaited(deliverySequence))
        .catch(() => undefined) // NATS away: the next nudge asks again
        .finally(() => this.scheduleNudge());
    }, REDELIVERY_NUDGE_MS);
    this.nudgeTimer.unref();
  }

  private scheduleRedeliveryCheck(): void {
    if (this.redeliveryTimer !== undefined || this.options.streamHas === undefined) return;
    this.redeliveryTimer = setTimeout(() => {
      this.redeliveryTimer = undefined;
      void this.checkRedeliveries();
    }, this.options.redeliveryCheckMs ?? 65_000);
    this.redeliveryTimer.unref();
  }

  /** Gives up awaited sequences the stream no longer holds; the rest are waited for again. */
  private async checkRedeliveries(): Promise<void> {
    const streamHas = this.options.streamHas!;
    for (const sequence of this.tracker.awaitedSequences(REDELIVERY_LOOKUPS_MAX)) {
      if (this.failed) return;
      let held: boolean;
      try {
        held = await streamHas(sequence);
      } catch {
        break; // NATS away: ask again at the next check
      }
      if (!held) this.ack(this.tracker.release(sequence));
    }
    if (this.tracker.awaitedCount > 0) this.scheduleRedeliveryCheck();
  }

  /**
   * For a consumer about to be recreated at its ack floor, with intake
   * stopped: sends partial batches, waits for every batch in flight and its
   * ack, then forgets every delivery. What is left unacked then (committed
   * behind a lost delivery, or lost on the way) lies above the floor, so the
   * new consumer delivers it again; and the old deliveries' ack subjects must
   * not be used once it exists (it has the same name, and its delivery
   * sequences start again at 1: an old one would push its ack floor up and
   * make it ignore its own acks).
   */
  async restartDeliveries(): Promise<void> {
    this.batcher.flushAll();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    this.ackedBefore = this.ackedThrough;
    this.tracker = new AckTracker<AckHandle>();
    this.deliveryEpoch += 1;
    this.gapFrom = undefined;
    this.gapEpoch += 1;
    if (this.redeliveryTimer !== undefined) clearTimeout(this.redeliveryTimer);
    if (this.nudgeTimer !== undefined) clearTimeout(this.nudgeTimer);
    this.redeliveryTimer = undefined;
    this.nudgeTimer = undefined;
  }

  /**
   * The actor has room again because of a batch of another Ingest sharing it
   * (cluster mode: one Ingest per partition): send what waits for it.
   */
  poke(actor: number): void {
    if (!this.stopped) this.batcher.poke(actor);
  }

  /** Stops taking messages, sends partial batches, waits for every in-flight batch and its ack. */
  async drain(): Promise<void> {
    if (this.redeliveryTimer !== undefined) clearTimeout(this.redeliveryTimer);
    if (this.nudgeTimer !== undefined) clearTimeout(this.nudgeTimer);
    this.redeliveryTimer = undefined;
    this.nudgeTimer = undefined;
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
