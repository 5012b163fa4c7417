import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AssertionError } from '../../../src/domain/assert.js';
import { Encoding, readBatch } from '../../../src/routing/batch-buffer.js';
import { Batcher } from '../../../src/routing/batcher.js';

interface Sent {
  actor: number;
  count: number;
  sequences: number[];
  memberIds: string[];
}

function harness(options: { actors?: number; batchSizeMax?: number; batchAgeMsMax?: number; idle?: Map<number, boolean> } = {}) {
  const sent: Sent[] = [];
  const room = new Map<number, boolean>();
  const idle = options.idle;
  const batcher = new Batcher({
    ...(idle !== undefined ? { isIdle: (actor: number) => idle.get(actor) ?? false } : {}),
    actors: options.actors ?? 2,
    batchSizeMax: options.batchSizeMax ?? 3,
    batchAgeMsMax: options.batchAgeMsMax ?? 10,
    hasRoom: (actor) => room.get(actor) ?? true,
    send: (actor, buffer, count) => {
      const records = readBatch(buffer);
      expect(records).toHaveLength(count);
      sent.push({ actor, count, sequences: records.map((record) => record.streamSequence), memberIds: records.map((record) => record.memberId) });
    },
  });
  let sequence = 0;
  const add = (actor: number, memberId = `m${actor}`) => {
    sequence += 1;
    batcher.add(actor, sequence, 0, Encoding.Json, memberId, Uint8Array.of(sequence & 0xff));
    return sequence;
  };
  return { batcher, sent, room, add };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('Batcher', () => {
  it('sends an idle actor\'s batch at the end of the event loop turn, with every record added in that turn', () => {
    const idle = new Map([[0, true], [1, false]]);
    const { sent, add } = harness({ batchSizeMax: 100, batchAgeMsMax: 10, idle });
    add(0);
    add(0);
    add(1); // busy: waits its age
    expect(sent).toEqual([]);
    vi.advanceTimersToNextTimer(); // the immediate runs before the 10 ms timer
    expect(sent).toEqual([{ actor: 0, count: 2, sequences: [1, 2], memberIds: ['m0', 'm0'] }]);
    vi.advanceTimersByTime(10);
    expect(sent.map(({ actor, count }) => [actor, count])).toEqual([
      [0, 2],
      [1, 1],
    ]);
    // The idle flush left no timer behind: nothing more is sent.
    vi.advanceTimersByTime(100);
    expect(sent).toHaveLength(2);
  });

  it('sends a batch as soon as it reaches batchSizeMax', () => {
    const { sent, add } = harness({ batchSizeMax: 3 });
    add(0);
    add(0);
    expect(sent).toEqual([]);
    add(0);
    expect(sent).toEqual([{ actor: 0, count: 3, sequences: [1, 2, 3], memberIds: ['m0', 'm0', 'm0'] }]);
  });

  it('a size flush cancels the age timer; the next record starts a new one', () => {
    const { sent, add } = harness({ batchSizeMax: 2, batchAgeMsMax: 10 });
    add(0);
    vi.advanceTimersByTime(5);
    add(0);
    expect(sent).toHaveLength(1);
    add(0);
    vi.advanceTimersByTime(9);
    expect(sent).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sent.map((batch) => batch.sequences)).toEqual([[1, 2], [3]]);
  });

  it('sends a partial batch once its oldest record has waited batchAgeMsMax', () => {
    const { sent, add } = harness({ batchSizeMax: 100, batchAgeMsMax: 10 });
    add(0);
    vi.advanceTimersByTime(6);
    add(0);
    vi.advanceTimersByTime(3);
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual([{ actor: 0, count: 2, sequences: [1, 2], memberIds: ['m0', 'm0'] }]);
    vi.advanceTimersByTime(100);
    expect(sent).toHaveLength(1);
  });

  it('lets a busy actor\'s batch keep filling, and sends it on poke() once the actor has room', () => {
    const { batcher, sent, room, add } = harness({ batchSizeMax: 100, batchAgeMsMax: 10 });
    room.set(0, false);
    add(0);
    vi.advanceTimersByTime(10);
    expect(sent).toEqual([]);
    add(0);
    add(0);
    vi.advanceTimersByTime(50);
    expect(sent).toEqual([]);
    expect(batcher.pending(0)).toBe(3);
    batcher.poke(0); // still busy
    expect(sent).toEqual([]);
    room.set(0, true);
    batcher.poke(0);
    expect(sent).toEqual([{ actor: 0, count: 3, sequences: [1, 2, 3], memberIds: ['m0', 'm0', 'm0'] }]);
    expect(batcher.pending(0)).toBe(0);
  });

  it('poke() does not cut a batch short while its age timer is still running', () => {
    const { batcher, sent, add } = harness({ batchSizeMax: 100, batchAgeMsMax: 10 });
    add(0);
    batcher.poke(0);
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(10);
    expect(sent).toHaveLength(1);
  });

  it('poke() of an empty actor sends nothing', () => {
    const { batcher, sent } = harness();
    batcher.poke(0);
    batcher.poke(1);
    expect(sent).toEqual([]);
  });

  it('sends a full batch even when the actor is busy (size bounds the batch, intake bounds the rest)', () => {
    const { sent, room, add } = harness({ batchSizeMax: 2 });
    room.set(0, false);
    add(0);
    add(0);
    expect(sent.map((batch) => batch.count)).toEqual([2]);
  });

  it('keeps each actor\'s records in its own batch, in arrival order', () => {
    const { batcher, sent, add } = harness({ actors: 3, batchSizeMax: 100 });
    add(0, 'a');
    add(1, 'b');
    add(0, 'c');
    add(2, 'd');
    add(1, 'e');
    expect(batcher.pending(0)).toBe(2);
    expect(batcher.pending(1)).toBe(2);
    expect(batcher.pending(2)).toBe(1);
    batcher.flushAll();
    expect(sent).toEqual([
      { actor: 0, count: 2, sequences: [1, 3], memberIds: ['a', 'c'] },
      { actor: 1, count: 2, sequences: [2, 5], memberIds: ['b', 'e'] },
      { actor: 2, count: 1, sequences: [4], memberIds: ['d'] },
    ]);
  });

  it('flushAll sends every partial batch regardless of room and clears their timers', () => {
    const { batcher, sent, room, add } = harness({ batchSizeMax: 100, batchAgeMsMax: 10 });
    room.set(1, false);
    add(0);
    add(1);
    batcher.flushAll();
    expect(sent.map((batch) => batch.actor)).toEqual([0, 1]);
    vi.advanceTimersByTime(100);
    expect(sent).toHaveLength(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('close flushes, leaves no timers, and refuses further records', () => {
    const { batcher, sent, add } = harness({ batchSizeMax: 100 });
    add(0);
    add(0);
    batcher.close();
    expect(sent).toEqual([{ actor: 0, count: 2, sequences: [1, 2], memberIds: ['m0', 'm0'] }]);
    expect(vi.getTimerCount()).toBe(0);
    expect(() => add(0)).toThrow(AssertionError);
  });

  it('refuses an actor index it does not have', () => {
    const { add } = harness({ actors: 2 });
    expect(() => add(2)).toThrow(AssertionError);
  });
});
