import { createInbox, headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { EngineError } from '../config/errors.js';
import { HEADER_MESSAGE_ID } from './subjects.js';

/**
 * JetStream publishes with their PubAcks on one wildcard subscription.
 *
 * A JetStream publish is a core publish with a reply subject; the stream's
 * PubAck is the reply. nats.js' js.publish makes that a request per message
 * (a request object, a timer, an error object built on every reply): measured
 * here at ~57 µs of client CPU per message, 9.8k events/s for two outcomes per
 * event (bench/baselines/ceiling-probe.ts). Instead, every publish carries a
 * reply subject under one inbox (`<inbox>.<token>`), the acks come back on one
 * subscription into a map of pending publishes, and one coarse timer handles
 * timeouts: ~7 µs per message, 58k events/s for the same load.
 *
 * Two ways to wait:
 * - `publish`: one message, resolved with its PubAck (the API's submissions);
 * - `publishGroup`: many messages under one token, resolved once the stream
 *   has acked every one of them (an actor batch's outcomes): no promise and no
 *   JSON parse per message.
 */

export class StreamPublishError extends EngineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_STREAM_PUBLISH', message, options);
    this.name = 'StreamPublishError';
  }
}

export interface PubAck {
  readonly stream: string;
  readonly seq: number;
  readonly duplicate: boolean;
}

/** One message of a group: [subject, message id, payload]. */
export type GroupMessage = readonly [subject: string, messageId: string, payload: string | Uint8Array];

interface PendingAck {
  /** Acks still expected: 1 for a single publish, the group's size for a group. */
  remaining: number;
  readonly single: boolean;
  readonly resolve: (ack: PubAck | undefined) => void;
  readonly reject: (error: Error) => void;
  readonly deadlineMs: number;
  readonly subject: string;
}

interface QueuedPublish {
  readonly subject: string;
  readonly payload: string | Uint8Array;
  readonly messageId: string;
  readonly token: string;
}

// A PubAck is `{"stream":"NAME","seq":N[,"duplicate":true]}`; an error `{"error":{...}}`.
const QUOTE = 0x22;
const LETTER_S = 0x73;

export class PubAckRouter {
  private readonly prefix: string;
  private readonly pending = new Map<string, PendingAck>();
  private queue: QueuedPublish[] = [];
  private flushScheduled = false;
  private subscription: Subscription | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private nextToken = 0;
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    inboxPrefix: string | undefined,
  ) {
    this.prefix = `${createInbox(inboxPrefix)}.`;
  }

  /** Publishes (or groups) awaiting their PubAcks now. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Resolves with the stream's PubAck; rejects on a JetStream error, no stream for the subject, a timeout or close. */
  publish(subject: string, payload: Uint8Array, messageId: string, timeoutMs: number): Promise<PubAck> {
    if (this.closed) return Promise.reject(new StreamPublishError('the publisher is closed'));
    this.ensureSubscribed();
    const token = (this.nextToken++).toString(36);
    const promise = new Promise<PubAck>((resolve, reject) => {
      this.pending.set(token, { remaining: 1, single: true, resolve: resolve as (ack: PubAck | undefined) => void, reject, deadlineMs: Date.now() + timeoutMs, subject });
    });
    this.queue.push({ subject, payload, messageId, token });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    this.ensureTimeoutTimer(timeoutMs);
    return promise;
  }

  /**
   * Publishes every message now, each with its message id, and resolves once
   * the stream has stored all of them (a PubAck each, duplicates included:
   * the stream has the message). Rejects on the first refusal, when no stream
   * takes a subject, on timeout, or on close.
   */
  publishGroup(messages: readonly GroupMessage[], timeoutMs: number): Promise<void> {
    if (this.closed) return Promise.reject(new StreamPublishError('the publisher is closed'));
    if (messages.length === 0) return Promise.resolve();
    this.ensureSubscribed();
    const token = (this.nextToken++).toString(36);
    const reply = `${this.prefix}${token}`;
    const promise = new Promise<void>((resolve, reject) => {
      this.pending.set(token, { remaining: messages.length, single: false, resolve: resolve as (ack: PubAck | undefined) => void, reject, deadlineMs: Date.now() + timeoutMs, subject: messages[0]![0] });
    });
    try {
      for (const [subject, messageId, payload] of messages) {
        const headers = natsHeaders();
        headers.set(HEADER_MESSAGE_ID, messageId);
        this.nc.publish(subject, payload, { reply, headers });
      }
    } catch (error) {
      this.settle(token, undefined, error instanceof Error ? error : new Error(String(error)));
    }
    this.ensureTimeoutTimer(timeoutMs);
    return promise;
  }

  close(): void {
    this.closed = true;
    if (this.timeoutTimer !== undefined) clearInterval(this.timeoutTimer);
    this.timeoutTimer = undefined;
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    this.queue = [];
    const error = new StreamPublishError('the publisher is closed');
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }

  private flush(): void {
    this.flushScheduled = false;
    const queue = this.queue;
    this.queue = [];
    // One event loop turn: nats.js writes all of these with one socket write.
    for (const item of queue) {
      try {
        const headers = natsHeaders();
        headers.set(HEADER_MESSAGE_ID, item.messageId);
        this.nc.publish(item.subject, item.payload, { reply: `${this.prefix}${item.token}`, headers });
      } catch (error) {
        this.settle(item.token, undefined, error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  private ensureSubscribed(): void {
    if (this.subscription !== undefined && !this.subscription.isClosed()) return;
    this.subscription = this.nc.subscribe(`${this.prefix}*`, {
      callback: (error, message) => {
        if (error === null) this.onAck(message);
      },
    });
  }

  private onAck(message: Msg): void {
    const token = message.subject.slice(this.prefix.length);
    const waiting = this.pending.get(token);
    if (waiting === undefined) return; // timed out or failed already
    if (message.data.length === 0 && message.headers?.code === 503) {
      this.settle(token, undefined, new StreamPublishError(`no stream stores ${waiting.subject} (no responders)`));
      return;
    }
    const data = message.data;
    if (!waiting.single && data.length > 3 && data[1] === QUOTE && data[2] === LETTER_S) {
      // A group counts acks; `{"s…` is a PubAck's first field ("stream"), an error's is "error".
      waiting.remaining -= 1;
      if (waiting.remaining === 0) this.settle(token, undefined, undefined);
      return;
    }
    let body: { stream?: unknown; seq?: unknown; duplicate?: unknown; error?: { code?: unknown; err_code?: unknown; description?: unknown } };
    try {
      body = message.json();
    } catch {
      this.settle(token, undefined, new StreamPublishError('the stream answered the publish with something that is not a PubAck'));
      return;
    }
    if (body.error !== undefined) {
      this.settle(token, undefined, new StreamPublishError(`the stream refused the publish: ${String(body.error.description ?? 'unknown error')} (${String(body.error.err_code ?? body.error.code ?? '?')})`));
      return;
    }
    if (typeof body.stream !== 'string' || body.stream === '' || typeof body.seq !== 'number') {
      this.settle(token, undefined, new StreamPublishError('invalid PubAck from the stream'));
      return;
    }
    this.settle(token, { stream: body.stream, seq: body.seq, duplicate: body.duplicate === true }, undefined);
  }

  /** Settles a publish or a whole group: `ack` for a single publish, nothing for a finished group, or the error. */
  private settle(token: string, ack: PubAck | undefined, error: Error | undefined): void {
    const waiting = this.pending.get(token);
    if (waiting === undefined) return;
    this.pending.delete(token);
    if (error !== undefined) waiting.reject(error);
    else if (waiting.single && ack === undefined) waiting.reject(new StreamPublishError('publish failed'));
    else waiting.resolve(ack);
  }

  /** One coarse timer for every pending ack, running only while some are pending. */
  private ensureTimeoutTimer(timeoutMs: number): void {
    if (this.timeoutTimer !== undefined) return;
    const everyMs = Math.max(10, Math.min(250, Math.floor(timeoutMs / 4)));
    this.timeoutTimer = setInterval(() => {
      const nowMs = Date.now();
      for (const [token, waiting] of this.pending) {
        if (waiting.deadlineMs <= nowMs) this.settle(token, undefined, new StreamPublishError(`no acknowledgement from the stream within the publish timeout (TIMEOUT)`));
      }
      if (this.pending.size === 0 && this.timeoutTimer !== undefined) {
        clearInterval(this.timeoutTimer);
        this.timeoutTimer = undefined;
      }
    }, everyMs);
    this.timeoutTimer.unref();
  }
}
