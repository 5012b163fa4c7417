import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Actor, unpackOutbox } from '../../../src/actors/actor.js';
import { parseProgramText } from '../../../src/config/program-file.js';
import { Encoding, type BatchRecord } from '../../../src/routing/batch-buffer.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { LmdbStore } from '../../../src/store/lmdb.js';
import { unlimitedBudgets } from '../../../src/domain/ports.js';
import { subjectsFor } from '../../../src/transport/subjects.js';

// The actor over the real store: what MemoryStore stands in for in the actor tests.

const program = parseProgramText(readFileSync(new URL('../../../config/programs/simple.yaml', import.meta.url), 'utf8'));
const options = { actorIndex: 1, actors: 2, ports: { budgets: unlimitedBudgets }, partitions: 16, memberCacheMax: 1_000, payloadBytesMax: 4096, subjects: subjectsFor('loyalty'), bootId: 5 };
const root = mkdtempSync(join(tmpdir(), 'loyalty-actor-lmdb-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let sequence = 0;
function purchase(memberId: string, id: string, amountMinor = 1_000): BatchRecord {
  sequence += 1;
  const event = { type: 'purchase', id, memberId, occurredAt: '2025-03-01T12:00:00Z', amountMinor, currency: 'EUR' };
  return { streamSequence: sequence, publishedAtMs: 0, encoding: Encoding.Json, memberId, payload: new TextEncoder().encode(JSON.stringify(event)) };
}

describe('Actor over LmdbStore', () => {
  it('commits state, ledger, processed ids and outbox; a reopened store makes a redelivery a duplicate', async () => {
    const dataDir = join(root, 'a');
    const store = new LmdbStore({ dataDir, mapSizeBytes: 64 * 1024 * 1024, partitions: 64 });
    const actor = new Actor(store, program, options);
    // Two batches in flight at once, as the worker runs them.
    const [first, second] = await Promise.all([
      actor.process([purchase('m1', 'e1'), purchase('m2', 'e2')]),
      actor.process([purchase('m1', 'e3'), purchase('m1', 'e1')]),
    ]);
    expect(first.result.counts).toEqual({ 'purchase|applied': 2 });
    expect(second.result.counts).toEqual({ 'purchase|applied': 1, 'purchase|duplicate': 1 });
    const partition = partitionOf('m1', options.partitions);
    expect(store.readMember(partition, 'm1')?.memberId).toBe('m1');
    expect([...new Set([...store.ledgerOf(partition, 'm1')].map((entry) => entry.eventId))]).toEqual(['e1', 'e3']);
    expect(store.readProcessed(partition, 'm1', 'e1')).toBeDefined();
    expect([...store.outboxEntries()].map(({ key }) => key)).toEqual([
      [5, 1, 1],
      [5, 1, 2],
    ]);
    expect(unpackOutbox([...store.outboxEntries()][0]!.messages)).toEqual(first.outcomes);
    const stateBefore = store.readMember(partition, 'm1');
    await store.close();

    const reopened = new LmdbStore({ dataDir, mapSizeBytes: 64 * 1024 * 1024, partitions: 64 });
    try {
      const restarted = new Actor(reopened, program, { ...options, bootId: 6 });
      const again = await restarted.process([purchase('m1', 'e1'), purchase('m1', 'e3')]);
      expect(again.result.counts).toEqual({ 'purchase|duplicate': 2 });
      const firstE1 = first.outcomes.filter(([, messageId]) => messageId.startsWith('m1:e1:'));
      expect(again.outcomes.slice(0, firstE1.length)).toEqual(firstE1);
      expect(reopened.readMember(partition, 'm1')).toEqual(stateBefore);
    } finally {
      await reopened.close();
    }
  });
});
