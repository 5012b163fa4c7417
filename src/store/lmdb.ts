import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { assert } from '../domain/assert.js';
import type { LedgerEntry, MemberState } from '../domain/state.js';
import { EngineError } from '../config/errors.js';
import type { ActorStore, BatchWrite, OutboxKey, StoreMeta } from './types.js';

/**
 * LMDB layout (one environment in <dataDir>/state, opened by every actor
 * thread and the main thread; LMDB serialises the writers):
 *   meta       'meta' → StoreMeta
 *   members    [partition, memberId] → MemberState
 *   ledger     [partition, memberId, seq] → LedgerEntry
 *   processed  [memberId, eventId] → encoded first outcome (binary)
 *   outbox     [bootId, actor, batch] → encoded outcome messages (binary)
 * Keys start with the partition where a partition may one day move to another
 * instance, so a partition's members and ledger are one key range.
 */
export const STORE_FORMAT_VERSION = 1;

export interface LmdbStoreOptions {
  readonly dataDir: string;
  readonly mapSizeBytes: number;
}

export class LmdbStore implements ActorStore {
  readonly root: RootDatabase;
  private readonly meta: Database<StoreMeta, string>;
  private readonly members: Database<MemberState, [number, string]>;
  private readonly ledger: Database<LedgerEntry, [number, string, number]>;
  private readonly processed: Database<Uint8Array, [string, string]>;
  private readonly outbox: Database<Uint8Array, OutboxKey>;

  constructor(options: LmdbStoreOptions) {
    const path = join(options.dataDir, 'state');
    try {
      mkdirSync(path, { recursive: true });
      this.root = open({ path, maxDbs: 16, mapSize: options.mapSizeBytes, compression: false });
    } catch (error) {
      throw new EngineError('ERR_STORE_OPEN', `cannot open the LMDB store at ${path}: ${(error as Error).message}`, { cause: error });
    }
    this.meta = this.root.openDB({ name: 'meta', encoding: 'msgpack' });
    this.members = this.root.openDB({ name: 'members', encoding: 'msgpack' });
    this.ledger = this.root.openDB({ name: 'ledger', encoding: 'msgpack' });
    this.processed = this.root.openDB({ name: 'processed', encoding: 'binary' });
    this.outbox = this.root.openDB({ name: 'outbox', encoding: 'binary' });
  }

  /** Creates the meta record on first use; refuses a data directory made with another partition count. */
  async ensureMeta(partitions: number, nowMs: number): Promise<StoreMeta> {
    const existing = this.meta.get('meta');
    if (existing !== undefined) {
      if (existing.formatVersion !== STORE_FORMAT_VERSION) {
        throw new EngineError('ERR_STORE_FORMAT', `data directory has store format ${existing.formatVersion}, this engine reads ${STORE_FORMAT_VERSION}`);
      }
      if (existing.partitions !== partitions) {
        throw new EngineError(
          'ERR_PARTITIONS_MISMATCH',
          `data directory was created with ${existing.partitions} partitions; LOYALTY_PARTITIONS=${partitions} would move members between partitions. Use ${existing.partitions}.`,
        );
      }
      return existing;
    }
    const meta: StoreMeta = { formatVersion: STORE_FORMAT_VERSION, partitions, createdAtMs: nowMs };
    await this.meta.put('meta', meta);
    await this.root.flushed;
    return meta;
  }

  readMember(partition: number, memberId: string): MemberState | undefined {
    const state = this.members.get([partition, memberId]);
    assert(state === undefined || state.memberId === memberId, 'stored member state has another member id');
    return state;
  }

  readProcessed(memberId: string, eventId: string): Uint8Array | undefined {
    return this.processed.get([memberId, eventId]);
  }

  async commit(write: BatchWrite): Promise<void> {
    await this.root.transaction(() => {
      for (const { partition, state } of write.members) this.members.put([partition, state.memberId], state);
      for (const { partition, entry } of write.ledger) this.ledger.put([partition, entry.memberId, entry.seq], entry);
      for (const { memberId, eventId, outcomes } of write.processed) this.processed.put([memberId, eventId], outcomes);
      if (write.outbox !== undefined) this.outbox.put(write.outbox.key, write.outbox.messages);
    });
  }

  /** With overlappingSync the fsync finishes after the commit; we ack only after it. */
  async durable(): Promise<void> {
    await this.root.flushed;
  }

  async removeOutbox(key: OutboxKey): Promise<void> {
    await this.outbox.remove(key);
  }

  /** Unpublished outcome batches, oldest first (for re-publishing after a restart). */
  *outboxEntries(): Generator<{ key: OutboxKey; messages: Uint8Array }> {
    for (const { key, value } of this.outbox.getRange({})) yield { key: key as OutboxKey, messages: value };
  }

  /** A member's ledger, in order. */
  *ledgerOf(partition: number, memberId: string, fromSeq = 1): Generator<LedgerEntry> {
    for (const { value } of this.ledger.getRange({ start: [partition, memberId, fromSeq], end: [partition, memberId, Number.MAX_SAFE_INTEGER] })) {
      yield value;
    }
  }

  /** All members of one partition, in key order. */
  *membersOf(partition: number): Generator<MemberState> {
    for (const { value } of this.members.getRange({ start: [partition], end: [partition + 1] })) yield value;
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
