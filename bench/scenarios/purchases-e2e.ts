import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { startEngine, type EngineStopResult, type RunningEngine } from '../harness/engine.js';
import { startBenchNatsServer, type BenchNatsServer } from '../harness/nats-server.js';
import { MetricsScraper } from '../measure/metrics-scraper.js';
import { OutcomeCollector, type OutcomeCounts, type RejectionSample } from '../measure/outcomes.js';
import { summarize, type Summary } from '../measure/percentiles.js';
import { machineBusySeconds, ProcessSampler, readMachineTicks, type ProcessUsageSummary } from '../measure/process-sampler.js';
import { publishLoad, streamLastSeq, verifyStreamCount, type PublishResult, type StreamCountResult } from '../publisher/publisher.js';
import { formatBytes, formatCount } from '../report/progress.js';
import type { Scenario, ScenarioContext } from './scenario.js';

/**
 * Scenario 1: purchases into JetStream while the engine consumes them.
 * Measures events committed per second end to end (publish → outcome
 * received) and the latency of each event, with the engine's CPU and memory
 * sampled every second.
 */

export const ENGINE_STREAM = 'LOYALTY_TX';
/** Outcomes still arriving this long after the engine acked everything are waited for. */
const QUIET_AFTER_ACK_MS = 2_000;

export type WaitEnd = 'all-done' | 'acked-all' | 'stalled' | 'timeout' | 'engine-exited';
export const OUTCOME_SUBJECTS = 'loyalty.outcome.>';

export interface TimelinePoint {
  /** Seconds since the first publish. */
  tS: number;
  published: number;
  done: number;
  /** Events done during the last interval, per second. */
  doneRatePerSecond: number;
  engineCpuPercent: number | null;
  engineRssBytes: number | null;
  engineRssAnonBytes: number | null;
  natsCpuPercent: number | null;
  /** Selected /metrics values at that time (names may change while the engine is young). */
  metrics: Record<string, number>;
}

export interface EngineRunResult {
  scenario: string;
  programFile: string;
  engineStartMs: number;
  /** The unmeasured warm-up before the run (null: none). */
  warmup: WarmupResult | null;
  publish: PublishResult;
  stream: StreamCountResult | null;
  outcomes: OutcomeCounts & { rejectionCodes: Record<string, number>; rejectionSamples: RejectionSample[] };
  complete: boolean;
  /**
   * Why the wait for outcomes ended: every event had an outcome; or the
   * engine's consumer had acked every message and no outcome came for 2 s
   * (some events produced none); or nothing moved for --stall-s; or the
   * deadline; or the engine died.
   */
  ended: WaitEnd;
  /** The engine's durable consumer's ack floor at the end, relative to the run's first message. */
  engineAckedMessages: number | null;
  throughput: {
    eventsDone: number;
    /** First publish → last outcome. */
    durationMs: number;
    /** eventsDone ÷ duration: the headline figure. */
    eventsPerSecond: number;
    /** Events done between the 10th and 90th percent of completions, per second: without warm-up and tail. */
    steadyEventsPerSecond: number;
  };
  /** Publish → first outcome of each event, in ms. */
  latencyMs: Summary;
  usage: {
    engine: ProcessUsageSummary;
    natsServer: ProcessUsageSummary;
    /** This bench process (publisher + outcome subscriber) shares the cores; its share is reported. */
    benchClient: { cpuSeconds: number; cpuPercentMean: number };
    /**
     * CPU used by everything else on the machine during the measured run, in % of one core
     * (machine busy time minus engine, nats-server and bench). Near 0 on a quiet machine.
     */
    otherProcessesCpuPercentMean: number | null;
  };
  metrics: { maxima: Record<string, number>; last: Record<string, number>; errors: string[] };
  shutdown: EngineStopResult | null;
  engineLogFile: string | null;
  timeline: TimelinePoint[];
}

/** The serializable result, and the raw per-event data the correctness check needs (not written to the file). */
export interface EngineScenarioOutput {
  result: EngineRunResult;
  collector: OutcomeCollector;
}

export const purchasesEndToEnd: Scenario<EngineScenarioOutput> = {
  name: 'purchases-e2e',
  description: 'purchases published into JetStream while the engine consumes them; end-to-end rate and latency',
  run: runPurchasesEndToEnd,
};

async function runPurchasesEndToEnd(context: ScenarioContext): Promise<EngineScenarioOutput> {
  const { load, parameters, progress } = context;
  mkdirSync(context.resultsDir, { recursive: true });
  const engineLogFile = join(context.resultsDir, `${context.runStamp}-engine.log`);
  let server: BenchNatsServer | undefined;
  let engine: RunningEngine | undefined;
  let publisherConnection: NatsConnection | undefined;
  let outcomeConnection: NatsConnection | undefined;
  try {
    progress.log('engine run: starting nats-server and the engine');
    server = await startBenchNatsServer();
    engine = await startEngine({ natsUrl: server.url, programFile: parameters.programFile, logPath: engineLogFile });
    progress.log(`engine run: engine healthy after ${engine.startMs} ms (pid ${engine.pid}, log ${engineLogFile})`);

    publisherConnection = await connect({ servers: server.url, name: 'bench-publisher' });
    // A second connection for outcomes, so a full outbound buffer never delays reading them.
    outcomeConnection = await connect({ servers: server.url, name: 'bench-outcomes' });
    const jsm = await jetstreamManager(publisherConnection);
    await waitForStream(jsm, ENGINE_STREAM, 15_000);

    const collector = new OutcomeCollector(parameters.runId, load.count, context.program.pointsCurrency);
    let warmupActive = context.warmup !== null;
    const warmupCollector =
      context.warmup === null ? null : new OutcomeCollector(context.warmup.options.runId, context.warmup.count, context.program.pointsCurrency);
    outcomeConnection.subscribe(OUTCOME_SUBJECTS, {
      callback: (error, message) => {
        if (error !== null) return;
        // Warm-up ids are `e<runId>w-<i>`, foreign to the measured collector. Only during the warm-up is
        // each outcome offered to the warm-up collector first (parsing twice would load the measured phase).
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
    if (context.warmup !== null && warmupCollector !== null) {
      warmupResult = await runWarmup(context, publisherConnection, jsm, warmupCollector, () => engineExited);
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

    const startedAt = performance.now();
    const deadline = startedAt + parameters.timeoutSeconds * 1000;
    const benchCpuBefore = process.cpuUsage();
    const machineBefore = readMachineTicks();
    engineUsage.start();
    natsUsage.start();
    scraper.start();
    let lastDone = 0;
    let lastTickAt = startedAt;
    const ticker = setInterval(() => {
      const now = performance.now();
      const done = collector.counts.eventsDone;
      const rate = (done - lastDone) / ((now - lastTickAt) / 1000);
      lastDone = done;
      lastTickAt = now;
      const engineSample = engineUsage.latest();
      const natsSample = natsUsage.latest();
      const metrics = scraper.latest()?.values ?? {};
      timeline.push({
        tS: Math.round((now - startedAt) / 100) / 10,
        published: counter.published,
        done,
        doneRatePerSecond: Math.round(rate),
        engineCpuPercent: engineSample?.cpuPercent ?? null,
        engineRssBytes: engineSample?.rssBytes ?? null,
        engineRssAnonBytes: engineSample?.rssAnonBytes ?? null,
        natsCpuPercent: natsSample?.cpuPercent ?? null,
        metrics,
      });
      const pending = metrics.loyalty_consumer_pending_messages;
      progress.update(
        `engine run ${((now - startedAt) / 1000).toFixed(0)}s  published ${formatCount(counter.published)}/${formatCount(load.count)}` +
          `  done ${formatCount(done)} (${formatCount(rate)}/s)` +
          `  engine CPU ${engineSample?.cpuPercent.toFixed(0) ?? '-'}% RSS ${formatBytes(engineSample?.rssBytes ?? Number.NaN)}` +
          `  nats CPU ${natsSample?.cpuPercent.toFixed(0) ?? '-'}%` +
          (pending === undefined ? '' : `  pending ${formatCount(pending)}`),
      );
    }, 1_000);

    let publish: PublishResult;
    let stream: StreamCountResult | null = null;
    let ended: WaitEnd;
    let engineAcked: number | null = null;
    try {
      publish = await publishLoad({
        nc: publisherConnection,
        load,
        ratePerSecond: parameters.ratePerSecond ?? undefined,
        publishTimesMs: collector.publishTimesMs,
        counter,
        shouldStop: () => engineExited || performance.now() > deadline,
      });
      progress.log(
        `engine run: published ${formatCount(publish.published)} events in ${(publish.durationMs / 1000).toFixed(2)} s ` +
          `(${formatCount(publish.ratePerSecond)}/s); checking the stream`,
      );
      if (!engineExited) stream = await verifyStreamCount(jsm, ENGINE_STREAM, base, publish.published, 5_000, 60_000);
      ended = await waitForOutcomes(collector, publish.published, {
        deadline,
        stallMs: parameters.stallSeconds * 1000,
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
    const natsSummary = natsUsage.stop();
    const lastMetrics = (await scraper.scrape())?.values ?? scraper.latest()?.values ?? {};
    progress.clear();
    progress.log(`engine run: ${ended}; stopping the engine (SIGTERM)`);
    const engineStartMs = engine.startMs;
    const shutdown = await engine.stop(30_000);
    engine = undefined;

    const eventsDone = collector.counts.eventsDone;
    const firstPublishAt = collector.publishTimesMs[0]!;
    const durationMs = collector.lastDoneAtMs - firstPublishAt;
    const t10 = collector.doneTimeAtFraction(0.1);
    const t90 = collector.doneTimeAtFraction(0.9);
    const steadyEvents = Math.ceil(0.9 * eventsDone) - Math.ceil(0.1 * eventsDone);
    const cpuSeconds = (benchCpu.user + benchCpu.system) / 1e6;
    const result: EngineRunResult = {
      scenario: purchasesEndToEnd.name,
      programFile: parameters.programFile,
      engineStartMs,
      warmup: warmupResult,
      publish,
      stream,
      outcomes: { ...collector.counts, rejectionCodes: collector.rejectionCodes, rejectionSamples: collector.rejectionSamples },
      complete: eventsDone === load.count,
      ended,
      engineAckedMessages: engineAcked,
      throughput: {
        eventsDone,
        durationMs: eventsDone > 0 ? durationMs : Number.NaN,
        eventsPerSecond: eventsDone > 0 ? eventsDone / (durationMs / 1000) : 0,
        steadyEventsPerSecond: t90 > t10 ? steadyEvents / ((t90 - t10) / 1000) : Number.NaN,
      },
      latencyMs: summarize(collector.latenciesMs()),
      usage: {
        engine: engineSummary,
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
    return { result, collector };
  } finally {
    await publisherConnection?.close().catch(() => undefined);
    await outcomeConnection?.close().catch(() => undefined);
    await engine?.stop(10_000).catch(() => undefined);
    await server?.stop().catch(() => undefined);
  }
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

export interface WarmupResult {
  events: number;
  ended: WaitEnd;
  durationMs: number;
  eventsPerSecond: number;
}

/** Publishes the warm-up load at full speed and waits for it; nothing of it is measured. */
async function runWarmup(
  context: ScenarioContext,
  nc: NatsConnection,
  jsm: JetStreamManager,
  collector: OutcomeCollector,
  engineExited: () => boolean,
): Promise<WarmupResult> {
  const warmup = context.warmup!;
  const base = await streamLastSeq(jsm, ENGINE_STREAM);
  const started = performance.now();
  const counter = { published: 0 };
  const ticker = setInterval(
    () => context.progress.update(`warm-up: published ${formatCount(counter.published)}, done ${formatCount(collector.counts.eventsDone)} of ${formatCount(warmup.count)}`),
    1_000,
  );
  try {
    const publish = await publishLoad({ nc, load: warmup, ratePerSecond: undefined, publishTimesMs: collector.publishTimesMs, counter, shouldStop: engineExited });
    const ended = await waitForOutcomes(collector, publish.published, {
      deadline: started + context.parameters.timeoutSeconds * 1000,
      stallMs: context.parameters.stallSeconds * 1000,
      engineExited,
      ackedMessages: () => engineAckedMessages(jsm, base),
    });
    const durationMs = performance.now() - started;
    return { events: warmup.count, ended, durationMs, eventsPerSecond: collector.counts.eventsDone / (durationMs / 1000) };
  } finally {
    clearInterval(ticker);
    context.progress.clear();
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
