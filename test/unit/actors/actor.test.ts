import { readFileSync } from 'node:fs';
import { pack } from 'msgpackr';
import { beforeEach, describe, expect, it } from 'vitest';
import { Actor, ActorFailedError, unpackOutbox, type ActorOptions, type OutcomeMessage } from '../../../src/actors/actor.js';
import { parseProgramText } from '../../../src/config/program-file.js';
import { Encoding, type BatchRecord } from '../../../src/routing/batch-buffer.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { unlimitedBudgets } from '../../../src/domain/ports.js';
import type { Program } from '../../../src/domain/program.js';
import { nextDueMs } from '../../../src/domain/sweep.js';
import { subjectsFor } from '../../../src/transport/subjects.js';

// Only purchase events and generic behaviour (results, counts, duplicates,
// dead letters, ordering, commits): the member state's shape belongs to the domain.

const program = parseProgramText(readFileSync(new URL('../../../config/programs/simple.yaml', import.meta.url), 'utf8'));
const PARTITIONS = 8;
const PAYLOAD_BYTES_MAX = 2048;
const BOOT_ID = 77;
const ACTOR_INDEX = 3;

const options: ActorOptions = {
  actorIndex: ACTOR_INDEX,
  actors: 4,
  ports: { budgets: unlimitedBudgets },
  partitions: PARTITIONS,
  memberCacheMax: 1_000,
  payloadBytesMax: PAYLOAD_BYTES_MAX,
  subjects: subjectsFor('loyalty'),
  bootId: BOOT_ID,
};

let nextSequence = 1;

function purchase(memberId: string, id: string, amountMinor = 1_000, extra: Record<string, unknown> = {}) {
  return { type: 'purchase', id, memberId, occurredAt: '2025-03-01T12:00:00Z', amountMinor, currency: 'EUR', ...extra };
}

function record(memberId: string, payload: unknown, encoding: Encoding = Encoding.Json): BatchRecord {
  const bytes =
    payload instanceof Uint8Array ? payload : encoding === Encoding.Msgpack ? pack(payload) : new TextEncoder().encode(JSON.stringify(payload));
  return { streamSequence: nextSequence++, publishedAtMs: 1_000 + nextSequence, encoding, memberId, payload: bytes };
}

/** One record per event, its token taken from the event's memberId. */
function records(...events: ReturnType<typeof purchase>[]): BatchRecord[] {
  return events.map((event) => record(event.memberId, event));
}

function messageIdsOf(outcomes: readonly OutcomeMessage[]): string[] {
  return outcomes.map(([, messageId]) => messageId);
}

function ledgerEventIds(store: MemoryStore, memberId: string): string[] {
  return (store.ledger.get(memberId) ?? []).map((entry) => entry.eventId);
}

function snapshot(store: MemoryStore) {
  return structuredClone({
    members: [...store.members.entries()],
    ledger: [...store.ledger.entries()],
    processed: [...store.processed.keys()],
  });
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

let store: MemoryStore;
let actor: Actor;

beforeEach(() => {
  nextSequence = 1;
  store = new MemoryStore();
  actor = new Actor(store, program, options);
});

describe('Actor', () => {
  it('applies purchases in order, commits them in one transaction and reports them committed', async () => {
    const batch = records(purchase('m1', 'e1'), purchase('m2', 'e2'), purchase('m1', 'e3'), purchase('m1', 'e4'));
    const { result, outcomes } = await actor.process(batch);
    expect([...result.committedSequences]).toEqual(batch.map((input) => input.streamSequence));
    expect([...result.publishedAtMs]).toEqual(batch.map((input) => input.publishedAtMs));
    expect(result.deadLetters).toEqual([]);
    expect(result.counts).toEqual({ 'purchase|applied': 4 });
    expect(result.batch).toBe(1);
    expect(result.outcomeCount).toBe(outcomes.length);
    expect(result.cachedMembers).toBe(2);
    expect(store.commits).toBe(1);
    // Both members are stored under their partition.
    expect(store.readMember(partitionOf('m1', PARTITIONS), 'm1')?.memberId).toBe('m1');
    expect(store.readMember(partitionOf('m2', PARTITIONS), 'm2')?.memberId).toBe('m2');
    // In order: m1's ledger follows its events, with increasing sequence numbers.
    const m1Ledger = store.ledger.get('m1')!;
    expect([...new Set(m1Ledger.map((entry) => entry.eventId))]).toEqual(['e1', 'e3', 'e4']);
    expect(m1Ledger.map((entry) => entry.seq)).toEqual(m1Ledger.map((_, index) => index + 1));
    // Outcomes follow the events' order.
    const eventOrder = outcomes.map(([, messageId]) => messageId.split(':').slice(0, 2).join(':'));
    expect([...new Set(eventOrder)]).toEqual(['m1:e1', 'm2:e2', 'm1:e3', 'm1:e4']);
    expect([...store.processed.keys()].sort()).toEqual(['m1/e1', 'm1/e3', 'm1/e4', 'm2/e2']);
  });

  it('continues a member\'s ledger across batches', async () => {
    await actor.process(records(purchase('m1', 'e1')));
    await actor.process(records(purchase('m1', 'e2')));
    const ledger = store.ledger.get('m1')!;
    expect(ledger.map((entry) => entry.seq)).toEqual(ledger.map((_, index) => index + 1));
    expect([...new Set(ledger.map((entry) => entry.eventId))]).toEqual(['e1', 'e2']);
    expect(store.commits).toBe(2);
  });

  it('names outcome subjects loyalty.outcome.<kind>.<memberId> and message ids <memberId>:<eventId>:<index>', async () => {
    const { outcomes } = await actor.process(records(purchase('m-1', 'order-1', 12_345), purchase('m_2', 'order-2', 500)));
    expect(outcomes.length).toBeGreaterThan(0);
    const perEvent = new Map<string, number>();
    for (const [subject, messageId, payload] of outcomes) {
      const outcome = JSON.parse(payload) as { kind: string; memberId: string; eventId: string };
      expect(subject).toBe(`loyalty.outcome.${outcome.kind}.${outcome.memberId}`);
      const index = perEvent.get(outcome.eventId) ?? 0;
      expect(messageId).toBe(`${outcome.memberId}:${outcome.eventId}:${index}`);
      perEvent.set(outcome.eventId, index + 1);
    }
    expect([...perEvent.keys()]).toEqual(['order-1', 'order-2']);
    expect(outcomes.some(([subject]) => subject === 'loyalty.outcome.balance.m-1')).toBe(true);
  });

  it('writes one outbox entry per batch with outcomes, keyed [bootId, actor, batch]', async () => {
    const first = await actor.process(records(purchase('m1', 'e1')));
    expect(first.outboxKey).toEqual([BOOT_ID, ACTOR_INDEX, 1]);
    const second = await actor.process(records(purchase('m1', 'e2'), purchase('m2', 'e3')));
    expect(second.outboxKey).toEqual([BOOT_ID, ACTOR_INDEX, 2]);
    expect([...store.outbox.keys()]).toEqual([`${BOOT_ID}/${ACTOR_INDEX}/1`, `${BOOT_ID}/${ACTOR_INDEX}/2`]);
    expect(unpackOutbox(store.outbox.get(`${BOOT_ID}/${ACTOR_INDEX}/1`)!)).toEqual(first.outcomes);
    expect(unpackOutbox(store.outbox.get(`${BOOT_ID}/${ACTOR_INDEX}/2`)!)).toEqual(second.outcomes);
  });

  it('removes acknowledged outbox entries with the next commit, or in a commit of their own when idle', async () => {
    const first = await actor.process(records(purchase('m1', 'e1')));
    actor.outboxPublished(first.outboxKey!);
    expect(store.outbox.size).toBe(1); // nothing removed until a commit carries it
    const commitsBefore = store.commits;
    const second = await actor.process(records(purchase('m2', 'e2')));
    expect(store.commits).toBe(commitsBefore + 1); // no transaction of its own
    expect([...store.outbox.keys()]).toEqual([second.outboxKey!.join('/')]);
    actor.outboxPublished(second.outboxKey!);
    await actor.removePublishedOutbox();
    expect(store.outbox.size).toBe(0);
    const idleCommits = store.commits;
    await actor.removePublishedOutbox(); // nothing acknowledged: no commit
    expect(store.commits).toBe(idleCommits);
  });

  it('a batch with no outcomes writes no outbox entry and commits nothing', async () => {
    const { outboxKey, result } = await actor.process([record('m1', '{"not":"an event"}' as unknown)]);
    expect(outboxKey).toBeUndefined();
    expect(result.outcomeCount).toBe(0);
    expect(store.outbox.size).toBe(0);
    expect(store.commits).toBe(0);
    expect((await actor.process([])).outboxKey).toBeUndefined();
    expect(store.commits).toBe(0);
  });

  it('a duplicate id in the same batch returns the first outcome and changes nothing', async () => {
    const batch = records(purchase('m1', 'e1', 1_000), purchase('m1', 'e1', 99_999), purchase('m1', 'e2', 700));
    const { result, outcomes } = await actor.process(batch);
    expect(result.counts).toEqual({ 'purchase|applied': 2, 'purchase|duplicate': 1 });
    // The duplicate is committed (acked) like any other event.
    expect([...result.committedSequences]).toEqual(batch.map((input) => input.streamSequence));
    const first = outcomes.filter(([, messageId]) => messageId.startsWith('m1:e1:'));
    const count = first.length / 2;
    expect(count).toBeGreaterThan(0);
    // The same messages, byte for byte, right after the first ones.
    expect(first.slice(count)).toEqual(first.slice(0, count));
    expect(messageIdsOf(outcomes).filter((id) => id.startsWith('m1:e2:')).length).toBeGreaterThan(0);
    expect([...store.processed.keys()].sort()).toEqual(['m1/e1', 'm1/e2']);
    // The second amount (99,999) was never applied: the ledger is the one of e1 and e2 alone.
    const without = new MemoryStore();
    await new Actor(without, program, options).process(records(purchase('m1', 'e1', 1_000), purchase('m1', 'e2', 700)));
    expect(store.ledger.get('m1')).toEqual(without.ledger.get('m1'));
    expect(store.members).toEqual(without.members);
  });

  it('a duplicate id across batches (a redelivery) returns the first outcome and does not change state', async () => {
    const first = await actor.process(records(purchase('m1', 'e1', 2_500)));
    const before = snapshot(store);
    const commitsBefore = store.commits;
    const again = await actor.process(records(purchase('m1', 'e1', 2_500)));
    expect(again.result.counts).toEqual({ 'purchase|duplicate': 1 });
    expect(again.result.committedSequences).toHaveLength(1);
    expect(again.outcomes).toEqual(first.outcomes);
    expect(snapshot(store)).toEqual(before);
    // Only the outbox (to publish the outcome again) is written.
    expect(store.commits).toBe(commitsBefore + 1);
    expect(store.outbox.size).toBe(2);
  });

  it('a re-sent id with a different body is still a duplicate: the id is the idempotency key', async () => {
    const first = await actor.process(records(purchase('m1', 'e1', 2_500)));
    const before = snapshot(store);
    const resent = await actor.process(records(purchase('m1', 'e1', 9_900, { channel: 'web' })));
    expect(resent.result.counts).toEqual({ 'purchase|duplicate': 1 });
    expect(resent.outcomes).toEqual(first.outcomes);
    expect(snapshot(store)).toEqual(before);
  });

  it('the same event id for two members is two events', async () => {
    const { result } = await actor.process(records(purchase('m1', 'shared'), purchase('m2', 'shared')));
    expect(result.counts).toEqual({ 'purchase|applied': 2 });
  });

  it('a duplicate survives a restart: a new actor over the same store reads the processed record', async () => {
    const first = await actor.process(records(purchase('m1', 'e1')));
    const restarted = new Actor(store, program, { ...options, bootId: BOOT_ID + 1 });
    const again = await restarted.process(records(purchase('m1', 'e1')));
    expect(again.result.counts).toEqual({ 'purchase|duplicate': 1 });
    expect(again.outcomes).toEqual(first.outcomes);
    expect(again.outboxKey).toEqual([BOOT_ID + 1, ACTOR_INDEX, 1]);
  });

  it('a batch started while the previous one is committing sees its event ids', async () => {
    const firstPromise = actor.process(records(purchase('m1', 'e1')));
    const secondPromise = actor.process(records(purchase('m1', 'e1')));
    const [first, second] = await Promise.all([firstPromise, secondPromise]);
    expect(first.result.counts).toEqual({ 'purchase|applied': 1 });
    expect(second.result.counts).toEqual({ 'purchase|duplicate': 1 });
    expect(second.outcomes).toEqual(first.outcomes);
    expect(new Set(ledgerEventIds(store, 'm1'))).toEqual(new Set(['e1']));
    expect(store.processed.size).toBe(1);
  });

  it('a purchase the program refuses is committed as rejected, and its rejection is its first outcome', async () => {
    const { result, outcomes } = await actor.process(records(purchase('m1', 'usd-1', 1_000, { currency: 'USD' })));
    expect(result.counts).toEqual({ 'purchase|rejected': 1 });
    expect(result.committedSequences).toHaveLength(1);
    expect(outcomes.map(([subject]) => subject)).toEqual(['loyalty.outcome.rejected.m1']);
    expect(store.processed.has('m1/usd-1')).toBe(true);
    const again = await actor.process(records(purchase('m1', 'usd-1', 1_000, { currency: 'USD' })));
    expect(again.result.counts).toEqual({ 'purchase|duplicate': 1 });
    expect(again.outcomes).toEqual(outcomes);
  });

  it('dead-letters invalid payloads with their reason and commits none of them', async () => {
    const oversized = new TextEncoder().encode(JSON.stringify(purchase('m1', 'big', 1_000, { channel: 'x'.repeat(10) })).padEnd(PAYLOAD_BYTES_MAX + 1, ' '));
    const batch = [
      record('m1', new TextEncoder().encode('{"type": "purchase",')),
      record('m1', new Uint8Array(0)),
      record('m1', Uint8Array.of(0x22, 0xff, 0x22)),
      record('m1', Uint8Array.of(0xc1), Encoding.Msgpack),
      record('m1', { ...purchase('m1', 'e-schema'), amountMinor: -5, currency: 'euro' }),
      record('m1', { type: 'refund', id: 'x', memberId: 'm1' }),
      record('m1', purchase('m2', 'e-mismatch')),
      record('m1', oversized),
    ];
    const { result, outcomes } = await actor.process(batch);
    expect(result.committedSequences).toHaveLength(0);
    expect(outcomes).toEqual([]);
    expect(result.deadLetters.map((letter) => letter.streamSequence)).toEqual(batch.map((input) => input.streamSequence));
    const reasons = result.deadLetters.map((letter) => letter.reason);
    expect(reasons[0]).toMatch(/^not valid JSON: /);
    expect(reasons[1]).toBe('empty payload');
    expect(reasons[2]).toBe('not valid UTF-8');
    expect(reasons[3]).toMatch(/^not valid msgpack/);
    expect(reasons[4]).toMatch(/amountMinor: /);
    expect(reasons[4]).toMatch(/currency: /);
    expect(reasons[5]).toMatch(/type/);
    expect(reasons[6]).toBe('memberId "m2" differs from the subject\'s member token "m1"');
    expect(reasons[7]).toBe(`payload of ${PAYLOAD_BYTES_MAX + 1} bytes exceeds the limit of ${PAYLOAD_BYTES_MAX}`);
    // Each path names its kind, the bounded label of loyalty_dead_letters_total.
    expect(result.deadLetters.map((letter) => letter.kind)).toEqual([
      'bad_json', 'empty', 'bad_json', 'bad_msgpack', 'schema', 'schema', 'member_mismatch', 'oversized',
    ]);
    for (const [index, letter] of result.deadLetters.entries()) {
      expect(letter.memberToken).toBe('m1');
      expect(letter.encoding).toBe(batch[index]!.encoding);
      expect([...letter.payload]).toEqual([...batch[index]!.payload]);
    }
    // The schema error and the member mismatch are purchases; the rest have no known type.
    expect(result.counts).toEqual({ 'unknown|invalid': 6, 'purchase|invalid': 2 });
    // Nothing reached the store.
    expect(store.commits).toBe(0);
    expect(store.members.size + store.processed.size + store.outbox.size).toBe(0);
  });

  it('counts a schema error of a known type under that type', async () => {
    const { result } = await actor.process([record('m1', { ...purchase('m1', 'e1'), amountMinor: 'ten' })]);
    expect(result.counts).toEqual({ 'purchase|invalid': 1 });
  });

  it('a dead letter\'s payload is a copy, not a view of the batch buffer', async () => {
    const input = record('m1', new TextEncoder().encode('nope'));
    const { result } = await actor.process([input]);
    input.payload.fill(0);
    expect(new TextDecoder().decode(result.deadLetters[0]!.payload)).toBe('nope');
  });

  it('decodes msgpack payloads like JSON ones', async () => {
    const { result } = await actor.process([record('m1', purchase('m1', 'mp-1'), Encoding.Msgpack)]);
    expect(result.counts).toEqual({ 'purchase|applied': 1 });
  });

  it('counts a mixed batch by type|result, dead letters beside committed events', async () => {
    await actor.process(records(purchase('m1', 'seen')));
    const batch = [
      record('m1', purchase('m1', 'a')),
      record('m1', purchase('m1', 'seen')),
      record('m1', 'garbage' as unknown),
      record('m2', purchase('m2', 'b')),
      record('m2', purchase('m2', 'usd', 100, { currency: 'USD' })),
      record('m2', purchase('m2', 'b')),
    ];
    const { result } = await actor.process(batch);
    expect(result.counts).toEqual({ 'purchase|applied': 2, 'purchase|duplicate': 2, 'purchase|rejected': 1, 'unknown|invalid': 1 });
    expect([...result.committedSequences]).toEqual([batch[0], batch[1], batch[3], batch[4], batch[5]].map((input) => input!.streamSequence));
    expect(result.deadLetters.map((letter) => letter.streamSequence)).toEqual([batch[2]!.streamSequence]);
  });

  describe('sweep', () => {
    // The retail program holds purchase points pending until the return window closes: a purchase makes the member due.
    const retail = parseProgramText(readFileSync(new URL('../../../config/programs/retail.yaml', import.meta.url), 'utf8'));
    const ids = Array.from({ length: 40 }, (_, index) => `member-${index}`);
    const owned = ids.filter((id) => partitionOf(id, PARTITIONS) % 4 === ACTOR_INDEX);
    const ownedPartitions = [...new Set(owned.map((id) => partitionOf(id, PARTITIONS)))];
    const dueOf = (memberId: string, of: Program = retail) => nextDueMs(store.readMember(partitionOf(memberId, PARTITIONS), memberId)!, of);

    /** Sweeps at `nowMs` in chunks of `limit` until a pass finishes; the members scanned and swept. */
    async function sweepPass(nowMs: number, limit: number): Promise<{ scanned: number; swept: number; chunks: number }> {
      const total = { scanned: 0, swept: 0, chunks: 0 };
      for (let chunk = 0; chunk < 100; chunk++) {
        const { result } = await actor.sweep(nowMs, limit);
        expect(result.scanned).toBeLessThanOrEqual(limit);
        expect(result.swept).toBeLessThanOrEqual(result.scanned);
        total.scanned += result.scanned;
        total.swept += result.swept;
        total.chunks += 1;
        if (result.finished) return total;
      }
      throw new Error('the sweep never finished its pass');
    }

    it('reads only members with something due, in chunks, continuing where the last chunk stopped', async () => {
      actor = new Actor(store, retail, options);
      expect(owned.length).toBeGreaterThan(3);
      await actor.process(records(...ids.map((id) => purchase(id, `${id}-e1`))));
      const dues = owned.map((id) => dueOf(id));
      expect(dues.every((due) => due !== null && due > Date.parse('2025-03-01T12:00:00Z'))).toBe(true);
      // Before anything is due, a sweep reads nobody (and marks its empty-at-start partitions as indexed).
      expect(await sweepPass(Date.parse('2025-03-01T13:00:00Z'), 3)).toMatchObject({ scanned: 0, swept: 0, chunks: 1 });
      for (const partition of ownedPartitions) expect(store.dueIndexDigest(partition)).toBeDefined();
      // Once all are due: every owned member, three per chunk, each once.
      const allDue = Math.max(...dues.map((due) => due!));
      const pass = await sweepPass(allDue, 3);
      expect(pass).toMatchObject({ scanned: owned.length, swept: owned.length });
      expect(pass.chunks).toBeGreaterThanOrEqual(Math.ceil(owned.length / 3));
      // Swept members moved on in the index: the next pass at the same time reads nobody.
      for (const id of owned) expect(dueOf(id) === null || dueOf(id)! > allDue).toBe(true);
      expect(await sweepPass(allDue, 1_000)).toMatchObject({ scanned: 0, swept: 0 });
    });

    it('walks every member once to re-index them when the program changes, then reads only due members again', async () => {
      actor = new Actor(store, retail, options);
      await actor.process(records(...ids.map((id) => purchase(id, `${id}-e1`))));
      // Release the pending points: spendable points make the expiring-soon notice a due time.
      const released = Math.max(...owned.map((id) => dueOf(id)!));
      expect(await sweepPass(released, 1_000)).toMatchObject({ scanned: owned.length, swept: owned.length });
      const retailDigests = ownedPartitions.map((partition) => store.dueIndexDigest(partition));
      const indexed = (id: string) => store.due.get(`${partitionOf(id, PARTITIONS)}/${id}`)?.dueMs ?? null;
      for (const id of owned) expect(indexed(id)).toBe(dueOf(id, retail));
      // Warned 330 days ahead instead of 30: under this program members are due earlier, so their index keys are stale.
      const text = readFileSync(new URL('../../../config/programs/retail.yaml', import.meta.url), 'utf8');
      const earlyNotice = parseProgramText(text.replace('expiringSoonDays: 30 ', 'expiringSoonDays: 330'));
      expect(owned.filter((id) => dueOf(id, earlyNotice)! < dueOf(id, retail)!)).toEqual(owned);
      actor.setProgram(earlyNotice);
      const rescan = await sweepPass(released, 4);
      expect(rescan).toMatchObject({ scanned: owned.length, swept: 0 });
      for (const id of owned) expect(indexed(id)).toBe(dueOf(id, earlyNotice));
      const newDigests = ownedPartitions.map((partition) => store.dueIndexDigest(partition));
      expect(newDigests.every((digest, index) => digest !== undefined && digest !== retailDigests[index])).toBe(true);
      // Re-indexed, the next pass reads nobody; at the new due times, everyone (and sends the notice).
      expect(await sweepPass(released, 1_000)).toMatchObject({ scanned: 0 });
      const noticeDue = Math.max(...owned.map((id) => dueOf(id, earlyNotice)!));
      expect(await sweepPass(noticeDue, 1_000)).toMatchObject({ scanned: owned.length, swept: owned.length });
      // The same program again changes nothing; an actor started on a store indexed under it does not walk either.
      actor.setProgram(earlyNotice);
      expect(await sweepPass(noticeDue, 1_000)).toMatchObject({ scanned: 0 });
      actor = new Actor(store, earlyNotice, options);
      expect(await sweepPass(noticeDue, 1_000)).toMatchObject({ scanned: 0 });
      // Started under another program, it walks them all again.
      actor = new Actor(store, retail, options);
      expect((await sweepPass(noticeDue, 1_000)).scanned).toBe(owned.length);
      for (const id of owned) expect(indexed(id)).toBe(dueOf(id, retail));
    });

    it('is refused after a failed commit', async () => {
      store.failNextCommit = new Error('EIO');
      await expect(actor.process(records(purchase('m1', 'e1')))).rejects.toBeInstanceOf(ActorFailedError);
      await expect(actor.sweep(0, 10)).rejects.toBeInstanceOf(ActorFailedError);
    });
  });

  describe('a failed commit (crash-only recovery)', () => {
    it('rejects that batch and one started before its commit finished, and refuses every later batch', async () => {
      const diskFull = new Error('MDB_MAP_FULL');
      store.failNextCommit = diskFull;
      const first = actor.process(records(purchase('m1', 'e1')));
      // Started without awaiting the first: it was applied on top of the first's memory.
      const second = actor.process(records(purchase('m1', 'e2'), purchase('m2', 'e3')));
      const [firstError, secondError] = await Promise.all([rejection(first), rejection(second)]);
      expect(firstError).toBeInstanceOf(ActorFailedError);
      expect((firstError as ActorFailedError).code).toBe('ERR_ACTOR_COMMIT_FAILED');
      expect((firstError as Error).cause).toBe(diskFull);
      expect((firstError as Error).message).toContain('MDB_MAP_FULL');
      expect(secondError).toBeInstanceOf(ActorFailedError);
      // failNextCommit failed only one commit: the second batch must not have committed anyway.
      expect(store.failNextCommit).toBeUndefined();
      expect(store.commits).toBe(0);
      expect(store.members.size + store.processed.size + store.outbox.size + store.ledger.size).toBe(0);
      // Later batches are refused outright.
      const third = await rejection(actor.process(records(purchase('m3', 'e4'))));
      expect(third).toBeInstanceOf(ActorFailedError);
      expect(third).toBe(firstError);
      expect(store.commits).toBe(0);
    });

    it('keeps what earlier batches committed', async () => {
      await actor.process(records(purchase('m1', 'e1')));
      const before = snapshot(store);
      store.failNextCommit = new Error('EIO');
      expect(await rejection(actor.process(records(purchase('m1', 'e2'))))).toBeInstanceOf(ActorFailedError);
      expect(snapshot(store)).toEqual(before);
      expect(store.commits).toBe(1);
      // A restarted actor rebuilds from the store: e2 is new to it, e1 a duplicate.
      const restarted = new Actor(store, program, options);
      const { result } = await restarted.process(records(purchase('m1', 'e1'), purchase('m1', 'e2')));
      expect(result.counts).toEqual({ 'purchase|duplicate': 1, 'purchase|applied': 1 });
    });
  });
});

