import { getHeapStatistics } from 'node:v8';
import { Packr } from 'msgpackr';
import { EngineError, type EngineErrorCode } from '../config/errors.js';
import { applyEvent } from '../domain/apply.js';
import { assert } from '../domain/assert.js';
import { compileProgram, type CompiledProgram } from '../domain/compiled.js';
import { hash53 } from '../domain/hash.js';
import { loyaltyEventSchema, validateEvent } from '../domain/events.js';
import type { DomainPorts } from '../domain/ports.js';
import type { Program } from '../domain/program.js';
import type { Decision, LedgerEntry, MemberState, Outcome } from '../domain/state.js';
import { nextDueMs, sweepMember } from '../domain/sweep.js';
import { addKpis, emptyDay, type DayCounters, type KpiTarget } from '../reports/kpis.js';
import { type BatchRecord } from '../routing/batch-buffer.js';
import { actorOfPartition, partitionOf } from '../routing/partitioner.js';
import type { ActorStore, BatchWrite, DueKey, KpiWrite, OutboxKey } from '../store/types.js';
import { decodePayload, type DecodeFailure } from '../transport/codec.js';
import type { OutcomeMessage } from '../transport/outcomes.js';
import { messageIdPart, type Subjects } from '../transport/subjects.js';
import { MemberCache } from './member-cache.js';

/**
 * One actor: the single writer for the members of its partitions. It decodes
 * and validates raw payloads, applies them through the pure domain in order,
 * and commits the whole batch in one store transaction. It never touches NATS:
 * the worker around it publishes what it returns.
 */

export type { OutcomeMessage };

/** An outbox entry: the packed outcome messages of each event (or swept member) of one batch. */
export function unpackOutbox(packed: Uint8Array): OutcomeMessage[] {
  const messages: OutcomeMessage[] = [];
  for (const perEvent of packr.unpack(packed) as Uint8Array[]) {
    for (const message of packr.unpack(perEvent) as OutcomeMessage[]) messages.push(message);
  }
  return messages;
}

/** Why a message was dead-lettered, as a bounded label (the metric's); `reason` says it for people. */
export type DeadLetterKind = DecodeFailure | 'oversized' | 'schema' | 'member_mismatch' | 'internal_check';

export interface DeadLetter {
  readonly streamSequence: number;
  readonly memberToken: string;
  readonly kind: DeadLetterKind;
  readonly reason: string;
  readonly encoding: number;
  readonly payload: Uint8Array;
}

export type EventResult = 'applied' | 'rejected' | 'duplicate' | 'invalid';

export interface BatchResult {
  readonly batch: number;
  /** Sequences whose effect is committed (applied, rejected or duplicate). */
  readonly committedSequences: Float64Array;
  /** When each committed event was published, for end-to-end latency. */
  readonly publishedAtMs: Float64Array;
  /** Sequences that must go to the dead-letter stream; they change no state. */
  readonly deadLetters: readonly DeadLetter[];
  /** Counts by `<type>|<result>`; type is `unknown` for undecodable events. */
  readonly counts: Readonly<Record<string, number>>;
  readonly commitSeconds: number;
  readonly applySeconds: number;
  readonly cachedMembers: number;
  readonly outcomeCount: number;
  /** V8 heap in use by this actor's thread, after the batch. */
  readonly heapUsedBytes: number;
}

export interface SweepResult {
  readonly scanned: number;
  readonly swept: number;
  readonly outcomeCount: number;
  /**
   * True when this sweep reached the end of its work list: every due member
   * of the actor's partitions, and any partition being re-indexed walked to
   * its end (the next sweep starts over).
   */
  readonly finished: boolean;
}

export interface ActorOptions {
  readonly actorIndex: number;
  readonly actors: number;
  readonly partitions: number;
  readonly memberCacheMax: number;
  readonly payloadBytesMax: number;
  readonly subjects: Subjects;
  /** Distinguishes this run's outbox keys from earlier runs'. */
  readonly bootId: number;
  readonly ports: DomainPorts;
  /** 'all' (default): every partition of this actor; 'given' (cluster mode): only those given by ownPartition. */
  readonly ownsPartitions?: 'all' | 'given';
}

export interface ProcessedBatch {
  readonly result: BatchResult;
  readonly outcomes: readonly OutcomeMessage[];
  readonly outboxKey: OutboxKey | undefined;
  /** Cluster mode: the highest committed input sequence per partition of the batch (undefined when the store records no changes). */
  readonly watermarks?: ReadonlyMap<number, number> | undefined;
}

const packr = new Packr({ useRecords: false });

/** One batch's KPI deltas by day / ISO week / month key, for one actor (single-instance mode) or one partition (cluster mode). */
export class KpiCounters implements KpiTarget {
  readonly days = new Map<number, DayCounters>();
  readonly weeks = new Map<number, number>();
  readonly months = new Map<number, number>();

  day(dayKey: number): DayCounters {
    let counters = this.days.get(dayKey);
    if (counters === undefined) {
      counters = emptyDay();
      this.days.set(dayKey, counters);
    }
    return counters;
  }

  week(weekKey: number): { activeMembers: number } {
    return periodActive(this.weeks, weekKey);
  }

  month(monthKey: number): { activeMembers: number } {
    return periodActive(this.months, monthKey);
  }

  isEmpty(): boolean {
    return this.days.size === 0 && this.weeks.size === 0 && this.months.size === 0;
  }

  /** The deltas as the store adds them, under `actor` (the writer). */
  write(actor: number): KpiWrite {
    return { actor, days: [...this.days], weeks: [...this.weeks], months: [...this.months] };
  }
}

function periodActive(entries: Map<number, number>, periodKey: number): { activeMembers: number } {
  return {
    get activeMembers() {
      return entries.get(periodKey) ?? 0;
    },
    set activeMembers(value: number) {
      entries.set(periodKey, value);
    },
  };
}

/** What one batch (of events, or of a sweep) accumulates before its commit. */
class BatchChanges {
  /** `base`: the member's state before this batch (what the store holds), so the store writes only what changed. */
  readonly members = new Map<string, { partition: number; state: MemberState; created: boolean; base: MemberState | undefined }>();
  readonly ledger: { partition: number; entries: readonly LedgerEntry[] }[] = [];
  readonly processed: { partition: number; memberId: string; eventId: string; outcomes: Uint8Array }[] = [];
  readonly outcomes: OutcomeMessage[] = [];
  /** The same outcomes as packed per event (the processed records): the outbox nests them instead of packing again. */
  readonly encodedOutcomes: Uint8Array[] = [];
  readonly budgetUsage = new Map<string, [points: number, uses: number]>();
  /** Single-instance mode's KPI deltas, kept per actor (BatchWrite.kpis); stays empty when the store records changes. */
  readonly kpis = new KpiCounters();
  /**
   * Cluster mode's KPI deltas by partition (BatchWrite.partitionKpis), so they
   * go into each partition's changes and move with it; undefined when the
   * store records no changes.
   */
  readonly partitionKpis: Map<number, KpiCounters> | undefined;
  readonly idKeys: string[] = [];
  readonly dueIndexMarks: { partition: number; programDigest: number }[] = [];
  /** The highest committed input sequence per partition (BatchWrite.watermarks); undefined when the store records no changes. */
  readonly watermarks: Map<number, number> | undefined;

  constructor(recordingChanges = false) {
    this.watermarks = recordingChanges ? new Map() : undefined;
    this.partitionKpis = recordingChanges ? new Map() : undefined;
  }

  committedInput(partition: number, streamSequence: number): void {
    const watermarks = this.watermarks;
    if (watermarks !== undefined && streamSequence > (watermarks.get(partition) ?? 0)) watermarks.set(partition, streamSequence);
  }

  /** Where a decision of `partition` counts its KPIs: the actor's counters, or in cluster mode the partition's. */
  kpiTarget(partition: number): KpiCounters {
    const byPartition = this.partitionKpis;
    if (byPartition === undefined) return this.kpis;
    let counters = byPartition.get(partition);
    if (counters === undefined) byPartition.set(partition, (counters = new KpiCounters()));
    return counters;
  }

  isEmpty(): boolean {
    return (
      this.members.size === 0 && this.processed.length === 0 && this.outcomes.length === 0 && this.ledger.length === 0 && this.dueIndexMarks.length === 0
    );
  }
}

export class Actor {
  private cache: MemberCache;
  private program: CompiledProgram;
  private tierRank = new Map<string, number>();
  private batchNumber = 0;
  /** The previous batch's commit: a batch commits only after it, and never after it failed. */
  private lastCommit: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  /** Event ids applied by batches not yet committed: `memberId\0eventId` → encoded outcome messages. */
  private readonly uncommittedIds = new Map<string, Uint8Array>();
  private readonly ownedPartitions: number[];
  /** The sweep's place in the due index: the partition (index into ownedPartitions) and the last key visited this pass. */
  private dueCursor: { partitionIndex: number; after: DueKey | undefined } = { partitionIndex: 0, after: undefined };
  /** Identifies the program the due times are computed under (a hash of its definition). */
  private programDigest: number;
  /**
   * Partitions whose due index was built under another program (or before
   * there was one): the sweep walks them member by member once, re-indexing
   * each, then marks them. `rescanAfter` is the last member id walked.
   */
  private rescan: number[] = [];
  private rescanAfter: string | undefined;
  /** Partitions found empty: their index is right by definition, marked with the next sweep's commit. */
  private pendingMarks: number[] = [];
  /** Outbox entries the outcome stream has acknowledged: the next commit removes them (no transaction of their own). */
  private publishedOutbox: OutboxKey[] = [];

  constructor(
    private readonly store: ActorStore,
    program: Program,
    private readonly options: ActorOptions,
  ) {
    assert(options.partitions > 0, 'partitions must be positive');
    assert(options.actorIndex >= 0 && options.actorIndex < options.actors, 'actor index out of range');
    this.cache = new MemberCache(options.memberCacheMax);
    this.program = compileProgram(program);
    this.setTierRank(program);
    this.ownedPartitions = [];
    // In cluster mode an actor starts with none: it is given each partition once its lease is won and its state restored.
    if (options.ownsPartitions !== 'given') {
      for (let partition = 0; partition < options.partitions; partition++) {
        if (actorOfPartition(partition, options.actors) === options.actorIndex) this.ownedPartitions.push(partition);
      }
    }
    this.programDigest = programDigest(program);
    this.planRescan();
  }

  setProgram(program: Program): void {
    this.program = compileProgram(program);
    this.setTierRank(program);
    const digest = programDigest(program);
    if (digest === this.programDigest) return;
    // Due times depend on the program (expiry rules, horizons, promotion ends): re-index.
    this.programDigest = digest;
    this.planRescan();
  }

  /** The partitions this actor serves now, in order. */
  partitionsServed(): readonly number[] {
    return this.ownedPartitions;
  }

  /**
   * Cluster mode: serve `partition` from now on. Its state was just restored
   * into the store, so any cached member of it is stale and goes. Call
   * between batches of the partition (none in flight: its intake starts after).
   */
  ownPartition(partition: number): void {
    this.assertMine(partition);
    if (this.ownedPartitions.includes(partition)) return;
    this.forgetPartition(partition);
    this.ownedPartitions.push(partition);
    this.ownedPartitions.sort((a, b) => a - b);
    // Restarts the sweep's walk and the re-index plan over the new set (each visited partition is cheap to re-check).
    this.dueCursor = { partitionIndex: 0, after: undefined };
    this.planRescan();
  }

  /** Cluster mode: stop serving `partition` (handed over or lost). Its batches are drained before. */
  releasePartition(partition: number): void {
    this.assertMine(partition);
    const at = this.ownedPartitions.indexOf(partition);
    if (at < 0) return;
    this.ownedPartitions.splice(at, 1);
    this.forgetPartition(partition);
    this.dueCursor = { partitionIndex: 0, after: undefined };
    this.rescan = this.rescan.filter((each) => each !== partition);
    if (this.rescan.length === 0) this.rescanAfter = undefined;
    this.pendingMarks = this.pendingMarks.filter((each) => each !== partition);
  }

  private assertMine(partition: number): void {
    assert(Number.isInteger(partition) && partition >= 0 && partition < this.options.partitions, 'partition out of range');
    assert(actorOfPartition(partition, this.options.actors) === this.options.actorIndex, `partition ${partition} is not actor ${this.options.actorIndex}'s`);
  }

  private forgetPartition(partition: number): void {
    const { partitions } = this.options;
    this.cache.forget((memberId) => partitionOf(memberId, partitions) === partition);
    for (const key of this.uncommittedIds.keys()) {
      const memberId = key.slice(0, key.indexOf('\0'));
      assert(partitionOf(memberId, partitions) !== partition, 'a partition with uncommitted events cannot change hands');
    }
  }

  /** Which owned partitions need their due index rebuilt under the current program. */
  private planRescan(): void {
    this.rescan = [];
    this.rescanAfter = undefined;
    this.pendingMarks = [];
    for (const partition of this.ownedPartitions) {
      if (this.store.dueIndexDigest(partition) === this.programDigest) continue;
      if (this.store.scanMembers(partition, undefined, 1).length === 0) this.pendingMarks.push(partition);
      else this.rescan.push(partition);
    }
  }

  /**
   * Applies a batch in order and commits it. Everything up to the commit is
   * synchronous, so a later batch that starts while this one is flushing sees
   * this batch's member states and event ids.
   */
  async process(records: readonly BatchRecord[]): Promise<ProcessedBatch> {
    if (this.failure !== undefined) throw this.failure;
    const batch = ++this.batchNumber;
    const applyStarted = performance.now();
    const counts: Record<string, number> = {};
    const committedSequences: number[] = [];
    const publishedAtMs: number[] = [];
    const deadLetters: DeadLetter[] = [];
    const changes = new BatchChanges(this.store.recordingChanges === true);

    // No closure per record (a function created in the loop costs an allocation each, and more under tsx).
    const invalid = (record: BatchRecord, kind: DeadLetterKind, reason: string, type = 'unknown'): void => {
      count(counts, type, 'invalid');
      deadLetters.push({
        streamSequence: record.streamSequence,
        memberToken: record.memberId,
        kind,
        reason,
        encoding: record.encoding,
        payload: record.payload.slice(),
      });
    };
    for (const record of records) {
      if (record.payload.length > this.options.payloadBytesMax) {
        invalid(record, 'oversized', `payload of ${record.payload.length} bytes exceeds the limit of ${this.options.payloadBytesMax}`);
        continue;
      }
      const decoded = decodePayload(record.payload, record.encoding);
      if (!decoded.ok) {
        invalid(record, decoded.kind, decoded.reason);
        continue;
      }
      const validation = validateEvent(decoded.value);
      if (!validation.ok) {
        invalid(record, 'schema', validation.reason, typeOf(decoded.value));
        continue;
      }
      const { event, occurredAtMs } = validation;
      if (event.memberId !== record.memberId) {
        invalid(record, 'member_mismatch', `memberId "${event.memberId}" differs from the subject's member token "${record.memberId}"`, event.type);
        continue;
      }
      committedSequences.push(record.streamSequence);
      publishedAtMs.push(record.publishedAtMs);

      const idKey = `${event.memberId}\u0000${event.id}`;
      const partition = partitionOf(event.memberId, this.options.partitions);
      const current = this.memberState(partition, event.memberId);
      const firstOutcome = this.uncommittedIds.get(idKey) ?? this.store.readProcessed(partition, event.memberId, event.id);
      if (firstOutcome !== undefined) {
        // A redelivery or a producer re-sending: publish the first outcome again, change nothing.
        count(counts, event.type, 'duplicate');
        changes.committedInput(partition, record.streamSequence);
        for (const message of packr.unpack(firstOutcome) as OutcomeMessage[]) changes.outcomes.push(message);
        changes.encodedOutcomes.push(firstOutcome);
        continue;
      }

      let decision: Decision;
      try {
        decision = applyEvent(current, event, occurredAtMs, this.program, this.options.ports);
      } catch (error) {
        // A check inside the domain refused this event (say, an amount whose
        // points overflow exact integers). The domain never changes its inputs
        // and decides the same way every time, so a redelivery would fail again
        // and stop the engine in a loop: the event goes to the dead letters
        // instead, and nothing of it is committed.
        committedSequences.pop();
        publishedAtMs.pop();
        invalid(record, 'internal_check', `refused by an internal check: ${(error as Error)?.message ?? String(error)}`, event.type);
        continue;
      }
      const rejected = decision.outcomes.some((outcome) => outcome.kind === 'rejected');
      count(counts, event.type, rejected ? 'rejected' : 'applied');
      changes.committedInput(partition, record.streamSequence);
      const messages = this.record(changes, batch, partition, current, decision, occurredAtMs);
      const encoded = packr.pack(messages);
      changes.encodedOutcomes.push(encoded);
      changes.processed.push({ partition, memberId: event.memberId, eventId: event.id, outcomes: encoded });
      this.uncommittedIds.set(idKey, encoded);
      changes.idKeys.push(idKey);
    }

    const applySeconds = (performance.now() - applyStarted) / 1000;
    const commitStarted = performance.now();
    const outboxKey = await this.commit(batch, changes);
    return {
      result: {
        batch,
        committedSequences: Float64Array.from(committedSequences),
        publishedAtMs: Float64Array.from(publishedAtMs),
        deadLetters,
        counts,
        commitSeconds: (performance.now() - commitStarted) / 1000,
        applySeconds,
        cachedMembers: this.cache.size,
        outcomeCount: changes.outcomes.length,
        heapUsedBytes: getHeapStatistics().used_heap_size,
      },
      outcomes: changes.outcomes,
      outboxKey,
      watermarks: changes.watermarks,
    };
  }

  /**
   * The scheduled sweep, travelling through this actor like a batch: releases
   * pending points, expires lots, reviews tiers for up to `limit` members of
   * its partitions whose next due time has come, continuing where the last
   * sweep stopped.
   */
  async sweep(nowMs: number, limit: number): Promise<{ result: SweepResult; outcomes: readonly OutcomeMessage[]; outboxKey: OutboxKey | undefined }> {
    if (this.failure !== undefined) throw this.failure;
    assert(limit > 0, 'sweep limit must be positive');
    const batch = ++this.batchNumber;
    const changes = new BatchChanges(this.store.recordingChanges === true);
    for (const partition of this.pendingMarks.splice(0)) changes.dueIndexMarks.push({ partition, programDigest: this.programDigest });
    const tally = { scanned: 0, swept: 0 };
    const dueFinished = this.sweepDue(changes, batch, nowMs, limit, tally);
    if (tally.scanned < limit) this.sweepRescan(changes, batch, nowMs, limit, tally);
    const outboxKey = await this.commit(batch, changes);
    const result = { scanned: tally.scanned, swept: tally.swept, outcomeCount: changes.outcomes.length, finished: dueFinished && this.rescan.length === 0 };
    return { result, outcomes: changes.outcomes, outboxKey };
  }

  /** The members the due index lists as due by `nowMs`, partition by partition; true when it reached the end. */
  private sweepDue(changes: BatchChanges, batch: number, nowMs: number, limit: number, tally: { scanned: number; swept: number }): boolean {
    while (tally.scanned < limit) {
      const partition = this.ownedPartitions[this.dueCursor.partitionIndex];
      if (partition === undefined) {
        this.dueCursor = { partitionIndex: 0, after: undefined };
        return true;
      }
      const keys = this.store.dueMembers(partition, nowMs, this.dueCursor.after, limit - tally.scanned);
      if (keys.length === 0) {
        this.dueCursor = { partitionIndex: this.dueCursor.partitionIndex + 1, after: undefined };
        continue;
      }
      for (const key of keys) {
        tally.scanned += 1;
        this.dueCursor.after = key;
        // The cache is the truth between commits; the stored copy may be older.
        const state = this.cache.get(key.memberId) ?? this.store.readMember(partition, key.memberId);
        if (state !== undefined && this.sweepOne(changes, batch, partition, state, nowMs)) tally.swept += 1;
      }
    }
    return false;
  }

  /** Walks the partitions being re-indexed, member by member, marking each once walked to its end. */
  private sweepRescan(changes: BatchChanges, batch: number, nowMs: number, limit: number, tally: { scanned: number; swept: number }): void {
    while (tally.scanned < limit && this.rescan.length > 0) {
      const partition = this.rescan[0]!;
      const stored = this.store.scanMembers(partition, this.rescanAfter, limit - tally.scanned);
      if (stored.length === 0) {
        changes.dueIndexMarks.push({ partition, programDigest: this.programDigest });
        this.rescan.shift();
        this.rescanAfter = undefined;
        continue;
      }
      for (const storedState of stored) {
        tally.scanned += 1;
        this.rescanAfter = storedState.memberId;
        const state = this.cache.get(storedState.memberId) ?? storedState;
        if (this.sweepOne(changes, batch, partition, state, nowMs)) tally.swept += 1;
      }
    }
  }

  /**
   * Applies the sweep to one member if something is due by `nowMs`; true when
   * that changed it. A member the sweep leaves as it is but whose indexed due
   * time is not the current program's is written again for its index key alone.
   */
  private sweepOne(changes: BatchChanges, batch: number, partition: number, state: MemberState, nowMs: number): boolean {
    if (changes.members.has(state.memberId)) return false; // already swept (or re-indexed) in this batch
    const due = nextDueMs(state, this.program);
    if (due !== null && due <= nowMs) {
      const decision = sweepMember(state, nowMs, this.program);
      if (decision.state !== state || decision.ledger.length > 0 || decision.outcomes.length > 0) {
        const messages = this.record(changes, batch, partition, state, decision, nowMs);
        if (messages.length > 0) changes.encodedOutcomes.push(packr.pack(messages));
        return true;
      }
    }
    if (this.store.indexedDueMs(state) !== due) changes.members.set(state.memberId, { partition, state, created: false, base: state });
    return false;
  }

  /** Adds one decision to the batch: new state, ledger record, outcomes, budget usage, KPI counters. */
  private record(
    changes: BatchChanges,
    batch: number,
    partition: number,
    before: MemberState | undefined,
    decision: Decision,
    atMs: number,
  ): OutcomeMessage[] {
    const after = decision.state;
    if (after !== undefined && after !== before) {
      this.cache.set(after.memberId, after, batch);
      const earlier = changes.members.get(after.memberId);
      changes.members.set(after.memberId, {
        partition,
        state: after,
        created: earlier !== undefined ? earlier.created : before === undefined,
        base: earlier !== undefined ? earlier.base : before,
      });
    }
    if (decision.ledger.length > 0) changes.ledger.push({ partition, entries: decision.ledger });
    for (const usage of decision.budgetUsage ?? []) {
      const total = changes.budgetUsage.get(usage.promotionId) ?? [0, 0];
      total[0] += usage.points;
      total[1] += usage.uses;
      changes.budgetUsage.set(usage.promotionId, total);
    }
    if (after !== undefined) {
      addKpis(changes.kpiTarget(partition), { before, after, ledger: decision.ledger, tierRank: this.tierRank, atMs, utcOffsetMinutes: this.program.program.utcOffsetMinutes });
    }
    const messages = decision.outcomes.map((outcome, index) => this.outcomeMessage(outcome, index));
    for (const message of messages) changes.outcomes.push(message);
    return messages;
  }

  /** The outcome stream has every outcome of this outbox entry: it goes with the next commit. */
  outboxPublished(key: OutboxKey): void {
    this.publishedOutbox.push(key);
  }

  /** Removes acknowledged outbox entries in a commit of their own, for when no batch comes to carry them. */
  async removePublishedOutbox(): Promise<void> {
    if (this.failure !== undefined || this.publishedOutbox.length === 0) return;
    await this.commit(++this.batchNumber, new BatchChanges());
  }

  /** Commits after the previous batch; on failure this actor refuses everything after. */
  private async commit(batch: number, changes: BatchChanges): Promise<OutboxKey | undefined> {
    const outboxKey: OutboxKey | undefined = changes.outcomes.length > 0 ? [this.options.bootId, this.options.actorIndex, batch] : undefined;
    const outboxRemovals = this.publishedOutbox.splice(0);
    const write: BatchWrite = {
      // Each member's next due time under the program that produced it: the sweep's index.
      members: Array.from(changes.members.values(), (entry) => ({ ...entry, dueMs: nextDueMs(entry.state, this.program) })),
      ledger: changes.ledger,
      ...(changes.dueIndexMarks.length > 0 ? { dueIndexMarks: changes.dueIndexMarks } : {}),
      ...(changes.watermarks !== undefined && changes.watermarks.size > 0 ? { watermarks: Array.from(changes.watermarks, ([partition, sequence]) => ({ partition, sequence })) } : {}),
      processed: changes.processed,
      ...(changes.budgetUsage.size > 0
        ? { budgets: { actor: this.options.actorIndex, usage: [...changes.budgetUsage].map(([id, [points, uses]]) => [id, points, uses] as const) } }
        : {}),
      ...(changes.kpis.isEmpty() ? {} : { kpis: changes.kpis.write(this.options.actorIndex) }),
      ...(changes.partitionKpis !== undefined && changes.partitionKpis.size > 0
        ? { partitionKpis: Array.from(changes.partitionKpis, ([partition, counters]) => ({ ...counters.write(this.options.actorIndex), partition })) }
        : {}),
      ...(outboxKey !== undefined ? { outbox: { key: outboxKey, messages: packr.pack(changes.encodedOutcomes) } } : {}),
      ...(outboxRemovals.length > 0 ? { outboxRemovals } : {}),
    };
    const previous = this.lastCommit;
    const commit = (async () => {
      await previous;
      if (this.failure !== undefined) throw this.failure;
      if (!changes.isEmpty() || outboxRemovals.length > 0) await this.store.commit(write);
    })();
    // Later batches were applied on top of this one in memory: if this commit
    // fails they must not commit either (their state holds this batch's effects).
    this.lastCommit = commit.catch((error: unknown) => {
      this.failure ??= new ActorFailedError(batch, error);
      throw this.failure;
    });
    this.lastCommit.catch(() => undefined);
    try {
      await this.lastCommit;
      await this.store.durable();
    } catch (error) {
      // A failed flush is a failed commit: what is in memory is not durable.
      this.failure ??= new ActorFailedError(batch, error);
      this.cache = new MemberCache(this.options.memberCacheMax);
      this.uncommittedIds.clear();
      throw this.failure;
    }
    this.cache.committed(changes.members.keys(), batch);
    for (const idKey of changes.idKeys) this.uncommittedIds.delete(idKey);
    this.cache.evict();
    return outboxKey;
  }

  private memberState(partition: number, memberId: string): MemberState | undefined {
    const cached = this.cache.get(memberId);
    if (cached !== undefined) return cached;
    const stored = this.store.readMember(partition, memberId);
    if (stored !== undefined) this.cache.load(memberId, stored);
    return stored;
  }

  private outcomeMessage(outcome: Outcome, index: number): OutcomeMessage {
    return [
      this.options.subjects.outcome(outcome.kind, outcome.memberId),
      `${outcome.memberId}:${messageIdPart(outcome.eventId)}:${index}`,
      JSON.stringify(outcome),
    ];
  }

  private setTierRank(program: Program): void {
    this.tierRank = new Map(program.tiers.map((tier, index) => [tier.id, index]));
  }
}

/** Identifies a program definition: due times computed under one digest hold until the program changes. */
function programDigest(program: Program): number {
  return hash53(JSON.stringify(program));
}

/**
 * A commit failed: this actor's memory is ahead of its store. It refuses all
 * further batches; the engine stops without acking and a restart rebuilds the
 * state from LMDB and JetStream redelivery (crash-only recovery).
 */
export class ActorFailedError extends Error {
  readonly code = 'ERR_ACTOR_COMMIT_FAILED';
  /**
   * The store's code for the failure when it has one (ERR_STORE_DISK_FULL,
   * ERR_STORE_MAP_FULL, ERR_STORE_IO: src/store/commit-errors.ts), also in
   * the message, which is what crosses to the main thread and the log.
   */
  readonly reason: EngineErrorCode | undefined;
  constructor(batch: number, cause: unknown) {
    const reason = cause instanceof EngineError ? cause.code : undefined;
    super(`actor commit of batch ${batch} failed${reason === undefined ? '' : ` (${reason})`}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.reason = reason;
    this.name = 'ActorFailedError';
  }
}

function count(counts: Record<string, number>, type: string, result: EventResult): void {
  const key = `${type}|${result}`;
  counts[key] = (counts[key] ?? 0) + 1;
}

// Every event type the contract has, from its schema: a new type gets its own label without a list to keep.
const KNOWN_TYPES = new Set<string>(loyaltyEventSchema.options.map((schema) => schema.shape.type.value));

/** A bounded label value for metrics: the event's type if it is a known one. */
function typeOf(value: unknown): string {
  if (typeof value === 'object' && value !== null && 'type' in value) {
    const type = (value as { type: unknown }).type;
    if (typeof type === 'string' && KNOWN_TYPES.has(type)) return type;
  }
  return 'unknown';
}
