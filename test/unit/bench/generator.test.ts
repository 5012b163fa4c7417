import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unpack } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';
import { CYBER_WEEK_END_MS, CYBER_WEEK_START_MS, DEFAULT_CLOCK, EventClock } from '../../../bench/generator/clock.js';
import {
  DEFAULT_GENERATOR_OPTIONS,
  EventGenerator,
  eventIdOf,
  eventIndexOf,
  orderIdOf,
  type BenchEvent,
  type BenchPurchaseEvent,
  type GeneratedEvent,
  type GeneratorOptions,
} from '../../../bench/generator/events.js';
import { programModelOf, purchasesOnlyModel } from '../../../bench/generator/program-model.js';
import { payloadOf, writeSpool, type Spool } from '../../../bench/generator/spool.js';
import { loadProgramFile } from '../../../src/config/program-file.js';
import { validateEvent } from '../../../src/domain/events.js';

const dir = mkdtempSync(join(tmpdir(), 'bench-generator-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const retail = programModelOf(loadProgramFile(join(import.meta.dirname, '../../../config/programs/retail.yaml')));
const DAY_MS = 86_400_000;

const options = (overrides: Partial<GeneratorOptions> = {}): GeneratorOptions => ({
  ...DEFAULT_GENERATOR_OPTIONS,
  runId: 'test1',
  members: 5_000,
  count: 20_000,
  program: retail,
  ...overrides,
});

function generateAll(generatorOptions: GeneratorOptions): GeneratedEvent[] {
  const generator = new EventGenerator(generatorOptions);
  return Array.from({ length: generatorOptions.count }, () => generator.next());
}

/** Every payload of a spool, decoded, with its rank and kind. */
function readBack(spool: Spool): { ranks: number[]; kinds: number[]; payloads: Buffer[] } {
  const ranks: number[] = [];
  const kinds: number[] = [];
  const payloads: Buffer[] = [];
  for (let chunk = 0; chunk < spool.chunks.length; chunk++) {
    const read = spool.readChunk(chunk);
    for (let position = 0; position < read.count; position++) {
      ranks.push(read.memberRanks[position]!);
      kinds.push(read.kinds[position]!);
      payloads.push(Buffer.from(payloadOf(read, position)));
    }
  }
  return { ranks, kinds, payloads };
}

describe('event generator', () => {
  it('writes the same bytes whatever the chunk size, and again for the same options', async () => {
    for (const encoding of ['json', 'msgpack'] as const) {
      const generator = options({ count: 9_000 });
      const whole = readBack(writeSpool({ generator, encoding, dir, name: `${encoding}-whole`, chunkEvents: 9_000 }));
      const chunked = readBack(writeSpool({ generator, encoding, dir, name: `${encoding}-chunked`, chunkEvents: 777 }));
      const again = writeSpool({ generator, encoding, dir, name: `${encoding}-again`, chunkEvents: 1_000 });
      expect(again.chunks.length).toBe(9);
      expect(chunked.ranks).toEqual(whole.ranks);
      expect(chunked.kinds).toEqual(whole.kinds);
      expect(Buffer.compare(Buffer.concat(chunked.payloads), Buffer.concat(whole.payloads))).toBe(0);
      expect(Buffer.compare(Buffer.concat(readBack(again).payloads), Buffer.concat(whole.payloads))).toBe(0);
      // The background reader gives the same chunks as the synchronous one.
      const streamed: Buffer[] = [];
      for await (const chunk of again.readAll()) for (let position = 0; position < chunk.count; position++) streamed.push(Buffer.from(payloadOf(chunk, position)));
      expect(Buffer.compare(Buffer.concat(streamed), Buffer.concat(whole.payloads))).toBe(0);
    }
  });

  it('produces different events for another seed', () => {
    const first = generateAll(options({ seed: 1, count: 500 }));
    const second = generateAll(options({ seed: 2, count: 500 }));
    expect(JSON.stringify(first)).not.toBe(JSON.stringify(second));
  });

  it('produces only events the engine\'s contract accepts, with ids that encode the index', () => {
    const events = generateAll(options());
    let previousTime = -Infinity;
    const lineCounts = new Set<number>();
    for (const { index, event, memberRank } of events) {
      const validation = validateEvent(event);
      expect(validation.ok, JSON.stringify(event)).toBe(true);
      expect(event.id).toBe(eventIdOf('test1', index));
      expect(eventIndexOf('test1', event.id)).toBe(index);
      expect(event.memberId).toBe(`m${memberRank}`);
      const time = Date.parse(event.occurredAt);
      expect(time).toBeGreaterThanOrEqual(previousTime);
      previousTime = time;
      if (event.type === 'purchase') {
        expect(event.amountMinor).toBe(event.items.reduce((sum, item) => sum + item.quantity * item.unitPriceMinor, 0));
        expect(new Set(event.items.map((item) => item.sku)).size).toBe(event.items.length);
        expect(event.orderId).toBe(orderIdOf('test1', index));
        lineCounts.add(event.items.length);
      }
    }
    expect([...lineCounts].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('returns lines of an earlier purchase of the same member, inside the return window and once', () => {
    const events = generateAll(options({ count: 60_000 }));
    const purchases = new Map<string, { index: number; event: BenchPurchaseEvent }>();
    const returned = new Set<string>();
    const ordersOfMember = new Map<string, number>();
    let returns = 0;
    for (const { index, event } of events) {
      if (event.type === 'purchase') {
        purchases.set(event.orderId, { index, event });
        ordersOfMember.set(event.memberId, (ordersOfMember.get(event.memberId) ?? 0) + 1);
        // The order's position among its member's orders, to check the ordersMax bound below.
        (event as BenchPurchaseEvent & { sequence?: number }).sequence = ordersOfMember.get(event.memberId);
      }
      if (event.type !== 'return') continue;
      returns += 1;
      const order = purchases.get(event.orderId);
      expect(order, `return ${event.id} names ${event.orderId}`).toBeDefined();
      expect(order!.index).toBeLessThan(index);
      expect(order!.event.memberId).toBe(event.memberId);
      expect(Date.parse(event.occurredAt) - Date.parse(order!.event.occurredAt)).toBeLessThan(retail.returnWindowDays! * DAY_MS);
      const sequence = (order!.event as BenchPurchaseEvent & { sequence?: number }).sequence!;
      expect(ordersOfMember.get(event.memberId)! - sequence).toBeLessThan(retail.ordersMax);
      expect(returned.has(event.orderId)).toBe(false);
      returned.add(event.orderId);
      expect(event.lines.length).toBeGreaterThan(0);
      for (const line of event.lines) {
        const item = order!.event.items.find((candidate) => candidate.sku === line.sku);
        expect(item).toBeDefined();
        expect(line.quantity).toBeGreaterThanOrEqual(1);
        expect(line.quantity).toBeLessThanOrEqual(item!.quantity);
      }
    }
    expect(returns).toBeGreaterThan(2_500);
  });

  it('follows the mix: about 90 % purchases, 5 % returns, 3 % redemptions, 2 % activities', () => {
    const count = 200_000;
    const generator = new EventGenerator(options({ count, members: 100_000 }));
    for (let index = 0; index < count; index++) generator.next();
    const { byKind, returnsReplacedByPurchases } = generator.stats;
    expect(byKind.purchase + byKind.return + byKind.redemption + byKind.activity).toBe(count);
    // Binomial standard deviation at 200k draws is ≤ 0.07 percentage points; allow 0.4.
    expect(Math.abs(byKind.purchase / count - 0.9)).toBeLessThan(0.004);
    expect(Math.abs(byKind.return / count - 0.05)).toBeLessThan(0.004);
    expect(Math.abs(byKind.redemption / count - 0.03)).toBeLessThan(0.004);
    expect(Math.abs(byKind.activity / count - 0.02)).toBeLessThan(0.004);
    expect(returnsReplacedByPurchases / count).toBeLessThan(0.001);
  });

  it('redeems the program\'s rewards at their price and sends the activities it rewards', () => {
    const events = generateAll(options());
    const rewards = new Map(retail.rewards.map((reward) => [reward.id, reward.points]));
    const activities = new Set(retail.activities.map((activity) => `${activity.activity}:${activity.customType ?? ''}`));
    const seen = new Set<string>();
    for (const { event } of events) {
      if (event.type === 'redemption') {
        expect(rewards.get(event.rewardId)).toBe(event.points);
        expect(event.currency).toBe('points');
        seen.add(event.rewardId);
      }
      if (event.type === 'activity') {
        expect(activities.has(`${event.activity}:${event.customType ?? ''}`)).toBe(true);
        seen.add(event.activity);
      }
    }
    // gold-lounge is for Gold members only: never offered to all.
    expect(seen.has('gold-lounge')).toBe(false);
    expect(seen.has('voucher-5') && seen.has('voucher-20') && seen.has('review')).toBe(true);
  });

  it('keeps lifetime-capped activities to once per member unless it says so', () => {
    const generator = new EventGenerator(options({ count: 50_000, members: 2_000 }));
    const events = Array.from({ length: 50_000 }, () => generator.next());
    const lifetime = new Map<string, number>();
    for (const { event } of events) {
      if (event.type !== 'activity' || event.activity === 'review' || event.activity === 'referral') continue;
      const key = `${event.memberId}:${event.activity}`;
      lifetime.set(key, (lifetime.get(key) ?? 0) + 1);
    }
    const repeats = [...lifetime.values()].reduce((sum, count) => sum + count - 1, 0);
    expect(repeats).toBeLessThanOrEqual(generator.stats.activitiesCapped);
  });

  it('encodes msgpack and JSON payloads of the same event', () => {
    const json = readBack(writeSpool({ generator: options({ count: 300 }), encoding: 'json', dir, name: 'same-json' }));
    const msgpack = readBack(writeSpool({ generator: options({ count: 300 }), encoding: 'msgpack', dir, name: 'same-msgpack' }));
    for (let index = 0; index < 300; index++) {
      expect(unpack(msgpack.payloads[index]!)).toEqual(JSON.parse(json.payloads[index]!.toString('utf8')) as BenchEvent);
    }
  });

  it('refuses bad options and kinds the program cannot take', () => {
    expect(() => new EventGenerator(options({ mix: { return: 1 } }))).toThrow(/needs purchases/);
    expect(() => new EventGenerator(options({ program: purchasesOnlyModel() }))).toThrow(/returns need|redemptions need|activities need/);
    expect(() => new EventGenerator(options({ runId: 'has-dash' }))).toThrow(/runId/);
    expect(() => new EventGenerator(options({ members: 0 }))).toThrow(/members/);
    const generator = new EventGenerator(options({ count: 1 }));
    generator.next();
    expect(() => generator.next()).toThrow(/made for 1 events/);
  });

  it('decodes only ids of its own run', () => {
    expect(eventIndexOf('abc', 'eabc-42')).toBe(42);
    expect(eventIndexOf('abc', 'eabd-42')).toBe(-1);
    expect(eventIndexOf('abc', 'eabc-')).toBe(-1);
    expect(eventIndexOf('abc', 'eabc-4x')).toBe(-1);
    expect(eventIndexOf('abc', 'eab-42')).toBe(-1);
    expect(eventIndexOf('ab', 'eabc-42')).toBe(-1);
  });
});

describe('event clock', () => {
  it('spreads the history over the first quarter and Cyber Week over the rest, never going back', () => {
    const clock = new EventClock(DEFAULT_CLOCK, 1_000);
    expect(clock.timeOf(0)).toBe(CYBER_WEEK_START_MS - 56 * DAY_MS);
    expect(clock.timeOf(249)).toBeLessThan(CYBER_WEEK_START_MS);
    expect(clock.timeOf(250)).toBe(CYBER_WEEK_START_MS);
    expect(clock.timeOf(999)).toBeLessThan(CYBER_WEEK_END_MS);
    for (let index = 1; index < 1_000; index++) expect(clock.timeOf(index)).toBeGreaterThanOrEqual(clock.timeOf(index - 1));
  });

  it('refuses segments out of order', () => {
    expect(() => new EventClock([{ share: 1, fromMs: 10, toMs: 5 }], 10)).toThrow();
    expect(() => new EventClock([{ share: 1, fromMs: 0, toMs: 10 }, { share: 1, fromMs: 5, toMs: 20 }], 10)).toThrow(/follow/);
  });
});
