import { Packr } from 'msgpackr';
import { applyEvent } from '../domain/apply.js';
import { assert } from '../domain/assert.js';
import { validateEvent } from '../domain/events.js';
import type { Program } from '../domain/program.js';
import type { LedgerEntry, MemberState, Outcome } from '../domain/state.js';
import { type BatchRecord } from '../routing/batch-buffer.js';
import { partitionOf } from '../routing/partitioner.js';
import type { ActorStore, BatchWrite, OutboxKey } from '../store/types.js';
import { decodePayload } from '../transport/codec.js';
import type { Subjects } from '../transport/subjects.js';
import { MemberCache } from './member-cache.js';

/**
 * One actor: the single writer for the members of its partitions. It decodes
 * and validates raw payloads, applies them through the pure domain in order,
 * and commits the whole batch in one store transaction. It never touches NATS:
 * the worker around it publishes what it returns.
 */

/** [subject, message id, JSON payload] of one outcome to publish. */
export type OutcomeMessage = [subject: string, messageId: string, payload: string];

export interface DeadLetter {
  readonly streamSequence: number;
  readonly memberToken: string;
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
}

export interface ActorOptions {
  readonly actorIndex: number;
  readonly partitions: number;
  readonly memberCacheMax: number;
  readonly payloadBytesMax: number;
  readonly subjects: Subjects;
  /** Distinguishes this run's outbox keys from earlier runs'. */
  readonly bootId: number;
}

export interface ProcessedBatch {
  readonly result: BatchResult;
  readonly outcomes: readonly OutcomeMessage[];
  readonly outboxKey: OutboxKey | undefined;
}

const packr = new Packr({ useRecords: false });

export class Actor {
  private cache: MemberCache;
  private batchNumber = 0;
  /** The previous batch's commit: a batch commits only after it, and never after it failed. */
  private lastCommit: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  /** Event ids applied by batches not yet committed: `memberId\0eventId` → encoded outcome messages. */
  private readonly uncommittedIds = new Map<string, Uint8Array>();

  constructor(
    private readonly store: ActorStore,
    private program: Program,
    private readonly options: ActorOptions,
  ) {
    assert(options.partitions > 0, 'partitions must be positive');
    this.cache = new MemberCache(options.memberCacheMax);
  }

  setProgram(program: Program): void {
    this.program = program;
  }

  /**
   * Applies a batch in order and commits it. Everything up to the commit is
   * synchronous, so a later batch that starts while this one is flushing sees
   * this batch's member states and event ids.
   */
  async process(records: readonly BatchRecord[], nowMs: number): Promise<ProcessedBatch> {
    if (this.failure !== undefined) throw this.failure;
    const batch = ++this.batchNumber;
    const applyStarted = performance.now();
    const counts: Record<string, number> = {};
    const committedSequences: number[] = [];
    const publishedAtMs: number[] = [];
    const deadLetters: DeadLetter[] = [];
    const outcomes: OutcomeMessage[] = [];
    const changedMembers = new Map<string, { partition: number; state: MemberState }>();
    const ledger: { partition: number; entry: LedgerEntry }[] = [];
    const processed: { memberId: string; eventId: string; outcomes: Uint8Array }[] = [];
    const batchIds: string[] = [];

    for (const record of records) {
      const invalid = (reason: string, type = 'unknown') => {
        count(counts, type, 'invalid');
        deadLetters.push({
          streamSequence: record.streamSequence,
          memberToken: record.memberId,
          reason,
          encoding: record.encoding,
          payload: record.payload.slice(),
        });
      };
      if (record.payload.length > this.options.payloadBytesMax) {
        invalid(`payload of ${record.payload.length} bytes exceeds the limit of ${this.options.payloadBytesMax}`);
        continue;
      }
      const decoded = decodePayload(record.payload, record.encoding);
      if (!decoded.ok) {
        invalid(decoded.reason);
        continue;
      }
      const validation = validateEvent(decoded.value);
      if (!validation.ok) {
        invalid(validation.reason, typeOf(decoded.value));
        continue;
      }
      const { event, occurredAtMs } = validation;
      if (event.memberId !== record.memberId) {
        invalid(`memberId "${event.memberId}" differs from the subject's member token "${record.memberId}"`, event.type);
        continue;
      }
      committedSequences.push(record.streamSequence);
      publishedAtMs.push(record.publishedAtMs);

      const idKey = `${event.memberId}\u0000${event.id}`;
      const firstOutcome = this.uncommittedIds.get(idKey) ?? this.store.readProcessed(event.memberId, event.id);
      if (firstOutcome !== undefined) {
        // A redelivery or a producer re-sending: publish the first outcome again, change nothing.
        count(counts, event.type, 'duplicate');
        for (const message of packr.unpack(firstOutcome) as OutcomeMessage[]) outcomes.push(message);
        continue;
      }

      const partition = partitionOf(event.memberId, this.options.partitions);
      const current = this.memberState(partition, event.memberId);
      const decision = applyEvent(current, event, occurredAtMs, this.program);
      const rejected = decision.outcomes.some((outcome) => outcome.kind === 'rejected');
      count(counts, event.type, rejected ? 'rejected' : 'applied');
      if (decision.state !== current) {
        this.cache.set(event.memberId, decision.state, batch);
        changedMembers.set(event.memberId, { partition, state: decision.state });
      }
      for (const entry of decision.ledger) ledger.push({ partition, entry });
      const messages = decision.outcomes.map((outcome, index) => this.outcomeMessage(outcome, event.id, index));
      for (const message of messages) outcomes.push(message);
      const encoded = packr.pack(messages);
      processed.push({ memberId: event.memberId, eventId: event.id, outcomes: encoded });
      this.uncommittedIds.set(idKey, encoded);
      batchIds.push(idKey);
    }

    const applySeconds = (performance.now() - applyStarted) / 1000;
    const outboxKey: OutboxKey | undefined = outcomes.length > 0 ? [this.options.bootId, this.options.actorIndex, batch] : undefined;
    const write: BatchWrite = {
      members: [...changedMembers.values()],
      ledger,
      processed,
      ...(outboxKey !== undefined ? { outbox: { key: outboxKey, messages: packr.pack(outcomes) } } : {}),
    };
    const commitStarted = performance.now();
    const previous = this.lastCommit;
    const commit = (async () => {
      await previous;
      if (this.failure !== undefined) throw this.failure;
      if (write.members.length > 0 || write.processed.length > 0 || write.outbox !== undefined) await this.store.commit(write);
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
      this.cache = new MemberCache(this.options.memberCacheMax);
      this.uncommittedIds.clear();
      throw error;
    }
    const commitSeconds = (performance.now() - commitStarted) / 1000;
    this.cache.committed(changedMembers.keys(), batch);
    for (const idKey of batchIds) this.uncommittedIds.delete(idKey);
    this.cache.evict();

    return {
      result: {
        batch,
        committedSequences: Float64Array.from(committedSequences),
        publishedAtMs: Float64Array.from(publishedAtMs),
        deadLetters,
        counts,
        commitSeconds,
        applySeconds,
        cachedMembers: this.cache.size,
        outcomeCount: outcomes.length,
      },
      outcomes,
      outboxKey,
    };
  }

  private memberState(partition: number, memberId: string): MemberState | undefined {
    const cached = this.cache.get(memberId);
    if (cached !== undefined) return cached;
    const stored = this.store.readMember(partition, memberId);
    if (stored !== undefined) this.cache.load(memberId, stored);
    return stored;
  }

  private outcomeMessage(outcome: Outcome, eventId: string, index: number): OutcomeMessage {
    return [
      this.options.subjects.outcome(outcome.kind, outcome.memberId),
      `${outcome.memberId}:${eventId}:${index}`,
      JSON.stringify(outcome),
    ];
  }

}

/**
 * A commit failed: this actor's memory is ahead of its store. It refuses all
 * further batches; the engine stops without acking and a restart rebuilds the
 * state from LMDB and JetStream redelivery (crash-only recovery).
 */
export class ActorFailedError extends Error {
  readonly code = 'ERR_ACTOR_COMMIT_FAILED';
  constructor(batch: number, cause: unknown) {
    super(`actor commit of batch ${batch} failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'ActorFailedError';
  }
}

function count(counts: Record<string, number>, type: string, result: EventResult): void {
  const key = `${type}|${result}`;
  counts[key] = (counts[key] ?? 0) + 1;
}

const KNOWN_TYPES = new Set(['purchase', 'return', 'redemption', 'redemption_cancel', 'activity', 'adjustment', 'voucher_redeem', 'enroll', 'unenroll', 'erase']);

/** A bounded label value for metrics: the event's type if it is a known one. */
function typeOf(value: unknown): string {
  if (typeof value === 'object' && value !== null && 'type' in value) {
    const type = (value as { type: unknown }).type;
    if (typeof type === 'string' && KNOWN_TYPES.has(type)) return type;
  }
  return 'unknown';
}
