import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Actor } from '../../../src/actors/actor.js';
import { parseProgramText } from '../../../src/config/program-file.js';
import type { BudgetPort } from '../../../src/domain/ports.js';
import { Encoding, type BatchRecord } from '../../../src/routing/batch-buffer.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { subjectsFor } from '../../../src/transport/subjects.js';

/**
 * An event the domain throws on must not stop the engine: it would come back
 * after every restart (a poison message). It goes to the dead letters with the
 * reason, and the events around it are applied.
 */
const program = parseProgramText(readFileSync(new URL('../../fixtures/budget-program.yaml', import.meta.url), 'utf8'));
const encoder = new TextEncoder();
let sequence = 1;

function record(memberId: string, id: string): BatchRecord {
  const payload = { type: 'purchase', id, memberId, occurredAt: '2026-11-23T12:00:00Z', amountMinor: 1_000, currency: 'EUR' };
  return { streamSequence: sequence++, publishedAtMs: 0, encoding: Encoding.Json, memberId, payload: encoder.encode(JSON.stringify(payload)) };
}

describe('an event the domain refuses with an exception', () => {
  it('goes to the dead letters with its reason; the batch commits the rest', async () => {
    let calls = 0;
    const budgets: BudgetPort = {
      tryConsume: () => {
        calls += 1;
        if (calls === 2) throw new Error('budget slot corrupted');
        return 500;
      },
      release: () => undefined,
    };
    const store = new MemoryStore();
    const actor = new Actor(store, program, {
      actorIndex: 0,
      actors: 1,
      partitions: 8,
      memberCacheMax: 100,
      payloadBytesMax: 4096,
      subjects: subjectsFor('loyalty'),
      bootId: 1,
      ports: { budgets },
    });
    const records = [record('ann', 'a1'), record('bob', 'b1'), record('cy', 'c1')];
    const { result } = await actor.process(records);
    expect(result.committedSequences).toEqual(Float64Array.from([records[0]!.streamSequence, records[2]!.streamSequence]));
    expect(result.deadLetters).toHaveLength(1);
    expect(result.deadLetters[0]).toMatchObject({ streamSequence: records[1]!.streamSequence, memberToken: 'bob', kind: 'internal_check' });
    expect(result.deadLetters[0]!.reason).toMatch(/^refused by an internal check: budget slot corrupted/);
    expect(result.counts).toEqual({ 'purchase|applied': 2, 'purchase|invalid': 1 });
    expect(store.readProcessed(0, 'bob', 'b1')).toBeUndefined();
    expect(store.readMember(0, 'bob')).toBeUndefined();
    // The actor keeps going.
    const next = await actor.process([record('bob', 'b2')]);
    expect(next.result.counts).toEqual({ 'purchase|applied': 1 });
  });
});
