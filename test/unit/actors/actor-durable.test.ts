import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Actor, ActorFailedError } from '../../../src/actors/actor.js';
import { parseProgramText } from '../../../src/config/program-file.js';
import { Encoding, type BatchRecord } from '../../../src/routing/batch-buffer.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { BatchWrite } from '../../../src/store/types.js';
import { unlimitedBudgets } from '../../../src/domain/ports.js';
import { subjectsFor } from '../../../src/transport/subjects.js';

const program = parseProgramText(readFileSync(new URL('../../../config/programs/simple.yaml', import.meta.url), 'utf8'));
const options = { actorIndex: 0, actors: 1, ports: { budgets: unlimitedBudgets }, partitions: 8, memberCacheMax: 1_000, payloadBytesMax: 4096, subjects: subjectsFor('loyalty'), bootId: 1 };

let sequence = 0;
function purchase(memberId: string, id: string): BatchRecord {
  sequence += 1;
  const event = { type: 'purchase', id, memberId, occurredAt: '2025-03-01T12:00:00Z', amountMinor: 1_000, currency: 'EUR' };
  return { streamSequence: sequence, publishedAtMs: 0, encoding: Encoding.Json, memberId, payload: new TextEncoder().encode(JSON.stringify(event)) };
}

/** A MemoryStore whose flush to disk can fail, and whose commits can be held back one by one. */
class FlakyDiskStore extends MemoryStore {
  failNextDurable: Error | undefined;
  private readonly gates = new Map<number, Promise<void>>();
  private calls = 0;

  /** Holds the n-th commit() call until the returned function is called. */
  holdCommit(call: number): () => void {
    let release!: () => void;
    this.gates.set(call, new Promise<void>((resolve) => (release = resolve)));
    return release;
  }

  override async commit(write: BatchWrite): Promise<void> {
    const call = ++this.calls;
    await this.gates.get(call);
    return super.commit(write);
  }
  override async durable(): Promise<void> {
    const error = this.failNextDurable;
    this.failNextDurable = undefined;
    if (error !== undefined) throw error;
  }
}

async function settled<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

describe('Actor: a failed flush to disk', () => {
  // BUG (src/actors/actor.ts, process()): when store.durable() rejects (fsync
  // failed), the catch block throws away the member cache and the uncommitted
  // event ids but does NOT set this.failure. A batch that was applied after
  // the failing one and is still committing (batch 2 below) then has its member
  // states and event ids forgotten, and a batch started afterwards (batch 3)
  // reads the member from the store without batch 2's effects and applies
  // batch 2's event id again. Batch 3 then commits a state that lacks batch 2,
  // while batch 2's processed-id record says it was applied: after a restart
  // its redelivery is a "duplicate", so its effect is lost for good.
  // The crash-only rule must cover durable() too: set this.failure (an
  // ActorFailedError) when the flush fails, so every later batch is refused.
  it('is treated like a failed commit: batches started afterwards are refused', async () => {
    const store = new FlakyDiskStore();
    const actor = new Actor(store, program, options);
    store.failNextDurable = new Error('EIO: fsync failed');
    const releaseSecondCommit = store.holdCommit(2);
    const first = settled(actor.process([purchase('m1', 'e1')]));
    const second = settled(actor.process([purchase('m2', 'e2')]));
    expect((await first).ok).toBe(false);
    // Batch 2 is still committing. Batch 3 redelivers e2 (or is any later event of m2).
    const third = settled(actor.process([purchase('m2', 'e2')]));
    releaseSecondCommit();
    const [secondResult, thirdResult] = await Promise.all([second, third]);
    // Today: batch 2 commits, and batch 3 applies e2 a second time.
    if (secondResult.ok && thirdResult.ok) expect(thirdResult.value.result.counts).toEqual({ 'purchase|duplicate': 1 });
    expect(thirdResult.ok).toBe(false);
    if (!thirdResult.ok) expect(thirdResult.error).toBeInstanceOf(ActorFailedError);
  });
});
