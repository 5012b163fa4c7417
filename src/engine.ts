import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { ActorPool } from './actors/pool.js';
import { createBudgetLayout, type BudgetLayout } from './actors/budgets.js';
import { loadApiTokens } from './api/auth.js';
import type { Health } from './api/context.js';
import { assertHttpPortFree } from './api/port-check.js';
import { ApiThread } from './api/thread.js';
import { parseProgramText } from './config/program-file.js';
import { globalBudgetLimits } from './domain/ports.js';
import { EngineProgramManager } from './runtime/program-manager.js';
import { Sweeper } from './runtime/sweeper.js';
import { unpackOutbox } from './actors/actor.js';
import { instanceIdOf, type Settings } from './config/settings.js';
import { registerKpiHolder } from './cluster/kpi-aggregation.js';
import type { Program } from './domain/program.js';
import type { Logger } from './log.js';
import { EngineMetrics } from './metrics/metrics.js';
import { ClusterMetrics, watchSnapshots } from './metrics/cluster-metrics.js';
import { Ingest, type ActorRunner, type InboundMessage, type IngestOptions } from './routing/ingest.js';
import { OwnershipThread } from './cluster/ownership-thread.js';
import { openOwnershipBuckets } from './cluster/ownership.js';
import { startClusterGlobals } from './runtime/cluster-globals.js';
import { PartitionConsumers } from './runtime/partition-consumers.js';
import { assertDiskRoom } from './store/commit-errors.js';
import { lmdbAddonStatus } from './store/lmdb-addon.js';
import { LmdbStore } from './store/lmdb.js';
import type { OutboxKey } from './store/types.js';
import { AckAllSender, redeliverNow } from './transport/ack-all.js';
import { encodingOf } from './transport/codec.js';
import { connectNats, NatsWatch } from './transport/connect.js';
import { publishDeadLetter } from './transport/dead-letters.js';
import { logPullEvents, pullBytesFor, PullIntake, type PullEvent, type PulledMessage } from './transport/intake.js';
import { findNatsServerBinary, NatsServerSupervisor } from './transport/nats-server.js';
import { PubAckRouter } from './transport/pub-acks.js';
import { HEADER_CONTENT_TYPE, subjectsFor } from './transport/subjects.js';
import { BelowFloorWatch, type ConsumerStanding } from './transport/below-floor.js';
import { sequencesOnSubject } from './transport/stream-reads.js';
import { ensureTopology, partitionConsumerName, resetConsumerToAckFloor, resetPartitionConsumer, withCreateRetries } from './transport/topology.js';

/** Outbox entries re-published at once at start (each an actor batch's outcomes). */
const REPUBLISH_ENTRIES_IN_FLIGHT_MAX = 256;

/** Acks a JetStream delivery by its reply subject alone (what its ack() publishes), holding nothing else. */
class ReplyAck {
  constructor(
    private readonly sender: AckAllSender,
    private readonly reply: string,
  ) {}

  ack(): void {
    this.sender.ack(this.reply);
  }
}

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
/** JetStream API timeout for creating a stream or bucket (an R3 create on a busy cluster takes seconds). */
const CREATE_TIMEOUT_MS = 10_000;

export class Engine {
  private supervisor: NatsServerSupervisor | undefined;
  private nc: NatsConnection | undefined;
  private natsWatch: NatsWatch | undefined;
  private store: LmdbStore | undefined;
  private pool: ActorPool | undefined;
  private ingest: Ingest | undefined;
  /** Cluster mode: the partitions this instance holds leases of, and their consumers (instead of ingest). */
  private partitionConsumers: PartitionConsumers | undefined;
  private ownership: OwnershipThread | undefined;
  /** Cluster mode: budgets reserved across instances and the program key (src/runtime/cluster-globals.ts). */
  private clusterGlobals: { stop(): Promise<void> } | undefined;
  private intake: PullIntake | undefined;
  /** The HTTP API and the NATS services, on their own thread (src/api/thread.ts). */
  private api: ApiThread | undefined;
  private gaugeTimer: NodeJS.Timeout | undefined;
  private sweeper: Sweeper | undefined;
  programs: EngineProgramManager | undefined;
  private consuming = false;
  private stopping: Promise<void> | undefined;
  /** Starts (again) the pull intake on the consumer; set once everything it feeds exists. */
  private startIntake: (() => PullIntake) | undefined;
  private belowFloor: BelowFloorWatch | undefined;
  private resetting: Promise<void> | undefined;
  readonly metrics = new EngineMetrics();
  /** Cluster mode's metrics (src/metrics/cluster-metrics.ts), in the same registry; absent for a single instance. */
  private clusterMetrics: ClusterMetrics | undefined;
  natsUrl = '';
  /** Resolves with an error when the engine fails and must stop (a failed commit). */
  readonly failed: Promise<Error>;
  private fail!: (error: Error) => void;

  constructor(private readonly options: EngineOptions) {
    this.failed = new Promise((resolve) => (this.fail = resolve));
  }

  get httpPort(): number {
    return this.api?.port ?? 0;
  }

  async start(): Promise<void> {
    const { settings, logger } = this.options;
    // Bad token entries stop the start before anything runs (a ConfigError naming each).
    const tokens = loadApiTokens({ apiTokens: settings.apiTokens, apiTokensFile: settings.apiTokensFile });
    await assertHttpPortFree(settings.httpHost, settings.httpPort);
    this.natsUrl = settings.natsUrl !== '' ? settings.natsUrl : await this.startEmbeddedNats();
    this.nc = await connectNats({ ...settings, natsUrl: this.natsUrl }, 'loyalty-engine');
    this.natsWatch = new NatsWatch(this.nc, {
      onChange: (state, previous) => (state === 'connected' ? logger.warn({ nats: state, previous }, 'NATS connection back') : logger.warn({ nats: state, previous }, 'NATS connection lost or not answering; intake and acks wait')),
    }).start();
    logger.info({ nats: this.natsUrl }, 'connected to NATS');
    // Stream and consumer administration on a large stream takes longer than the default 5 s.
    const jsm = await jetstreamManager(this.nc, { timeout: 60_000 });
    // Cluster mode: streams only (consumers are per partition, later); a create raced by another instance is asked again after 10 s, not 60.
    await ensureTopology(settings.cluster ? await jetstreamManager(this.nc, { timeout: 10_000 }) : jsm, settings);
    // Before any KPI commit: this instance holds KPI counters, so an aggregate across instances expects its answer (docs/cluster.md).
    const kpiHolders = await withCreateRetries(() => new Kvm(jetstream(this.nc!, { timeout: CREATE_TIMEOUT_MS })).create(settings.kpiHoldersBucket, { history: 1, ...(settings.cluster ? { replicas: settings.clusterReplicas } : {}) }), `bucket ${settings.kpiHoldersBucket}`);
    // Asked again too: a bucket just created on a cluster may not answer until its stream has a leader.
    await withCreateRetries(() => registerKpiHolder(kpiHolders, instanceIdOf(settings)), `bucket ${settings.kpiHoldersBucket} (this instance's entry)`);

    assertDiskRoom(settings.dataDir);
    this.store = new LmdbStore({ dataDir: settings.dataDir, mapSizeBytes: settings.lmdbMapSizeBytes });
    const meta = await this.store.ensureMeta(settings.partitions, Date.now());
    logger.info({ partitions: meta.partitions, dataDir: settings.dataDir }, 'store open');
    const addon = lmdbAddonStatus();
    if (addon.patched) logger.info({ lmdb: addon.version, addon: addon.path }, 'LMDB addon built with the free-list fix');
    else logger.warn({ lmdb: addon.version, addon: addon.path }, 'LMDB runs on lmdb-js\'s prebuilt addon, without the free-list fix: a restart after kill -9 can fail its first commit (docs/operations.md, "Crash recovery"); run `node scripts/lmdb-native.mjs`');
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
    const instanceId = instanceIdOf(settings);
    this.pool = new ActorPool({
      actors: settings.actors,
      batchesInFlightMax: settings.actorBatchesInFlightMax,
      heapMaxMb: settings.actorHeapMaxMb,
      workerData: (actorIndex) => ({ actorIndex, settings, program, budgets, bootId, natsUrl: this.natsUrl, instanceId }),
    });
    // Each actor's nice value now, or why it kept the engine's (LOYALTY_ACTOR_NICE 0 included).
    const priorities = (await this.pool.ready()).map((priority) => (priority.applied ? priority.nice : priority.reason));
    logger.info({ actors: settings.actors, program: program.id, actorNice: priorities }, 'actors ready');
    const refused = priorities.find((priority) => typeof priority === 'string');
    if (refused !== undefined && settings.actorNice > 0) logger.warn({ reason: refused }, 'actors run at the engine priority: LOYALTY_ACTOR_NICE could not be applied');
    const pool = this.pool;

    const subjects = subjectsFor(settings.subjectPrefix);
    const js = jetstream(this.nc);
    const nc = this.nc;
    // Refused here, before anything is consumed, when one of the server's largest messages would not fit a pull.
    const pullBytes = pullBytesFor(settings.pullBytesMax, nc.info?.max_payload);
    // A dead letter must fit the dead-letter stream as well as the server (dead-letters.ts cuts its body if not).
    const deadLetterBytesMax = (await jsm.streams.info(settings.deadLetterStreamName)).config.max_msg_size;
    // Lookups while acks are held for lost deliveries: a request lost in a reconnect is asked again after 5 s, not 60.
    const lookups = await jetstreamManager(this.nc, { timeout: 5_000 });
    // Ack-all watermarks, the last one sent again after a reconnect (src/transport/ack-all.ts).
    const acks = new AckAllSender(nc);
    const ingestOptions = (consumer: string, subjectPrefixLength: number, acks: AckAllSender, runner: ActorRunner = pool): IngestOptions => ({
      partitions: settings.partitions,
      subjectPrefixLength,
      batchSizeMax: settings.batchSizeMax,
      batchAgeMsMax: settings.batchAgeMsMax,
      payloadBytesMax: settings.payloadBytesMax,
      runner,
      encodingOf: (message) => encodingOf((message as PulledMessage).headers?.get(HEADER_CONTENT_TYPE)),
      ackHandleOf: (message) => new ReplyAck(acks, (message as PulledMessage).reply),
      deadLetter: async (message, memberToken, reason, encoding) => {
        await publishDeadLetter(js, subjects, settings.streamName, {
          streamSequence: message.info.streamSequence,
          memberToken,
          reason,
          encoding,
          payload: message.data,
          ...(deadLetterBytesMax !== undefined && deadLetterBytesMax > 0 ? { messageBytesMax: deadLetterBytesMax } : {}),
        });
        this.metrics.deadLetters.inc({ reason: 'oversized' }); // the one reason the main thread dead-letters
        this.metrics.events.inc({ type: 'unknown', result: 'invalid' });
      },
      onBatch: (actor, result, nowMs) => this.metrics.recordBatch(actor, result, nowMs),
      onAck: (count) => this.metrics.acks.inc(count),
      onRedeliverySkipped: () => this.metrics.redeliveriesSkipped.inc(),
      onFatal: (error) => {
        const gap = (error as { code?: unknown } | undefined)?.code === 'ERR_INTAKE_GAP';
        logger.fatal({ err: error }, gap ? 'too many deliveries lost to hold open; stopping intake without acking past them' : 'a batch failed to commit; stopping intake without acking it');
        this.fail(error instanceof Error ? error : new Error(String(error)));
      },
      consumerDelivered: async () => {
        const { delivered } = await lookups.consumers.info(settings.streamName, consumer);
        return { streamSequence: delivered.stream_seq, deliverySequence: delivered.consumer_seq };
      },
      requestRedelivery: (sequences, deliverySequence) => redeliverNow(nc, settings.streamName, consumer, sequences, deliverySequence),
      // A lost delivery still not redelivered after about twice ack_wait: deleted from the stream meanwhile?
      streamHas: async (sequence) => (await lookups.streams.getMessage(settings.streamName, { seq: sequence })) !== null,
      redeliveryCheckMs: 2 * settings.ackWaitMs + 5_000,
    });

    if (!settings.cluster) this.ingest = new Ingest(ingestOptions(settings.consumerName, subjects.transactionPrefix.length, acks));
    else this.partitionConsumers = this.clusterConsumers(ingestOptions, pool, jsm, pullBytes);
    const ingestForPrograms: Pick<Ingest, 'exclusive'> = this.ingest ?? this.partitionConsumers!;
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

    // Not ok while NATS is gone or not answering: nothing is consumed or acked meanwhile.
    const health = (): Health => {
      const nats = this.natsWatch?.describe();
      return {
        ok: this.consuming && (nats === undefined || nats.state === 'connected'),
        detail: {
          consuming: this.consuming,
          ackPending: this.ingest?.ackPending ?? this.partitionConsumers?.ackPending ?? 0,
          ...this.ingest?.describeAcks(),
          ...(this.partitionConsumers === undefined ? {} : { instanceId, partitionsConsuming: this.partitionConsumers.consuming().length, partitionsRestoring: this.partitionConsumers.restoring }),
          actors: settings.actors,
          ...(nats === undefined ? {} : { nats }),
        },
      };
    };
    const programs = this.programs;
    const registry = this.metrics.registry;
    const api = new ApiThread({
      settings: { ...settings, natsUrl: this.natsUrl },
      tokens,
      program: { program, atMs: programSinceMs, source: programSource },
      logger,
      handlers: {
        health,
        metrics: async () => ({ contentType: registry.contentType, text: await registry.metrics() }),
        activateProgram: async (text) => {
          const check = await programs.activate(text);
          // The thread learns the program before the call answers: its GET /v1/program is current at once.
          if (check.ok) api.setProgram({ program: programs.active(), atMs: programs.activeSince().atMs, source: programs.activeSince().source });
          return check;
        },
      },
    });
    this.api = api;
    void api.failed.then((error) => this.fail(error));
    await api.start();
    this.gaugeTimer = setInterval(() => this.updateGauges(), GAUGE_INTERVAL_MS);
    this.gaugeTimer.unref();

    if (this.partitionConsumers !== undefined) {
      await this.startClusterGlobals(budgets, program, instanceId);
      await this.startOwnership(this.partitionConsumers, instanceId);
      this.consuming = true;
      logger.info({ http: `http://${settings.httpHost}:${this.httpPort}`, stream: settings.streamName, instanceId, cluster: true }, 'engine ready');
      return;
    }
    const ingest = this.ingest!;
    const logPullEvent = logPullEvents(logger);
    // Ack-pending entries below the ack floor (a restarted nats-server): only a new consumer clears them (src/transport/below-floor.ts).
    this.belowFloor = new BelowFloorWatch({
      lookup: async (): Promise<ConsumerStanding> => {
        const info = await lookups.consumers.info(settings.streamName, settings.consumerName);
        return { ackFloor: info.ack_floor.stream_seq, delivered: info.delivered.stream_seq, ackPending: info.num_ack_pending };
      },
      onFound: (standing, belowFloor) => this.recreateConsumer(jsm, acks, { ...standing, belowFloor }),
    });
    const belowFloor = this.belowFloor;
    // Pulls bounded by count and by bytes (src/transport/intake.ts: why not consumer.consume()).
    this.startIntake = () =>
      new PullIntake({
        nc,
        stream: settings.streamName,
        consumer: settings.consumerName,
        batchMessages: Math.min(settings.ackPendingMax, 8192),
        batchBytes: pullBytes,
        onMessage: (message) => {
          // A message acked past already: a duplicate, or one the server holds pending below its floor.
          if (message.info.streamSequence <= ingest.ackedThrough) belowFloor.sighted();
          ingest.onMessage(message);
        },
        onEvent: this.onPullEvent(acks, ingest, logPullEvent),
      }).start();
    this.intake = this.startIntake();
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
    this.natsWatch?.stop();
    this.belowFloor?.close();
    // A consumer being recreated: let it finish (it gives up once it sees the stop).
    if (this.resetting !== undefined) await this.resetting;
    // HTTP and the NATS services first: no new requests while intake drains.
    if (this.api !== undefined) await this.api.stop();
    // Cluster mode: every partition drained, committed and acked, then its lease deleted, so the others take it at once.
    if (this.ownership !== undefined) await this.ownership.stop();
    if (this.partitionConsumers !== undefined) await this.partitionConsumers.close();
    if (this.clusterGlobals !== undefined) await this.clusterGlobals.stop();
    if (this.gaugeTimer !== undefined) clearInterval(this.gaugeTimer);
    if (this.intake !== undefined) await this.intake.close();
    if (this.sweeper !== undefined) await this.sweeper.stop();
    if (this.ingest !== undefined) await this.ingest.drain();
    if (this.nc !== undefined) await this.nc.flush().catch(() => undefined);
    if (this.pool !== undefined) await this.pool.close();
    if (this.store !== undefined) await this.store.close();
    if (this.nc !== undefined) await this.nc.drain().catch(() => undefined);
    if (this.supervisor !== undefined) await this.supervisor.stop();
    logger.info('engine stopped');
  }

  /**
   * Recreates the consumer at its ack floor while the engine runs: what a
   * start does, for entries nats-server holds pending below the floor
   * (src/transport/below-floor.ts). Intake stops, every batch in flight is
   * committed and acked, the deliveries are forgotten, the consumer is
   * recreated after the floor, and intake starts again; what was not acked
   * is delivered again and found to be a duplicate where committed.
   */
  private recreateConsumer(jsm: JetStreamManager, acks: AckAllSender, found: ConsumerStanding & { belowFloor: number }): void {
    if (this.resetting !== undefined || this.stopping !== undefined) return;
    const { settings, logger } = this.options;
    this.resetting = (async () => {
      const startedMs = Date.now();
      logger.warn({ ...found }, 'consumer: ack-pending entries below its ack floor (left by a restarted nats-server; no ack clears them, they would be redelivered every ack wait); recreating it at the floor');
      this.consuming = false;
      await this.intake?.close();
      await this.ingest!.restartDeliveries();
      acks.forget();
      for (let attempt = 0; this.stopping === undefined; attempt++) {
        try {
          // The last acks reach the server before it is asked for its floor (not waited for while NATS is away).
          await Promise.race([this.nc!.flush(), new Promise((_, reject) => setTimeout(() => reject(new Error('flush timed out')), 5_000).unref())]);
          const floor = await resetConsumerToAckFloor(jsm, settings, this.ingest!.ackedThrough);
          this.metrics.consumerResets.inc();
          logger.warn({ ackFloor: floor, tookMs: Date.now() - startedMs }, 'consumer recreated at its ack floor; intake resumes');
          break;
        } catch (error) {
          logger.warn({ err: error, attempt }, 'consumer: could not recreate it yet (NATS away?); trying again');
          await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 250 * 2 ** Math.min(attempt, 5))));
        }
      }
      if (this.stopping !== undefined) return;
      this.intake = this.startIntake!();
      this.consuming = true;
    })()
      .catch((error: unknown) => {
        logger.fatal({ err: error }, 'consumer: recreating it failed');
        this.fail(error instanceof Error ? error : new Error(String(error)));
      })
      .finally(() => (this.resetting = undefined));
  }

  /** What a pull intake's events do, in either mode: the last ack sent again after a reconnect, lost deliveries held open. */
  private onPullEvent(acks: AckAllSender, ingest: Ingest, log: (event: PullEvent) => void): (event: PullEvent) => void {
    return (event) => {
      if (event.type === 'reconnected') acks.resendLast();
      // Deliveries lost on the way: hold the ack watermark below them until they are delivered again.
      if (event.type === 'deliveries_lost') {
        this.metrics.deliveriesLost.inc(event.got - event.expected);
        ingest.deliveriesLost(event.streamSequenceSeen);
      }
      log(event);
    };
  }

  /** Cluster mode's intake: per partition a consumer, an Ingest with its own ack watermark, a pull intake. */
  private clusterConsumers(ingestOptions: (consumer: string, subjectPrefixLength: number, acks: AckAllSender, runner: ActorRunner) => IngestOptions, pool: ActorPool, jsm: JetStreamManager, pullBytes: number): PartitionConsumers {
    const { settings, logger } = this.options;
    const nc = this.nc!;
    const subjects = subjectsFor(settings.subjectPrefix);
    const acks = new Map<number, AckAllSender>();
    const logPullEvent = logPullEvents(logger);
    const metrics = (this.clusterMetrics = new ClusterMetrics(this.metrics.registry));
    const consumers: PartitionConsumers = new PartitionConsumers({
      actors: pool.actors,
      own: (actor, partition, epoch) => pool.ownPartition(actor, partition, epoch),
      releaseActor: (actor, partition) => pool.releasePartition(actor, partition),
      // Asked again while JetStream does not answer (a leader election after a server's death): the delete and the add are each idempotent.
      resetConsumer: (partition, watermark) => withCreateRetries(() => resetPartitionConsumer(jsm, settings, partition, watermark), `consumer ${partitionConsumerName(settings, partition)}`, 30_000),
      createIngest: (partition) => {
        const sender = new AckAllSender(nc);
        acks.set(partition, sender);
        const options = ingestOptions(partitionConsumerName(settings, partition), subjects.partitionTransactionPrefix(partition).length, sender, runner);
        return new Ingest({
          ...options,
          consumerSequences: (from, to) => sequencesOnSubject(jsm, settings.streamName, subjects.partitionTransactions(partition), from, to),
          // A commit refused because another instance fenced the partition is counted before the engine stops.
          onFatal: (error) => {
            metrics.commitFailed(error);
            options.onFatal(error);
          },
        });
      },
      startIntake: (partition, ingest) =>
        new PullIntake({
          nc,
          stream: settings.streamName,
          consumer: partitionConsumerName(settings, partition),
          // Per partition: the batches of one partition are smaller, and up to 64 intakes pull side by side.
          batchMessages: Math.min(settings.ackPendingMax, settings.batchSizeMax),
          batchBytes: pullBytes,
          onMessage: (message) => ingest.onMessage(message),
          onEvent: this.onPullEvent(acks.get(partition)!, ingest, logPullEvent),
        }).start(),
      onAcquireFailed: (partition, step, error) => {
        logger.error({ err: error, partition, step }, 'a partition could not be taken over (JetStream not answering?); its lease is given up and it is taken again at a later tick');
        metrics.acquireFailed(step);
        void this.ownership?.giveUp(partition);
      },
      onFatal: (partition, error) => {
        logger.fatal({ err: error, partition }, 'a partition could not be handed over (its batches did not commit); stopping');
        this.fail(error instanceof Error ? error : new Error(String(error)));
      },
      onOwned: (position, consumerMs) => {
        metrics.owned(position, consumerMs);
        logger.info({ ...position, consumerMs: Math.round(consumerMs) }, 'partition owned: changelog fenced, state restored, consuming after its watermark');
      },
      // Wallet reads by partition are answered where the partition is consumed, and nowhere else.
      onChange: (consuming) => {
        metrics.changed(consuming);
        this.api?.setPartitions(consuming);
      },
      logger,
    });
    const runner = consumers.runner(pool);
    // Read at each scrape; the ownership exists once startOwnership ran.
    metrics.observe({ consuming: () => consumers.consuming().length, restoring: () => consumers.restoring, leasesHeld: () => this.ownership?.owned().size ?? 0 });
    // The actor threads save the snapshots; the object store's metadata says which were this instance's (ends with the connection).
    void watchSnapshots(nc, { bucket: settings.snapshotBucket, instanceId: instanceIdOf(settings), metrics, onError: (error) => logger.warn({ err: error }, 'snapshot metrics: could not watch the snapshot bucket; loyalty_cluster_snapshots_total stays still') });
    return consumers;
  }

  /**
   * Ownership rounds on their own thread (src/cluster/ownership-thread.ts): the
   * main thread feeds every intake, and under a backlog it was too busy to
   * renew leases within their validity.
   */
  private async startOwnership(consumers: PartitionConsumers, instanceId: string): Promise<void> {
    const { settings, logger } = this.options;
    this.ownership = new OwnershipThread({
      settings: { ...settings, natsUrl: this.natsUrl },
      instanceId,
      handlers: {
        // Not awaited by the round: restores run in the background while the thread keeps renewing.
        onAcquired: (partition, epoch) => consumers.acquire(partition, epoch),
        onReleasing: (partition) => consumers.release(partition),
        onLost: (partition, _epoch, reason) => {
          this.clusterMetrics?.lost(reason);
          consumers.lost(partition, reason);
        },
      },
      onError: (error) => {
        this.clusterMetrics?.roundFailed();
        logger.warn({ err: error }, 'ownership: a round failed (NATS away?); the next tick tries again');
      },
      onSlowRound: (lateMs, tookMs) => {
        this.clusterMetrics?.slowRound(lateMs, tookMs);
        logger.warn({ lateMs, tookMs, leaseTtlMs: settings.clusterLeaseTtlMs }, 'ownership: a round ran late or long (NATS slow, or the process starved of CPU); leases not renewed within their validity are let go');
      },
      onRenewed: (tookMs) => this.clusterMetrics?.renewed(tookMs),
      onReleaseFailed: (partition, error) => logger.error({ err: error, partition }, 'ownership: a partition could not be handed over; its lease is kept until the TTL'),
    });
    void this.ownership.failed.then((error) => {
      logger.fatal({ err: error }, 'the ownership thread died; stopping (its leases expire after the TTL)');
      this.fail(error);
    });
    await this.ownership.start();
  }

  /**
   * Cluster mode's global promotion budgets and program (src/runtime/cluster-globals.ts), before any partition is
   * taken: the actors' allowances become what this instance reserved of each budget, and an activation goes through
   * the cluster's program key, which every instance applies. Their stop (the unspent chunks given back) runs when the
   * partition consumers close at the engine's stop: every partition drained, no batch can draw budget any more, and
   * the NATS connection still open.
   */
  private async startClusterGlobals(layout: BudgetLayout, program: Program, instanceId: string): Promise<void> {
    const { settings, logger } = this.options;
    const consumers = this.partitionConsumers!;
    const pool = this.pool!;
    const store = this.store!;
    const programs = this.programs!;
    let live = 1;
    let liveTimer: NodeJS.Timeout | undefined;
    const globals = await startClusterGlobals({
      openBuckets: async () => {
        const kvm = new Kvm(jetstream(this.nc!, { timeout: CREATE_TIMEOUT_MS }));
        const budgets = await withCreateRetries(() => kvm.create(settings.budgetsBucket, { history: 1, replicas: settings.clusterReplicas }), `bucket ${settings.budgetsBucket}`);
        const programsKv = await withCreateRetries(() => kvm.create(settings.programsBucket, { history: 5, replicas: settings.clusterReplicas }), `bucket ${settings.programsBucket}`);
        // The live instances, for the share of a budget's remainder near its end: read once a tick, never per reservation.
        const { listInstances } = await openOwnershipBuckets(this.nc!, { leasesBucket: settings.leasesBucket, instancesBucket: settings.instancesBucket, leaseTtlMs: settings.clusterLeaseTtlMs, tickMs: settings.clusterTickMs, replicas: settings.clusterReplicas, create: (create, what) => withCreateRetries(create, what) });
        live = Math.max(1, (await listInstances().catch(() => [])).length);
        liveTimer = setInterval(() => void listInstances().then((ids) => (live = Math.max(1, ids.length)), () => undefined), settings.clusterTickMs);
        liveTimer.unref();
        return { budgets, programs: programsKv };
      },
      instanceId,
      chunks: settings.clusterBudgetChunks,
      liveInstances: () => live,
      layout,
      program,
      runningText: store.storedProgram()?.text,
      programs,
      exclusive: (action) => consumers.exclusive(action),
      setProgram: (next, nextLayout) => pool.setProgram(next, nextLayout),
      budgetTotals: () => store.budgetTotals(),
      onApplied: () => this.api?.setProgram({ program: programs.active(), atMs: programs.activeSince().atMs, source: programs.activeSince().source }),
      onFatal: (error) => this.fail(error instanceof Error ? error : new Error(String(error))),
      logger,
    });
    // At the stop, after every partition is drained: the budget chunks not spent go back (doStop).
    this.clusterGlobals = {
      stop: async () => {
        if (liveTimer !== undefined) clearInterval(liveTimer);
        await globals.stop();
      },
    };
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

  /**
   * Outcomes committed before a crash but maybe never acknowledged by the
   * outcome stream: publish them again (same message ids: the stream drops
   * those it has) and remove each entry once the stream has acknowledged all
   * of its messages. An entry the stream does not take stays for the next start.
   */
  private async republishOutbox(store: LmdbStore, nc: NatsConnection): Promise<void> {
    const router = new PubAckRouter(nc, (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
    let batches = 0;
    let messages = 0;
    let failed = 0;
    let inFlight: Promise<void>[] = [];
    const published: OutboxKey[] = [];
    try {
      for (const { key, messages: packed } of store.outboxEntries()) {
        const outcomes = unpackOutbox(packed);
        messages += outcomes.length;
        batches += 1;
        inFlight.push(
          router.publishGroup(outcomes, this.options.settings.outcomePublishTimeoutMs).then(
            () => void published.push(key),
            () => void (failed += 1),
          ),
        );
        // Bounded: at most this many entries' messages in flight at once.
        if (inFlight.length >= REPUBLISH_ENTRIES_IN_FLIGHT_MAX) {
          await Promise.all(inFlight);
          inFlight = [];
          await store.commit({ members: [], ledger: [], processed: [], outboxRemovals: published.splice(0) });
        }
      }
      await Promise.all(inFlight);
      if (published.length > 0) await store.commit({ members: [], ledger: [], processed: [], outboxRemovals: published.splice(0) });
      await store.durable();
    } finally {
      router.close();
    }
    if (batches > 0) this.options.logger.info({ batches, messages }, 're-published outcomes from the outbox');
    if (failed > 0) this.options.logger.warn({ batches: failed }, 'the outcome stream did not acknowledge some re-published outbox entries; they stay in the outbox for the next start');
  }

  private updateGauges(): void {
    const ingest = this.ingest ?? this.partitionConsumers;
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
