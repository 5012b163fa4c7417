import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { payloadOf, type GeneratedLoad } from '../generator/load.js';
import { TokenBucket } from './pacing.js';

/**
 * Publishes a pre-generated load into JetStream with core NATS publishes.
 *
 * Why core publish: JetStream publish with a per-message ack runs at ~20k
 * msg/s here, core publish into a stream subject at ~270k msg/s (DESIGN.md).
 * The price is that the server does not confirm each message, so after the
 * run the stream's sequence is checked against the count sent.
 *
 * Backpressure: a flush (PING/PONG) is issued every `chunkSize` messages and
 * at most `flushesInFlight` may be outstanding; the publisher waits for the
 * oldest before sending more, so the client's outbound buffer stays bounded
 * and the event loop (which also receives outcomes) gets its turns.
 */

export interface PublishOptions {
  nc: NatsConnection;
  load: GeneratedLoad;
  /** Events per second; undefined = as fast as the connection takes them. */
  ratePerSecond: number | undefined;
  /** Filled with performance.now() at the moment each event is handed to the client. */
  publishTimesMs: Float64Array;
  chunkSize?: number;
  flushesInFlight?: number;
  /** Checked between chunks: stop publishing early when it returns true. */
  shouldStop?: () => boolean;
  /** Increments as events are published, for live progress. */
  counter?: { published: number };
}

export interface PublishResult {
  published: number;
  /** From the first publish to the last flush's PONG (everything written to the server). */
  durationMs: number;
  ratePerSecond: number;
  targetRatePerSecond: number | null;
  flushes: number;
  stoppedEarly: boolean;
}

export function msgpackHeaders(): MsgHdrs {
  const result = natsHeaders();
  result.set('Content-Type', 'application/msgpack');
  return result;
}

export async function publishLoad(options: PublishOptions): Promise<PublishResult> {
  const { nc, load, publishTimesMs } = options;
  if (publishTimesMs.length < load.count) throw new RangeError('publishTimesMs is shorter than the load');
  const chunkSize = options.chunkSize ?? 1_000;
  const flushesInFlight = options.flushesInFlight ?? 4;
  const publishOptions = load.encoding === 'msgpack' ? { headers: msgpackHeaders() } : undefined;
  const pending: Promise<void>[] = [];
  const counter = options.counter ?? { published: 0 };
  let flushes = 0;
  let index = 0;
  let stoppedEarly = false;

  const publishRange = (end: number): void => {
    for (; index < end; index++) {
      publishTimesMs[index] = performance.now();
      nc.publish(load.subjectOfRank(load.memberRanks[index]!), payloadOf(load, index), publishOptions);
    }
    counter.published = index;
  };
  const flushChunk = async (): Promise<void> => {
    pending.push(nc.flush());
    flushes += 1;
    while (pending.length > flushesInFlight) await pending.shift();
  };

  const started = performance.now();
  if (options.ratePerSecond === undefined) {
    while (index < load.count) {
      if (options.shouldStop?.() === true) {
        stoppedEarly = true;
        break;
      }
      publishRange(Math.min(load.count, index + chunkSize));
      await flushChunk();
    }
  } else {
    const bucket = new TokenBucket(options.ratePerSecond, started);
    let sinceFlush = 0;
    // Flush at least every chunk or every 20 ms, whichever comes first, to keep pacing honest on the wire.
    const flushEveryMessages = Math.max(1, Math.min(chunkSize, Math.round(options.ratePerSecond / 50)));
    while (index < load.count) {
      if (options.shouldStop?.() === true) {
        stoppedEarly = true;
        break;
      }
      const allowed = Math.min(bucket.available(performance.now()), load.count - index);
      if (allowed > 0) {
        bucket.take(allowed);
        publishRange(index + allowed);
        sinceFlush += allowed;
        if (sinceFlush >= flushEveryMessages) {
          sinceFlush = 0;
          await flushChunk();
          continue;
        }
      }
      await sleep(Math.max(1, Math.ceil(bucket.msUntilNextToken())));
    }
  }
  await Promise.all(pending);
  await nc.flush();
  const durationMs = performance.now() - started;
  return {
    published: index,
    durationMs,
    ratePerSecond: index / (durationMs / 1000),
    targetRatePerSecond: options.ratePerSecond ?? null,
    flushes,
    stoppedEarly,
  };
}

export interface StreamCountResult {
  stream: string;
  expected: number;
  /** Messages the stream stored during the publish (last_seq growth; retention cannot hide them). */
  stored: number;
  lost: number;
  /** Time from the check's start until the count was reached or stopped growing. */
  settleMs: number;
  /** performance.now() when the last message was seen stored (polled every 10 ms). */
  lastStoredAtMs: number;
}

export async function streamLastSeq(jsm: JetStreamManager, stream: string): Promise<number> {
  const info = await jsm.streams.info(stream);
  return info.state.last_seq;
}

/**
 * Waits until the stream's last sequence has grown by `expected` since
 * `baseLastSeq`, or has not grown for `quietMs`; reports what is missing.
 */
export async function verifyStreamCount(
  jsm: JetStreamManager,
  stream: string,
  baseLastSeq: number,
  expected: number,
  quietMs = 5_000,
  timeoutMs = 120_000,
): Promise<StreamCountResult> {
  const started = performance.now();
  let stored = 0;
  let lastGrowthAt = started;
  while (true) {
    const now = performance.now();
    const current = (await streamLastSeq(jsm, stream)) - baseLastSeq;
    if (current > stored) {
      stored = current;
      lastGrowthAt = now;
    }
    if (stored >= expected || now - lastGrowthAt > quietMs || now - started > timeoutMs) break;
    await sleep(10);
  }
  return {
    stream,
    expected,
    stored,
    lost: Math.max(0, expected - stored),
    settleMs: Math.round(performance.now() - started),
    lastStoredAtMs: lastGrowthAt,
  };
}
