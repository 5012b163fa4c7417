/**
 * One actor thread of the lean build (bench/lean/run.ts): the engine's work
 * per event with the least machinery around it, to measure what that work
 * costs at its leanest on this machine. Same work as the engine's actor:
 *
 * - decode (msgpack) and validate each event with the engine's own schema
 *   (`validateEvent`), refuse a member id that is not the subject's;
 * - the idempotency check: a read of the event's record in LMDB (a re-sent
 *   event gets its first outcomes back and changes nothing);
 * - the real domain (`applyEvent`) with every rule of the program, on states
 *   kept in a Map (no eviction: every member stays in memory, the cheapest
 *   possible cache);
 * - per event one record, keyed by (partition, member, event id), holding the
 *   event's ledger rows (the engine's ledger codec) and its outcome payloads
 *   encoded once: the idempotency record, the ledger and the outbox in one
 *   (the levers 3 and 5);
 * - per touched member one core record (the whole state, msgpack with shared
 *   structures), its due-index key when its next due time moved, the KPI
 *   counters and budget usage of the batch, and the "published through" mark
 *   of the outbox: all in one durable LMDB transaction per batch (lmdb-js's
 *   asynchronous puts, fsync'd at commit);
 * - after the commit, one JetStream publish per outcome with its
 *   Nats-Msg-Id, through the engine's PubAckRouter, and the batch's input
 *   sequences handed back for ack-all.
 *
 * What it leaves out (and so what it does not measure): eviction and
 * reloading of members, the item split of the member record (a busy member's
 * whole state is packed each batch), failure handling, metrics, the sweep.
 */
import { workerData } from 'node:worker_threads';
import { open } from 'lmdb';
import { Packr } from 'msgpackr';
import { connect } from '@nats-io/transport-node';
import { loadProgramFile } from '../../src/config/program-file.js';
import { applyEvent, compileProgram, unlimitedBudgets, validateEvent, type MemberState } from '../../src/domain/index.js';
import { nextDueMs } from '../../src/domain/sweep.js';
import { addKpis, emptyDay, mergeDay, type DayCounters, type KpiTarget } from '../../src/reports/kpis.js';
import { readBatch } from '../../src/routing/batch-buffer.js';
import { partitionOf } from '../../src/routing/partitioner.js';
import { encodeLedger } from '../../src/store/ledger-codec.js';
import { decodePayload } from '../../src/transport/codec.js';
import { PubAckRouter, type GroupMessage } from '../../src/transport/pub-acks.js';
import { messageIdPart } from '../../src/transport/subjects.js';

export interface LeanActorData {
  readonly actorIndex: number;
  readonly dataDir: string;
  readonly natsUrl: string;
  readonly programFile: string;
  readonly partitions: number;
  /**
   * 'outcome': one JetStream message per outcome (docs/contract.md today);
   * 'batch': one message per batch holding every outcome of it (msgpack array
   * of [subject, message id, payload]), the cheapest contract the transport allows.
   */
  readonly outcomeMessages: 'outcome' | 'batch';
}

export interface LeanBatchReply {
  readonly type: 'committed';
  readonly sequences: Float64Array;
  readonly outcomes: number;
  /** JetStream messages the batch's outcomes went out in. */
  readonly outcomeMessages: number;
  readonly invalid: number;
  readonly duplicates: number;
}

export interface LeanFinalReply {
  readonly type: 'final';
  /** memberId → spendable points per currency, for the run's check against a sequential replay. */
  readonly balances: Record<string, Record<string, number>>;
  readonly unpublishedBatches: number;
  /** Thread time per phase of the per-event work, in ms over the run. */
  readonly phases: Record<string, number>;
}

const data = workerData as LeanActorData;
const program = compileProgram(loadProgramFile(data.programFile));
const utcOffsetMinutes = program.program.utcOffsetMinutes;
const tierRank = new Map(program.program.tiers.map((tier, index) => [tier.id, index]));
const root = open({ path: data.dataDir, maxDbs: 4, mapSize: 16 * 1024 ** 3, compression: false });
const records = root.openDB({ name: 'records', encoding: 'binary' });
const cores = root.openDB({ name: 'cores', encoding: 'msgpack', sharedStructuresKey: Symbol.for('structures') });
const due = root.openDB({ name: 'due', encoding: 'binary' });
const meta = root.openDB({ name: 'meta', encoding: 'msgpack' });
const packr = new Packr({ useRecords: false });
// Connected at the first task: a worker module with a top-level await does not load under tsx in a worker thread.
const connected = connect({ servers: data.natsUrl, name: `lean-actor-${data.actorIndex}` }).then((nc) => ({ nc, router: new PubAckRouter(nc, undefined) }));
let router: PubAckRouter;
const states = new Map<string, MemberState>();
const dueOf = new Map<string, number | null>();
/** Running totals, as the engine's store keeps them: a commit writes the sum, not the batch's share. */
const kpiDays = new Map<number, DayCounters>();
const budgetTotals = new Map<string, number>();
const periodTotals = new Map<string, number>();
const encoder = new TextEncoder();
const ONE = new Uint8Array([1]);
let batchNumber = 0;
/** Time spent per phase of the per-event work, in ms (performance.now), for the run's breakdown. */
const phases = { decodeValidate: 0, idempotencyRead: 0, apply: 0, kpis: 0, outcomesAndRecord: 0, coresAndDue: 0, totals: 0 };
let clock = 0;
const lap = (phase: keyof typeof phases): void => {
  const now = performance.now();
  phases[phase] += now - clock;
  clock = now;
};
let unpublished = 0;

class BatchKpis implements KpiTarget {
  readonly days = new Map<number, DayCounters>();
  readonly weeks = new Map<number, number>();
  readonly months = new Map<number, number>();
  day(dayKey: number): DayCounters {
    let counters = this.days.get(dayKey);
    if (counters === undefined) this.days.set(dayKey, (counters = emptyDay()));
    return counters;
  }
  week(weekKey: number): { activeMembers: number } {
    return this.period(this.weeks, weekKey);
  }
  month(monthKey: number): { activeMembers: number } {
    return this.period(this.months, monthKey);
  }
  private period(map: Map<number, number>, key: number): { activeMembers: number } {
    return {
      get activeMembers() {
        return map.get(key) ?? 0;
      },
      set activeMembers(value: number) {
        map.set(key, value);
      },
    };
  }
}

function processBatch(buffer: ArrayBuffer): Promise<LeanBatchReply> {
  const batch = ++batchNumber;
  const input = readBatch(buffer);
  const sequences = new Float64Array(input.length);
  const touched = new Map<string, { partition: number; state: MemberState }>();
  const kpis = new BatchKpis();
  const budgetUsage = new Map<string, number>();
  const group: GroupMessage[] = [];
  // lmdb-js commits the puts of one synchronous run as one transaction; a large batch can span two, so every distinct promise is awaited.
  const transactions: Promise<unknown>[] = [];
  let previous: Promise<unknown> | undefined;
  const track = (promise: Promise<unknown>): void => {
    if (promise !== previous) transactions.push((previous = promise));
  };
  let invalid = 0;
  let duplicates = 0;
  clock = performance.now();
  for (let index = 0; index < input.length; index++) {
    const record = input[index]!;
    sequences[index] = record.streamSequence;
    const decoded = decodePayload(record.payload, record.encoding);
    const validation = decoded.ok ? validateEvent(decoded.value) : undefined;
    if (validation === undefined || !validation.ok || validation.event.memberId !== record.memberId) {
      invalid += 1; // the engine dead-letters it; no valid event of the bench lands here
      continue;
    }
    lap('decodeValidate');
    const { event, occurredAtMs } = validation;
    const partition = partitionOf(event.memberId, data.partitions);
    const key = [partition, event.memberId, event.id];
    const first = records.getBinaryFast(key);
    if (first !== undefined) {
      duplicates += 1;
      const stored = packr.unpack(first) as [unknown, string[], Uint8Array[]];
      for (let outcome = 0; outcome < stored[2].length; outcome++) group.push([stored[1][2 * outcome]!, stored[1][2 * outcome + 1]!, stored[2][outcome]!]);
      continue;
    }
    lap('idempotencyRead');
    const before = states.get(event.memberId);
    const decision = applyEvent(before, event, occurredAtMs, program, { budgets: unlimitedBudgets });
    const after = decision.state;
    lap('apply');
    if (after !== undefined && after !== before) {
      states.set(after.memberId, after);
      touched.set(after.memberId, { partition, state: after });
      addKpis(kpis, { before, after, ledger: decision.ledger, tierRank, atMs: occurredAtMs, utcOffsetMinutes });
    }
    for (const usage of decision.budgetUsage ?? []) budgetUsage.set(usage.promotionId, (budgetUsage.get(usage.promotionId) ?? 0) + usage.points);
    lap('kpis');
    // The outcomes encoded once: the same bytes go into the record and onto the wire.
    const subjectsAndIds: string[] = [];
    const payloads: Uint8Array[] = [];
    for (let outcome = 0; outcome < decision.outcomes.length; outcome++) {
      const value = decision.outcomes[outcome]!;
      const subject = `loyalty.outcome.${value.kind}.${value.memberId}`;
      const messageId = `${value.memberId}:${messageIdPart(value.eventId)}:${outcome}`;
      const payload = encoder.encode(JSON.stringify(value));
      subjectsAndIds.push(subject, messageId);
      payloads.push(payload);
      group.push([subject, messageId, payload]);
    }
    track(records.put(key, packr.pack([decision.ledger.length > 0 ? encodeLedger(decision.ledger) : null, subjectsAndIds, payloads])));
    lap('outcomesAndRecord');
  }
  for (const [memberId, { partition, state }] of touched) {
    track(cores.put([partition, memberId], state));
    const dueMs = nextDueMs(state, program);
    const indexed = dueOf.get(memberId) ?? null;
    if (dueMs !== indexed) {
      if (indexed !== null) track(due.remove([partition, indexed, memberId]));
      if (dueMs !== null) track(due.put([partition, dueMs, memberId], ONE));
      dueOf.set(memberId, dueMs);
    }
  }
  lap('coresAndDue');
  for (const [dayKey, counters] of kpis.days) {
    const total = mergeDay(kpiDays.get(dayKey) ?? emptyDay(), counters);
    kpiDays.set(dayKey, total);
    track(meta.put(['kpi', data.actorIndex, dayKey], total));
  }
  for (const [kind, periods] of [['week', kpis.weeks], ['month', kpis.months]] as const) {
    for (const [periodKey, active] of periods) {
      const name = `${kind}:${periodKey}`;
      const total = (periodTotals.get(name) ?? 0) + active;
      periodTotals.set(name, total);
      track(meta.put(['kpi', kind, data.actorIndex, periodKey], total));
    }
  }
  for (const [promotionId, points] of budgetUsage) {
    const total = (budgetTotals.get(promotionId) ?? 0) + points;
    budgetTotals.set(promotionId, total);
    track(meta.put(['budget', data.actorIndex, promotionId], total));
  }
  // The outbox's "published through" mark of the batches before, folded into this commit.
  track(meta.put(['published', data.actorIndex], batch - 1 - unpublished));
  unpublished += 1;
  lap('totals');
  const outcomes = group.length;
  const messages: GroupMessage[] =
    data.outcomeMessages === 'outcome' || group.length === 0 ? group : [[`loyalty.outcome.batch.${data.actorIndex}`, `lean:${data.actorIndex}:${batch}`, packr.pack(group)]];
  return Promise.all(transactions).then(() => {
    router.publishGroup(messages, 30_000).then(
      () => (unpublished -= 1),
      (error: unknown) => {
        console.error(`lean actor ${data.actorIndex}: outcome publish failed: ${String(error)}`);
        process.exit(1);
      },
    );
    return { type: 'committed', sequences, outcomes, outcomeMessages: messages.length, invalid, duplicates };
  });
}

/** Piscina's task: a batch buffer, or 'final' once the run is over. */
export default async function task(message: ArrayBuffer | 'final'): Promise<LeanBatchReply | LeanFinalReply> {
  router ??= (await connected).router;
  if (message !== 'final') return processBatch(message);
  while (unpublished > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  const balances: Record<string, Record<string, number>> = {};
  for (const [memberId, state] of states) {
    const byCurrency: Record<string, number> = {};
    for (const currency in state.currencies) byCurrency[currency] = state.currencies[currency]!.spendable;
    balances[memberId] = byCurrency;
  }
  router.close();
  await (await connected).nc.close();
  await root.close();
  return { type: 'final', balances, unpublishedBatches: unpublished, phases };
}
