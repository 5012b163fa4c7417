import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { Spool } from '../generator/spool.js';
import { REPO_ROOT, startEngine, type EngineStopResult, type RunningEngine } from '../harness/engine.js';
import { sourceFingerprint } from '../harness/source-fingerprint.js';
import { startBenchNatsServer, type BenchNatsServer } from '../harness/nats-server.js';
import { MetricsScraper } from '../measure/metrics-scraper.js';
import { OutcomeCollector, type OutcomeCounts, type RejectionSample } from '../measure/outcomes.js';
import { percentileOfSorted, summarize, type Summary } from '../measure/percentiles.js';
import { machineBusySeconds, ProcessSampler, readMachineTicks, type ProcessUsageSummary } from '../measure/process-sampler.js';
import { publishSpool, streamLastSeq, verifyStreamCount, type PublishResult, type StreamCountResult } from '../publisher/publisher.js';
import { bar, formatBytes, formatCount, formatMs, type Progress } from '../report/progress.js';
import { scheduledSecondOf, type RateShape } from './shapes.js';
import { threadBreakdown, threadCpu, type ThreadShare } from '../measure/threads.js';

/**
 * The engine under load: a fresh nats-server and engine (fresh data directory,
 * free ports), an optional warm-up, then the spooled events published on the
 * scenario's schedule while the bench receives every outcome. Every second it
 * records what was published and committed, the latency of the events that
 * completed, the consumer's lag, the engine's CPU and memory, dead letters
 * and rejections. The engine is stopped with SIGTERM at the end and its data
 * directory is kept for the correctness check (the caller removes it).
 */

export const ENGINE_STREAM = 'LOYALTY_TX';
export const DEAD_LETTER_STREAM = 'LOYALTY_DLQ';
export const OUTCOME_SUBJECTS = 'loyalty.outcome.>';
/** Outcomes still arriving this long after the engine acked everything are waited for. */
const QUIET_AFTER_ACK_MS = 2_000;
/**
 * The engine is the bottleneck in a second when the messages it has not yet
 * acked (in the stream or delivered to it) exceed both this and half a second
 * of its own commit rate: more waits than its pipeline holds.
 */
export const BACKLOG_SATURATED_MESSAGES = 1_000;
export const BACKLOG_SATURATED_SECONDS = 0.5;

/** Whether the engine was the bottleneck during this timeline second (see BACKLOG_SATURATED_MESSAGES). */
export function isSaturated(point: Pick<TimelinePoint, 'streamPending' | 'ackPending' | 'published' | 'done' | 'donePerSecond'>): boolean {
  const backlog = point.streamPending === null ? point.published - point.done : point.streamPending + (point.ackPending ?? 0);
  return backlog > Math.max(BACKLOG_SATURATED_MESSAGES, point.donePerSecond * BACKLOG_SATURATED_SECONDS);
}

/**
 * Engine settings the bench sets unless told otherwise: the scheduled sweep
 * (pending release, expiry, tier reviews at wall-clock time) is pushed out of
 * the run, because it changes members by the machine's clock while the events
 * carry their own time, which the correctness check follows.
 */
export const BENCH_ENGINE_ENV: Readonly<Record<string, string>> = { LOYALTY_SWEEP_INTERVAL_MS: '86400000' };

export type WaitEnd = 'all-done' | 'acked-all' | 'stalled' | 'timeout' | 'engine-exited';

export interface TimelinePoint {
  /** Seconds since the first publish. */
  tS: number;
  published: number;
  publishedPerSecond: number;
  /** The schedule's rate at that second (null when unpaced). */
  targetPerSecond: number | null;
  /** Events with an outcome (committed). */
  done: number;
  donePerSecond: number;
  /** Latency of the events completed during this second (filled after the run). */
  latencyMs: { p50: number; p90: number; p99: number; p999: number; count: number } | null;
  /** JetStream: messages not yet delivered to the engine, and delivered but not acked. */
  streamPending: number | null;
  ackPending: number | null;
  /** The engine's own gauge loyalty_consumer_pending_messages. */
  metricsPending: number | null;
  engineCpuPercent: number | null;
  engineRssBytes: number | null;
  engineRssAnonBytes: number | null;
  /** V8 heap used by the engine's main thread (nodejs_heap_size_used_bytes; worker threads not included). */
  engineHeapUsedBytes: number | null;
  /** V8 heap used by the actor threads together (loyalty_actor_heap_used_bytes, summed; null when the engine has no such gauge). */
  actorHeapUsedBytes: number | null;
  /** Member states held in the actors' caches (loyalty_actor_cached_members, summed). */
  cachedMembers: number | null;
  natsCpuPercent: number | null;
  /** Cumulative loyalty_dead_letters_total. */
  deadLetters: number | null;
  /** Cumulative rejected outcomes received. */
  rejected: number;
}

export interface EngineRunResult {
  scenario: string;
  shape: string | null;
  programFile: string;
  engineStartMs: number;
  engineEnv: Record<string, string>;
  warmup: WarmupResult | null;
  publish: PublishResult;
  stream: StreamCountResult | null;
  outcomes: OutcomeCounts & { rejectionCodes: Record<string, number>; rejectionSamples: RejectionSample[] };
  complete: boolean;
  ended: WaitEnd;
  /** The engine's durable consumer's ack floor at the end, relative to the run's first message. */
  engineAckedMessages: number | null;
  deadLetters: { stream: number | null; metric: number | null };
  throughput: {
    eventsDone: number;
    /** First publish → last outcome. */
    durationMs: number;
    /** eventsDone ÷ duration. */
    eventsPerSecond: number;
    /** Events done between the 10th and 90th percent of completions, per second: without ramp-up and tail. */
    steadyEventsPerSecond: number;
    /** Best 5-second window of committed events. */
    peak5sEventsPerSecond: number;
    /**
     * Mean committed rate over the seconds in which the engine had a backlog
     * (see isSaturated): its capacity, measured while it was the bottleneck.
     * Null when it never was for 3 s (it kept up with the schedule).
     */
    saturatedEventsPerSecond: number | null;
    saturatedSeconds: number;
    /** The offered rate (schedule, else published/s) in the first second the engine fell behind; null if it never did. */
    fellBehindAtOfferedPerSecond: number | null;
    fellBehindAtSecond: number | null;
  };
  /** Publish → first outcome of each event, in ms. */
  latencyMs: Summary;
  /**
   * Scheduled time → first outcome, in ms (paced scenarios only): what a
   * client publishing on time would have seen, the bench's own lateness
   * included (no coordinated omission). Equal to latencyMs when the publisher
   * kept to its schedule.
   */
  latencyFromScheduleMs: Summary | null;
  lag: { streamPendingMax: number | null; ackPendingMax: number | null; metricsPendingMax: number | null };
  usage: {
    engine: ProcessUsageSummary;
    /** The engine's CPU over the measured run (every thread) ÷ events done. */
    engineCpuMicrosPerEvent: number | null;
    /** CPU seconds of each busy engine thread over the measured run, busiest first (bench/measure/threads.ts). */
    engineThreads: ThreadShare[];
    engineHeapUsedBytesMax: number | null;
    actorHeapUsedBytesMax: number | null;
    cachedMembersMax: number | null;
    /** Events per actor batch over the run (loyalty_batch_size_events sum ÷ count at the end; warm-up included). */
    batchEventsMean: number | null;
    natsServer: ProcessUsageSummary;
    benchClient: { cpuSeconds: number; cpuPercentMean: number };
    /** CPU used by everything else on the machine during the run, in % of one core: near 0 on a quiet machine. */
    otherProcessesCpuPercentMean: number | null;
  };
  metrics: { maxima: Record<string, number>; last: Record<string, number>; errors: string[] };
  shutdown: EngineStopResult | null;
  engineLogFile: string | null;
  timeline: TimelinePoint[];
}

export interface EngineRunOptions {
  spool: Spool;
  warmup: Spool | null;
  shape: RateShape | null;
  scenario: string;
  programFile: string;
  pointsCurrency: string;
  engineEnv: Record<string, string>;
  timeoutSeconds: number;
  stallSeconds: number;
  progress: Progress;
  resultsDir: string;
  runStamp: string;
}

/** The result, the per-event outcomes the correctness check needs, and the engine's data directory (kept). */
export interface EngineRunOutput {
  result: EngineRunResult;
  collector: OutcomeCollector;
  dataDir: string;
  removeDataDir: () => void;
  /** sourceFingerprint of src/ right after the engine started (it has loaded its code by then). */
  sourceFingerprint: string;
}

export async function runEngineScenario(options: EngineRunOptions): Promise<EngineRunOutput> {
  const { spool, progress } = options;
  mkdirSync(options.resultsDir, { recursive: true });
  const engineLogFile = join(options.resultsDir, `${options.runStamp}-engine.log`);
  let server: BenchNatsServer | undefined;
  let engine: RunningEngine | undefined;
  let publisherConnection: NatsConnection | undefined;
  let outcomeConnection: NatsConnection | undefined;
  let keptDataDir: { path: string; remove: () => void } | undefined;
  const engineEnv = { ...BENCH_ENGINE_ENV, ...options.engineEnv };
  try {
    progress.log('engine run: starting nats-server and the engine');
    server = await startBenchNatsServer();
    engine = await startEngine({ natsUrl: server.url, programFile: options.programFile, logPath: engineLogFile, extraEnv: engineEnv, keepDataDir: true });
    progress.log(`engine run: engine healthy after ${engine.startMs} ms (pid ${engine.pid}, log ${engineLogFile})`);
    const engineSource = sourceFingerprint(join(REPO_ROOT, 'src'));

    publisherConnection = await connect({ servers: server.url, name: 'bench-publisher' });
    // A second connection for outcomes, so a full outbound buffer never delays reading them.
    outcomeConnection = await connect({ servers: server.url, name: 'bench-outcomes' });
    const jsm = await jetstreamManager(publisherConnection);
    await waitForStream(jsm, ENGINE_STREAM, 15_000);
    const consumerName = await engineConsumerName(jsm);

    const collector = new OutcomeCollector(spool.generator.runId, spool.count, options.pointsCurrency);
    let warmupActive = options.warmup !== null;
    const warmupCollector = options.warmup === null ? null : new OutcomeCollector(options.warmup.generator.runId, options.warmup.count, options.pointsCurrency);
    outcomeConnection.subscribe(OUTCOME_SUBJECTS, {
      callback: (error, message) => {
        if (error !== null) return;
        // Warm-up ids are `e<runId>w-<i>`, foreign to the measured collector: offered to the warm-up collector first while it runs.
        if (warmupActive && warmupCollector !== null && warmupCollector.handle(message.subject, message.data)) return;
        collector.handle(message.subject, message.data);
      },
    });
    await outcomeConnection.flush();
    let engineExited = false;
    void engine.child.exited.then(() => {
      engineExited = true;
    });

    let warmupResult: WarmupResult | null = null;
    if (options.warmup !== null && warmupCollector !== null) {
      warmupResult = await runWarmup(options, publisherConnection, jsm, warmupCollector, () => engineExited);
      warmupActive = false;
      progress.log(
        `engine run: warm-up of ${formatCount(warmupResult.events)} events ${warmupResult.ended} in ${(warmupResult.durationMs / 1000).toFixed(1)} s ` +
          `(${formatCount(warmupResult.eventsPerSecond)}/s); measuring now`,
      );
      if (warmupResult.ended !== 'all-done' && warmupResult.ended !== 'acked-all') {
        throw new Error(`the warm-up did not finish (${warmupResult.ended}); engine output:\n${engine.child.tail(30)}`);
      }
    }

    const engineUsage = new ProcessSampler(engine.pid);
    const natsUsage = new ProcessSampler(server.pid);
    const scraper = new MetricsScraper(engine.metricsUrl);
    const base = await streamLastSeq(jsm, ENGINE_STREAM);
    const counter = { published: 0 };
    const timeline: TimelinePoint[] = [];
    const consumerLag = { streamPending: null as number | null, ackPending: null as number | null, inFlight: false };
    const pollLag = (): void => {
      if (consumerLag.inFlight || consumerName === null) return;
      consumerLag.inFlight = true;
      jsm.consumers
        .info(ENGINE_STREAM, consumerName)
        .then((info) => {
          consumerLag.streamPending = info.num_pending;
          consumerLag.ackPending = info.num_ack_pending;
        })
        .catch(() => undefined)
        .finally(() => (consumerLag.inFlight = false));
    };

    const startedAt = performance.now();
    const deadline = startedAt + options.timeoutSeconds * 1000;
    const benchCpuBefore = process.cpuUsage();
    const machineBefore = readMachineTicks();
    engineUsage.start();
    const engineThreadsAtStart = threadCpu(engine.pid);
    natsUsage.start();
    scraper.start();
    let lastDone = 0;
    let lastPublished = 0;
    let lastTickAt = startedAt;
    const ticker = setInterval(() => {
      const now = performance.now();
      const seconds = (now - lastTickAt) / 1000;
      const done = collector.counts.eventsDone;
      const published = counter.published;
      const doneRate = (done - lastDone) / seconds;
      const publishedRate = (published - lastPublished) / seconds;
      lastDone = done;
      lastPublished = published;
      lastTickAt = now;
      const engineSample = engineUsage.latest();
      const natsSample = natsUsage.latest();
      const metrics = scraper.latest()?.values ?? {};
      const tS = (now - startedAt) / 1000;
      timeline.push({
        tS: Math.round(tS * 10) / 10,
        published,
        publishedPerSecond: Math.round(publishedRate),
        targetPerSecond: options.shape === null ? null : Math.round(options.shape.rateAt(tS)),
        done,
        donePerSecond: Math.round(doneRate),
        latencyMs: null,
        streamPending: consumerLag.streamPending,
        ackPending: consumerLag.ackPending,
        metricsPending: metrics.loyalty_consumer_pending_messages ?? null,
        engineCpuPercent: engineSample?.cpuPercent ?? null,
        engineRssBytes: engineSample?.rssBytes ?? null,
        engineRssAnonBytes: engineSample?.rssAnonBytes ?? null,
        engineHeapUsedBytes: metrics.nodejs_heap_size_used_bytes ?? null,
        actorHeapUsedBytes: metrics.loyalty_actor_heap_used_bytes ?? null,
        cachedMembers: metrics.loyalty_actor_cached_members ?? null,
        natsCpuPercent: natsSample?.cpuPercent ?? null,
        // The counter appears in /metrics only once something was dead-lettered.
        deadLetters: metrics.loyalty_dead_letters_total ?? (scraper.latest() === undefined ? null : 0),
        rejected: collector.counts.byKind.rejected ?? 0,
      });
      pollLag();
      const recent = Float64Array.from(collector.takeRecentLatencies()).sort();
      const lag = (consumerLag.streamPending ?? 0) + (consumerLag.ackPending ?? 0);
      progress.update(
        `${bar(done / spool.count)} ${((100 * done) / spool.count).toFixed(0).padStart(3)}%  ${tS.toFixed(0)}s` +
          `  sent ${formatCount(published)}/${formatCount(spool.count)} (${formatCount(publishedRate)}/s)` +
          `  done ${formatCount(doneRate)}/s  p99 ${formatMs(percentileOfSorted(recent, 99))}` +
          `  lag ${formatCount(lag)}  CPU ${engineSample?.cpuPercent.toFixed(0) ?? '-'}%` +
          `  priv ${formatBytes(engineSample?.rssAnonBytes ?? Number.NaN)}` +
          `  DLQ ${formatCount(metrics.loyalty_dead_letters_total ?? 0)}  rej ${formatCount(collector.counts.byKind.rejected ?? 0)}`,
      );
    }, 1_000);

    let publish: PublishResult;
    let stream: StreamCountResult | null = null;
    let ended: WaitEnd;
    let engineAcked: number | null = null;
    try {
      publish = await publishSpool({
        nc: publisherConnection,
        spool,
        shape: options.shape,
        publishTimesMs: collector.publishTimesMs,
        counter,
        shouldStop: () => engineExited || performance.now() > deadline,
      });
      progress.log(
        `engine run: published ${formatCount(publish.published)} events in ${(publish.durationMs / 1000).toFixed(1)} s ` +
          `(${formatCount(publish.ratePerSecond)}/s${publish.behindScheduleMsMax > 0 ? `; at most ${publish.behindScheduleMsMax} ms behind schedule` : ''}); waiting for outcomes`,
      );
      if (!engineExited) stream = await verifyStreamCount(jsm, ENGINE_STREAM, base, publish.published, 5_000, 60_000);
      ended = await waitForOutcomes(collector, publish.published, {
        deadline,
        stallMs: options.stallSeconds * 1000,
        engineExited: () => engineExited,
        ackedMessages: () => engineAckedMessages(jsm, base),
      });
      engineAcked = await engineAckedMessages(jsm, base).catch(() => null);
      // Late outcomes of the same events (tier changes, re-publishes) are counted, not timed.
      await sleep(200);
    } finally {
      clearInterval(ticker);
      scraper.stop();
    }
    const benchCpu = process.cpuUsage(benchCpuBefore);
    const machineBusy = machineBusySeconds(machineBefore, readMachineTicks());
    const wallSeconds = (performance.now() - startedAt) / 1000;
    const engineSummary = engineUsage.stop();
    const engineThreads = threadBreakdown(engine.pid, engineThreadsAtStart, threadCpu(engine.pid));
    const natsSummary = natsUsage.stop();
    const lastMetrics = (await scraper.scrape())?.values ?? scraper.latest()?.values ?? {};
    const deadLetterStream = await jsm.streams
      .info(DEAD_LETTER_STREAM)
      .then((info) => info.state.messages)
      .catch(() => null);
    progress.clear();
    progress.log(`engine run: ${ended}; stopping the engine (SIGTERM)`);
    const engineStartMs = engine.startMs;
    const dataDir = engine.dataDir;
    const removeDataDir = engine.removeDataDir;
    keptDataDir = { path: dataDir, remove: removeDataDir };
    const shutdown = await engine.stop(30_000);
    engine = undefined;

    fillTimelineLatencies(timeline, collector, startedAt);
    const eventsDone = collector.counts.eventsDone;
    const firstPublishAt = publish.startedAtMs;
    const durationMs = collector.lastDoneAtMs - firstPublishAt;
    const t10 = collector.doneTimeAtFraction(0.1);
    const t90 = collector.doneTimeAtFraction(0.9);
    const steadyEvents = Math.ceil(0.9 * eventsDone) - Math.ceil(0.1 * eventsDone);
    const cpuSeconds = (benchCpu.user + benchCpu.system) / 1e6;
    const saturated = timeline.filter(isSaturated);
    const heapMax = timeline.reduce<number | null>((max, point) => (point.engineHeapUsedBytes === null ? max : Math.max(max ?? 0, point.engineHeapUsedBytes)), null);
    const maxOf = (pick: (point: TimelinePoint) => number | null): number | null =>
      timeline.reduce<number | null>((max, point) => {
        const value = pick(point);
        return value === null ? max : Math.max(max ?? 0, value);
      }, null);
    const result: EngineRunResult = {
      scenario: options.scenario,
      shape: options.shape?.description ?? null,
      programFile: options.programFile,
      engineStartMs,
      engineEnv,
      warmup: warmupResult,
      publish,
      stream,
      outcomes: { ...collector.counts, rejectionCodes: collector.rejectionCodes, rejectionSamples: collector.rejectionSamples },
      complete: eventsDone === spool.count,
      ended,
      engineAckedMessages: engineAcked,
      deadLetters: { stream: deadLetterStream, metric: lastMetrics.loyalty_dead_letters_total ?? null },
      throughput: {
        eventsDone,
        durationMs: eventsDone > 0 ? durationMs : Number.NaN,
        eventsPerSecond: eventsDone > 0 ? eventsDone / (durationMs / 1000) : 0,
        steadyEventsPerSecond: t90 > t10 ? steadyEvents / ((t90 - t10) / 1000) : Number.NaN,
        peak5sEventsPerSecond: bestWindowRate(timeline, 5),
        saturatedEventsPerSecond: saturated.length >= 3 ? saturated.reduce((sum, point) => sum + point.donePerSecond, 0) / saturated.length : null,
        saturatedSeconds: saturated.length,
        fellBehindAtOfferedPerSecond: saturated[0] === undefined ? null : (saturated[0].targetPerSecond ?? saturated[0].publishedPerSecond),
        fellBehindAtSecond: saturated[0]?.tS ?? null,
      },
      latencyMs: summarize(collector.latenciesMs()),
      latencyFromScheduleMs: options.shape === null ? null : summarize(latenciesFromSchedule(collector, options.shape, publish.startedAtMs)),
      lag: {
        streamPendingMax: maxOf((point) => point.streamPending),
        ackPendingMax: maxOf((point) => point.ackPending),
        metricsPendingMax: maxOf((point) => point.metricsPending),
      },
      usage: {
        engine: engineSummary,
        engineCpuMicrosPerEvent: eventsDone > 0 ? Math.round((engineSummary.cpuSecondsTotal * 1e7) / eventsDone) / 10 : null,
        engineThreads,
        engineHeapUsedBytesMax: heapMax,
        actorHeapUsedBytesMax: maxOf((point) => point.actorHeapUsedBytes),
        cachedMembersMax: maxOf((point) => point.cachedMembers),
        batchEventsMean:
          (lastMetrics.loyalty_batch_size_events_count ?? 0) > 0
            ? Math.round((lastMetrics.loyalty_batch_size_events_sum! / lastMetrics.loyalty_batch_size_events_count!) * 10) / 10
            : null,
        natsServer: natsSummary,
        benchClient: { cpuSeconds: Math.round(cpuSeconds * 100) / 100, cpuPercentMean: Math.round((cpuSeconds / wallSeconds) * 1000) / 10 },
        otherProcessesCpuPercentMean:
          machineBusy === null
            ? null
            : Math.max(0, Math.round(((machineBusy - cpuSeconds - engineSummary.cpuSecondsTotal - natsSummary.cpuSecondsTotal) / wallSeconds) * 1000) / 10),
      },
      metrics: { maxima: scraper.maxima(), last: lastMetrics, errors: scraper.errors },
      shutdown,
      engineLogFile,
      timeline,
    };
    return { result, collector, dataDir, removeDataDir, sourceFingerprint: engineSource };
  } catch (error) {
    keptDataDir?.remove();
    throw error;
  } finally {
    await publisherConnection?.close().catch(() => undefined);
    await outcomeConnection?.close().catch(() => undefined);
    if (engine !== undefined) {
      await engine.stop(10_000).catch(() => undefined);
      engine.removeDataDir();
    }
    await server?.stop().catch(() => undefined);
  }
}

/** First outcome − the time the schedule had the event published, per event (NaN when it got none). */
export function latenciesFromSchedule(collector: OutcomeCollector, shape: RateShape, startedAtMs: number): Float64Array {
  const result = new Float64Array(collector.count);
  for (let index = 0; index < collector.count; index++) {
    result[index] = collector.doneTimesMs[index]! - (startedAtMs + scheduledSecondOf(shape, index) * 1000);
  }
  return result;
}

/** Per-second latency percentiles of the events that completed in each second of the timeline. */
export function fillTimelineLatencies(timeline: TimelinePoint[], collector: OutcomeCollector, startedAt: number): void {
  if (timeline.length === 0) return;
  const buckets = timeline.length + 1;
  const counts = new Uint32Array(buckets);
  const bucketOf = (index: number): number => {
    const done = collector.doneTimesMs[index]!;
    if (Number.isNaN(done)) return -1;
    return Math.min(buckets - 1, Math.max(0, Math.floor((done - startedAt) / 1000)));
  };
  for (let index = 0; index < collector.count; index++) {
    const bucket = bucketOf(index);
    if (bucket >= 0) counts[bucket]! += 1;
  }
  const starts = new Uint32Array(buckets + 1);
  for (let bucket = 0; bucket < buckets; bucket++) starts[bucket + 1] = starts[bucket]! + counts[bucket]!;
  const filled = starts.slice(0, buckets);
  const values = new Float64Array(starts[buckets]!);
  for (let index = 0; index < collector.count; index++) {
    const bucket = bucketOf(index);
    if (bucket >= 0) values[filled[bucket]!++] = collector.doneTimesMs[index]! - collector.publishTimesMs[index]!;
  }
  for (let bucket = 0; bucket < timeline.length; bucket++) {
    const slice = values.subarray(starts[bucket]!, starts[bucket + 1]!).sort();
    timeline[bucket]!.latencyMs =
      slice.length === 0
        ? null
        : {
            p50: round2(percentileOfSorted(slice, 50)),
            p90: round2(percentileOfSorted(slice, 90)),
            p99: round2(percentileOfSorted(slice, 99)),
            p999: round2(percentileOfSorted(slice, 99.9)),
            count: slice.length,
          };
  }
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

/** Highest mean rate of committed events over `seconds` consecutive timeline points. */
export function bestWindowRate(timeline: readonly TimelinePoint[], seconds: number): number {
  if (timeline.length === 0) return Number.NaN;
  if (timeline.length <= seconds) {
    const last = timeline[timeline.length - 1]!;
    return last.tS > 0 ? last.done / last.tS : Number.NaN;
  }
  let best = 0;
  for (let end = seconds; end < timeline.length; end++) {
    const span = timeline[end]!.tS - timeline[end - seconds]!.tS;
    if (span > 0) best = Math.max(best, (timeline[end]!.done - timeline[end - seconds]!.done) / span);
  }
  return best;
}

async function waitForStream(jsm: JetStreamManager, stream: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    try {
      await jsm.streams.info(stream);
      return;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`the engine's stream ${stream} did not appear within ${timeoutMs} ms (${lastError})`);
}

async function engineConsumerName(jsm: JetStreamManager): Promise<string | null> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const consumers = await jsm.consumers.list(ENGINE_STREAM).next();
    const durable = consumers.find((consumer) => consumer.config.durable_name !== undefined);
    if (durable !== undefined) return durable.config.durable_name!;
    await sleep(100);
  }
  return null;
}

export interface WarmupResult {
  events: number;
  ended: WaitEnd;
  durationMs: number;
  eventsPerSecond: number;
}

/** Publishes the warm-up load at full speed and waits for it; nothing of it is measured. */
async function runWarmup(
  options: EngineRunOptions,
  nc: NatsConnection,
  jsm: JetStreamManager,
  collector: OutcomeCollector,
  engineExited: () => boolean,
): Promise<WarmupResult> {
  const warmup = options.warmup!;
  const base = await streamLastSeq(jsm, ENGINE_STREAM);
  const started = performance.now();
  const counter = { published: 0 };
  const ticker = setInterval(
    () =>
      options.progress.update(
        `${bar(collector.counts.eventsDone / warmup.count)} warm-up: published ${formatCount(counter.published)}, done ${formatCount(collector.counts.eventsDone)} of ${formatCount(warmup.count)}`,
      ),
    1_000,
  );
  try {
    const publish = await publishSpool({ nc, spool: warmup, shape: null, publishTimesMs: collector.publishTimesMs, counter, shouldStop: engineExited });
    const ended = await waitForOutcomes(collector, publish.published, {
      deadline: started + options.timeoutSeconds * 1000,
      stallMs: options.stallSeconds * 1000,
      engineExited,
      ackedMessages: () => engineAckedMessages(jsm, base),
    });
    const durationMs = performance.now() - started;
    return { events: warmup.count, ended, durationMs, eventsPerSecond: collector.counts.eventsDone / (durationMs / 1000) };
  } finally {
    clearInterval(ticker);
    options.progress.clear();
  }
}

/** Messages of this run acked by the engine's durable consumer (its ack floor minus the run's base sequence). */
async function engineAckedMessages(jsm: JetStreamManager, base: number): Promise<number | null> {
  const consumers = await jsm.consumers.list(ENGINE_STREAM).next();
  let floor: number | null = null;
  for (const consumer of consumers) {
    if (consumer.config.durable_name === undefined) continue;
    floor = Math.max(floor ?? 0, consumer.ack_floor.stream_seq - base);
  }
  return floor;
}

async function waitForOutcomes(
  collector: OutcomeCollector,
  expected: number,
  limits: { deadline: number; stallMs: number; engineExited: () => boolean; ackedMessages: () => Promise<number | null> },
): Promise<WaitEnd> {
  let lastDone = collector.counts.eventsDone;
  let lastProgressAt = performance.now();
  let lastAckCheckAt = 0;
  let ackedAll = false;
  while (true) {
    const done = collector.counts.eventsDone;
    const now = performance.now();
    if (done >= expected) return 'all-done';
    if (limits.engineExited()) return 'engine-exited';
    if (done > lastDone) {
      lastDone = done;
      lastProgressAt = now;
    } else if (ackedAll && now - lastProgressAt > QUIET_AFTER_ACK_MS) {
      return 'acked-all';
    } else if (now - lastProgressAt > limits.stallMs) {
      return 'stalled';
    }
    if (now > limits.deadline) return 'timeout';
    // Consumer info is a server request: twice a second is plenty.
    if (!ackedAll && now - lastAckCheckAt > 500) {
      lastAckCheckAt = now;
      const acked = await limits.ackedMessages().catch(() => null);
      ackedAll = acked !== null && acked >= expected;
    }
    await sleep(50);
  }
}
