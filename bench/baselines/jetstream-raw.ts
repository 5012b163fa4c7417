import { performance } from 'node:perf_hooks';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { Spool } from '../generator/spool.js';
import { startBenchNatsServer } from '../harness/nats-server.js';
import { median } from '../measure/stats.js';
import { machineBusySeconds, ProcessSampler, readMachineTicks, type ProcessUsageSummary } from '../measure/process-sampler.js';
import { publishSpool, streamLastSeq, verifyStreamCount, type PublishResult, type StreamCountResult } from '../publisher/publisher.js';
import { PubAckRouter, type GroupMessage } from '../../src/transport/pub-acks.js';
import type { OutcomeSample } from './contract-outcomes.js';

/**
 * The transport's limit on this machine: how fast JetStream alone ingests the
 * same messages and hands them to a durable pull consumer that acks in bulk
 * (ack policy "all", one ack per `ackEvery` messages). Whatever the engine
 * does, it cannot consume faster than this, so the engine's figure is reported
 * as a ratio of it.
 *
 * The consume pass is repeated (a fresh durable consumer each time, over the
 * same stored messages) and the median is the figure: one pass of 200k
 * messages lasts about a second, short enough for noise to matter.
 *
 * It runs on its own nats-server and stream, never at the same time as the
 * engine run (two cores would be shared and both figures would be wrong).
 */

export const RAW_STREAM = 'BENCH_RAW';
/** The contract pass's outcome stream, configured as the engine's LOYALTY_OUTCOMES (file, 2-minute duplicate window). */
export const CONTRACT_OUTCOME_STREAM = 'BENCH_OUTCOMES';

/** What a second baseline needs to consume the same stored messages on the same server. */
export interface SharedStream {
  jsm: JetStreamManager;
  js: JetStreamClient;
  stream: string;
  baseSequence: number;
  count: number;
}

export interface RawBaselineOptions<Extra> {
  spool: Spool;
  /** Runs after the consume passes, on the same server and stream (the PostgreSQL baseline). */
  after?: (shared: SharedStream) => Promise<Extra>;
  /** Ack-all once per this many messages (and on the last one). */
  ackEvery?: number;
  /** Messages the client asks for per pull request (consume buffer). */
  pullBatch?: number;
  /** The consumer's max_ack_pending; must exceed ackEvery. */
  ackPendingMax?: number;
  /** Consume passes; the median rate is reported. */
  repeats?: number;
  /** Bound on each phase; a pass that has not finished by then is reported incomplete. */
  phaseTimeoutMs?: number;
  /** Called about every second. */
  onProgress?: (phase: string, done: number, total: number) => void;
  /**
   * The outcome messages of the engine's contract for these events: with it,
   * the baseline also measures the transport ceiling of that contract
   * (consume + ack-all + every outcome into JetStream, PubAcks awaited).
   */
  outcomeSample?: OutcomeSample;
  /** Contract passes (median reported); default min(repeats, 3). */
  contractRepeats?: number;
}

export interface ContractPass extends ConsumePass {
  /** Outcome messages published and acknowledged by the outcome stream. */
  outcomeMessages: number;
}

/**
 * The transport ceiling of the engine's contract: consume and ack-all as
 * above, and per consumed message the outcome messages the engine publishes
 * for it (one JetStream publish per outcome with Nats-Msg-Id, acknowledged
 * with a PubAck), published per 1,000 messages through the engine's own
 * PubAckRouter; the ack of a chunk waits for its PubAcks. What the engine adds
 * to this is its own work: decode, rules, LMDB.
 */
export interface ContractCeilingResult {
  ratePerSecond: number;
  minRatePerSecond: number;
  maxRatePerSecond: number;
  outcomesPerEvent: number;
  meanOutcomeBytes: number;
  passes: ContractPass[];
  complete: boolean;
}

export interface ConsumePass {
  consumed: number;
  durationMs: number;
  ratePerSecond: number;
  /** The consumer's ack floor after the last ack: proves every message was acked. */
  ackFloorStreamSeq: number;
  complete: boolean;
  /** Machine-wide busy CPU during the pass, in % of one core (nats-server and the bench included). */
  machineCpuPercent: number | null;
}

export interface RawBaselineResult {
  messages: number;
  meanPayloadBytes: number;
  ingest: {
    publish: PublishResult;
    stream: StreamCountResult;
    /** Messages stored per second, from the first publish until the stream held them all. */
    storedPerSecond: number;
  };
  consume: {
    /** Median over the passes: the transport's consume-and-ack limit. */
    ratePerSecond: number;
    minRatePerSecond: number;
    maxRatePerSecond: number;
    passes: ConsumePass[];
    ackEvery: number;
    pullBatch: number;
    ackPendingMax: number;
    complete: boolean;
  };
  /** Null when no outcome sample was given. */
  contract: ContractCeilingResult | null;
  natsServer: { version: string; ingestUsage: ProcessUsageSummary; consumeUsage: ProcessUsageSummary };
  /** CPU used by anything but nats-server and this bench during the consume passes, in % of one core (near 0 when quiet). */
  otherProcessesCpuPercentMean: number | null;
}

export async function runRawBaseline<Extra = undefined>(options: RawBaselineOptions<Extra>): Promise<{ raw: RawBaselineResult; extra: Extra | undefined }> {
  const { spool } = options;
  const ackEvery = options.ackEvery ?? 1_000;
  const pullBatch = options.pullBatch ?? 10_000;
  const ackPendingMax = options.ackPendingMax ?? 50_000;
  const repeats = options.repeats ?? 5;
  const phaseTimeoutMs = options.phaseTimeoutMs ?? Math.max(60_000, spool.count / 5);
  if (ackPendingMax <= ackEvery) throw new RangeError('ackPendingMax must exceed ackEvery, or the consumer stalls waiting for an ack');
  if (!Number.isInteger(repeats) || repeats < 1) throw new RangeError('repeats must be an integer >= 1');
  const server = await startBenchNatsServer();
  const nc = await connect({ servers: server.url, name: 'bench-raw' });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({
      name: RAW_STREAM,
      subjects: ['loyalty.tx.*'],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
    });

    // Ingest: same payloads, same subjects, same publisher as the engine run.
    const ingestUsage = new ProcessSampler(server.pid);
    ingestUsage.start();
    const base = await streamLastSeq(jsm, RAW_STREAM);
    const counter = { published: 0 };
    const progress = setInterval(() => options.onProgress?.('raw ingest', counter.published, spool.count), 1_000);
    const started = performance.now();
    let publish: PublishResult;
    let stream: StreamCountResult;
    try {
      publish = await publishSpool({ nc, spool, shape: null, counter });
      stream = await verifyStreamCount(jsm, RAW_STREAM, base, spool.count, 5_000, phaseTimeoutMs);
    } finally {
      clearInterval(progress);
    }
    const storedMs = stream.lastStoredAtMs - started;
    const ingestSummary = ingestUsage.stop();

    const js = jetstream(nc);
    const consumeUsage = new ProcessSampler(server.pid);
    consumeUsage.start();
    const machineBefore = readMachineTicks();
    const benchCpuBefore = process.cpuUsage();
    const consumeStarted = performance.now();
    // The options of one pass over the stored messages (raw consume or contract ceiling).
    const passOptions = (name: string, phase: string): PassOptions => ({
      name,
      target: stream.stored,
      base,
      ackEvery,
      pullBatch,
      ackPendingMax,
      timeoutMs: phaseTimeoutMs,
      onProgress: (done) => options.onProgress?.(phase, done, stream.stored),
    });
    const passes: ConsumePass[] = [];
    for (let pass = 1; pass <= repeats; pass++) passes.push(await consumePass(jsm, js, passOptions(`bench-raw-${pass}`, `raw consume ${pass}/${repeats}`)));
    const benchCpu = process.cpuUsage(benchCpuBefore);
    const machineBusy = machineBusySeconds(machineBefore, readMachineTicks());
    const consumeWallSeconds = (performance.now() - consumeStarted) / 1000;
    const consumeSummary = consumeUsage.stop();
    const otherSeconds =
      machineBusy === null ? null : machineBusy - (benchCpu.user + benchCpu.system) / 1e6 - consumeSummary.cpuSecondsTotal;
    const rates = passes.map((pass) => pass.ratePerSecond);
    let contract: ContractCeilingResult | null = null;
    if (options.outcomeSample !== undefined) {
      const sample = options.outcomeSample;
      await jsm.streams.add({ name: CONTRACT_OUTCOME_STREAM, subjects: ['loyalty.outcome.>'], storage: StorageType.File, duplicate_window: 120_000_000_000 });
      const contractRepeats = options.contractRepeats ?? Math.min(repeats, 3);
      const contractPasses: ContractPass[] = [];
      for (let pass = 1; pass <= contractRepeats; pass++) {
        contractPasses.push(await contractPass(jsm, js, nc, sample, passOptions(`bench-contract-${pass}`, `contract ceiling ${pass}/${contractRepeats}`)));
      }
      const contractRates = contractPasses.map((pass) => pass.ratePerSecond);
      contract = {
        ratePerSecond: median(contractRates),
        minRatePerSecond: Math.min(...contractRates),
        maxRatePerSecond: Math.max(...contractRates),
        outcomesPerEvent: sample.outcomesPerEvent,
        meanOutcomeBytes: sample.meanPayloadBytes,
        passes: contractPasses,
        complete: contractPasses.every((pass) => pass.complete),
      };
    }
    const extra = options.after === undefined ? undefined : await options.after({ jsm, js, stream: RAW_STREAM, baseSequence: base, count: stream.stored });
    const raw: RawBaselineResult = {
      messages: spool.count,
      meanPayloadBytes: spool.facts.payloadBytes / spool.count,
      ingest: { publish, stream, storedPerSecond: stream.stored / (storedMs / 1000) },
      consume: {
        ratePerSecond: median(rates),
        minRatePerSecond: Math.min(...rates),
        maxRatePerSecond: Math.max(...rates),
        passes,
        ackEvery,
        pullBatch,
        ackPendingMax,
        complete: passes.every((pass) => pass.complete),
      },
      contract,
      natsServer: { version: server.version, ingestUsage: ingestSummary, consumeUsage: consumeSummary },
      otherProcessesCpuPercentMean: otherSeconds === null ? null : Math.max(0, Math.round((otherSeconds / consumeWallSeconds) * 1000) / 10),
    };
    return { raw, extra };
  } finally {
    await nc.close().catch(() => undefined);
    await server.stop();
  }
}

interface PassOptions {
  name: string;
  target: number;
  base: number;
  ackEvery: number;
  pullBatch: number;
  ackPendingMax: number;
  timeoutMs: number;
  onProgress: (done: number) => void;
}

/** A fresh durable ack-all consumer over the stored messages for one pass. */
async function passConsumer(jsm: JetStreamManager, js: JetStreamClient, options: PassOptions) {
  await jsm.consumers.add(RAW_STREAM, {
    durable_name: options.name,
    ack_policy: AckPolicy.All,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: options.ackPendingMax,
    ack_wait: 60_000_000_000, // ns: no redelivery during a pass
  });
  return js.consumers.get(RAW_STREAM, options.name);
}

async function consumePass(jsm: JetStreamManager, js: JetStreamClient, options: PassOptions): Promise<ConsumePass> {
  const consumer = await passConsumer(jsm, js, options);
  const machineBefore = readMachineTicks();
  let consumed = 0;
  let lastMessage: JsMsg | undefined;
  const started = performance.now();
  const progress = setInterval(() => options.onProgress(consumed), 1_000);
  const messages = await consumer.consume({ max_messages: options.pullBatch });
  const deadline = setTimeout(() => void messages.stop(), options.timeoutMs);
  try {
    for await (const message of messages) {
      consumed += 1;
      lastMessage = message;
      if (consumed >= options.target) break;
      if (consumed % options.ackEvery === 0) message.ack();
    }
    // The clock stops when the server confirms the final ack, not when it is sent.
    if (lastMessage !== undefined) await lastMessage.ackAck();
  } finally {
    clearTimeout(deadline);
    clearInterval(progress);
  }
  const durationMs = performance.now() - started;
  const machineBusy = machineBusySeconds(machineBefore, readMachineTicks());
  await messages.close();
  const info = await jsm.consumers.info(RAW_STREAM, options.name);
  await jsm.consumers.delete(RAW_STREAM, options.name);
  return {
    consumed,
    durationMs,
    ratePerSecond: consumed / (durationMs / 1000),
    ackFloorStreamSeq: info.ack_floor.stream_seq,
    complete: consumed === options.target && info.ack_floor.stream_seq === options.base + options.target,
    machineCpuPercent: machineBusy === null ? null : Math.round((machineBusy / (durationMs / 1000)) * 1000) / 10,
  };
}

async function contractPass(jsm: JetStreamManager, js: JetStreamClient, nc: NatsConnection, sample: OutcomeSample, options: PassOptions): Promise<ContractPass> {
  const consumer = await passConsumer(jsm, js, options);
  const router = new PubAckRouter(nc, undefined);
  const machineBefore = readMachineTicks();
  let consumed = 0;
  let outcomeMessages = 0;
  let failed = false;
  let lastAck: Promise<unknown> = Promise.resolve();
  let group: GroupMessage[] = [];
  const started = performance.now();
  const progress = setInterval(() => options.onProgress(consumed), 1_000);
  const messages = await consumer.consume({ max_messages: options.pullBatch });
  const deadline = setTimeout(() => void messages.stop(), options.timeoutMs);
  try {
    for await (const message of messages) {
      const outcomes = sample.events[consumed % sample.events.length]!;
      consumed += 1;
      const memberId = message.subject.slice(message.subject.lastIndexOf('.') + 1);
      const eventId = `${options.name}-${message.seq}`;
      for (let index = 0; index < outcomes.length; index++) {
        const [kind, payload] = outcomes[index]!;
        group.push([`loyalty.outcome.${kind}.${memberId}`, `${memberId}:${eventId}:${index}`, payload]);
      }
      if (consumed % options.ackEvery === 0 || consumed >= options.target) {
        outcomeMessages += group.length;
        const published = router.publishGroup(group, 30_000);
        group = [];
        const chunkLast = message;
        // As the engine: the chunk's ack goes once its outcomes are stored.
        lastAck = Promise.all([lastAck, published]).then(
          () => chunkLast.ack(),
          () => {
            failed = true;
          },
        );
        if (consumed >= options.target) break;
      }
    }
    await lastAck;
    await nc.flush();
  } finally {
    clearTimeout(deadline);
    clearInterval(progress);
    router.close();
  }
  const durationMs = performance.now() - started;
  const machineBusy = machineBusySeconds(machineBefore, readMachineTicks());
  await messages.close();
  // The final ack's effect is visible once the server processed it.
  let info = await jsm.consumers.info(RAW_STREAM, options.name);
  for (let tries = 0; tries < 50 && info.ack_floor.stream_seq < options.base + options.target; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    info = await jsm.consumers.info(RAW_STREAM, options.name);
  }
  await jsm.consumers.delete(RAW_STREAM, options.name);
  return {
    consumed,
    outcomeMessages,
    durationMs,
    ratePerSecond: consumed / (durationMs / 1000),
    ackFloorStreamSeq: info.ack_floor.stream_seq,
    complete: !failed && consumed === options.target && info.ack_floor.stream_seq === options.base + options.target,
    machineCpuPercent: machineBusy === null ? null : Math.round((machineBusy / (durationMs / 1000)) * 1000) / 10,
  };
}
