/**
 * Issue 17's bench: the engine in cluster mode as 1, 2, 3 ... instances
 * (processes) sharing the 64 partitions of one nats-server. For each instance
 * count K, on a fresh nats-server (with cluster mode's partition() mapping,
 * docs/cluster.md) and fresh data directories:
 *
 * 1. the backlog: N generated events (retail, standard mix, Zipf(1), unique
 *    ids) core-published into LOYALTY_TX, then counted in the stream;
 * 2. K engines started together (`loyalty start`, LOYALTY_CLUSTER=true, one
 *    actor thread each, so that K instances on a small machine compare); they
 *    take leases and drain the backlog;
 * 3. drained when the committed events of all instances (loyalty_events_total,
 *    applied + rejected + invalid) add up to N, polled every 250 ms; then every
 *    partition's consumer `loyalty-engine-p<N>` must show nothing pending or
 *    unacked. More than N is an event applied twice.
 *
 * Reported per K: wall time from all engines ready to drained, aggregate
 * events/s and its ratio to one instance, the split settling time, CPU seconds
 * of the engines (all threads: /proc/<pid>/stat) and of nats-server, CPU µs per
 * event, each instance's share, and the projection for a machine with a core
 * per instance. With --failover on: two engines under a steady publish, one
 * SIGKILLed; the time until the survivor consumes all 64 partitions (its
 * /health every 100 ms) and until every event has an outcome.
 *
 *   npx tsx bench/cluster/instances.ts [--events 200000] [--instances 1,2,3] [--members 100000] [--failover on|off]
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { assignPartitions } from '../../src/cluster/rendezvous.js';
import { loadProgramFile } from '../../src/config/program-file.js';
import { partitionConsumerName } from '../../src/transport/topology.js';
import { numberIn, oneOf, parseCount, parseEngineEnv, UsageError } from '../cli/args.js';
import { DEFAULT_GENERATOR_OPTIONS, EVENT_KINDS } from '../generator/events.js';
import { programModelOf, type ProgramModel } from '../generator/program-model.js';
import { ENCODINGS, writeSpool, type Encoding, type Spool } from '../generator/spool.js';
import { registerCleanup } from '../harness/cleanup.js';
import { REPO_ROOT, startEngine, type RunningEngine } from '../harness/engine.js';
import { sourceFingerprint } from '../harness/source-fingerprint.js';
import { startBenchNatsServer, type BenchNatsServer } from '../harness/nats-server.js';
import { makeTempDir } from '../harness/temp.js';
import { OutcomeCollector } from '../measure/outcomes.js';
import { summarize, type Summary } from '../measure/percentiles.js';
import { machineBusySeconds, ProcessSampler, readCpuSeconds, readMachineTicks } from '../measure/process-sampler.js';
import { publishSpool, verifyStreamCount, type PublishResult, type StreamCountResult } from '../publisher/publisher.js';
import { bar, formatCount, Progress } from '../report/progress.js';
import { describeEnvironment, RESULTS_DIR, runStampOf, writeResultFile } from '../report/result-file.js';
import { BENCH_ENGINE_ENV, ENGINE_STREAM, OUTCOME_SUBJECTS } from '../scenarios/engine-run.js';
import { steadyShape } from '../scenarios/shapes.js';

const PARTITIONS = 64;
const PARTITION_MAPPING = `mappings = {\n  "loyalty.tx.*": "loyalty.txp.{{partition(${PARTITIONS},1)}}.{{wildcard(1)}}"\n}`;
const POLL_MS = 250;
const FAILOVER_POLL_MS = 100;
/** The failover's victim is killed once this share of its events is published. */
const KILL_AT_SHARE = 0.4;

const USAGE = `Usage: npx tsx bench/cluster/instances.ts [options]

The engine in cluster mode as K instances (processes, one actor thread each)
draining the same backlog of N events on one nats-server, for each K given:
wall time, aggregate events/s, ratio to one instance, CPU per event of the
engines and of nats-server, and the projection for a core per instance.

  --events N          backlog events (default 200000; 200k, 1m accepted)
  --instances LIST    instance counts, comma separated (default 1,2,3)
  --members M         members, Zipf(1) activity (default 100000)
  --failover MODE     on | off (default on): 2 instances under a steady publish,
                      one SIGKILLed; time until the survivor consumes all 64
                      partitions and until every event has an outcome
  --order O           backlog-first (default): the backlog is stored, then the
                      engines start together and share it while draining it;
                      engines-first: the engines start and settle their split,
                      then the backlog is published (the window opens at the
                      first publish)
  --failover-events N events of the failover phase (default: 20 s at its rate)
  --failover-rate R   events/s of the failover phase (default: half the measured
                      2-instance rate, else half the 1-instance rate)
  --lease-ttl-ms N    LOYALTY_CLUSTER_LEASE_TTL_MS of the instance-count runs (default
                      10000, the engine's; with 3000 an instance handing partitions
                      over under a backlog lost its other leases here)
  --tick-ms N         LOYALTY_CLUSTER_TICK_MS of those runs (default 2000)
  --failover-lease-ttl-ms N, --failover-tick-ms N
                      the same for the failover phase (default 3000 and 500: the
                      takeover waits for the TTL)
  --program PATH      program file (default config/programs/retail.yaml)
  --encoding E        msgpack | json (default msgpack)
  --seed N            generator seed (default 1)
  --engine-env K=V    another engine setting (LOYALTY_*), repeatable
  --timeout-s N       give up on a drain after N s (default max(300, events / 500))
  --stall-s N         give up when nothing was committed for N s (default 60)
  --results-dir DIR   where the JSON goes (default bench/results)
  -h, --help          this text

Exit code 0: every run drained with the right counts; 1: one did not; 2: bad options.`;

/** backlog-first: the backlog is stored before the engines start (they join while draining it); engines-first: the split settles, then the backlog is published. */
type Order = 'backlog-first' | 'engines-first';
const ORDERS: readonly Order[] = ['backlog-first', 'engines-first'];

interface Leases {
  ttlMs: number;
  tickMs: number;
}

interface Options {
  events: number;
  instances: number[];
  members: number;
  failover: boolean;
  order: Order;
  failoverEvents: number | null;
  failoverRate: number | null;
  /** The instance-count runs' leases; the failover's are its own (a short TTL: the takeover waits for it). */
  leases: Leases;
  failoverLeases: Leases;
  programFile: string;
  encoding: Encoding;
  seed: number;
  engineEnv: Record<string, string>;
  timeoutSeconds: number;
  stallSeconds: number;
  resultsDir: string;
}

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      events: { type: 'string', default: '200000' },
      instances: { type: 'string', default: '1,2,3' },
      members: { type: 'string', default: '100000' },
      failover: { type: 'string', default: 'on' },
      order: { type: 'string', default: 'backlog-first' },
      'failover-events': { type: 'string' },
      'failover-rate': { type: 'string' },
      'lease-ttl-ms': { type: 'string', default: '10000' },
      'tick-ms': { type: 'string', default: '2000' },
      'failover-lease-ttl-ms': { type: 'string', default: '3000' },
      'failover-tick-ms': { type: 'string', default: '500' },
      program: { type: 'string', default: 'config/programs/retail.yaml' },
      encoding: { type: 'string', default: 'msgpack' },
      seed: { type: 'string', default: '1' },
      'engine-env': { type: 'string', multiple: true },
      'timeout-s': { type: 'string' },
      'stall-s': { type: 'string', default: '60' },
      'results-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) return null;
  const events = parseCount(values.events, '--events');
  if (events < 1) throw new UsageError('--events: at least 1');
  const instances = values.instances.split(',').map((text) => Math.round(numberIn(text.trim(), '--instances', 1, 16)));
  return {
    events,
    instances,
    members: parseCount(values.members, '--members'),
    failover: oneOf(values.failover, ['on', 'off'], '--failover') === 'on',
    order: oneOf(values.order, ORDERS, '--order'),
    failoverEvents: values['failover-events'] === undefined ? null : parseCount(values['failover-events'], '--failover-events'),
    failoverRate: values['failover-rate'] === undefined ? null : numberIn(values['failover-rate'], '--failover-rate', 1, 1_000_000),
    leases: leasesOf(values['lease-ttl-ms'], values['tick-ms'], '--lease-ttl-ms', '--tick-ms'),
    failoverLeases: leasesOf(values['failover-lease-ttl-ms'], values['failover-tick-ms'], '--failover-lease-ttl-ms', '--failover-tick-ms'),
    programFile: resolve(REPO_ROOT, values.program),
    encoding: oneOf(values.encoding, ENCODINGS, '--encoding'),
    seed: Math.round(numberIn(values.seed, '--seed', 0, 2 ** 32 - 1)),
    engineEnv: parseEngineEnv(values['engine-env'] ?? []),
    timeoutSeconds: values['timeout-s'] === undefined ? Math.max(300, Math.ceil(events / 500)) : numberIn(values['timeout-s'], '--timeout-s', 1, 86_400),
    stallSeconds: numberIn(values['stall-s'], '--stall-s', 1, 3_600),
    resultsDir: values['results-dir'] === undefined ? RESULTS_DIR : resolve(values['results-dir']),
  };
}

function leasesOf(ttlText: string, tickText: string, ttlName: string, tickName: string): Leases {
  const ttlMs = Math.round(numberIn(ttlText, ttlName, 1_000, 600_000));
  const tickMs = Math.round(numberIn(tickText, tickName, 100, 200_000));
  // The engine's own rule (src/config/settings.ts): a renewal may be late by one tick.
  if (tickMs * 3 > ttlMs) throw new UsageError(`${tickName} must be at most a third of ${ttlName}`);
  return { ttlMs, tickMs };
}

// ---------------------------------------------------------------- one engine instance, watched

interface EventCounts {
  applied: number;
  rejected: number;
  duplicate: number;
  invalid: number;
}

/** loyalty_events_total{type, result} summed by result (src/metrics/metrics.ts). */
function eventCountsOf(metricsText: string): EventCounts {
  const counts: EventCounts = { applied: 0, rejected: 0, duplicate: 0, invalid: 0 };
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('loyalty_events_total{')) continue;
    const result = /result="([a-z]+)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf('}') + 1).trim());
    if (result !== undefined && result in counts && Number.isFinite(value)) counts[result as keyof EventCounts] += value;
  }
  return counts;
}

/** Events whose effect an instance committed: everything but duplicates (invalid ones are dead-lettered and acked). */
function committedOf(counts: EventCounts): number {
  return counts.applied + counts.rejected + counts.invalid;
}

class Instance {
  sampler: ProcessSampler;
  counts: EventCounts = { applied: 0, rejected: 0, duplicate: 0, invalid: 0 };
  consuming = 0;
  restoring = 0;
  /** performance.now() of the poll that first saw its latest committed count. */
  lastCommitAtMs: number;
  exited = false;
  killedByBench = false;

  constructor(
    readonly id: string,
    readonly engine: RunningEngine,
    readonly readyAtMs: number,
  ) {
    this.sampler = new ProcessSampler(engine.pid);
    this.sampler.start(1_000);
    this.lastCommitAtMs = readyAtMs;
    void engine.child.exited.then(() => (this.exited = true));
  }

  get committed(): number {
    return committedOf(this.counts);
  }

  /** CPU and memory from now on (the measured window opens). */
  restartSampling(): void {
    this.sampler.stop();
    this.sampler = new ProcessSampler(this.engine.pid);
    this.sampler.start(1_000);
  }

  /** A crash, on purpose: SIGKILL, no drain, its leases left to expire. */
  kill(): void {
    this.killedByBench = true;
    this.engine.child.process.kill('SIGKILL');
  }

  async pollMetrics(nowMs: number): Promise<void> {
    const text = await fetchText(this.engine.metricsUrl);
    if (text === undefined) return;
    const counts = eventCountsOf(text);
    if (committedOf(counts) > this.committed) this.lastCommitAtMs = nowMs;
    this.counts = counts;
  }

  async pollHealth(): Promise<void> {
    const text = await fetchText(this.engine.healthUrl);
    if (text === undefined) return;
    try {
      const body = JSON.parse(text) as { partitionsConsuming?: unknown; partitionsRestoring?: unknown };
      this.consuming = Number(body.partitionsConsuming ?? 0);
      this.restoring = Number(body.partitionsRestoring ?? 0);
    } catch {
      // A half-written answer of an engine being killed: keep the last one.
    }
  }
}

async function fetchText(url: string): Promise<string | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return await response.text();
  } catch {
    return undefined;
  }
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

/** Partitions each instance should hold once the split settles (the engines' own rendezvous hashing). */
function desiredShares(ids: readonly string[]): Map<string, number> {
  const shares = new Map<string, number>(ids.map((id) => [id, 0]));
  for (const owner of assignPartitions(PARTITIONS, ids).values()) shares.set(owner, (shares.get(owner) ?? 0) + 1);
  return shares;
}

function settled(instances: readonly Instance[], desired: ReadonlyMap<string, number>): boolean {
  return instances.length === desired.size && instances.every((instance) => instance.consuming === desired.get(instance.id) && instance.restoring === 0);
}

// ---------------------------------------------------------------- a fresh server, the stream, the engines

interface Rig {
  server: BenchNatsServer;
  nc: NatsConnection;
  jsm: JetStreamManager;
  instances: Instance[];
}

async function openRig(logPath: string): Promise<Rig> {
  const server = await startBenchNatsServer({ extraConfig: PARTITION_MAPPING, logPath });
  try {
    const nc = await connect({ servers: server.url, name: 'bench-cluster' });
    const jsm = await jetstreamManager(nc, { timeout: 30_000 });
    // The engine's own configuration of the stream (src/transport/topology.ts), so its update at start changes nothing.
    await jsm.streams.add({
      name: ENGINE_STREAM,
      subjects: ['loyalty.txp.*.*'],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(7 * 86_400_000),
      duplicate_window: nanos(120_000),
      num_replicas: 1,
    });
    return { server, nc, jsm, instances: [] };
  } catch (error) {
    await server.stop();
    throw error;
  }
}

interface ShutdownResult {
  id: string;
  code: number | null;
  signal: string | null;
  stopMs: number;
  killed: boolean;
}

/** Stops the engines still running (SIGTERM, 30 s), then the server; every data dir and the store go with them. */
async function closeRig(rig: Rig): Promise<ShutdownResult[]> {
  const results = await Promise.all(
    rig.instances.map(async (instance) => {
      instance.sampler.stop();
      const stopped = await instance.engine.stop(30_000);
      return { id: instance.id, code: stopped.code, signal: instance.killedByBench ? 'SIGKILL (by the bench)' : stopped.signal, stopMs: stopped.stopMs, killed: stopped.killed };
    }),
  );
  await rig.nc.close().catch(() => undefined);
  await rig.server.stop();
  return results;
}

function engineEnv(options: Options, leases: Leases, id: string): Record<string, string> {
  return {
    ...BENCH_ENGINE_ENV,
    LOYALTY_CLUSTER: 'true',
    LOYALTY_INSTANCE_ID: id,
    LOYALTY_CLUSTER_LEASE_TTL_MS: String(leases.ttlMs),
    LOYALTY_CLUSTER_TICK_MS: String(leases.tickMs),
    LOYALTY_CLUSTER_REPLICAS: '1',
    LOYALTY_PARTITIONS: String(PARTITIONS),
    LOYALTY_ACTORS: '1',
    ...options.engineEnv,
  };
}

/** Starts the engines side by side; each is added to the rig (and sampled) the moment it is healthy. */
async function startInstances(rig: Rig, ids: readonly string[], options: Options, leases: Leases, logPrefix: string): Promise<void> {
  const results = await Promise.allSettled(
    ids.map(async (id) => {
      const engine = await startEngine({ natsUrl: rig.server.url, programFile: options.programFile, logPath: `${logPrefix}-${id}.log`, extraEnv: engineEnv(options, leases, id), readyTimeoutMs: 120_000 });
      rig.instances.push(new Instance(id, engine, performance.now()));
    }),
  );
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** Partitions whose consumer still has messages pending or unacked ("p5:120/3"), until none or the timeout. */
async function consumersBehind(jsm: JetStreamManager, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let behind: string[] = [];
  while (true) {
    behind = [];
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const info = await jsm.consumers.info(ENGINE_STREAM, partitionConsumerName({ consumerName: 'loyalty-engine' }, partition)).catch(() => undefined);
      if (info === undefined || info.num_pending > 0 || info.num_ack_pending > 0) behind.push(`p${partition}:${info === undefined ? 'none' : `${info.num_pending}/${info.num_ack_pending}`}`);
    }
    if (behind.length === 0 || Date.now() >= deadline) return behind;
    await sleep(500);
  }
}

// ---------------------------------------------------------------- K instances drain the backlog

interface InstanceFigures {
  id: string;
  partitionsDesired: number;
  partitionsAtEnd: number;
  committed: number;
  sharePercent: number;
  duplicates: number;
  invalid: number;
  cpuSeconds: number;
  /** Null when it committed nothing (duplicates only). */
  cpuMicrosecondsPerEvent: number | null;
  rssAnonBytesMax: number;
  /** Its last commit, seconds after all engines were ready (null: it committed nothing). */
  finishedS: number | null;
}

interface TimelinePoint {
  tS: number;
  committed: number[];
  consuming: number[];
  enginesCpuPercent: number;
  natsCpuPercent: number;
}

type DrainEnd = 'drained' | 'stalled' | 'timeout' | 'engine-exited';

interface InstancesRun {
  instances: number;
  order: Order;
  ended: DrainEnd;
  backlog: { published: number; publishRatePerSecond: number; stored: number; streamMessages: number; natsCpuSeconds: number; natsCpuMicrosecondsPerEvent: number };
  startup: { firstReadyS: number; allReadyS: number; settledAfterReadyS: number | null; committedAtReady: number; committedAtSettled: number | null };
  /** Rates only for a run that drained; CPU per event is over the events committed. */
  drain: { wallSeconds: number; events: number; eventsPerSecond: number | null; ratioToOneInstance: number | null; afterSettledEventsPerSecond: number | null };
  cpu: {
    enginesSeconds: number;
    natsSeconds: number;
    benchSeconds: number;
    otherProcessesSeconds: number | null;
    enginesMicrosecondsPerEvent: number;
    natsMicrosecondsPerEvent: number;
    totalMicrosecondsPerEvent: number;
  };
  projection: { perCoreEventsPerSecond: number; instancesEventsPerSecond: number; natsBoundEventsPerSecond: number; projectedEventsPerSecond: number };
  counts: EventCounts & { committed: number };
  perInstance: InstanceFigures[];
  consumersBehind: string[];
  shutdown: ShutdownResult[];
  timeline: TimelinePoint[];
  failures: string[];
}

interface Context {
  options: Options;
  progress: Progress;
  runStamp: string;
}

async function runInstances(count: number, spool: Spool, context: Context): Promise<InstancesRun> {
  const { options, progress } = context;
  const ids = Array.from({ length: count }, (_, index) => `bench-i${index}`);
  const desired = desiredShares(ids);
  const logPrefix = join(options.resultsDir, `${context.runStamp}-cluster-k${count}`);
  progress.log(`K=${count}: fresh nats-server, backlog of ${formatCount(spool.count)} events, then ${count} engine(s) (partitions per instance once settled: ${[...desired.values()].join(', ')})`);
  const rig = await openRig(`${logPrefix}-nats.log`);
  const failures: string[] = [];
  let shutdown: ShutdownResult[] = [];
  try {
    let backlog: Promise<Backlog> | undefined;
    let natsIngestSeconds = 0;
    if (options.order === 'backlog-first') {
      const natsBeforePublish = readCpuSeconds(rig.server.pid) ?? 0;
      await (backlog = publishBacklog(rig, spool));
      natsIngestSeconds = (readCpuSeconds(rig.server.pid) ?? 0) - natsBeforePublish;
      progress.log(`K=${count}: ${formatCount(spool.count)} events stored; starting ${count} engine(s)`);
    }
    const spawnedAt = performance.now();
    let natsUsage = new ProcessSampler(rig.server.pid);
    natsUsage.start(1_000);
    const starting = (async (): Promise<void> => {
      await startInstances(rig, ids, options, options.leases, logPrefix);
      if (options.order === 'backlog-first') return;
      await waitSettled(rig.instances, desired, 120_000);
      // The window opens with the first publish: what the engines and nats-server used before is not the drain's.
      natsUsage.stop();
      natsUsage = new ProcessSampler(rig.server.pid);
      natsUsage.start(1_000);
      for (const instance of rig.instances) instance.restartSampling();
      backlog = publishBacklog(rig, spool);
      backlog.catch(() => undefined);
    })();
    const watch = await watchDrain(rig, starting, () => natsUsage, desired, spool.count, spawnedAt, context, `K=${count}`);
    // The CPU window closes at drained: the engines idle from then on.
    const engineUsage = rig.instances.map((instance) => instance.sampler.stop());
    const natsSummary = natsUsage.stop();
    const others = otherProcessesSeconds(rig, watch.marks);
    const { publish, stored, streamMessages } = await backlog!;
    const behind = watch.ended === 'drained' ? await consumersBehind(rig.jsm, 30_000) : [];
    const counts = totals(rig.instances);
    shutdown = await closeRig(rig);

    const enginesSeconds = sum(engineUsage.map((usage) => usage.cpuSecondsTotal));
    // Over what was committed: all of the backlog when drained, less when a run stopped short (then no rate is given).
    const events = counts.committed - watch.committedAtReady;
    const wallSeconds = (watch.endedAtMs - watch.windowStartMs) / 1000;
    const drained = watch.ended === 'drained';
    const perEvent = (seconds: number): number => (seconds * 1e6) / Math.max(1, counts.committed);
    const natsIngestPerEvent = perEvent(natsIngestSeconds);
    const enginesPerEvent = perEvent(enginesSeconds);
    const natsPerEvent = perEvent(natsSummary.cpuSecondsTotal);
    const perCore = 1e6 / enginesPerEvent;
    const natsBound = 1e6 / (natsPerEvent + natsIngestPerEvent);
    const afterSettled = !drained || watch.settledAtMs === null || watch.committedAtSettled === null ? null : (spool.count - watch.committedAtSettled) / ((watch.endedAtMs - watch.settledAtMs) / 1000);
    const run: InstancesRun = {
      instances: count,
      order: options.order,
      ended: watch.ended,
      backlog: {
        published: publish.published,
        publishRatePerSecond: Math.round(publish.ratePerSecond),
        stored: stored.stored,
        streamMessages,
        natsCpuSeconds: round(natsIngestSeconds, 2),
        natsCpuMicrosecondsPerEvent: round(natsIngestPerEvent, 1),
      },
      startup: {
        firstReadyS: round((watch.firstReadyAtMs - spawnedAt) / 1000, 2),
        allReadyS: round((watch.windowStartMs - spawnedAt) / 1000, 2),
        settledAfterReadyS: watch.settledAtMs === null ? null : round((watch.settledAtMs - watch.windowStartMs) / 1000, 2),
        committedAtReady: watch.committedAtReady,
        committedAtSettled: watch.committedAtSettled,
      },
      drain: {
        wallSeconds: round(wallSeconds, 2),
        events,
        eventsPerSecond: drained ? Math.round(events / wallSeconds) : null,
        ratioToOneInstance: null,
        afterSettledEventsPerSecond: afterSettled === null ? null : Math.round(afterSettled),
      },
      cpu: {
        enginesSeconds: round(enginesSeconds, 2),
        natsSeconds: natsSummary.cpuSecondsTotal,
        benchSeconds: round(others.benchSeconds, 2),
        otherProcessesSeconds: others.otherSeconds === null ? null : round(others.otherSeconds, 2),
        enginesMicrosecondsPerEvent: round(enginesPerEvent, 1),
        natsMicrosecondsPerEvent: round(natsPerEvent, 1),
        totalMicrosecondsPerEvent: round(enginesPerEvent + natsPerEvent + natsIngestPerEvent, 1),
      },
      projection: {
        perCoreEventsPerSecond: Math.round(perCore),
        instancesEventsPerSecond: Math.round(count * perCore),
        natsBoundEventsPerSecond: Math.round(natsBound),
        projectedEventsPerSecond: Math.round(Math.min(count * perCore, natsBound)),
      },
      counts,
      perInstance: rig.instances
        .map((instance, index) => instanceFigures(instance, engineUsage[index]!, desired, counts.committed, watch.windowStartMs))
        .sort((a, b) => a.id.localeCompare(b.id)),
      consumersBehind: behind,
      shutdown,
      timeline: watch.timeline,
      failures,
    };
    judgeInstancesRun(run, spool.count, failures);
    return run;
  } finally {
    if (shutdown.length === 0) await closeRig(rig).catch(() => undefined);
  }
}

/** CPU seconds of the engines and nats-server together, now. */
function ownCpuSeconds(rig: Rig): number {
  return sum([rig.server.pid, ...rig.instances.map((instance) => instance.engine.pid)].map((pid) => readCpuSeconds(pid) ?? 0));
}

/** Since the window opened: the bench's own CPU, and what the rest of the machine used (busy − engines − nats-server − bench). */
function otherProcessesSeconds(rig: Rig, marks: WindowMarks): { benchSeconds: number; otherSeconds: number | null } {
  const bench = process.cpuUsage(marks.bench);
  const benchSeconds = (bench.user + bench.system) / 1e6;
  const busy = machineBusySeconds(marks.machine, readMachineTicks());
  return { benchSeconds, otherSeconds: busy === null ? null : busy - (ownCpuSeconds(rig) - marks.cpuSeconds) - benchSeconds };
}

interface Backlog {
  publish: PublishResult;
  stored: StreamCountResult;
  streamMessages: number;
}

/** Core-publishes the spool as fast as the connection takes it, then checks the stream stored every event. */
async function publishBacklog(rig: Rig, spool: Spool): Promise<Backlog> {
  const publish = await publishSpool({ nc: rig.nc, spool, shape: null });
  const stored = await verifyStreamCount(rig.jsm, ENGINE_STREAM, 0, spool.count);
  const streamMessages = (await rig.jsm.streams.info(ENGINE_STREAM)).state.messages;
  if (streamMessages !== spool.count) throw new Error(`the stream holds ${streamMessages} messages, ${spool.count} were published (${stored.lost} lost)`);
  return { publish, stored, streamMessages };
}

function totals(instances: readonly Instance[]): EventCounts & { committed: number } {
  const pick = (key: keyof EventCounts): number => sum(instances.map((instance) => instance.counts[key]));
  const counts = { applied: pick('applied'), rejected: pick('rejected'), duplicate: pick('duplicate'), invalid: pick('invalid') };
  return { ...counts, committed: committedOf(counts) };
}

function instanceFigures(instance: Instance, usage: { cpuSecondsTotal: number; rssAnonBytesMax: number }, desired: ReadonlyMap<string, number>, committedTotal: number, windowStartMs: number): InstanceFigures {
  return {
    id: instance.id,
    partitionsDesired: desired.get(instance.id) ?? 0,
    partitionsAtEnd: instance.consuming,
    committed: instance.committed,
    sharePercent: round((100 * instance.committed) / Math.max(1, committedTotal), 1),
    duplicates: instance.counts.duplicate,
    invalid: instance.counts.invalid,
    cpuSeconds: usage.cpuSecondsTotal,
    cpuMicrosecondsPerEvent: instance.committed === 0 ? null : round((usage.cpuSecondsTotal * 1e6) / instance.committed, 1),
    rssAnonBytesMax: usage.rssAnonBytesMax,
    finishedS: instance.committed === 0 ? null : round((instance.lastCommitAtMs - windowStartMs) / 1000, 2),
  };
}

function judgeInstancesRun(run: InstancesRun, expected: number, failures: string[]): void {
  if (run.ended !== 'drained') failures.push(`K=${run.instances}: did not drain (${run.ended}): ${run.counts.committed} of ${expected} committed`);
  else if (run.counts.committed !== expected) failures.push(`K=${run.instances}: ${run.counts.committed} events committed across the instances, ${expected} sent`);
  if (run.counts.invalid > 0) failures.push(`K=${run.instances}: ${run.counts.invalid} events were invalid (dead-lettered); every generated event is valid`);
  if (run.consumersBehind.length > 0) failures.push(`K=${run.instances}: consumers still behind after the drain: ${run.consumersBehind.slice(0, 10).join(' ')}`);
  for (const stop of run.shutdown) if (stop.code !== 0) failures.push(`K=${run.instances}: ${stop.id} exited with code ${stop.code} (signal ${stop.signal}) on SIGTERM`);
}

/** CPU counters read when the measured window opens (all engines ready), for what the rest of the machine used in it. */
interface WindowMarks {
  machine: ReturnType<typeof readMachineTicks>;
  bench: NodeJS.CpuUsage;
  cpuSeconds: number;
}

interface DrainWatch {
  ended: DrainEnd;
  marks: WindowMarks;
  firstReadyAtMs: number;
  /** The first poll after every engine was ready: the measured window starts here. */
  windowStartMs: number;
  committedAtReady: number;
  settledAtMs: number | null;
  committedAtSettled: number | null;
  endedAtMs: number;
  timeline: TimelinePoint[];
}

/** Polls every engine's /metrics and /health until the committed events reach `expected` (or a stall, timeout, exit). */
async function watchDrain(rig: Rig, starting: Promise<void>, natsUsage: () => ProcessSampler, desired: ReadonlyMap<string, number>, expected: number, spawnedAt: number, context: Context, label: string): Promise<DrainWatch> {
  const { options, progress } = context;
  let startError: unknown;
  let allStarted = false;
  starting.then(
    () => (allStarted = true),
    (error: unknown) => (startError = error ?? new Error('an engine did not start')),
  );
  const timeline: TimelinePoint[] = [];
  let firstReadyAtMs = Number.NaN;
  let windowStartMs: number | null = null;
  let committedAtReady = 0;
  let settledAtMs: number | null = null;
  let committedAtSettled: number | null = null;
  let lastProgressAtMs = spawnedAt;
  let lastCommitted = 0;
  let lastTimelineAtMs = spawnedAt;
  let lastTimelineCommitted = 0;
  let marks: WindowMarks | undefined;
  while (true) {
    await sleep(POLL_MS);
    if (startError !== undefined) throw startError;
    const pollAtMs = performance.now();
    const instances = [...rig.instances];
    await Promise.all(instances.flatMap((instance) => [instance.pollMetrics(pollAtMs), instance.pollHealth()]));
    const committed = sum(instances.map((instance) => instance.committed));
    if (instances.length > 0 && Number.isNaN(firstReadyAtMs)) firstReadyAtMs = Math.min(...instances.map((instance) => instance.readyAtMs));
    if (allStarted && windowStartMs === null) {
      marks = { machine: readMachineTicks(), bench: process.cpuUsage(), cpuSeconds: ownCpuSeconds(rig) };
      windowStartMs = pollAtMs;
      committedAtReady = committed;
      lastProgressAtMs = pollAtMs;
    }
    if (windowStartMs !== null && settledAtMs === null && settled(instances, desired)) {
      settledAtMs = pollAtMs;
      committedAtSettled = committed;
    }
    if (committed > lastCommitted) {
      lastCommitted = committed;
      lastProgressAtMs = pollAtMs;
    }
    if (pollAtMs - lastTimelineAtMs >= 1_000) {
      const seconds = (pollAtMs - lastTimelineAtMs) / 1000;
      timeline.push({
        tS: round((pollAtMs - spawnedAt) / 1000, 1),
        committed: instances.map((instance) => instance.committed),
        consuming: instances.map((instance) => instance.consuming),
        enginesCpuPercent: round(sum(instances.map((instance) => instance.sampler.latest()?.cpuPercent ?? 0)), 0),
        natsCpuPercent: natsUsage().latest()?.cpuPercent ?? 0,
      });
      progress.update(
        `${label} ${bar(committed / expected)} committed ${formatCount(committed)}/${formatCount(expected)}  ${formatCount((committed - lastTimelineCommitted) / seconds)}/s` +
          `  consuming [${instances.map((instance) => instance.consuming).join(', ')}]  engines CPU ${timeline[timeline.length - 1]!.enginesCpuPercent}%`,
      );
      lastTimelineAtMs = pollAtMs;
      lastTimelineCommitted = committed;
    }
    const end = (ended: DrainEnd): DrainWatch => {
      progress.clear();
      marks ??= { machine: readMachineTicks(), bench: process.cpuUsage(), cpuSeconds: ownCpuSeconds(rig) };
      return { ended, marks, firstReadyAtMs, windowStartMs: windowStartMs ?? pollAtMs, committedAtReady, settledAtMs, committedAtSettled, endedAtMs: pollAtMs, timeline };
    };
    if (windowStartMs === null) continue;
    if (committed >= expected) return end('drained');
    if (instances.some((instance) => instance.exited)) return end('engine-exited');
    if (pollAtMs - lastProgressAtMs > options.stallSeconds * 1000) return end('stalled');
    if (pollAtMs - windowStartMs > options.timeoutSeconds * 1000) return end('timeout');
  }
}

// ---------------------------------------------------------------- failover: two engines, one SIGKILLed under load

interface FailoverRun {
  events: number;
  ratePerSecond: number;
  published: number;
  victim: { id: string; partitionsAtKill: number; committedAtLastPoll: number };
  survivor: { id: string; partitionsBefore: number; counts: EventCounts };
  killedAfterPublished: number;
  /** SIGKILL → the survivor's /health says all 64 partitions consuming. */
  takeoverMs: number | null;
  /** SIGKILL → every event has an outcome. */
  drainedAfterKillMs: number | null;
  /** The last publish → every event has an outcome. */
  drainedAfterPublishEndMs: number | null;
  /** Changes of the survivor's partitionsConsuming / partitionsRestoring, ms after the kill. */
  survivorTimeline: { tMs: number; consuming: number; restoring: number }[];
  outcomes: { eventsDone: number; missing: number; duplicateOutcomes: number; messages: number };
  latencyMs: Summary;
  consumersBehind: string[];
  shutdown: ShutdownResult[];
  ended: DrainEnd;
  failures: string[];
}

async function runFailover(spool: Spool, ratePerSecond: number, context: Context): Promise<FailoverRun> {
  const { options, progress } = context;
  const ids = ['bench-i0', 'bench-i1'];
  const desired = desiredShares(ids);
  const logPrefix = join(options.resultsDir, `${context.runStamp}-cluster-failover`);
  progress.log(`failover: fresh nats-server, 2 engines, then ${formatCount(spool.count)} events at ${formatCount(ratePerSecond)}/s; SIGKILL of bench-i1 after ${Math.round(KILL_AT_SHARE * 100)} % of them`);
  const rig = await openRig(`${logPrefix}-nats.log`);
  const failures: string[] = [];
  let shutdown: ShutdownResult[] = [];
  let outcomeConnection: NatsConnection | undefined;
  try {
    await startInstances(rig, ids, options, options.failoverLeases, logPrefix);
    await waitSettled(rig.instances, desired, 90_000);
    const [survivor, victim] = ['bench-i0', 'bench-i1'].map((id) => rig.instances.find((instance) => instance.id === id)!) as [Instance, Instance];
    const partitionsBefore = survivor.consuming;
    const collector = new OutcomeCollector(spool.generator.runId, spool.count, spool.generator.program.pointsCurrency);
    outcomeConnection = await connect({ servers: rig.server.url, name: 'bench-outcomes' });
    outcomeConnection.subscribe(OUTCOME_SUBJECTS, {
      callback: (error, message) => {
        if (error === null) collector.handle(message.subject, message.data);
      },
    });
    await outcomeConnection.flush();

    const counter = { published: 0 };
    let publishEndMs: number | null = null;
    const publishing = publishSpool({ nc: rig.nc, spool, shape: steadyShape(ratePerSecond, spool.count / ratePerSecond), publishTimesMs: collector.publishTimesMs, counter }).then((result) => {
      publishEndMs = performance.now();
      return result;
    });
    const killAt = Math.floor(spool.count * KILL_AT_SHARE);
    let killedAtMs: number | null = null;
    let takeoverAtMs: number | null = null;
    let victimPartitions = 0;
    const survivorTimeline: FailoverRun['survivorTimeline'] = [];
    let ended: DrainEnd = 'drained';
    let lastDone = 0;
    let lastProgressAtMs = performance.now();
    const deadline = performance.now() + options.timeoutSeconds * 1000;
    while (true) {
      await sleep(FAILOVER_POLL_MS);
      const now = performance.now();
      if (killedAtMs === null && counter.published >= killAt) {
        await Promise.all([victim.pollHealth(), victim.pollMetrics(now)]);
        victimPartitions = victim.consuming;
        victim.kill();
        killedAtMs = performance.now();
      }
      await survivor.pollHealth();
      if (killedAtMs !== null) {
        const answeredAtMs = performance.now();
        const last = survivorTimeline[survivorTimeline.length - 1];
        if (last === undefined || last.consuming !== survivor.consuming || last.restoring !== survivor.restoring) {
          survivorTimeline.push({ tMs: Math.round(answeredAtMs - killedAtMs), consuming: survivor.consuming, restoring: survivor.restoring });
        }
        if (takeoverAtMs === null && survivor.consuming === PARTITIONS) takeoverAtMs = answeredAtMs;
      }
      const done = collector.counts.eventsDone;
      if (done > lastDone) {
        lastDone = done;
        lastProgressAtMs = now;
      }
      progress.update(
        `failover ${bar(done / spool.count)} sent ${formatCount(counter.published)}  answered ${formatCount(done)}/${formatCount(spool.count)}` +
          `  survivor consuming ${survivor.consuming}${killedAtMs === null ? '' : `  ${((now - killedAtMs) / 1000).toFixed(1)} s after the kill`}`,
      );
      if (done >= spool.count && takeoverAtMs !== null) break;
      if (survivor.exited) ended = 'engine-exited';
      else if (publishEndMs !== null && now - lastProgressAtMs > options.stallSeconds * 1000) ended = 'stalled';
      else if (now > deadline) ended = 'timeout';
      if (ended !== 'drained') break;
    }
    progress.clear();
    // The first outcome of the last event to get one (the collector's clock is performance.now() too).
    const drainedAtMs = ended === 'drained' ? collector.lastDoneAtMs : null;
    const publish = await publishing;
    await survivor.pollMetrics(performance.now());
    const behind = ended === 'drained' ? await consumersBehind(rig.jsm, 30_000) : [];
    shutdown = await closeRig(rig);
    const run: FailoverRun = {
      events: spool.count,
      ratePerSecond,
      published: publish.published,
      victim: { id: victim.id, partitionsAtKill: victimPartitions, committedAtLastPoll: victim.committed },
      survivor: { id: survivor.id, partitionsBefore, counts: survivor.counts },
      killedAfterPublished: killAt,
      takeoverMs: killedAtMs === null || takeoverAtMs === null ? null : Math.round(takeoverAtMs - killedAtMs),
      drainedAfterKillMs: killedAtMs === null || drainedAtMs === null ? null : Math.round(drainedAtMs - killedAtMs),
      drainedAfterPublishEndMs: publishEndMs === null || drainedAtMs === null ? null : Math.round(drainedAtMs - publishEndMs),
      survivorTimeline,
      outcomes: { eventsDone: collector.counts.eventsDone, missing: spool.count - collector.counts.eventsDone, duplicateOutcomes: collector.counts.duplicateOutcomes, messages: collector.counts.messages },
      latencyMs: roundSummary(summarize(collector.latenciesMs())),
      consumersBehind: behind,
      shutdown,
      ended,
      failures,
    };
    judgeFailover(run, failures);
    return run;
  } finally {
    await outcomeConnection?.close().catch(() => undefined);
    if (shutdown.length === 0) await closeRig(rig).catch(() => undefined);
  }
}

async function waitSettled(instances: readonly Instance[], desired: ReadonlyMap<string, number>, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    await Promise.all(instances.map((instance) => instance.pollHealth()));
    if (settled(instances, desired)) return;
    await sleep(FAILOVER_POLL_MS);
  }
  throw new Error(`the partitions were not split as expected within ${timeoutMs} ms: ${instances.map((instance) => `${instance.id} ${instance.consuming}`).join(', ')}`);
}

function judgeFailover(run: FailoverRun, failures: string[]): void {
  if (run.takeoverMs === null) failures.push('failover: the survivor never consumed all 64 partitions');
  if (run.ended !== 'drained') failures.push(`failover: did not drain (${run.ended}): ${run.outcomes.missing} of ${run.events} events without an outcome`);
  if (run.published !== run.events) failures.push(`failover: ${run.published} of ${run.events} events published`);
  if (run.survivor.counts.invalid > 0) failures.push(`failover: ${run.survivor.counts.invalid} events invalid on the survivor`);
  if (run.consumersBehind.length > 0) failures.push(`failover: consumers still behind: ${run.consumersBehind.slice(0, 10).join(' ')}`);
  const survivorStop = run.shutdown.find((stop) => stop.id === run.survivor.id);
  if (survivorStop !== undefined && survivorStop.code !== 0) failures.push(`failover: the survivor exited with code ${survivorStop.code} on SIGTERM`);
}

// ---------------------------------------------------------------- report

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function roundSummary(summary: Summary): Summary {
  const percentiles = Object.fromEntries(Object.entries(summary.percentiles).map(([key, value]) => [key, round(value, 1)]));
  return { count: summary.count, min: round(summary.min, 1), mean: round(summary.mean, 1), max: round(summary.max, 1), percentiles };
}

function renderRows(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ')).join('\n');
}

const fixed = (value: number | null, digits: number): string => (value === null || !Number.isFinite(value) ? '-' : value.toFixed(digits));

function renderReport(runs: readonly InstancesRun[], failover: FailoverRun | null, header: string): string {
  const lines = [header, ''];
  if (runs.length > 0) {
    lines.push(
      renderRows([
        ['instances', 'ended', 'ready→drained s', 'events/s', '× 1 inst.', 'settled after s', 'after settled /s', 'engines CPU s', 'nats CPU s', 'engines µs/ev', '+ nats µs/ev', 'shares %', 'duplicates'],
        ...runs.map((run) => [
          String(run.instances),
          run.ended,
          fixed(run.drain.wallSeconds, 2),
          run.drain.eventsPerSecond === null ? '-' : formatCount(run.drain.eventsPerSecond),
          fixed(run.drain.ratioToOneInstance, 2),
          fixed(run.startup.settledAfterReadyS, 2),
          run.drain.afterSettledEventsPerSecond === null ? '-' : formatCount(run.drain.afterSettledEventsPerSecond),
          fixed(run.cpu.enginesSeconds, 1),
          fixed(run.cpu.natsSeconds, 1),
          fixed(run.cpu.enginesMicrosecondsPerEvent, 0),
          fixed(run.cpu.totalMicrosecondsPerEvent, 0),
          run.perInstance.map((instance) => instance.sharePercent.toFixed(0)).join('/'),
          formatCount(run.counts.duplicate),
        ]),
      ]),
      '',
      'per instance:',
    );
    for (const run of runs) {
      for (const instance of run.perInstance) {
        lines.push(
          `  K=${run.instances} ${instance.id}: ${instance.partitionsAtEnd} partitions (settled share ${instance.partitionsDesired}), ${formatCount(instance.committed)} events (${instance.sharePercent} %), ` +
            `${formatCount(instance.duplicates)} duplicates, ${instance.cpuSeconds.toFixed(1)} CPU s = ${fixed(instance.cpuMicrosecondsPerEvent, 0)} µs/event, last commit ${fixed(instance.finishedS, 1)} s after ready, ` +
            `private memory max ${Math.round(instance.rssAnonBytesMax / 2 ** 20)} MiB`,
        );
      }
    }
    lines.push(
      '',
      'startup: first engine ready / all ready after spawn, events committed before all were ready; backlog ingest by nats-server',
      ...runs.map(
        (run) =>
          `  K=${run.instances}: ${run.startup.firstReadyS.toFixed(1)} / ${run.startup.allReadyS.toFixed(1)} s, ${formatCount(run.startup.committedAtReady)} events; ` +
            `published at ${formatCount(run.backlog.publishRatePerSecond)}/s, nats ingest ${run.order === 'backlog-first' ? `${run.backlog.natsCpuMicrosecondsPerEvent.toFixed(1)} µs/event` : 'within the drain'}; other processes ${fixed(run.cpu.otherProcessesSeconds, 1)} CPU s during the drain`,
      ),
      '',
      'projection, a core per instance: K × 1e6 / engines µs per event, bounded by one core of nats-server at 1e6 / nats µs per event (ingest + drain):',
      ...runs.map(
        (run) =>
          `  K=${run.instances}: ${run.instances} × 1e6 / ${run.cpu.enginesMicrosecondsPerEvent.toFixed(0)} = ${formatCount(run.projection.instancesEventsPerSecond)}; ` +
            `nats 1e6 / ${(run.cpu.natsMicrosecondsPerEvent + run.backlog.natsCpuMicrosecondsPerEvent).toFixed(1)} = ${formatCount(run.projection.natsBoundEventsPerSecond)} → ${formatCount(run.projection.projectedEventsPerSecond)} events/s`,
      ),
    );
  }
  if (failover !== null) {
    lines.push(
      '',
      `failover: 2 instances, ${formatCount(failover.events)} events at ${formatCount(failover.ratePerSecond)}/s; SIGKILL of ${failover.victim.id} (${failover.victim.partitionsAtKill} partitions) after ${formatCount(failover.killedAfterPublished)} published`,
      `  all ${PARTITIONS} partitions consuming on ${failover.survivor.id} (${failover.survivor.partitionsBefore} before) ${fixed(failover.takeoverMs === null ? null : failover.takeoverMs / 1000, 2)} s after the kill; ` +
        `every event answered ${fixed(failover.drainedAfterKillMs === null ? null : failover.drainedAfterKillMs / 1000, 2)} s after the kill (${fixed(failover.drainedAfterPublishEndMs === null ? null : failover.drainedAfterPublishEndMs / 1000, 2)} s after the last publish)`,
      `  outcomes: ${formatCount(failover.outcomes.eventsDone)}/${formatCount(failover.events)} events, ${formatCount(failover.outcomes.duplicateOutcomes)} repeated; survivor duplicates ${formatCount(failover.survivor.counts.duplicate)}; ` +
        `publish → outcome p50 ${fixed(failover.latencyMs.percentiles.p50 ?? null, 0)} ms, p99 ${fixed(failover.latencyMs.percentiles.p99 ?? null, 0)} ms, max ${fixed(failover.latencyMs.max, 0)} ms`,
    );
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------- main

function generate(options: Options, model: ProgramModel, dir: string, runId: string, count: number, seed: number, name: string): Spool {
  return writeSpool({
    generator: { ...DEFAULT_GENERATOR_OPTIONS, seed, runId, members: options.members, count, program: model },
    encoding: options.encoding,
    dir,
    name,
  });
}

async function main(): Promise<number> {
  let options: Options | null;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (options === null) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const startedAt = new Date();
  const runStamp = runStampOf(startedAt);
  const runId = startedAt.getTime().toString(36);
  const progress = new Progress();
  mkdirSync(options.resultsDir, { recursive: true });
  const environment = await describeEnvironment();
  // Each engine loads src/ when it starts: in a shared working tree it may change between the runs, and then they ran different code.
  const sourceAtStart = sourceFingerprint(join(REPO_ROOT, 'src'));
  const model = programModelOf(loadProgramFile(options.programFile));
  const spoolDir = makeTempDir('cluster-spool');
  const unregister = registerCleanup(
    async () => spoolDir.remove(),
    () => spoolDir.remove(),
  );
  const context: Context = { options, progress, runStamp };
  const runs: InstancesRun[] = [];
  let failover: FailoverRun | null = null;
  const failures: string[] = [];
  try {
    const spool = generate(options, model, spoolDir.path, runId, options.events, options.seed, 'backlog.spool');
    const { facts } = spool;
    progress.log(
      `generated ${formatCount(facts.count)} events (${options.encoding}, ${formatCount(facts.distinctMembers)} distinct members, ` +
        `${EVENT_KINDS.map((kind) => `${kind} ${formatCount(facts.stats.byKind[kind])}`).join(', ')}) in ${(facts.generateMs / 1000).toFixed(1)} s`,
    );
    for (const count of options.instances) {
      try {
        runs.push(await runInstances(count, spool, context));
      } catch (error) {
        failures.push(`K=${count}: ${(error as Error).message}`);
      }
    }
    const one = runs.find((run) => run.instances === 1 && run.ended === 'drained');
    for (const run of runs) run.drain.ratioToOneInstance = one === undefined || run.drain.eventsPerSecond === null ? null : round(run.drain.eventsPerSecond / one.drain.eventsPerSecond!, 2);
    if (options.failover) {
      const base = runs.find((run) => run.instances === 2 && run.ended === 'drained') ?? one;
      const rate = options.failoverRate ?? (base === undefined || base.drain.eventsPerSecond === null ? 1_000 : Math.max(100, Math.round(base.drain.eventsPerSecond / 2)));
      const events = options.failoverEvents ?? Math.min(options.events, Math.max(5_000, Math.round(rate * 20)));
      const failoverSpool = generate(options, model, spoolDir.path, `${runId}f`, events, (options.seed + 2) >>> 0, 'failover.spool');
      try {
        failover = await runFailover(failoverSpool, rate, context);
      } catch (error) {
        failures.push(`failover: ${(error as Error).message}`);
      }
    }
  } finally {
    unregister();
    spoolDir.remove();
  }
  failures.push(...runs.flatMap((run) => run.failures), ...(failover?.failures ?? []));
  const sourceAtEnd = sourceFingerprint(join(REPO_ROOT, 'src'));
  const notes = sourceAtEnd === sourceAtStart ? [] : ['src/ changed during the run (a shared working tree): the runs may have started different engine code'];
  const header =
    `cluster instances: ${formatCount(options.events)} events (${options.programFile.slice(REPO_ROOT.length + 1)}, ${options.encoding}, ${formatCount(options.members)} members, Zipf 1), ` +
    `${options.order}, lease TTL ${options.leases.ttlMs} ms, tick ${options.leases.tickMs} ms (failover: ${options.failoverLeases.ttlMs} / ${options.failoverLeases.tickMs} ms), 1 actor per instance, ${PARTITIONS} partitions\n` +
    `machine: ${environment.cpuCount} × ${environment.cpuModel}, load average at start ${environment.loadAverageAtStart.join(' ')}, ${environment.natsServer}, node ${environment.node}`;
  const result = {
    schemaVersion: 1,
    bench: 'cluster-instances',
    startedAt: startedAt.toISOString(),
    parameters: { ...options, partitions: PARTITIONS, actorsPerInstance: 1, pollMs: POLL_MS },
    environment,
    source: { atStart: sourceAtStart, atEnd: sourceAtEnd },
    notes,
    runs,
    failover,
    passed: failures.length === 0,
    failures,
  };
  const file = writeResultFile(result, `${runStamp}-cluster-instances`, options.resultsDir);
  process.stdout.write(`${renderReport(runs, failover, header)}\n${notes.map((note) => `\nnote: ${note}`).join('')}\nresult: ${file}\n${failures.length === 0 ? 'PASSED' : `FAILED:\n${failures.map((failure) => `  - ${failure}`).join('\n')}`}\n`);
  return failures.length === 0 ? 0 : 1;
}

process.exitCode = await main();
