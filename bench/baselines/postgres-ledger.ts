import { performance } from 'node:perf_hooks';
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { unpack } from 'msgpackr';
import pg from 'pg';
import type { ProgramModel } from '../generator/program-model.js';
import type { Encoding } from '../generator/spool.js';
import { ensurePostgres, startPostgres, type PostgresCluster } from '../harness/postgres.js';
import { summarize, type Summary } from '../measure/percentiles.js';
import { ProcessSampler, type ProcessUsageSummary } from '../measure/process-sampler.js';

/**
 * The conventional alternative to the engine: a consumer that reads the same
 * events from JetStream and keeps a ledger in PostgreSQL, the way many loyalty
 * back ends are built. For every batch of `batchEvents` events, in one
 * transaction (one statement, durable commit: fsync and synchronous_commit
 * on): insert a ledger row per event (the event id is the primary key, so a
 * redelivery changes nothing) and upsert each member's balance by the sum of
 * the rows actually inserted; then ack the batch (ack-all) after the commit.
 *
 * Its rules are the minimum: base earn for purchases, the fixed points of an
 * activity, minus the points of a redemption; returns are recorded with 0
 * points (valuing them needs the order, a read per return). It checks no
 * balance, tier, cap, promotion or pending period: it does less than the
 * engine per event, so the ratio engine ÷ PostgreSQL flatters PostgreSQL.
 */

export interface PostgresBaselineOptions {
  jsm: JetStreamManager;
  js: JetStreamClient;
  stream: string;
  /** Messages in the stream to consume, and the stream sequence before them. */
  count: number;
  baseSequence: number;
  encoding: Encoding;
  program: ProgramModel;
  batchEvents: number;
  /** Install PostgreSQL with apt-get when missing (only as root). */
  install: boolean;
  timeoutMs: number;
  log: (line: string) => void;
  onProgress?: (done: number, total: number) => void;
}

export interface PostgresTimelinePoint {
  tS: number;
  done: number;
  ratePerSecond: number;
  postgresCpuPercent: number | null;
}

export interface PostgresBaselineResult {
  status: 'measured' | 'skipped' | 'failed';
  /** Why it was skipped or failed, or what it did. */
  note: string;
  version: string | null;
  settings: Record<string, string>;
  batchEvents: number;
  events: number;
  /** First fetch → last commit and ack. */
  durationMs: number;
  eventsPerSecond: number;
  transactions: number;
  /** Duration of one batch's statement (commit included), in ms. */
  transactionMs: Summary | null;
  postgresUsage: ProcessUsageSummary | null;
  benchClientCpuPercentMean: number | null;
  /** Rows and sums read back after the run: the ledger holds every event once and the balances add up. */
  check: { ledgerRows: number; members: number; balanceSum: number; expectedSum: number; ok: boolean } | null;
  timeline: PostgresTimelinePoint[];
}

export function skippedPostgres(note: string, status: 'skipped' | 'failed' = 'skipped'): PostgresBaselineResult {
  return {
    status,
    note,
    version: null,
    settings: {},
    batchEvents: 0,
    events: 0,
    durationMs: Number.NaN,
    eventsPerSecond: Number.NaN,
    transactions: 0,
    transactionMs: null,
    postgresUsage: null,
    benchClientCpuPercentMean: null,
    check: null,
    timeline: [],
  };
}

const SCHEMA = `
CREATE TABLE ledger (
  event_id    text PRIMARY KEY,
  member_id   text NOT NULL,
  kind        text NOT NULL,
  points      bigint NOT NULL,
  occurred_at timestamptz NOT NULL,
  reference   text
);
CREATE INDEX ledger_member ON ledger (member_id, occurred_at);
CREATE TABLE balances (
  member_id  text PRIMARY KEY,
  points     bigint NOT NULL,
  updated_at timestamptz NOT NULL
);`;

const BATCH_STATEMENT = `
WITH incoming AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::text[])
    AS r(event_id, member_id, kind, points, occurred_at, reference)
), inserted AS (
  INSERT INTO ledger SELECT * FROM incoming ON CONFLICT (event_id) DO NOTHING
  RETURNING member_id, points, occurred_at
)
INSERT INTO balances (member_id, points, updated_at)
SELECT member_id, sum(points), max(occurred_at) FROM inserted GROUP BY member_id
ON CONFLICT (member_id) DO UPDATE
  SET points = balances.points + EXCLUDED.points, updated_at = greatest(balances.updated_at, EXCLUDED.updated_at)`;

interface DecodedEvent {
  id?: unknown;
  memberId?: unknown;
  type?: unknown;
  occurredAt?: unknown;
  amountMinor?: unknown;
  points?: unknown;
  activity?: unknown;
  customType?: unknown;
  orderId?: unknown;
  rewardId?: unknown;
}

/** The baseline's points for one event (see the module comment). */
export function baselinePoints(event: DecodedEvent, program: ProgramModel): number {
  switch (event.type) {
    case 'purchase':
      return typeof event.amountMinor === 'number' ? Math.floor((event.amountMinor * program.earnPoints) / program.earnPerAmountMinor) : 0;
    case 'redemption':
      return typeof event.points === 'number' ? -event.points : 0;
    case 'activity': {
      const rule = program.activities.find((option) => option.activity === event.activity && (option.customType ?? null) === (event.customType ?? null));
      return rule?.points ?? 0;
    }
    default:
      return 0;
  }
}

export async function runPostgresLedger(options: PostgresBaselineOptions): Promise<PostgresBaselineResult> {
  const availability = ensurePostgres(options.install, options.log);
  if (!availability.ok) return skippedPostgres(availability.reason);
  let cluster: PostgresCluster | undefined;
  const client = (): pg.Client => new pg.Client({ host: cluster!.host, port: cluster!.port, user: cluster!.user, database: cluster!.database });
  let db: pg.Client | undefined;
  try {
    cluster = await startPostgres(availability.binDir);
    options.log(`postgres baseline: ${cluster.version} on 127.0.0.1:${cluster.port} (fsync on, synchronous_commit on), ${options.batchEvents} events per transaction`);
    db = client();
    await db.connect();
    await db.query(SCHEMA);
    return await consume(options, cluster, db);
  } catch (error) {
    return skippedPostgres(`the PostgreSQL baseline failed: ${(error as Error).message.split('\n')[0]}`, 'failed');
  } finally {
    await db?.end().catch(() => undefined);
    await cluster?.stop().catch(() => undefined);
  }
}

async function consume(options: PostgresBaselineOptions, cluster: PostgresCluster, db: pg.Client): Promise<PostgresBaselineResult> {
  const { jsm, js, stream, count, program, batchEvents } = options;
  const name = 'bench-postgres';
  await jsm.consumers.add(stream, {
    durable_name: name,
    ack_policy: AckPolicy.All,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: Math.max(10_000, batchEvents * 4),
    ack_wait: 120_000_000_000, // ns: no redelivery during the pass
  });
  const consumer = await js.consumers.get(stream, name);
  const decoder = new TextDecoder();
  const usage = new ProcessSampler(cluster.pid, true);
  const columns = (): [string[], string[], string[], number[], string[], (string | null)[]] => [[], [], [], [], [], []];
  let rows = columns();
  let lastMessage: JsMsg | undefined;
  let done = 0;
  let expectedSum = 0;
  const transactionMs: number[] = [];
  const timeline: PostgresTimelinePoint[] = [];
  const benchCpuBefore = process.cpuUsage();
  const started = performance.now();
  usage.start();
  let lastTickDone = 0;
  let lastTickAt = started;
  const ticker = setInterval(() => {
    const now = performance.now();
    timeline.push({
      tS: Math.round((now - started) / 100) / 10,
      done,
      ratePerSecond: Math.round((done - lastTickDone) / ((now - lastTickAt) / 1000)),
      postgresCpuPercent: usage.latest()?.cpuPercent ?? null,
    });
    lastTickDone = done;
    lastTickAt = now;
    options.onProgress?.(done, count);
  }, 1_000);
  const flush = async (): Promise<void> => {
    if (rows[0].length === 0) return;
    const began = performance.now();
    await db.query(BATCH_STATEMENT, rows);
    transactionMs.push(performance.now() - began);
    // Ack-all after the commit: everything up to this message is durable.
    lastMessage!.ack();
    done += rows[0].length;
    rows = columns();
  };
  const messages = await consumer.consume({ max_messages: Math.max(2_000, batchEvents * 4) });
  const deadline = setTimeout(() => void messages.stop(), options.timeoutMs);
  let received = 0;
  try {
    for await (const message of messages) {
      received += 1;
      lastMessage = message;
      const text = options.encoding === 'json' ? JSON.parse(decoder.decode(message.data)) : unpack(message.data);
      const event = text as DecodedEvent;
      const points = baselinePoints(event, program);
      expectedSum += points;
      rows[0].push(String(event.id));
      rows[1].push(String(event.memberId));
      rows[2].push(String(event.type));
      rows[3].push(points);
      rows[4].push(String(event.occurredAt));
      rows[5].push(typeof event.orderId === 'string' ? event.orderId : typeof event.rewardId === 'string' ? event.rewardId : null);
      if (rows[0].length >= batchEvents) await flush();
      if (received >= count) break;
    }
    await flush();
    if (lastMessage !== undefined) await lastMessage.ackAck();
  } finally {
    clearTimeout(deadline);
    clearInterval(ticker);
  }
  const durationMs = performance.now() - started;
  const postgresUsage = usage.stop();
  const benchCpu = process.cpuUsage(benchCpuBefore);
  await messages.close().catch(() => undefined);
  await jsm.consumers.delete(stream, name).catch(() => undefined);
  const ledgerRows = Number((await db.query('SELECT count(*) AS n FROM ledger')).rows[0].n);
  const totals = (await db.query('SELECT count(*) AS n, coalesce(sum(points), 0) AS s FROM balances')).rows[0] as { n: string; s: string };
  const check = {
    ledgerRows,
    members: Number(totals.n),
    balanceSum: Number(totals.s),
    expectedSum,
    ok: ledgerRows === count && Number(totals.s) === expectedSum,
  };
  return {
    status: done === count ? 'measured' : 'failed',
    note:
      done === count
        ? `ledger insert + balance upsert, ${batchEvents} events per transaction, durable commits, ack-all after each commit`
        : `only ${done} of ${count} events were committed before the time limit`,
    version: cluster.version,
    settings: cluster.settings,
    batchEvents,
    events: done,
    durationMs,
    eventsPerSecond: done / (durationMs / 1000),
    transactions: transactionMs.length,
    transactionMs: summarize(transactionMs),
    postgresUsage,
    benchClientCpuPercentMean: Math.round(((benchCpu.user + benchCpu.system) / 1e6 / (durationMs / 1000)) * 1000) / 10,
    check,
    timeline,
  };
}
