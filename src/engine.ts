import { join } from 'node:path';
import { jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { FastifyInstance } from 'fastify';
import { ActorPool } from './actors/pool.js';
import { createBudgetLayout } from './actors/budgets.js';
import type { ApiContext, ReportReader } from './api/context.js';
import { JetStreamSubmitter } from './transport/submit.js';
import { startLoyaltyServices, type LoyaltyServices } from './transport/services.js';
import { parseProgramText } from './config/program-file.js';
import { globalBudgetLimits } from './domain/ports.js';
import { buildReport } from './reports/report.js';
import { EngineProgramManager } from './runtime/program-manager.js';
import { Sweeper } from './runtime/sweeper.js';
import { unpackOutbox } from './actors/actor.js';
import { listeningPort, startHttpServer } from './api/http.js';
import type { Settings } from './config/settings.js';
import type { Program } from './domain/program.js';
import type { Logger } from './log.js';
import { EngineMetrics } from './metrics/metrics.js';
import { Ingest, type InboundMessage } from './routing/ingest.js';
import { LmdbStore } from './store/lmdb.js';
import { encodingOf } from './transport/codec.js';
import { connectNats } from './transport/connect.js';
import { publishDeadLetter } from './transport/dead-letters.js';
import { findNatsServerBinary, NatsServerSupervisor } from './transport/nats-server.js';
import { publishOutcomes } from './transport/outcomes.js';
import { HEADER_CONTENT_TYPE, subjectsFor } from './transport/subjects.js';
import { ensureTopology } from './transport/topology.js';

/**
 * The engine: wires NATS, the actors, the store, metrics and HTTP together,
 * and owns the order of start and shutdown.
 */
export interface EngineOptions {
  readonly settings: Settings;
  readonly program: Program;
  readonly logger: Logger;
}

const GAUGE_INTERVAL_MS = 1000;

export class Engine {
  private supervisor: NatsServerSupervisor | undefined;
  private nc: NatsConnection | undefined;
  private store: LmdbStore | undefined;
  private pool: ActorPool | undefined;
  private ingest: Ingest | undefined;
  private messages: ConsumerMessages | undefined;
  private http: FastifyInstance | undefined;
  private gaugeTimer: NodeJS.Timeout | undefined;
  private sweeper: Sweeper | undefined;
  private submitter: JetStreamSubmitter | undefined;
  private services: LoyaltyServices | undefined;
  programs: EngineProgramManager | undefined;
  reports: ReportReader | undefined;
  private consuming = false;
  private stopping: Promise<void> | undefined;
  readonly metrics = new EngineMetrics();
  natsUrl = '';
  /** Resolves with an error when the engine fails and must stop (a failed commit). */
  readonly failed: Promise<Error>;
  private fail!: (error: Error) => void;

  constructor(private readonly options: EngineOptions) {
    this.failed = new Promise((resolve) => (this.fail = resolve));
  }

  get httpPort(): number {
    return this.http === undefined ? 0 : listeningPort(this.http);
  }

  async start(): Promise<void> {
    const { settings, logger } = this.options;
    this.natsUrl = settings.natsUrl !== '' ? settings.natsUrl : await this.startEmbeddedNats();
    this.nc = await connectNats({ ...settings, natsUrl: this.natsUrl }, 'loyalty-engine');
    logger.info({ nats: this.natsUrl }, 'connected to NATS');
    // Stream and consumer administration on a large stream takes longer than the default 5 s.
    const jsm = await jetstreamManager(this.nc, { timeout: 60_000 });
    await ensureTopology(jsm, settings);

    this.store = new LmdbStore({ dataDir: settings.dataDir, mapSizeBytes: settings.lmdbMapSizeBytes });
    const meta = await this.store.ensureMeta(settings.partitions, Date.now());
    logger.info({ partitions: meta.partitions, dataDir: settings.dataDir }, 'store open');
    await this.republishOutbox(this.store, this.nc);
    const store = this.store;

    // A program activated through the API outlives restarts; the file is the default.
    const stored = store.storedProgram();
    let program = this.options.program;
    let programSource: 'file' | 'api' = 'file';
    let programSinceMs = Date.now();
    if (stored !== undefined) {
      program = parseProgramText(stored.text, 'program activated through the API');
      programSource = 'api';
      programSinceMs = stored.activatedAtMs;
      logger.warn({ program: program.id, activatedAtMs: stored.activatedAtMs }, 'using the program activated through the API; LOYALTY_PROGRAM_FILE is ignored');
    }
    const budgets = createBudgetLayout(globalBudgetLimits(program), store.budgetTotals());

    const bootId = Date.now();
    this.pool = new ActorPool({
      actors: settings.actors,
      batchesInFlightMax: settings.actorBatchesInFlightMax,
      workerData: (actorIndex) => ({ actorIndex, settings, program, budgets, bootId, natsUrl: this.natsUrl }),
    });
    await this.pool.ready();
    logger.info({ actors: settings.actors, program: program.id }, 'actors ready');
    const pool = this.pool;

    const subjects = subjectsFor(settings.subjectPrefix);
    const js = jetstream(this.nc);
    this.ingest = new Ingest({
      partitions: settings.partitions,
      subjectPrefixLength: subjects.transactionPrefix.length,
      batchSizeMax: settings.batchSizeMax,
      batchAgeMsMax: settings.batchAgeMsMax,
      payloadBytesMax: settings.payloadBytesMax,
      runner: this.pool,
      encodingOf: (message) => encodingOf((message as JsMsg).headers?.get(HEADER_CONTENT_TYPE)),
      deadLetter: async (message, memberToken, reason, encoding) => {
        await publishDeadLetter(js, subjects, settings.streamName, {
          streamSequence: message.info.streamSequence,
          memberToken,
          reason,
          encoding,
          payload: message.data,
        });
        this.metrics.deadLetters.inc({ reason: 'oversized' }); // the one reason the main thread dead-letters
        this.metrics.events.inc({ type: 'unknown', result: 'invalid' });
      },
      onBatch: (actor, result, nowMs) => this.metrics.recordBatch(actor, result, nowMs),
      onAck: (count) => this.metrics.acks.inc(count),
      onFatal: (error) => {
        logger.fatal({ err: error }, 'a batch failed to commit; stopping intake without acking it');
        this.fail(error instanceof Error ? error : new Error(String(error)));
      },
    });

    const ingestForPrograms = this.ingest;
    this.programs = new EngineProgramManager({
      initial: program,
      initialSource: programSource,
      initialAtMs: programSinceMs,
      persist: (text, atMs) => store.storeProgram({ text, activatedAtMs: atMs }),
      apply: (next) =>
        ingestForPrograms.exclusive(async () => {
          // No batch is in flight: the committed usage is the whole usage.
          await pool.setProgram(next, createBudgetLayout(globalBudgetLimits(next), store.budgetTotals()));
          logger.info({ program: next.id }, 'program activated');
        }),
    });
    const programs = this.programs;
    this.reports = {
      kpis: (period, fromMs, toMs) => {
        const active = programs.active();
        return buildReport(
          store.reportSource(),
          {
            utcOffsetMinutes: active.utcOffsetMinutes,
            pointValues: new Map(
              active.currencies.flatMap((currency) => (currency.value === undefined ? [] : [[currency.id, currency.value] as const])),
            ),
            promotionBudgets: new Map(Object.entries(globalBudgetLimits(active))),
          },
          period,
          fromMs,
          toMs,
        );
      },
    };
    this.sweeper = new Sweeper({
      actors: settings.actors,
      intervalMs: settings.sweepIntervalMs,
      chunkMembers: settings.sweepChunkMembers,
      runSweep: (actor, nowMs, limit) => pool.runSweep(actor, nowMs, limit),
      onChunk: (_actor, result, seconds) => this.metrics.recordSweep(result, seconds),
      onError: (error) => {
        logger.fatal({ err: error }, 'a sweep failed to commit; stopping');
        this.fail(error instanceof Error ? error : new Error(String(error)));
      },
    });
    this.sweeper.start();

    this.submitter = new JetStreamSubmitter(this.nc, { subjectPrefix: settings.subjectPrefix });
    const health = () => ({
      ok: this.consuming,
      detail: { consuming: this.consuming, ackPending: this.ingest?.ackPending ?? 0, actors: settings.actors },
    });
    const api: ApiContext = { settings, reads: store, submitter: this.submitter, programs: this.programs, reports: this.reports, health };
    this.http = await startHttpServer({ host: settings.httpHost, port: settings.httpPort, registry: this.metrics.registry, health, api, logger });
    this.services = await startLoyaltyServices(this.nc, api);
    this.gaugeTimer = setInterval(() => this.updateGauges(), GAUGE_INTERVAL_MS);
    this.gaugeTimer.unref();

    const consumer = await js.consumers.get(settings.streamName, settings.consumerName);
    const ingest = this.ingest;
    this.messages = await consumer.consume({
      max_messages: Math.min(settings.ackPendingMax, 8192),
      callback: (message) => ingest.onMessage(message as unknown as InboundMessage),
    });
    this.consuming = true;
    logger.info({ http: `http://${settings.httpHost}:${this.httpPort}`, stream: settings.streamName }, 'engine ready');
  }

  /**
   * Graceful stop: stop pulling, finish and commit what is in flight, ack it,
   * let the actors publish their outcomes, then close everything.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const { logger } = this.options;
    this.consuming = false;
    if (this.services !== undefined) await this.services.stop().catch(() => undefined);
    if (this.http !== undefined) await this.http.close();
    if (this.gaugeTimer !== undefined) clearInterval(this.gaugeTimer);
    if (this.messages !== undefined) await this.messages.close().catch(() => undefined);
    if (this.sweeper !== undefined) await this.sweeper.stop();
    if (this.ingest !== undefined) await this.ingest.drain();
    if (this.nc !== undefined) await this.nc.flush().catch(() => undefined);
    if (this.pool !== undefined) await this.pool.close();
    if (this.store !== undefined) await this.store.close();
    this.submitter?.close();
    if (this.nc !== undefined) await this.nc.drain().catch(() => undefined);
    if (this.supervisor !== undefined) await this.supervisor.stop();
    logger.info('engine stopped');
  }

  private async startEmbeddedNats(): Promise<string> {
    const { settings, logger } = this.options;
    const binary = await findNatsServerBinary({ autoInstall: settings.embeddedNatsAutoInstall, log: (message) => logger.info(message) });
    this.supervisor = new NatsServerSupervisor({
      binary,
      storeDir: join(settings.dataDir, 'nats'),
      port: settings.embeddedNatsPort,
      logFile: join(settings.dataDir, 'nats', 'nats-server.log'),
      log: (message) => logger.info({ component: 'nats-server' }, message),
    });
    this.supervisor.on('error', (error) => {
      logger.fatal({ err: error }, 'embedded nats-server keeps failing');
      this.fail(error);
    });
    const handle = await this.supervisor.start();
    return handle.url;
  }

  /** Outcomes committed before a crash but maybe never published: publish them again (same message ids). */
  private async republishOutbox(store: LmdbStore, nc: NatsConnection): Promise<void> {
    let batches = 0;
    let messages = 0;
    const keys = [];
    for (const { key, messages: packed } of store.outboxEntries()) {
      messages += publishOutcomes(nc, unpackOutbox(packed));
      keys.push(key);
      batches += 1;
      if (keys.length >= 1000) await this.flushAndRemove(nc, store, keys.splice(0));
    }
    await this.flushAndRemove(nc, store, keys);
    if (batches > 0) this.options.logger.info({ batches, messages }, 're-published outcomes from the outbox');
  }

  private async flushAndRemove(nc: NatsConnection, store: LmdbStore, keys: Parameters<LmdbStore['removeOutbox']>[0][]): Promise<void> {
    if (keys.length === 0) return;
    await nc.flush();
    await Promise.all(keys.map((key) => store.removeOutbox(key)));
  }

  private updateGauges(): void {
    const ingest = this.ingest;
    const pool = this.pool;
    if (ingest === undefined || pool === undefined) return;
    this.metrics.ackPending.set(ingest.ackPending);
    this.metrics.consumerPending.set(ingest.consumerPending);
    for (let actor = 0; actor < pool.actors; actor++) {
      this.metrics.actorQueueDepth.set({ actor: String(actor) }, pool.batchesInFlight(actor));
      this.metrics.actorPendingEvents.set({ actor: String(actor) }, ingest.pendingEvents(actor));
    }
  }
}
