import { nuid, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import type { EventSubmitter, SubmitResult } from '../api/context.js';
import { EngineError } from '../config/errors.js';
import type { LoyaltyEvent } from '../domain/events.js';
import { PubAckRouter, type PubAck } from './pub-acks.js';
import { HEADER_MESSAGE_ID, messageIdPart, subjectsFor } from './subjects.js';

/**
 * Writes from the API and the NATS services: an event is published into the
 * input stream like any producer's (JetStream publish, Nats-Msg-Id =
 * `<memberId>:<eventId>` so the stream's duplicate window catches quick
 * re-sends), and the owning actor applies it. Waiting for the outcome means
 * listening on `<prefix>.outcome.*.<memberId>` from before the publish and
 * taking the messages whose eventId matches.
 *
 * Outcomes are received on ONE wildcard subscription with a map of waiters
 * (member → event → listeners), opened on the first wait and closed again
 * after an idle time, rather than one subscription per request: at 5,000 waits
 * a second that is 10,000 SUB/UNSUB protocol operations and sublist cache
 * invalidations on the server, for nothing (measured: see docs/api.md,
 * "Waiting for outcomes"). The subscription is opened on the same connection
 * before the publish, so the server has the interest before the event can reach
 * an actor: no flush round trip is needed.
 *
 * Publishing: a JetStream publish is a core publish with a reply subject, the
 * stream's PubAck the reply. Rather than a request per event (nats.js'
 * js.publish: a request object, a timer, and an error object built on every
 * successful reply), the acks come back on one wildcard subscription
 * (`<inbox>.*`) into a map of pending publishes, with one coarse timer for
 * the timeouts. Publishes are queued and written together at the end of the
 * event loop turn (setImmediate): HTTP requests arrive each in its own I/O
 * callback, and nats.js writes its buffer after each callback, so without the
 * queue 50 concurrent requests cost 50 socket writes (docs/api-bench.md). Any
 * number of publishes are in flight at once; nothing waits for an earlier ack.
 */

export interface JetStreamSubmitterOptions {
  /** Subject prefix (settings.subjectPrefix). */
  readonly subjectPrefix?: string;
  /** Bound on one JetStream publish (the PubAck). */
  readonly publishTimeoutMs?: number;
  /** Bound on any outcome wait. */
  readonly waitMsMax?: number;
  /**
   * After the first outcome of an event, how long to keep collecting its
   * siblings (an event can yield balance + tier + benefit outcomes, published
   * back to back). The actors publish no count of an event's outcomes, so
   * every wait that saw one outcome ends this long after it.
   */
  readonly settleMs?: number;
  /** Close the shared outcome subscription after this long without waiters. */
  readonly idleUnsubscribeMs?: number;
  /** 'shared' (default) or 'per-request' (one subscription per wait; kept for measurement). */
  readonly outcomeSubscription?: 'shared' | 'per-request';
}

export type OutcomeRecord = Record<string, unknown>;
export type OutcomeListener = (outcome: OutcomeRecord, message: Msg) => void;

export class SubmitError extends EngineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SUBMIT', message, options);
    this.name = 'SubmitError';
  }
}

const encoder = new TextEncoder();

/** member → event id → listeners, behind one wildcard subscription. */
class OutcomeRouter {
  private readonly byMember = new Map<string, Map<string, Set<OutcomeListener>>>();
  private listenerCount = 0;
  private subscription: Subscription | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly wildcard: string,
    private readonly idleUnsubscribeMs: number,
  ) {}

  get listeners(): number {
    return this.listenerCount;
  }

  /** Registers now (synchronously): outcomes published after this call are seen. */
  add(memberId: string, eventId: string, listener: OutcomeListener): () => void {
    if (this.closed) throw new SubmitError('the submitter is closed');
    this.ensureSubscribed();
    let events = this.byMember.get(memberId);
    if (events === undefined) {
      events = new Map();
      this.byMember.set(memberId, events);
    }
    let listeners = events.get(eventId);
    if (listeners === undefined) {
      listeners = new Set();
      events.set(eventId, listeners);
    }
    listeners.add(listener);
    this.listenerCount += 1;
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      listeners.delete(listener);
      this.listenerCount -= 1;
      if (listeners.size === 0) {
        events.delete(eventId);
        if (events.size === 0) this.byMember.delete(memberId);
      }
      if (this.listenerCount === 0) this.scheduleIdle();
    };
  }

  close(): void {
    this.closed = true;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    this.byMember.clear();
  }

  private ensureSubscribed(): void {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    if (this.subscription !== undefined && !this.subscription.isClosed()) return;
    this.subscription = this.nc.subscribe(this.wildcard, {
      callback: (error, message) => {
        if (error === null) this.onMessage(message);
      },
    });
  }

  private scheduleIdle(): void {
    if (this.idleTimer !== undefined || this.closed) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.listenerCount === 0) {
        this.subscription?.unsubscribe();
        this.subscription = undefined;
      }
    }, this.idleUnsubscribeMs);
    this.idleTimer.unref();
  }

  private onMessage(message: Msg): void {
    // <prefix>.outcome.<kind>.<memberId>: the member is the last token; decode only when someone waits for them.
    const subject = message.subject;
    const events = this.byMember.get(subject.slice(subject.lastIndexOf('.') + 1));
    if (events === undefined) return;
    let outcome: OutcomeRecord;
    try {
      outcome = message.json<OutcomeRecord>();
    } catch {
      return;
    }
    const eventId = outcome.eventId;
    if (typeof eventId !== 'string') return;
    const listeners = events.get(eventId);
    if (listeners === undefined) return;
    for (const listener of [...listeners]) listener(outcome, message);
  }
}

interface Waiter {
  readonly promise: Promise<{ outcomes: OutcomeRecord[]; timedOut: boolean }>;
  cancel(): void;
}

export class JetStreamSubmitter implements EventSubmitter {
  private readonly acks: PubAckRouter;
  private readonly router: OutcomeRouter;
  private readonly transactionPrefix: string;
  private readonly outcomePrefix: string;
  private readonly publishTimeoutMs: number;
  private readonly waitMsMax: number;
  private readonly settleMs: number;
  private readonly mode: 'shared' | 'per-request';

  constructor(
    private readonly nc: NatsConnection,
    options: JetStreamSubmitterOptions = {},
  ) {
    const prefix = options.subjectPrefix ?? 'loyalty';
    const subjects = subjectsFor(prefix);
    this.acks = new PubAckRouter(nc, (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
    this.transactionPrefix = subjects.transactionPrefix;
    this.outcomePrefix = `${prefix}.outcome.`;
    this.publishTimeoutMs = options.publishTimeoutMs ?? 5_000;
    this.waitMsMax = options.waitMsMax ?? 30_000;
    this.settleMs = options.settleMs ?? 15;
    this.mode = options.outcomeSubscription ?? 'shared';
    this.router = new OutcomeRouter(nc, subjects.outcomeWildcard, options.idleUnsubscribeMs ?? 30_000);
  }

  /** Publishes awaiting their PubAck now. */
  get publishesInFlight(): number {
    return this.acks.inFlight;
  }

  /** Outcome listeners registered now (waits and bulk jobs). */
  get outcomeListeners(): number {
    return this.router.listeners;
  }

  async submit(event: LoyaltyEvent, options: { readonly waitMs?: number } = {}): Promise<SubmitResult> {
    const waitMs = Math.min(Math.max(0, Math.floor(options.waitMs ?? 0)), this.waitMsMax);
    const subject = `${this.transactionPrefix}${event.memberId}`;
    const payload = encoder.encode(JSON.stringify(event));
    const messageId = `${event.memberId}:${messageIdPart(event.id)}`;
    // Listen before publishing: the outcome can come back before the PubAck does.
    const waiter = waitMs > 0 ? this.waitFor(event.memberId, event.id, waitMs) : undefined;
    let ack;
    try {
      ack = await this.acks.publish(subject, payload, messageId, this.publishTimeoutMs);
    } catch (error) {
      waiter?.cancel();
      throw new SubmitError(`cannot publish event ${event.id} to ${subject}: ${(error as Error).message}`, { cause: error });
    }
    if (ack.duplicate) {
      // The stream dropped this copy, so no actor will see it: if the first copy's
      // outcome is already out, it would never come again (a bulk job tracking
      // outcomes waited two minutes for it). Re-send under another message id;
      // the actor knows the event id and answers with the first outcome, changing
      // nothing (the engine's own exactly-once, not the stream's).
      this.acks.publish(subject, payload, `${messageId}:resend:${nuid.next()}`, this.publishTimeoutMs).catch(() => undefined);
    }
    if (waiter === undefined) return { eventId: event.id, sequence: ack.seq, duplicate: ack.duplicate };
    const { outcomes, timedOut } = await waiter.promise;
    return { eventId: event.id, sequence: ack.seq, duplicate: ack.duplicate, outcomes, ...(timedOut ? { timedOut: true } : {}) };
  }

  /**
   * Calls `listener` with every outcome of (memberId, eventId) until the
   * returned function is called. Register before publishing. Used by bulk jobs.
   */
  trackOutcomes(memberId: string, eventId: string, listener: (outcome: OutcomeRecord) => void): () => void {
    return this.router.add(memberId, eventId, (outcome) => listener(outcome));
  }

  close(): void {
    this.acks.close();
    this.router.close();
  }

  private waitFor(memberId: string, eventId: string, waitMs: number): Waiter {
    const outcomes: OutcomeRecord[] = [];
    const seenMessageIds = new Set<string>();
    let settleTimer: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    let stop: () => void = () => undefined;
    let finish!: (result: { outcomes: OutcomeRecord[]; timedOut: boolean }) => void;
    const promise = new Promise<{ outcomes: OutcomeRecord[]; timedOut: boolean }>((resolve) => {
      finish = (result) => {
        if (settleTimer !== undefined) clearTimeout(settleTimer);
        if (deadline !== undefined) clearTimeout(deadline);
        stop();
        resolve(result);
      };
    });
    const listener: OutcomeListener = (outcome, message) => {
      // A re-sent event repeats the same outcomes (same message ids): keep each once.
      const messageId = message.headers?.get(HEADER_MESSAGE_ID);
      if (messageId !== undefined && messageId !== '') {
        if (seenMessageIds.has(messageId)) return;
        seenMessageIds.add(messageId);
      }
      outcomes.push(outcome);
      if (outcomes.length === 1) {
        settleTimer = setTimeout(() => finish({ outcomes, timedOut: false }), this.settleMs);
      }
    };
    if (this.mode === 'shared') {
      stop = this.router.add(memberId, eventId, listener);
    } else {
      const subscription = this.nc.subscribe(`${this.outcomePrefix}*.${memberId}`, {
        callback: (error, message) => {
          if (error !== null) return;
          try {
            const outcome = message.json<OutcomeRecord>();
            if (outcome.eventId === eventId) listener(outcome, message);
          } catch {
            // not JSON: not an outcome of ours
          }
        },
      });
      stop = () => subscription.unsubscribe();
    }
    deadline = setTimeout(() => finish({ outcomes, timedOut: outcomes.length === 0 }), waitMs);
    return { promise, cancel: () => finish({ outcomes, timedOut: true }) };
  }
}
