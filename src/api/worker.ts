import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import type { NatsConnection } from '@nats-io/nats-core';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { checkProgramText } from '../runtime/program-manager.js';
import { KpiResponder } from '../cluster/kpi-aggregation.js';
import { PartitionWalletServer, WalletRouter } from '../cluster/wallet-routing.js';
import { instanceIdOf, type Settings } from '../config/settings.js';
import { createLogger } from '../log.js';
import { LmdbStore } from '../store/lmdb.js';
import { connectNats } from '../transport/connect.js';
import { startLoyaltyServices, type LoyaltyServices } from '../transport/services.js';
import { JetStreamSubmitter } from '../transport/submit.js';
import { TokenTable } from './auth.js';
import type { ApiContext, ClusterReports, Health, ProgramCheck, ProgramManager } from './context.js';
import { ApiError } from './errors.js';
import { listeningPort, startHttpServer } from './http.js';
import { ledgerPageJson, PartitionMemberRouting, type RoutedOutcome, type RoutedRead } from './member-routing.js';
import { httpListenError } from './port-check.js';
import { openClusterReports, storeReportReader } from './report-reader.js';
import type { MetricsSource } from './routes/index.js';
import { WalletCache } from './wallet-cache.js';
import {
  CALL_TIMEOUT_MS,
  deserializeError,
  serializeError,
  type ApiWorkerData,
  type CallMethod,
  type CallResult,
  type MainThreadCalls,
  type ProgramState,
  type ToMain,
  type ToWorker,
} from './thread-protocol.js';

/**
 * The HTTP API thread (started by src/api/thread.ts): fastify on the engine's
 * one public HTTP port, and the NATS services, over
 *  - its own LmdbStore (reads only: LMDB readers in many threads of one process are fine),
 *  - its own NATS connection: event submission (JetStream), outcome waits, the services,
 *  - calls to the main thread for health, the main thread's metrics and program activation,
 *  - a copy of the active program, replaced by the main thread on activation.
 * An uncaught error here ends the thread, and the main thread then stops the engine.
 */

const port = parentPort;
if (port === null) throw new Error('src/api/worker.ts runs as a worker thread (src/api/thread.ts starts it)');
const data = workerData as ApiWorkerData;

// ---- calls to the main thread ----

interface PendingCall {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

const pending = new Map<number, PendingCall>();
let nextCallId = 1;

export class CallTimeoutError extends Error {
  constructor(method: CallMethod, timeoutMs: number) {
    super(`the engine's main thread did not answer ${method} within ${timeoutMs} ms`);
    this.name = 'CallTimeoutError';
  }
}

function call<M extends CallMethod>(method: M, ...args: Parameters<MainThreadCalls[M]>): Promise<CallResult<M>> {
  const id = nextCallId++;
  const timeoutMs = CALL_TIMEOUT_MS[method];
  return new Promise<CallResult<M>>((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new CallTimeoutError(method, timeoutMs));
    }, timeoutMs);
    pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
    post({ type: 'call', id, method, args });
  });
}

function post(message: ToMain): void {
  port!.postMessage(message);
}

// ---- the program, as the main thread last said ----

let programState: ProgramState = data.program;

/** The active program from the main thread's copy; activation is the main thread's (it pauses intake). */
class ThreadPrograms implements ProgramManager {
  active() {
    return programState.program;
  }

  activeSince() {
    return { atMs: programState.atMs, source: programState.source };
  }

  validate(text: string): ProgramCheck {
    return checkProgramText(text);
  }

  async activate(text: string): Promise<ProgramCheck> {
    try {
      // The main thread sends the new program before it answers, so activeSince() is current when this returns.
      return await call('activateProgram', text);
    } catch (error) {
      if (error instanceof CallTimeoutError) {
        throw new ApiError('UNAVAILABLE', `${error.message}; the activation may still complete: read GET /v1/program`);
      }
      throw error;
    }
  }
}

// ---- start and stop ----

let store: LmdbStore | undefined;
let nc: NatsConnection | undefined;
let submitter: JetStreamSubmitter | undefined;
let app: FastifyInstance | undefined;
let services: LoyaltyServices | undefined;
let kpis: KpiResponder | undefined;
let partitionWallets: PartitionWalletServer | undefined;
let memberRouting: PartitionMemberRouting | undefined;
let stopping: Promise<void> | undefined;

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'result': {
      const waiting = pending.get(message.id);
      if (waiting === undefined) return; // timed out already
      pending.delete(message.id);
      clearTimeout(waiting.timer);
      if (message.ok) waiting.resolve(message.value);
      else waiting.reject(deserializeError(message.error));
      return;
    }
    case 'program':
      programState = message.state;
      return;
    case 'partitions':
      servePartitions(message.owned);
      return;
    case 'stop':
      stopping ??= stop();
      return;
    default:
      // Crash-only: a message we do not understand means the two threads disagree.
      throw new Error(`the API thread got an unknown message: ${JSON.stringify(message).slice(0, 200)}`);
  }
});

interface ThreadMetrics {
  readonly registry: Registry;
  /** A wallet or ledger read routed to its partition's owner (cluster mode) ended. */
  routedRead(read: RoutedRead, outcome: RoutedOutcome, seconds: number): void;
}

/** The API thread's own metrics, appended to the main thread's at /metrics. */
function threadMetrics(wallets: WalletCache, routedInFlight: () => number): ThreadMetrics {
  const registry = new Registry();
  let lastWallet = wallets.stats();
  new Counter({
    name: 'loyalty_http_wallet_reads_total',
    help: 'GET /v1/members/{id}/wallet reads by how they were answered: cached (a kept body, its records unchanged) or rendered',
    labelNames: ['answer'],
    registers: [registry],
    collect() {
      const stats = wallets.stats();
      this.inc({ answer: 'cached' }, Math.max(0, stats.hits - lastWallet.hits));
      this.inc({ answer: 'rendered' }, Math.max(0, stats.misses - lastWallet.misses));
      lastWallet = stats;
    },
  });
  new Gauge({
    name: 'loyalty_http_wallet_cache_bytes',
    help: 'Estimated bytes of rendered wallets kept by the HTTP API thread',
    registers: [registry],
    collect() {
      this.set(wallets.stats().bytes);
    },
  });
  new Gauge({
    name: 'loyalty_http_wallet_cache_bytes_max',
    help: 'The bound of loyalty_http_wallet_cache_bytes',
    registers: [registry],
    collect() {
      this.set(wallets.stats().bytesMax);
    },
  });
  new Gauge({
    name: 'loyalty_http_wallet_cache_entries',
    help: 'Members whose rendered wallet the HTTP API thread keeps',
    registers: [registry],
    collect() {
      this.set(wallets.stats().entries);
    },
  });
  let lastActiveMs = performance.eventLoopUtilization().active;
  new Counter({
    name: 'loyalty_http_thread_busy_seconds_total',
    help: 'Time the HTTP API thread event loop was busy (serving HTTP and the NATS services); its rate near 1 means the thread is saturated',
    registers: [registry],
    collect() {
      const activeMs = performance.eventLoopUtilization().active;
      this.inc(Math.max(0, activeMs - lastActiveMs) / 1000);
      lastActiveMs = activeMs;
    },
  });
  // Cluster mode: reads of members whose partition another instance consumes, answered by that owner over NATS.
  const routedReads = new Counter({
    name: 'loyalty_http_routed_reads_total',
    help: 'Wallet and ledger reads of members in partitions another instance consumes, sent to the owner (cluster mode), by read and outcome',
    labelNames: ['read', 'outcome'],
    registers: [registry],
  });
  const routedSeconds = new Histogram({
    name: 'loyalty_http_routed_read_seconds',
    help: 'Time from sending a routed wallet or ledger read to its owner until the answer or the failure, waits through handovers included',
    labelNames: ['read'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new Gauge({
    name: 'loyalty_http_routed_reads_in_flight',
    help: 'Routed wallet and ledger reads waiting for their owner now',
    registers: [registry],
    collect() {
      this.set(routedInFlight());
    },
  });
  // Linux: the thread's own CPU time (utime + stime of /proc/thread-self/stat, in clock ticks of 1/100 s).
  let lastCpuSeconds = threadCpuSeconds();
  if (lastCpuSeconds !== undefined) {
    new Counter({
      name: 'loyalty_http_thread_cpu_seconds_total',
      help: 'CPU time of the HTTP API thread (Linux)',
      registers: [registry],
      collect() {
        const cpuSeconds = threadCpuSeconds();
        if (cpuSeconds === undefined || lastCpuSeconds === undefined) return;
        this.inc(Math.max(0, cpuSeconds - lastCpuSeconds));
        lastCpuSeconds = cpuSeconds;
      },
    });
  }
  return {
    registry,
    routedRead(read, outcome, seconds) {
      routedReads.inc({ read, outcome });
      routedSeconds.observe({ read }, seconds);
    },
  };
}

function threadCpuSeconds(): number | undefined {
  try {
    const text = readFileSync('/proc/thread-self/stat', 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / 100 : undefined;
  } catch {
    return undefined;
  }
}

async function start(): Promise<void> {
  const settings: Settings = Object.freeze({ ...data.settings });
  const logger = createLogger(settings.logLevel, undefined, settings.logFormat).child({ thread: 'api' });
  store = new LmdbStore({ dataDir: settings.dataDir, mapSizeBytes: settings.lmdbMapSizeBytes, partitions: settings.partitions });
  nc = await connectNats(settings, 'loyalty-engine-api');
  submitter = new JetStreamSubmitter(nc, { subjectPrefix: settings.subjectPrefix });
  const programs = new ThreadPrograms();
  const health = async (): Promise<Health> => {
    try {
      return await call('health');
    } catch (error) {
      return { ok: false, detail: { reason: (error as Error).message } };
    }
  };
  const wallets = new WalletCache(store, { records: store.walletRecords(), bytesMax: settings.walletCacheBytesMax });
  const own = threadMetrics(wallets, () => memberRouting?.inFlightNow() ?? 0);
  // Cluster mode: reads of partitions this instance does not consume go to their owners (issue 17); told of the owned set with the wallet server's.
  if (settings.cluster) {
    memberRouting = new PartitionMemberRouting(new WalletRouter(nc, { partitions: settings.partitions, subjectPrefix: settings.subjectPrefix }), {
      partitions: settings.partitions,
      onRead: own.routedRead,
    });
    memberRouting.setOwned(ownedPartitions ?? []);
  }
  // Cluster mode: KPI counters stay on the instance that committed them, so a report sums every KPI holder's over NATS
  // (its own responder, below, included). Expected = the holders bucket, not the live set: an instance that left still
  // holds its days, and a report without them must say it is partial (docs/cluster.md, KPI reports across instances).
  let clusterReports: ClusterReports | undefined;
  if (settings.cluster) {
    clusterReports = await openClusterReports(nc, settings, programs, {
      onPartial: (aggregate) =>
        logger.warn(
          { missing: aggregate.missing, failed: aggregate.failed, answered: aggregate.answered, expected: aggregate.expected, elapsedMs: Math.round(aggregate.elapsedMs) },
          'a KPI report across instances is partial: not every KPI holder answered',
        ),
    });
  }
  const metrics: MetricsSource = {
    contentType: own.registry.contentType,
    metrics: async () => {
      let main;
      try {
        main = await call('metrics');
      } catch (error) {
        throw new ApiError('UNAVAILABLE', (error as Error).message);
      }
      return `${main.text}${main.text.endsWith('\n') || main.text === '' ? '' : '\n'}${await own.registry.metrics()}`;
    },
  };
  const api: ApiContext = {
    settings,
    reads: store,
    wallets,
    submitter,
    programs,
    reports: storeReportReader(store, programs),
    health,
    ...(memberRouting !== undefined ? { memberRouting } : {}),
    ...(clusterReports !== undefined ? { clusterReports } : {}),
  };
  app = await startHttpServer({
    host: settings.httpHost,
    port: settings.httpPort,
    registry: metrics,
    health,
    api,
    logger,
    routes: { tokens: TokenTable.fromData(data.tokens) },
  }).catch((error: unknown) => {
    throw httpListenError(settings.httpHost, settings.httpPort, error);
  });
  services = await startLoyaltyServices(nc, api);
  const instanceId = instanceIdOf(settings);
  // The instance's KPI counters for an aggregator summing instances side by side (docs/cluster.md, KPI reports across instances).
  kpis = new KpiResponder(nc, {
    instanceId,
    subjectPrefix: settings.subjectPrefix,
    // Cluster mode: the counters kept per partition of the partitions consumed here, named so the aggregator checks
    // that each partition is counted once (a released partition's copy left in this store is not counted).
    read: () => {
      if (!settings.cluster) return store!.reportSource();
      const consumed = [...(ownedPartitions ?? [])];
      return { ...store!.reportSource(consumed), partitions: consumed };
    },
    onError: (error) => logger.warn({ err: error }, 'a KPI scatter request could not be answered'),
  });
  await kpis.start();
  // Wallet reads by partition (<prefix>.svc.wallet.p<N>, what WalletRouter asks), the HTTP route's cached bodies: one instance owns every partition.
  const walletServer = new PartitionWalletServer(nc, {
    instanceId,
    partitions: settings.partitions,
    subjectPrefix: settings.subjectPrefix,
    read: (memberId) => wallets.json(memberId, programs.active(), Date.now()),
    readLedger: (memberId, _partition, query, bytesMax) => ledgerPageJson(store!, memberId, query, bytesMax),
    onError: (error, partition) => logger.warn({ err: error, partition }, 'a partition wallet read could not be answered'),
  });
  partitionWallets = walletServer;
  // Single instance: every partition is this one's. Cluster mode: those the main thread says it consumes (servePartitions).
  if (!settings.cluster) await Promise.all(Array.from({ length: settings.partitions }, (_, partition) => walletServer.own(partition)));
  else if (ownedPartitions !== undefined) servePartitions(ownedPartitions);
  post({ type: 'ready', port: listeningPort(app) });
}

/** The partitions told last (before the wallet server exists, kept for its start). */
let ownedPartitions: readonly number[] | undefined;
let serving: Promise<void> = Promise.resolve();
const served = new Set<number>();

/**
 * Cluster mode: answers the wallet subjects of exactly `owned` — subscribes to
 * those newly owned, drains those handed over — one change after another.
 */
function servePartitions(owned: readonly number[]): void {
  ownedPartitions = owned;
  // HTTP reads of these partitions are local from now on, the others go to their owners: the engine says so once a
  // partition's state is restored here, and before it hands one over.
  memberRouting?.setOwned(owned);
  const server = partitionWallets;
  if (server === undefined) return;
  serving = serving.then(async () => {
    const wanted = new Set(ownedPartitions);
    for (const partition of [...served]) {
      if (wanted.has(partition)) continue;
      served.delete(partition);
      await server.release(partition);
    }
    for (const partition of wanted) {
      if (served.has(partition)) continue;
      served.add(partition);
      await server.own(partition);
    }
  }).catch((error: unknown) => createLogger(data.settings.logLevel, undefined, data.settings.logFormat).warn({ err: error }, 'partition wallet subjects could not be changed'));
}

async function stop(): Promise<void> {
  // Services first (no new NATS requests), then HTTP (in-flight requests finish; bulk jobs stop), then the connection.
  if (partitionWallets !== undefined) await partitionWallets.close().catch(() => undefined);
  if (kpis !== undefined) await kpis.stop().catch(() => undefined);
  if (services !== undefined) await services.stop().catch(() => undefined);
  if (app !== undefined) await app.close();
  submitter?.close();
  if (nc !== undefined) await nc.drain().catch(() => undefined);
  if (store !== undefined) await store.close();
  for (const waiting of pending.values()) clearTimeout(waiting.timer);
  process.exit(0);
}

start().catch(async (error: unknown) => {
  post({ type: 'startFailed', error: serializeError(error) });
  await app?.close().catch(() => undefined);
  await nc?.close().catch(() => undefined);
  await store?.close().catch(() => undefined);
  process.exit(1);
});
