import { describe, expect, it, vi } from 'vitest';
import type { BatchResult, DeadLetter } from '../../../src/actors/actor.js';
import { Encoding, readBatch, type BatchRecord } from '../../../src/routing/batch-buffer.js';
import { Ingest, REDELIVERY_HOLD_MAX, type ActorRunner, type InboundMessage, type IngestOptions } from '../../../src/routing/ingest.js';
import { actorOfPartition, partitionOf } from '../../../src/routing/partitioner.js';

const PREFIX = 'loyalty.tx.';
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

interface FakeMessage extends InboundMessage {
  readonly acks: number;
  readonly name: string;
}

function message(sequence: number, memberId: string, data: Uint8Array | string = '{}', options: { name?: string; pending?: number } = {}): FakeMessage {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  let acks = 0;
  return {
    subject: `${PREFIX}${memberId}`,
    data: bytes,
    info: { streamSequence: sequence, timestampNanos: sequence * 1_000_000_000, pending: options.pending ?? 0 },
    ack() {
      acks += 1;
    },
    get acks() {
      return acks;
    },
    name: options.name ?? `#${sequence}`,
  };
}

interface Call {
  readonly actor: number;
  readonly records: BatchRecord[];
  resolve(result: BatchResult): void;
  reject(error: unknown): void;
}

class FakeRunner implements ActorRunner {
  readonly calls: Call[] = [];
  readonly room = new Map<number, boolean>();
  constructor(readonly actors: number) {}
  hasRoom(actor: number): boolean {
    return this.room.get(actor) ?? true;
  }
  batchesInFlight(): number {
    return 0;
  }
  runBatch(actor: number, buffer: ArrayBuffer): Promise<BatchResult> {
    return new Promise((resolve, reject) => this.calls.push({ actor, records: readBatch(buffer), resolve, reject }));
  }
}

function result(committed: readonly number[], deadLetters: readonly number[] = []): BatchResult {
  return {
    batch: 1,
    committedSequences: Float64Array.from(committed),
    publishedAtMs: Float64Array.from(committed.map(() => 0)),
    deadLetters: deadLetters.map(
      (streamSequence): DeadLetter => ({ streamSequence, memberToken: 'm', kind: 'schema', reason: 'schema', encoding: Encoding.Json, payload: new Uint8Array() }),
    ),
    counts: {},
    commitSeconds: 0,
    applySeconds: 0,
    cachedMembers: 0,
    outcomeCount: 0,
    heapUsedBytes: 0,
  };
}

/** Completes a call with every record it carried committed. */
function commitAll(call: Call): void {
  call.resolve(result(call.records.map((record) => record.streamSequence)));
}

function setup(overrides: Partial<IngestOptions> & { actors?: number } = {}) {
  const runner = new FakeRunner(overrides.actors ?? 1);
  const onFatal = vi.fn();
  const onBatch = vi.fn();
  const onAck = vi.fn();
  const deadLetter = vi.fn(async () => undefined);
  const ingest = new Ingest({
    partitions: 16,
    subjectPrefixLength: PREFIX.length,
    batchSizeMax: 1,
    batchAgeMsMax: 10_000,
    payloadBytesMax: 100,
    runner,
    encodingOf: (inbound) => (inbound.subject.endsWith('-mp') ? Encoding.Msgpack : Encoding.Json),
    deadLetter,
    onBatch,
    onAck,
    onFatal,
    now: () => 42,
    ...overrides,
  });
  return { ingest, runner, onFatal, onBatch, onAck, deadLetter };
}

describe('Ingest', () => {
  it('routes each message to actorOfPartition(partitionOf(subject token)) without decoding it', async () => {
    const actors = 4;
    const partitions = 16;
    const { ingest, runner } = setup({ actors, partitions });
    const ids = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'm-mp', 'x'.repeat(300), 'zoë-ü'];
    ids.forEach((id, index) => ingest.onMessage(message(index + 1, id, 'not even json')));
    expect(runner.calls).toHaveLength(ids.length);
    runner.calls.forEach((call, index) => {
      const id = ids[index]!;
      expect(call.actor).toBe(actorOfPartition(partitionOf(id, partitions), actors));
      expect(call.records).toHaveLength(1);
      const [record] = call.records;
      expect(record!.streamSequence).toBe(index + 1);
      expect(record!.publishedAtMs).toBe((index + 1) * 1000);
      expect(new TextDecoder().decode(record!.payload)).toBe('not even json');
      expect(record!.encoding).toBe(id.endsWith('-mp') ? Encoding.Msgpack : Encoding.Json);
    });
    expect(runner.calls[0]!.records[0]!.memberId).toBe('alice');
    // Several actors are actually used.
    expect(new Set(runner.calls.map((call) => call.actor)).size).toBeGreaterThan(1);
    runner.calls.forEach(commitAll);
    await ingest.drain();
  });

  it('batches a member\'s messages for one actor in arrival order', async () => {
    const { ingest, runner } = setup({ batchSizeMax: 3 });
    ingest.onMessage(message(1, 'a'));
    ingest.onMessage(message(2, 'b'));
    expect(runner.calls).toHaveLength(0);
    expect(ingest.pendingEvents(0)).toBe(2);
    ingest.onMessage(message(3, 'a'));
    expect(runner.calls).toHaveLength(1);
    expect(runner.calls[0]!.records.map((record) => [record.streamSequence, record.memberId])).toEqual([
      [1, 'a'],
      [2, 'b'],
      [3, 'a'],
    ]);
    commitAll(runner.calls[0]!);
    await ingest.drain();
  });

  it('acks only after the batch result, once, with the highest committed message (ack-all)', async () => {
    const { ingest, runner, onAck, onBatch } = setup({ batchSizeMax: 2 });
    const first = message(1, 'a', '{}', { pending: 7 });
    const second = message(2, 'a', '{}', { pending: 6 });
    ingest.onMessage(first);
    ingest.onMessage(second);
    expect(ingest.ackPending).toBe(2);
    expect(ingest.consumerPending).toBe(6);
    await settle();
    expect(first.acks + second.acks).toBe(0);
    const batchResult = result([1, 2]);
    runner.calls[0]!.resolve(batchResult);
    await settle();
    expect(onBatch).toHaveBeenCalledWith(0, batchResult, 42);
    expect(first.acks).toBe(0);
    expect(second.acks).toBe(1);
    expect(onAck).toHaveBeenCalledTimes(1);
    expect(ingest.ackPending).toBe(0);
    await ingest.drain();
  });

  it('counts dead letters in a batch result as done', async () => {
    const { ingest, runner } = setup({ batchSizeMax: 3 });
    const messages = [message(1, 'a'), message(2, 'a'), message(3, 'a')];
    messages.forEach((inbound) => ingest.onMessage(inbound));
    runner.calls[0]!.resolve(result([1, 3], [2]));
    await settle();
    expect(messages.map((inbound) => inbound.acks)).toEqual([0, 0, 1]);
    await ingest.drain();
  });

  it('holds the ack while a lower sequence is still in another actor\'s batch', async () => {
    const actors = 2;
    // Two ids owned by different actors.
    const ids: string[] = [];
    for (let index = 0; ids.length < 2; index++) {
      const id = `member-${index}`;
      if (actorOfPartition(partitionOf(id, 16), actors) === ids.length) ids.push(id);
    }
    const { ingest, runner } = setup({ actors });
    const low = message(1, ids[0]!);
    const high = message(2, ids[1]!);
    ingest.onMessage(low);
    ingest.onMessage(high);
    const [lowCall, highCall] = runner.calls;
    expect(lowCall!.actor).toBe(0);
    expect(highCall!.actor).toBe(1);
    commitAll(highCall!);
    await settle();
    expect(low.acks + high.acks).toBe(0);
    commitAll(lowCall!);
    await settle();
    expect(low.acks).toBe(0);
    expect(high.acks).toBe(1);
    await ingest.drain();
  });

  it('sends an oversized payload to deadLetter unread and acks it only after the dead letter is stored', async () => {
    let store!: () => void;
    const deadLetter = vi.fn(() => new Promise<void>((resolve) => (store = resolve)));
    const { ingest, runner } = setup({ payloadBytesMax: 100, deadLetter });
    const big = message(1, 'big-mp', new Uint8Array(101));
    ingest.onMessage(big);
    expect(runner.calls).toHaveLength(0);
    expect(deadLetter).toHaveBeenCalledTimes(1);
    expect(deadLetter).toHaveBeenCalledWith(big, 'big-mp', 'payload of 101 bytes exceeds the limit of 100', Encoding.Msgpack);
    await settle();
    expect(big.acks).toBe(0);
    expect(ingest.ackPending).toBe(1);
    store();
    await settle();
    expect(big.acks).toBe(1);
    expect(ingest.ackPending).toBe(0);
    await ingest.drain();
  });

  it('a payload of exactly payloadBytesMax goes to the actor', async () => {
    const { ingest, runner, deadLetter } = setup({ payloadBytesMax: 100 });
    ingest.onMessage(message(1, 'a', new Uint8Array(100)));
    expect(deadLetter).not.toHaveBeenCalled();
    expect(runner.calls).toHaveLength(1);
    commitAll(runner.calls[0]!);
    await ingest.drain();
  });

  it('an oversized message between batched ones is acked with the watermark, not before', async () => {
    const { ingest, runner } = setup({ batchSizeMax: 2, payloadBytesMax: 100 });
    const messages = [message(1, 'a'), message(2, 'a', new Uint8Array(500)), message(3, 'a')];
    messages.forEach((inbound) => ingest.onMessage(inbound));
    await settle(); // the dead letter is stored, but 1 is still in flight
    expect(messages.map((inbound) => inbound.acks)).toEqual([0, 0, 0]);
    commitAll(runner.calls[0]!);
    await settle();
    expect(messages.map((inbound) => inbound.acks)).toEqual([0, 0, 1]);
    await ingest.drain();
  });

  it('a redelivered in-flight message is not sent to an actor again; the first copy\'s commit acks it, through the newest delivery', async () => {
    const onRedeliverySkipped = vi.fn();
    const { ingest, runner } = setup({ onRedeliverySkipped });
    const first = message(1, 'a', '{}', { name: 'first' });
    const again = message(1, 'a', '{}', { name: 'again' });
    const oversizedAgain = message(1, 'a', 'x'.repeat(200), { name: 'oversized again' });
    ingest.onMessage(first);
    ingest.onMessage(again);
    ingest.onMessage(oversizedAgain);
    expect(ingest.ackPending).toBe(1);
    expect(runner.calls).toHaveLength(1);
    expect(onRedeliverySkipped).toHaveBeenCalledTimes(2);
    commitAll(runner.calls[0]!);
    await settle();
    expect(first.acks + again.acks).toBe(0);
    expect(oversizedAgain.acks).toBe(1);
    // Acked and forgotten: a later copy (the server's ack lost, say) is new again and goes to the actor (its processed record makes it a no-op).
    const late = message(1, 'a', '{}', { name: 'late' });
    ingest.onMessage(late);
    expect(runner.calls).toHaveLength(2);
    commitAll(runner.calls[1]!);
    await settle();
    expect(late.acks).toBe(1);
    await ingest.drain();
  });

  it('a redelivery of a committed message waiting for the watermark (a lower one still in flight) is left out too', async () => {
    const { ingest, runner } = setup({ actors: 1 });
    ingest.onMessage(message(1, 'a'));
    const second = message(2, 'b');
    ingest.onMessage(second);
    commitAll(runner.calls[1]!);
    await settle();
    expect(second.acks).toBe(0);
    const secondAgain = message(2, 'b', '{}', { name: 'second again' });
    ingest.onMessage(secondAgain);
    expect(runner.calls).toHaveLength(2);
    commitAll(runner.calls[0]!);
    await settle();
    expect(secondAgain.acks).toBe(1);
    await ingest.drain();
  });

  describe('deliveries lost on the way (deliveriesLost)', () => {
    const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

    it('holds acks at the last sequence seen, holds open what the consumer delivered and did not arrive, acks once it is redelivered', async () => {
      let askDelivered: (sequence: number) => void = () => undefined;
      const consumerDelivered = vi.fn(() => new Promise<{ streamSequence: number; deliverySequence: number }>((resolve) => (askDelivered = (streamSequence) => resolve({ streamSequence, deliverySequence: 9 }))));
      const requestRedelivery = vi.fn();
      const { ingest, runner } = setup({ consumerDelivered, requestRedelivery });
      const one = message(1, 'a');
      ingest.onMessage(one);
      // Deliveries of 2 and 3 were lost; 4 came.
      ingest.deliveriesLost(1);
      const four = message(4, 'a');
      ingest.onMessage(four);
      commitAll(runner.calls[0]!);
      commitAll(runner.calls[1]!);
      await settle();
      expect(one.acks).toBe(1);
      expect(four.acks).toBe(0);
      expect(ingest.describeAcks()).toMatchObject({ heldAt: 1 });
      askDelivered(4);
      await settle();
      expect(ingest.describeAcks()).toEqual({ lowestOpen: { sequence: 2, delivered: false, done: false }, redeliveriesAwaited: 2 });
      expect(requestRedelivery).toHaveBeenCalledWith([2, 3], 9); // asked for at once, not after ack_wait
      expect(four.acks).toBe(0);
      // nats-server redelivers them after ack_wait.
      const two = message(2, 'a');
      const three = message(3, 'a');
      ingest.onMessage(two);
      ingest.onMessage(three);
      commitAll(runner.calls[2]!);
      await settle();
      expect(two.acks).toBe(1);
      commitAll(runner.calls[3]!);
      await settle();
      expect(four.acks).toBe(1);
      expect(ingest.ackPending).toBe(0);
      await ingest.drain();
    });

    it('a filtered consumer (one partition) awaits only the lost sequences it delivers, not every sequence of the range', async () => {
      const consumerDelivered = vi.fn(async () => ({ streamSequence: 12, deliverySequence: 5 }));
      // The partition's messages among 2..12: 4, 8 and 12 (the others are other partitions').
      const consumerSequences = vi.fn(async (from: number, to: number) => [4, 8, 12].filter((sequence) => sequence >= from && sequence <= to));
      const requestRedelivery = vi.fn();
      const { ingest, runner } = setup({ consumerDelivered, consumerSequences, requestRedelivery });
      const one = message(1, 'a');
      ingest.onMessage(one);
      ingest.deliveriesLost(1); // 4 and 8 lost; 12 came
      const twelve = message(12, 'a');
      ingest.onMessage(twelve);
      commitAll(runner.calls[0]!);
      commitAll(runner.calls[1]!);
      await settle();
      expect(one.acks).toBe(1);
      expect(twelve.acks).toBe(0);
      expect(consumerSequences).toHaveBeenCalledWith(2, 12);
      expect(ingest.describeAcks()).toEqual({ lowestOpen: { sequence: 4, delivered: false, done: false }, redeliveriesAwaited: 2 });
      expect(requestRedelivery).toHaveBeenCalledWith([4, 8], 5);
      ingest.onMessage(message(4, 'a'));
      ingest.onMessage(message(8, 'a'));
      for (const call of runner.calls.slice(2)) commitAll(call);
      await settle();
      expect(twelve.acks).toBe(1);
      expect(ingest.ackPending).toBe(0);
      await ingest.drain();
    });

    it('asks the consumer again after a failed lookup, and for a gap that came while it asked', async () => {
      const answers: ((value: { streamSequence: number; deliverySequence: number }) => void)[] = [];
      let fail = true;
      const consumerDelivered = vi.fn(() => {
        if (fail) {
          fail = false;
          return Promise.reject(new Error('timeout'));
        }
        return new Promise<{ streamSequence: number; deliverySequence: number }>((resolve) => answers.push(resolve));
      });
      const { ingest, runner } = setup({ consumerDelivered });
      ingest.onMessage(message(1, 'a'));
      ingest.deliveriesLost(1);
      await wait(300); // the failed lookup, then a second one after 250 ms
      expect(consumerDelivered).toHaveBeenCalledTimes(2);
      ingest.onMessage(message(3, 'a'));
      ingest.deliveriesLost(3); // while the second lookup is out: its answer may not cover this gap
      answers[0]!({ streamSequence: 3, deliverySequence: 3 });
      await settle();
      expect(consumerDelivered).toHaveBeenCalledTimes(3);
      expect(ingest.describeAcks()).toMatchObject({ heldAt: 1 });
      answers[1]!({ streamSequence: 6, deliverySequence: 6 });
      await settle();
      for (const call of runner.calls) commitAll(call);
      await settle();
      // 2, 4, 5 and 6 were delivered by the consumer and never came.
      expect(ingest.describeAcks()).toEqual({ lowestOpen: { sequence: 2, delivered: false, done: false }, redeliveriesAwaited: 4 });
      await ingest.drain();
    });

    it('gives up a held-open sequence the stream no longer holds, and acks past it', async () => {
      const streamHas = vi.fn(async (sequence: number) => sequence !== 2);
      const { ingest, runner } = setup({ consumerDelivered: async () => ({ streamSequence: 3, deliverySequence: 3 }), streamHas, redeliveryCheckMs: 5 });
      ingest.onMessage(message(1, 'a'));
      ingest.deliveriesLost(1);
      const three = message(3, 'a');
      ingest.onMessage(three);
      for (const call of runner.calls) commitAll(call);
      await wait(50);
      expect(streamHas).toHaveBeenCalledWith(2);
      expect(three.acks).toBe(1);
      expect(ingest.describeAcks()).toEqual({});
      await ingest.drain();
    });

    it('more lost sequences than it holds open: onFatal with ERR_INTAKE_GAP, nothing acked past them', async () => {
      const { ingest, runner, onFatal } = setup({ consumerDelivered: async () => ({ streamSequence: 1 + REDELIVERY_HOLD_MAX + 1, deliverySequence: 2 }) });
      ingest.onMessage(message(1, 'a'));
      ingest.deliveriesLost(1);
      await settle();
      expect(onFatal).toHaveBeenCalledTimes(1);
      expect(onFatal.mock.calls[0]![0]).toMatchObject({ code: 'ERR_INTAKE_GAP' });
      commitAll(runner.calls[0]!);
      await ingest.drain();
    });
  });

  it('a failing batch calls onFatal once, stops intake and acks nothing afterwards', async () => {
    const actors = 2;
    const { ingest, runner, onFatal, onAck } = setup({ actors });
    const messages = Array.from({ length: 4 }, (_, index) => message(index + 1, `member-${index}`));
    messages.forEach((inbound) => ingest.onMessage(inbound));
    expect(runner.calls).toHaveLength(4);
    const failure = new Error('commit failed');
    runner.calls[0]!.reject(failure);
    runner.calls[1]!.reject(new Error('refused as well'));
    await settle();
    expect(onFatal).toHaveBeenCalledTimes(1);
    expect(onFatal).toHaveBeenCalledWith(failure);
    // Batches that succeed afterwards are not acked: the engine restarts from the ack floor.
    commitAll(runner.calls[2]!);
    commitAll(runner.calls[3]!);
    await settle();
    expect(messages.map((inbound) => inbound.acks)).toEqual([0, 0, 0, 0]);
    expect(onAck).not.toHaveBeenCalled();
    // Later messages are not taken (they are redelivered after the restart).
    ingest.onMessage(message(9, 'late'));
    expect(runner.calls).toHaveLength(4);
    await ingest.drain();
    expect(onFatal).toHaveBeenCalledTimes(1);
  });

  it('a failing dead-letter publish is fatal too', async () => {
    const { ingest, onFatal } = setup({ deadLetter: vi.fn(async () => Promise.reject(new Error('no DLQ stream'))) });
    const big = message(1, 'a', new Uint8Array(1000));
    ingest.onMessage(big);
    await settle();
    expect(onFatal).toHaveBeenCalledTimes(1);
    expect(big.acks).toBe(0);
    await ingest.drain();
  });

  it('drain sends partial batches, waits for every in-flight batch and its ack, then ignores new messages', async () => {
    const { ingest, runner } = setup({ batchSizeMax: 10 });
    const messages = [message(1, 'a'), message(2, 'b')];
    messages.forEach((inbound) => ingest.onMessage(inbound));
    expect(runner.calls).toHaveLength(0);
    let drained = false;
    const draining = ingest.drain().then(() => (drained = true));
    expect(runner.calls).toHaveLength(1);
    await settle();
    expect(drained).toBe(false);
    commitAll(runner.calls[0]!);
    await draining;
    expect(drained).toBe(true);
    expect(messages.map((inbound) => inbound.acks)).toEqual([0, 1]);
    // Delivered after intake stopped: not processed, not acked (redelivered after the restart).
    const late = message(3, 'c');
    ingest.onMessage(late);
    expect(runner.calls).toHaveLength(1);
    expect(late.acks).toBe(0);
  });

  describe('restartDeliveries (the consumer recreated at its ack floor)', () => {
    it('ackedThrough is the highest sequence acked; a gap of deliveries kept open is forgotten, and the old handles are never used again', async () => {
      const consumerDelivered = vi.fn(async () => ({ streamSequence: 5, deliverySequence: 5 }));
      const { ingest, runner } = setup({ batchSizeMax: 10, consumerDelivered, requestRedelivery: vi.fn() });
      expect(ingest.ackedThrough).toBe(0);
      const one = message(1, 'a');
      ingest.onMessage(one);
      ingest.deliveriesLost(1); // 2 and 3 never came
      const four = message(4, 'a');
      const five = message(5, 'b');
      ingest.onMessage(four);
      ingest.onMessage(five);
      // Partial batch still in the batcher: restartDeliveries sends it and waits for it.
      let restarted = false;
      const restarting = ingest.restartDeliveries().then(() => (restarted = true));
      expect(runner.calls).toHaveLength(1);
      await settle();
      expect(restarted).toBe(false);
      commitAll(runner.calls[0]!);
      await restarting;
      // 1 acked; 4 and 5 committed but held behind the awaited 2 and 3.
      expect([one.acks, four.acks, five.acks]).toEqual([1, 0, 0]);
      expect(ingest.ackedThrough).toBe(1);
      expect(ingest.ackPending).toBe(0);
      expect(ingest.describeAcks()).toEqual({});
      // The new consumer delivers from the floor: 2..5 again, each acked through its new delivery only.
      const again = [2, 3, 4, 5].map((sequence) => message(sequence, 'a', '{}', { name: `new #${sequence}` }));
      again.forEach((inbound) => ingest.onMessage(inbound));
      const draining = ingest.drain();
      expect(runner.calls[1]!.records.map((record) => record.streamSequence)).toEqual([2, 3, 4, 5]);
      commitAll(runner.calls[1]!);
      await draining;
      expect(again.map((inbound) => inbound.acks)).toEqual([0, 0, 0, 1]);
      expect([four.acks, five.acks]).toEqual([0, 0]);
      expect(ingest.ackedThrough).toBe(5);
    });

    it('a duplicate below the acked watermark is still tracked and acked (it only tells the engine to look at the consumer)', async () => {
      const { ingest, runner } = setup();
      const messages = [1, 2, 3].map((sequence) => message(sequence, 'a'));
      for (const inbound of messages) {
        ingest.onMessage(inbound);
        commitAll(runner.calls.at(-1)!);
        await settle();
      }
      expect(ingest.ackedThrough).toBe(3);
      const duplicate = message(2, 'a', '{}', { name: 'again #2' });
      ingest.onMessage(duplicate);
      commitAll(runner.calls.at(-1)!);
      await settle();
      expect(duplicate.acks).toBe(1);
      expect(ingest.ackedThrough).toBe(3);
      expect(ingest.ackPending).toBe(0);
    });
  });

  it('a redelivery arriving after intake stopped holds the watermark below it (it is never acked unprocessed)', async () => {
    const { ingest, runner } = setup({ batchSizeMax: 10 });
    const high = message(5, 'a');
    ingest.onMessage(high);
    const draining = ingest.drain();
    expect(runner.calls).toHaveLength(1);
    // A lower sequence redelivered while the drain waits for sequence 5's batch.
    const lateLow = message(3, 'b');
    ingest.onMessage(lateLow);
    expect(ingest.ackPending).toBe(2);
    commitAll(runner.calls[0]!);
    await draining;
    // Acking 5 would ack 3 too (ack-all), and 3 was never processed.
    expect(high.acks).toBe(0);
    expect(lateLow.acks).toBe(0);
    expect(runner.calls).toHaveLength(1);
  });

  describe('exclusive (a program switch with no batch in flight)', () => {
    it('waits for batches in flight, holds new full batches during the action, then sends them in order', async () => {
      const { ingest, runner } = setup({ batchSizeMax: 1 });
      ingest.onMessage(message(1, 'a'));
      expect(runner.calls).toHaveLength(1);
      const events: string[] = [];
      let finishAction!: () => void;
      const done = ingest.exclusive(async () => {
        events.push(`action starts with ${runner.calls.length} batch(es) sent`);
        await new Promise<void>((resolve) => (finishAction = resolve));
        return 'switched';
      });
      ingest.onMessage(message(2, 'a'));
      ingest.onMessage(message(3, 'b'));
      await settle();
      expect(events).toEqual([]); // batch 1 is still in flight
      expect(runner.calls).toHaveLength(1);
      commitAll(runner.calls[0]!);
      await settle();
      expect(events).toEqual(['action starts with 1 batch(es) sent']);
      ingest.onMessage(message(4, 'a'));
      expect(runner.calls).toHaveLength(1);
      finishAction();
      expect(await done).toBe('switched');
      expect(runner.calls.map((call) => call.records.map((record) => record.streamSequence))).toEqual([[1], [2], [3], [4]]);
      runner.calls.slice(1).forEach(commitAll);
      await ingest.drain();
    });

    it('sends partial batches that waited for their age during the action', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      try {
        const { ingest, runner } = setup({ batchSizeMax: 10, batchAgeMsMax: 5 });
        const done = ingest.exclusive(async () => {
          ingest.onMessage(message(1, 'a'));
          vi.advanceTimersByTime(50);
          expect(runner.calls).toHaveLength(0);
        });
        await done;
        expect(runner.calls.map((call) => call.records.map((record) => record.streamSequence))).toEqual([[1]]);
        commitAll(runner.calls[0]!);
        await ingest.drain();
      } finally {
        vi.useRealTimers();
      }
    });

    it('resumes intake when the action fails', async () => {
      const { ingest, runner } = setup({ batchSizeMax: 1 });
      const failing = ingest.exclusive(async () => {
        ingest.onMessage(message(1, 'a'));
        throw new Error('bad program');
      });
      await expect(failing).rejects.toThrow('bad program');
      expect(runner.calls).toHaveLength(1);
      ingest.onMessage(message(2, 'a'));
      expect(runner.calls).toHaveLength(2);
      runner.calls.forEach(commitAll);
      await ingest.drain();
    });
  });

  it('a busy actor gets its partial batch when an earlier batch answers (poke)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const { ingest, runner } = setup({ batchSizeMax: 2, batchAgeMsMax: 5 });
      ingest.onMessage(message(1, 'a'));
      ingest.onMessage(message(2, 'a'));
      expect(runner.calls).toHaveLength(1);
      runner.room.set(0, false);
      ingest.onMessage(message(3, 'a'));
      vi.advanceTimersByTime(5);
      expect(runner.calls).toHaveLength(1);
      runner.room.set(0, true);
      commitAll(runner.calls[0]!);
      await settle();
      expect(runner.calls).toHaveLength(2);
      expect(runner.calls[1]!.records.map((record) => record.streamSequence)).toEqual([3]);
      commitAll(runner.calls[1]!);
      await ingest.drain();
    } finally {
      vi.useRealTimers();
    }
  });
});
