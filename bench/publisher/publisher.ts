import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { payloadOf, type Spool } from '../generator/spool.js';
import type { RateShape } from '../scenarios/shapes.js';

/**
 * Publishes a spooled load into JetStream with core NATS publishes, either as
 * fast as the connection takes them or on a rate shape's schedule.
 *
 * Why core publish: JetStream publish with a per-message ack runs at ~20k
 * msg/s here, core publish into a stream subject at ~270k msg/s (DESIGN.md).
 * The price is that the server does not confirm each message, so after the
 * run the stream's sequence is checked against the count sent.
 *
 * Backpressure: a flush (PING/PONG) is issued every `flushEvery` messages and
 * at most `flushesInFlight` may be outstanding; the publisher waits for the
 * oldest before sending more, so the client's outbound buffer stays bounded
 * and the event loop (which also receives outcomes) gets its turns.
 *
 * On a schedule the publisher is open-loop: it never skips events, and when it
 * has fallen behind (a long GC pause, a slow flush) it catches up; how far
 * behind it ever was is reported, since that much of the latency is the
 * bench's own.
 */

export interface PublishOptions {
  nc: NatsConnection;
  spool: Spool;
  /** null: as fast as the connection takes them. */
  shape: RateShape | null;
  /** Filled with performance.now() at the moment each event is handed to the client. */
  publishTimesMs?: Float64Array;
  flushEvery?: number;
  flushesInFlight?: number;
  /** Checked between slices: stop publishing early when it returns true. */
  shouldStop?: () => boolean;
  /** Increments as events are published, for live progress. */
  counter?: { published: number };
}

export interface PublishResult {
  published: number;
  /** From the first publish to the last flush's PONG (everything written to the server). */
  durationMs: number;
  ratePerSecond: number;
  shape: string | null;
  flushes: number;
  stoppedEarly: boolean;
  /** Most events the publisher was ever behind its schedule, and for how long at most (0 when unpaced). */
  behindScheduleEventsMax: number;
  behindScheduleMsMax: number;
  /** performance.now() of the first publish. */
  startedAtMs: number;
}

export function msgpackHeaders(): MsgHdrs {
  const result = natsHeaders();
  result.set('Content-Type', 'application/msgpack');
  return result;
}

export async function publishSpool(options: PublishOptions): Promise<PublishResult> {
  const { nc, spool, shape } = options;
  const flushEvery = options.flushEvery ?? 1_000;
  // 16 × 1,000 messages of ~300 B: at most ~5 MB waiting in the client, and a slow PONG under load does not stall the schedule.
  const flushesInFlight = options.flushesInFlight ?? 16;
  const publishOptions = spool.encoding === 'msgpack' ? { headers: msgpackHeaders() } : undefined;
  const publishTimes = options.publishTimesMs;
  if (publishTimes !== undefined && publishTimes.length < spool.count) throw new RangeError('publishTimesMs is shorter than the load');
  const pending: Promise<void>[] = [];
  const counter = options.counter ?? { published: 0 };
  let flushes = 0;
  let published = 0;
  let sinceFlush = 0;
  let stoppedEarly = false;
  let behindEventsMax = 0;
  let behindMsMax = 0;
  let behindSinceMs: number | null = null;

  const flush = async (): Promise<void> => {
    pending.push(nc.flush());
    flushes += 1;
    sinceFlush = 0;
    while (pending.length > flushesInFlight) await pending.shift();
  };

  const started = performance.now();
  // Events due by now on the schedule (all of them when unpaced).
  const dueAt = (now: number): number => {
    if (shape === null) return spool.count;
    const seconds = (now - started) / 1000;
    // At the end everything is due (the schedule's total is rounded, its integral may stop just short of it).
    return seconds >= shape.durationSeconds ? spool.count : Math.min(spool.count, Math.floor(shape.cumulativeAt(seconds)));
  };
  outer: for await (const chunk of spool.readAll()) {
    let position = 0;
    while (position < chunk.count) {
      if (options.shouldStop?.() === true) {
        stoppedEarly = true;
        break outer;
      }
      const now = performance.now();
      const due = dueAt(now);
      if (shape !== null) {
        const behind = due - published;
        // More than one flush slice due at once means the publisher is late.
        if (behind > flushEvery) {
          behindSinceMs ??= now;
          behindEventsMax = Math.max(behindEventsMax, behind);
          behindMsMax = Math.max(behindMsMax, now - behindSinceMs);
        } else behindSinceMs = null;
      }
      if (due <= published) {
        // Nothing due: wait for the next event's time (timers fire ~1 ms apart at best).
        if (sinceFlush > 0) await flush();
        else await sleep(1);
        continue;
      }
      const end = Math.min(chunk.count, position + (due - published), position + (flushEvery - sinceFlush));
      for (; position < end; position++) {
        if (publishTimes !== undefined) publishTimes[chunk.start + position] = performance.now();
        nc.publish(spool.subjectOfRank(chunk.memberRanks[position]!), payloadOf(chunk, position), publishOptions);
        published += 1;
        sinceFlush += 1;
      }
      counter.published = published;
      if (sinceFlush >= flushEvery) await flush();
    }
  }
  await Promise.all(pending);
  await nc.flush();
  const durationMs = performance.now() - started;
  return {
    published,
    durationMs,
    ratePerSecond: published / (durationMs / 1000),
    shape: shape?.name ?? null,
    flushes,
    stoppedEarly,
    behindScheduleEventsMax: behindEventsMax,
    behindScheduleMsMax: Math.round(behindMsMax),
    startedAtMs: started,
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
