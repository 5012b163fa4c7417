import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Actor, type ActorOptions } from '../../../src/actors/actor.js';
import { parseProgramText } from '../../../src/config/program-file.js';
import { unlimitedBudgets } from '../../../src/domain/ports.js';
import { Encoding, type BatchRecord } from '../../../src/routing/batch-buffer.js';
import { actorOfPartition, partitionOf } from '../../../src/routing/partitioner.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { subjectsFor } from '../../../src/transport/subjects.js';

/** Cluster mode's actor: it serves only the partitions it is given, and forgets a partition's cached members when it changes hands. */
const program = parseProgramText(readFileSync(new URL('../../../config/programs/simple.yaml', import.meta.url), 'utf8'));
const PARTITIONS = 8;
const options: ActorOptions = {
  actorIndex: 1,
  actors: 2,
  ports: { budgets: unlimitedBudgets },
  partitions: PARTITIONS,
  memberCacheMax: 1_000,
  payloadBytesMax: 2_048,
  subjects: subjectsFor('loyalty'),
  bootId: 5,
  ownsPartitions: 'given',
};

let sequence = 1;
function purchase(memberId: string, id: string, amountMinor: number): BatchRecord {
  const event = { type: 'purchase', id, memberId, occurredAt: '2025-03-01T12:00:00Z', amountMinor, currency: 'EUR' };
  return { streamSequence: sequence++, publishedAtMs: 0, encoding: Encoding.Json, memberId, payload: new TextEncoder().encode(JSON.stringify(event)) };
}

/** A member id of `partition`. */
function memberOf(partition: number, skip = 0): string {
  for (let index = 0, found = 0; ; index++) {
    const id = `m-${index}`;
    if (partitionOf(id, PARTITIONS) === partition && found++ === skip) return id;
  }
}

const mine = Array.from({ length: PARTITIONS }, (_, partition) => partition).filter((partition) => actorOfPartition(partition, options.actors) === options.actorIndex);

describe('an actor in cluster mode', () => {
  it('serves no partition until given one, then exactly those given', () => {
    const actor = new Actor(new MemoryStore(), program, options);
    expect(actor.partitionsServed()).toEqual([]);
    actor.ownPartition(mine[1]!);
    actor.ownPartition(mine[0]!);
    actor.ownPartition(mine[0]!); // twice: once
    expect(actor.partitionsServed()).toEqual([mine[0], mine[1]]);
    actor.releasePartition(mine[0]!);
    expect(actor.partitionsServed()).toEqual([mine[1]]);
    // In single-instance mode it serves all of its partitions from the start.
    expect(new Actor(new MemoryStore(), program, { ...options, ownsPartitions: 'all' }).partitionsServed()).toEqual(mine);
  });

  it('refuses a partition of another actor', () => {
    const actor = new Actor(new MemoryStore(), program, options);
    const other = Array.from({ length: PARTITIONS }, (_, partition) => partition).find((partition) => !mine.includes(partition))!;
    expect(() => actor.ownPartition(other)).toThrow(/not actor 1's/);
    expect(() => actor.ownPartition(PARTITIONS)).toThrow(/out of range/);
  });

  it('reads a member again from the store after its partition came back (restored by another owner meanwhile)', async () => {
    const store = new MemoryStore();
    const actor = new Actor(store, program, options);
    const partition = mine[0]!;
    const member = memberOf(partition);
    actor.ownPartition(partition);
    await actor.process([purchase(member, 'e1', 1_000)]);
    expect(store.readMember(partition, member)!.currencies.points!.spendable).toBe(10);
    actor.releasePartition(partition);

    // Another owner committed more for the member; its restore replaced the stored state here.
    const elsewhere = new MemoryStore();
    const other = new Actor(elsewhere, program, { ...options, ownsPartitions: 'given', bootId: 6 });
    other.ownPartition(partition);
    await other.process([purchase(member, 'e1', 1_000), purchase(member, 'e2', 5_000)]);
    store.members.set(`${partition}/${member}`, elsewhere.readMember(partition, member)!);
    store.processed.set(`${member}/e2`, elsewhere.processed.get(`${member}/e2`)!);

    actor.ownPartition(partition);
    const { result } = await actor.process([purchase(member, 'e3', 200)]);
    expect(result.counts).toEqual({ 'purchase|applied': 1 });
    // 10 + 50 + 2: the restored state, not the cached one (which would give 12).
    expect(store.readMember(partition, member)!.currencies.points!.spendable).toBe(62);
  });
});
