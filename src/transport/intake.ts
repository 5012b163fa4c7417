import { createInbox, nanos, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { ConfigError } from '../config/errors.js';
import type { InboundMessage } from '../routing/ingest.js';

/**
 * The engine's intake: pull requests on its durable consumer, each bounded by
 * message count AND by bytes, which nats.js 3.3's consume() cannot do: it
 * refuses max_messages with max_bytes, and with max_bytes alone it asks for
 * 100 messages at a time and, when a callback takes the messages, stops
 * pulling at each "409 Message Size Exceeds MaxBytes" answer until two
 * heartbeats are missed (20,000 messages of 150 B to 8 MiB: stuck at 2,129
 * for 120 s).
 *
 * Why the byte bound: nats-server cuts a client whose unsent data passes its
 * max_pending (64 MiB by default) as a slow consumer, and what was on its way
 * is lost. A pull of 8,192 messages of 270 KB asks for 2 GB; the
 * hostile-input test saw "Slow Consumer Detected: MaxPending of 67108864
 * Exceeded" three times, and intake stalled.
 *
 * One request is outstanding at a time, on its own reply subject (the server
 * delivers a JetStream message under its own subject: only the subscription
 * tells which request it belongs to), and the next is sent as soon as one
 * ends: its whole batch delivered, its bytes used up (409), or expired (408).
 * A request that goes silent (no message and no heartbeat for two heartbeat
 * periods: lost in a reconnect, a restarted server) is replaced, and so is the
 * request when the connection comes back. Measured on the 2-core machine:
 * consume-and-ack of 150 B messages ~280,000/s (consume() with 8,192
 * messages: 360,000-460,000/s), with 10 µs of work per message 74,000-76,000/s
 * (80,000-82,000/s); the engine's capacity (bench, max scenario, 100,000
 * events) 8,484 and 8,451 events/s against 8,224 and 8,660 before.
 */

/** How long one pull request waits on the server for messages. */
export const PULL_EXPIRES_MS = 30_000;
/** The server sends an idle heartbeat this often while a request has nothing to deliver. */
export const PULL_HEARTBEAT_MS = 5_000;
/** A request that delivered nothing, not even a heartbeat, for this long is taken as lost. */
export const PULL_SILENCE_MS = 2 * PULL_HEARTBEAT_MS + 1_000;
/** After an error answer (JetStream away, consumer deleted, a leader election), the next request waits this long. */
export const PULL_RETRY_DELAY_MS = 1_000;
/** Room above the server's max_payload that one delivered message may take in a request's byte budget: its subject, ack subject and headers. */
export const PULL_BYTES_HEADROOM = 64 * 1024;
/** The JetStream API prefix of the engine's own account (no domain). */
const JS_API_PREFIX = '$JS.API';

/** A delivered JetStream message, as the ingest reads it. */
export interface PulledMessage extends InboundMessage {
  /** The ack subject ($JS.ACK...): an ack is a publish to it. */
  readonly reply: string;
  readonly headers: MsgHdrs | undefined;
  readonly info: InboundMessage['info'] & { readonly deliverySequence: number; readonly deliveryCount: number };
}

export type PullEvent =
  | { readonly type: 'oversized_message'; readonly pullBytes: number }
  | { readonly type: 'request_lost'; readonly silentMs: number }
  | { readonly type: 'refused'; readonly code: number; readonly description: string }
  /**
   * Delivery sequences `expected`..`got - 1` never arrived. Their stream
   * sequences are unknown; new deliveries come in stream order, so any of
   * them that was a first delivery lies after `streamSequenceSeen` (the
   * highest stream sequence delivered before) and before `streamSequence`
   * (the one that came). A lost redelivery is of a message already seen.
   */
  | { readonly type: 'deliveries_lost'; readonly expected: number; readonly got: number; readonly streamSequenceSeen: number; readonly streamSequence: number }
  | { readonly type: 'error'; readonly error: unknown }
  /** The connection is back (acks sent just before it went may be lost with it). Not logged here: the connection's watch says so. */
  | { readonly type: 'reconnected' };

export interface PullIntakeOptions {
  readonly nc: NatsConnection;
  readonly stream: string;
  readonly consumer: string;
  /** Most messages one request asks for. */
  readonly batchMessages: number;
  /** Most bytes one request asks for (the server's count: subjects, headers and payload). */
  readonly batchBytes: number;
  readonly onMessage: (message: PulledMessage) => void;
  /** Things an operator may want in the log; none stops intake. */
  readonly onEvent?: (event: PullEvent) => void;
  readonly expiresMs?: number;
  readonly heartbeatMs?: number;
  readonly silenceMs?: number;
  readonly retryDelayMs?: number;
  readonly now?: () => number;
}

interface PullRequest {
  readonly subject: string;
  readonly subscription: Subscription;
  messagesLeft: number;
  delivered: number;
}

/**
 * The byte budget of one pull. Refused (a ConfigError naming the setting) when
 * a message the server accepts could not fit in it: such a message would be
 * answered "message size exceeds maxbytes" at every pull.
 */
export function pullBytesFor(pullBytesMax: number, serverMaxPayload: number | undefined): number {
  const needed = (serverMaxPayload ?? 0) + PULL_BYTES_HEADROOM;
  if (serverMaxPayload !== undefined && pullBytesMax < needed) {
    throw new ConfigError('settings', [
      `LOYALTY_PULL_BYTES_MAX (pullBytesMax): ${pullBytesMax} is too small for this NATS server, whose max_payload is ${serverMaxPayload}: ` +
        `one pull must hold the largest message plus ${PULL_BYTES_HEADROOM} bytes of subjects and headers, so at least ${needed} ` +
        `(and stay well below the server's max_pending, 64 MiB by default)`,
    ]);
  }
  return pullBytesMax;
}

/**
 * Reads the delivery info from an ack subject, in either form:
 * `$JS.ACK.<stream>.<consumer>.<count>.<sseq>.<dseq>.<ts>.<pending>` or
 * `$JS.ACK.<domain>.<account>.<stream>.<consumer>.<count>.<sseq>.<dseq>.<ts>.<pending>.<token>`.
 * Undefined when it is not one.
 */
export function parseAckSubject(subject: string): PulledMessage['info'] | undefined {
  if (!subject.startsWith('$JS.ACK.')) return undefined;
  const tokens = subject.split('.');
  const at = tokens.length === 9 ? 4 : tokens.length >= 11 ? 6 : -1;
  if (at < 0) return undefined;
  const deliveryCount = Number(tokens[at]);
  const streamSequence = Number(tokens[at + 1]);
  const deliverySequence = Number(tokens[at + 2]);
  const timestampNanos = Number(tokens[at + 3]);
  const pending = Number(tokens[at + 4]);
  if (![deliveryCount, streamSequence, deliverySequence, timestampNanos, pending].every(Number.isFinite) || streamSequence < 1) return undefined;
  return { deliveryCount, streamSequence, deliverySequence, timestampNanos, pending };
}

export class PullIntake {
  private readonly inbox = createInbox();
  /** The request answers are awaited for; older ones may still deliver (after a reconnect). */
  private request: PullRequest | undefined;
  private readonly live = new Set<PullRequest>();
  private requests = 0;
  private lastActivityMs = 0;
  private lastDeliverySequence = 0;
  private highestStreamSequence = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private silenceTimer: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly options: PullIntakeOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Requests sent so far. */
  get requestsSent(): number {
    return this.requests;
  }

  /** Requests whose reply subject is still subscribed. */
  get requestsLive(): number {
    return this.live.size;
  }

  start(): this {
    void this.followStatus();
    const silenceMs = this.options.silenceMs ?? PULL_SILENCE_MS;
    this.silenceTimer = setInterval(() => this.checkSilence(silenceMs), Math.max(50, Math.floor(silenceMs / 4)));
    this.silenceTimer.unref();
    this.pull();
    return this;
  }

  /** Stops asking; messages still on their way are dropped unacked (redelivered later). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.request = undefined;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (this.silenceTimer !== undefined) clearInterval(this.silenceTimer);
    for (const timer of this.timers) clearTimeout(timer);
    for (const request of this.live) request.subscription.unsubscribe();
    this.live.clear();
  }

  /**
   * Sends the next request, on a reply subject of its own: the server delivers
   * JetStream messages under their own subject, so only the subscription tells
   * which request a delivery belongs to.
   */
  private pull(batchMessages = this.options.batchMessages, batchBytes = this.options.batchBytes): void {
    if (this.closed) return;
    if (this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (this.request !== undefined) this.abandon(this.request);
    this.requests += 1;
    const subject = `${this.inbox}.${this.requests}`;
    let request: PullRequest;
    try {
      const subscription = this.options.nc.subscribe(subject, { callback: (error, message) => this.onDelivery(request, error, message) });
      request = { subject, subscription, messagesLeft: batchMessages, delivered: 0 };
    } catch (error) {
      // Closed or draining.
      this.options.onEvent?.({ type: 'error', error });
      this.request = undefined;
      return;
    }
    this.live.add(request);
    this.request = request;
    this.lastActivityMs = this.now();
    const body = JSON.stringify({
      batch: batchMessages,
      // 0: no byte bound (the one-message request for a message above the budget).
      ...(batchBytes > 0 ? { max_bytes: batchBytes } : {}),
      expires: nanos(this.options.expiresMs ?? PULL_EXPIRES_MS),
      idle_heartbeat: nanos(this.options.heartbeatMs ?? PULL_HEARTBEAT_MS),
    });
    try {
      this.options.nc.publish(`${JS_API_PREFIX}.CONSUMER.MSG.NEXT.${this.options.stream}.${this.options.consumer}`, body, { reply: subject });
    } catch (error) {
      // Closed or draining: the silence check or the reconnect sends the next one.
      this.options.onEvent?.({ type: 'error', error });
    }
  }

  /** After a retry delay (an error answer). */
  private pullLater(): void {
    if (this.request !== undefined) this.finish(this.request);
    this.request = undefined;
    if (this.closed || this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.pull();
    }, this.options.retryDelayMs ?? PULL_RETRY_DELAY_MS);
    this.retryTimer.unref();
  }

  /** The request is over on the server: nothing more comes to its subject. */
  private finish(request: PullRequest): void {
    if (this.request === request) this.request = undefined;
    if (!this.live.delete(request)) return;
    request.subscription.unsubscribe();
  }

  /**
   * No longer awaited, but maybe alive on the server (a reconnect, a lost
   * answer): whatever it still delivers is taken until it has surely expired.
   * Dropping such a delivery would let a later ack (ack-all) ack it unread.
   */
  private abandon(request: PullRequest): void {
    if (this.request === request) this.request = undefined;
    if (!this.live.has(request)) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.finish(request);
    }, (this.options.expiresMs ?? PULL_EXPIRES_MS) + 5_000);
    timer.unref();
    this.timers.add(timer);
  }

  private onDelivery(request: PullRequest, error: Error | null, message: Msg): void {
    if (this.closed) return;
    const current = request === this.request;
    if (error !== null) {
      // A permission violation on the reply subject or the pull subject: try again later.
      this.options.onEvent?.({ type: 'error', error });
      this.finish(request);
      if (current) this.pullLater();
      return;
    }
    if (current) this.lastActivityMs = this.now();
    const info = message.reply === undefined ? undefined : parseAckSubject(message.reply);
    if (info !== undefined) {
      if (this.lastDeliverySequence > 0 && info.deliverySequence > this.lastDeliverySequence + 1) {
        this.options.onEvent?.({
          type: 'deliveries_lost',
          expected: this.lastDeliverySequence + 1,
          got: info.deliverySequence,
          streamSequenceSeen: this.highestStreamSequence,
          streamSequence: info.streamSequence,
        });
      }
      if (info.deliverySequence > this.lastDeliverySequence) this.lastDeliverySequence = info.deliverySequence;
      if (info.streamSequence > this.highestStreamSequence) this.highestStreamSequence = info.streamSequence;
      const reply = message.reply!;
      try {
        this.options.onMessage({
          subject: message.subject,
          data: message.data,
          headers: message.headers,
          reply,
          info,
          ack: () => this.options.nc.publish(reply, ACK),
        });
      } catch (thrown) {
        this.options.onEvent?.({ type: 'error', error: thrown });
      }
      request.delivered += 1;
      request.messagesLeft -= 1;
      if (request.messagesLeft <= 0) {
        this.finish(request);
        if (current) this.pull();
      }
      return;
    }
    const code = message.headers?.code ?? 0;
    if (code === 100) return; // idle heartbeat
    // Any other status ends its request.
    if (!current) return this.finish(request);
    this.finish(request);
    const description = (message.headers?.description ?? '').toLowerCase();
    if (code === 408 || code === 404) return this.pull(); // expired, or nothing (only with no_wait)
    if (code === 409 && description.includes('message size exceeds maxbytes')) {
      if (request.delivered > 0) return this.pull();
      // The next message alone is larger than the budget (stored before max_payload
      // was lowered, or sourced from another server): take it by itself, unbounded.
      this.options.onEvent?.({ type: 'oversized_message', pullBytes: this.options.batchBytes });
      return this.pull(1, 0);
    }
    // Leader election, server shutdown, consumer deleted, JetStream away (503), limits: wait, then ask again.
    this.options.onEvent?.({ type: 'refused', code, description: message.headers?.description ?? '' });
    this.pullLater();
  }

  private checkSilence(silenceMs: number): void {
    if (this.closed || this.retryTimer !== undefined || this.options.nc.isClosed()) return;
    const silentMs = this.now() - this.lastActivityMs;
    if (silentMs < silenceMs) return;
    this.options.onEvent?.({ type: 'request_lost', silentMs });
    this.pull();
  }

  private async followStatus(): Promise<void> {
    for await (const status of this.options.nc.status()) {
      if (this.closed) return;
      // Requests may die with the connection: ask again at once on the new one.
      if (status.type === 'reconnect') {
        this.pull();
        this.options.onEvent?.({ type: 'reconnected' });
      }
    }
  }
}

const ACK = new TextEncoder().encode('+ACK');

/** What logPullEvents needs of the engine's logger. */
interface PullEventLogger {
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** The same kind of event is logged at most once a minute (a JetStream outage answers every retry). */
const PULL_EVENT_LOG_INTERVAL_MS = 60_000;

/** Logs intake events, each kind at most once a minute, with how many were not logged. */
export function logPullEvents(logger: PullEventLogger, now: () => number = Date.now): (event: PullEvent) => void {
  const last = new Map<string, { atMs: number; unlogged: number }>();
  return (event) => {
    const key = event.type === 'refused' ? `refused ${event.code} ${event.description}` : event.type;
    const seen = last.get(key);
    const atMs = now();
    if (seen !== undefined && atMs - seen.atMs < PULL_EVENT_LOG_INTERVAL_MS) {
      seen.unlogged += 1;
      return;
    }
    const alsoSince = seen === undefined || seen.unlogged === 0 ? {} : { sameSinceLastLog: seen.unlogged };
    last.set(key, { atMs, unlogged: 0 });
    switch (event.type) {
      case 'deliveries_lost':
        logger.warn(
          { ...alsoSince, expectedDeliverySequence: event.expected, deliverySequence: event.got, streamSequenceSeen: event.streamSequenceSeen, streamSequence: event.streamSequence },
          'intake: JetStream deliveries were lost on the way (a cut connection); acks are held below them, and they are asked for again, until they are delivered and committed',
        );
        return;
      case 'oversized_message':
        logger.warn({ ...alsoSince, pullBytes: event.pullBytes }, 'intake: a message larger than LOYALTY_PULL_BYTES_MAX is pulled by itself');
        return;
      case 'request_lost':
        logger.warn({ ...alsoSince, silentMs: event.silentMs }, 'intake: a pull request went silent (no message, no heartbeat); asking again');
        return;
      case 'refused':
        logger.warn({ ...alsoSince, code: event.code, description: event.description }, 'intake: JetStream refused a pull request; asking again in a second');
        return;
      case 'error':
        logger.warn({ ...alsoSince, err: event.error }, 'intake: a pull request could not be sent or a delivery was not taken');
        return;
      case 'reconnected':
        return;
    }
  };
}
