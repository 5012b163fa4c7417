import { headers, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../../src/config/errors.js';
import {
  logPullEvents,
  parseAckSubject,
  PULL_BYTES_HEADROOM,
  PULL_EXPIRES_MS,
  pullBytesFor,
  PullIntake,
  type PulledMessage,
  type PullEvent,
} from '../../../src/transport/intake.js';

type Callback = (error: Error | null, message: Msg) => void;

/** Just enough of a NatsConnection: subscriptions by subject, publishes recorded, status events pushed by the test. */
class FakeConnection {
  readonly subscriptions = new Map<string, Callback>();
  readonly unsubscribed: string[] = [];
  readonly published: { subject: string; data: string; reply?: string }[] = [];
  private statusWaiters: ((value: IteratorResult<{ type: string }>) => void)[] = [];
  private statusQueue: { type: string }[] = [];

  subscribe(subject: string, options: { callback: Callback }) {
    this.subscriptions.set(subject, options.callback);
    return { unsubscribe: () => (this.unsubscribed.push(subject), this.subscriptions.delete(subject)) };
  }

  publish(subject: string, data: string | Uint8Array, options?: { reply?: string }) {
    this.published.push({ subject, data: typeof data === 'string' ? data : new TextDecoder().decode(data), ...(options?.reply === undefined ? {} : { reply: options.reply }) });
  }

  isClosed() {
    return false;
  }

  status(): AsyncIterable<{ type: string }> {
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => {
          const queued = this.statusQueue.shift();
          if (queued !== undefined) return Promise.resolve({ value: queued, done: false });
          return new Promise((resolve) => this.statusWaiters.push(resolve));
        },
      }),
    };
  }

  pushStatus(type: string) {
    const waiter = this.statusWaiters.shift();
    if (waiter !== undefined) waiter({ value: { type }, done: false });
    else this.statusQueue.push({ type });
  }

  /** The pull requests sent, oldest first. */
  get requests(): { reply: string; body: { batch: number; max_bytes?: number; expires: number; idle_heartbeat: number } }[] {
    return this.published.filter((entry) => entry.subject === '$JS.API.CONSUMER.MSG.NEXT.TX.engine').map((entry) => ({ reply: entry.reply!, body: JSON.parse(entry.data) }));
  }

  get lastRequest() {
    return this.requests.at(-1)!;
  }

  deliver(reply: string, streamSequence: number, deliverySequence = streamSequence, subject = 'loyalty.tx.alice', data = 'x') {
    const callback = this.subscriptions.get(reply);
    if (callback === undefined) throw new Error(`no subscription on ${reply}`);
    callback(null, {
      subject,
      sid: 1,
      reply: `$JS.ACK.TX.engine.1.${streamSequence}.${deliverySequence}.1700000000000000000.${100 - streamSequence}`,
      data: new TextEncoder().encode(data),
      headers: undefined,
    } as unknown as Msg);
  }

  answer(reply: string, code: number, description: string) {
    const callback = this.subscriptions.get(reply);
    if (callback === undefined) throw new Error(`no subscription on ${reply}`);
    const status: MsgHdrs = headers(code, description);
    callback(null, { subject: reply, sid: 1, data: new Uint8Array(0), headers: status } as unknown as Msg);
  }
}

function setup(overrides: { batchMessages?: number; batchBytes?: number } = {}) {
  const nc = new FakeConnection();
  const messages: PulledMessage[] = [];
  const events: PullEvent[] = [];
  const intake = new PullIntake({
    nc: nc as unknown as NatsConnection,
    stream: 'TX',
    consumer: 'engine',
    batchMessages: overrides.batchMessages ?? 3,
    batchBytes: overrides.batchBytes ?? 1_000_000,
    onMessage: (message) => messages.push(message),
    onEvent: (event) => events.push(event),
    heartbeatMs: 1_000,
    silenceMs: 3_000,
    retryDelayMs: 500,
  });
  return { nc, intake, messages, events };
}

describe('PullIntake', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('asks for a batch bounded by count and by bytes, on a reply subject of its own', () => {
    const { nc, intake } = setup();
    intake.start();
    expect(nc.requests).toHaveLength(1);
    const { reply, body } = nc.lastRequest;
    expect(body).toEqual({ batch: 3, max_bytes: 1_000_000, expires: PULL_EXPIRES_MS * 1e6, idle_heartbeat: 1_000 * 1e6 });
    expect(nc.subscriptions.has(reply)).toBe(true);
  });

  it('hands every delivery to the ingest with its subject, payload and delivery info; ack() publishes +ACK to its ack subject', () => {
    const { nc, intake, messages } = setup();
    intake.start();
    nc.deliver(nc.lastRequest.reply, 7, 7, 'loyalty.tx.bob', 'payload');
    expect(messages).toHaveLength(1);
    const [message] = messages;
    expect(message!.subject).toBe('loyalty.tx.bob');
    expect(new TextDecoder().decode(message!.data)).toBe('payload');
    expect(message!.info).toMatchObject({ streamSequence: 7, deliverySequence: 7, deliveryCount: 1, pending: 93, timestampNanos: 1.7e18 });
    message!.ack();
    expect(nc.published.at(-1)).toEqual({ subject: message!.reply, data: '+ACK' });
  });

  it('sends the next request once the whole batch came, and drops the finished request’s subscription', () => {
    const { nc, intake } = setup();
    intake.start();
    const first = nc.lastRequest.reply;
    nc.deliver(first, 1);
    nc.deliver(first, 2);
    expect(nc.requests).toHaveLength(1);
    nc.deliver(first, 3);
    expect(nc.requests).toHaveLength(2);
    expect(nc.lastRequest.reply).not.toBe(first);
    expect(nc.unsubscribed).toEqual([first]);
  });

  it('asks again at once when a request expires (408) or its bytes are used up (409 after deliveries)', () => {
    const { nc, intake, events } = setup();
    intake.start();
    nc.answer(nc.lastRequest.reply, 408, 'Request Timeout');
    expect(nc.requests).toHaveLength(2);
    nc.deliver(nc.lastRequest.reply, 1);
    nc.answer(nc.lastRequest.reply, 409, 'Message Size Exceeds MaxBytes');
    expect(nc.requests).toHaveLength(3);
    expect(nc.lastRequest.body.max_bytes).toBe(1_000_000);
    expect(events).toEqual([]);
  });

  it('takes a single message larger than the byte budget by itself, then goes back to bounded pulls', () => {
    const { nc, intake, events, messages } = setup();
    intake.start();
    nc.answer(nc.lastRequest.reply, 409, 'Message Size Exceeds MaxBytes');
    expect(nc.lastRequest.body).toMatchObject({ batch: 1 });
    expect(nc.lastRequest.body.max_bytes).toBeUndefined();
    expect(events).toEqual([{ type: 'oversized_message', pullBytes: 1_000_000 }]);
    nc.deliver(nc.lastRequest.reply, 1);
    expect(messages).toHaveLength(1);
    expect(nc.lastRequest.body).toMatchObject({ batch: 3, max_bytes: 1_000_000 });
  });

  it('ignores idle heartbeats, and waits before asking again after an error answer (503, consumer deleted)', () => {
    const { nc, intake, events } = setup();
    intake.start();
    nc.answer(nc.lastRequest.reply, 100, 'Idle Heartbeat');
    expect(nc.requests).toHaveLength(1);
    nc.answer(nc.lastRequest.reply, 503, 'No Responders');
    expect(nc.requests).toHaveLength(1);
    expect(events).toEqual([{ type: 'refused', code: 503, description: 'No Responders' }]);
    vi.advanceTimersByTime(499);
    expect(nc.requests).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(nc.requests).toHaveLength(2);
    nc.answer(nc.lastRequest.reply, 409, 'Consumer Deleted');
    vi.advanceTimersByTime(500);
    expect(nc.requests).toHaveLength(3);
  });

  it('replaces a request that went silent, and still takes what the old one delivers until it has surely expired', () => {
    const { nc, intake, events, messages } = setup();
    intake.start();
    const old = nc.lastRequest.reply;
    vi.advanceTimersByTime(2_000);
    nc.answer(old, 100, 'Idle Heartbeat'); // a heartbeat keeps it alive
    vi.advanceTimersByTime(2_500);
    expect(nc.requests).toHaveLength(1);
    vi.advanceTimersByTime(1_000);
    expect(nc.requests).toHaveLength(2);
    expect(events[0]).toMatchObject({ type: 'request_lost' });
    nc.deliver(old, 1); // dropping it would let an ack-all of a later one ack it unread
    expect(messages.map((message) => message.info.streamSequence)).toEqual([1]);
    nc.answer(old, 408, 'Request Timeout'); // the old one ends: the current one is untouched
    expect(nc.requests).toHaveLength(2);
    expect(nc.unsubscribed).toEqual([old]);
  });

  it('an abandoned request’s subscription goes once it must have expired', () => {
    const { nc, intake } = setup();
    intake.start();
    const old = nc.lastRequest.reply;
    vi.advanceTimersByTime(3_750);
    expect(nc.requests).toHaveLength(2);
    vi.advanceTimersByTime(PULL_EXPIRES_MS + 5_000);
    expect(nc.subscriptions.has(old)).toBe(false);
    expect(nc.subscriptions.has(nc.lastRequest.reply)).toBe(true);
  });

  it('asks again when the connection comes back', async () => {
    const { nc, intake } = setup();
    intake.start();
    nc.pushStatus('disconnect');
    nc.pushStatus('reconnect');
    await vi.advanceTimersByTimeAsync(0);
    expect(nc.requests).toHaveLength(2);
  });

  it('reports deliveries lost on the way (a gap in the delivery sequence)', () => {
    const { nc, intake, events } = setup({ batchMessages: 10 });
    intake.start();
    nc.deliver(nc.lastRequest.reply, 1, 1);
    nc.deliver(nc.lastRequest.reply, 2, 2);
    nc.deliver(nc.lastRequest.reply, 5, 5);
    expect(events).toEqual([{ type: 'deliveries_lost', expected: 3, got: 5, streamSequenceSeen: 2, streamSequence: 5 }]);
  });

  it('close() drops every subscription and sends nothing more', async () => {
    const { nc, intake } = setup();
    intake.start();
    vi.advanceTimersByTime(3_750);
    await intake.close();
    expect(nc.subscriptions.size).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(nc.requests).toHaveLength(2);
  });
});

describe('parseAckSubject', () => {
  it('reads both forms of ack subject', () => {
    expect(parseAckSubject('$JS.ACK.TX.engine.2.17.20.1700000000000000000.5')).toEqual({
      deliveryCount: 2,
      streamSequence: 17,
      deliverySequence: 20,
      timestampNanos: 1.7e18,
      pending: 5,
    });
    expect(parseAckSubject('$JS.ACK.hub.ACCOUNTHASH.TX.engine.1.3.4.1700000000000000000.0.token')).toMatchObject({ streamSequence: 3, deliverySequence: 4, pending: 0 });
  });

  it('is undefined for anything else', () => {
    expect(parseAckSubject('_INBOX.x.1')).toBeUndefined();
    expect(parseAckSubject('$JS.ACK.TX.engine.1.2')).toBeUndefined();
    expect(parseAckSubject('$JS.ACK.TX.engine.1.x.3.4.5')).toBeUndefined();
  });
});

describe('pullBytesFor', () => {
  it('keeps the setting when the server’s largest message fits', () => {
    expect(pullBytesFor(16 * 1024 * 1024, 8 * 1024 * 1024)).toBe(16 * 1024 * 1024);
    expect(pullBytesFor(1024 * 1024 + PULL_BYTES_HEADROOM, 1024 * 1024)).toBe(1024 * 1024 + PULL_BYTES_HEADROOM);
    expect(pullBytesFor(1024 * 1024, undefined)).toBe(1024 * 1024);
  });

  it('refuses, naming the setting and what it needs, when it would not', () => {
    let error: unknown;
    try {
      pullBytesFor(8 * 1024 * 1024, 8 * 1024 * 1024);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('ERR_CONFIG_INVALID');
    expect((error as ConfigError).fields[0]).toMatch(/^LOYALTY_PULL_BYTES_MAX \(pullBytesMax\): 8388608 is too small .* max_payload is 8388608.* at least 8454144/);
  });
});

describe('logPullEvents', () => {
  it('logs each kind at most once a minute, counting the ones it left out', () => {
    const lines: [string, object, string][] = [];
    let nowMs = 0;
    const log = logPullEvents(
      { warn: (fields, message) => lines.push(['warn', fields, message]), error: (fields, message) => lines.push(['error', fields, message]) },
      () => nowMs,
    );
    log({ type: 'refused', code: 503, description: '' });
    log({ type: 'refused', code: 503, description: '' });
    log({ type: 'deliveries_lost', expected: 3, got: 5, streamSequenceSeen: 10, streamSequence: 13 });
    nowMs = 60_000;
    log({ type: 'refused', code: 503, description: '' });
    expect(lines.map(([level, fields]) => [level, fields])).toEqual([
      ['warn', { code: 503, description: '' }],
      ['warn', { expectedDeliverySequence: 3, deliverySequence: 5, streamSequenceSeen: 10, streamSequence: 13 }],
      ['warn', { sameSinceLastLog: 1, code: 503, description: '' }],
    ]);
  });
});
