import { unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  DEFAULT_GENERATOR_OPTIONS,
  EventGenerator,
  eventIdOf,
  eventIndexOf,
  type GeneratorOptions,
} from '../../../bench/generator/events.js';
import { generateLoad, payloadOf } from '../../../bench/generator/load.js';

/** The purchase contract as the brief states it, written independently of src/domain. */
const purchaseContract = z
  .object({
    id: z.string().min(1).max(128),
    memberId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
    type: z.literal('purchase'),
    occurredAt: z.iso.datetime({ offset: true }),
    amountMinor: z.number().int().min(0),
    currency: z.string().regex(/^[A-Z]{3}$/),
    items: z
      .array(
        z
          .object({
            sku: z.string().min(1).max(64),
            category: z.string().min(1).max(64),
            quantity: z.number().int().min(1),
            unitPriceMinor: z.number().int().min(0),
          })
          .strict(),
      )
      .min(1)
      .max(8),
    channel: z.string().min(1).max(64),
  })
  .strict();

const options = (overrides: Partial<GeneratorOptions> = {}): GeneratorOptions => ({
  ...DEFAULT_GENERATOR_OPTIONS,
  runId: 'test1',
  members: 5_000,
  ...overrides,
});

describe('event generator', () => {
  it('produces byte-identical loads for the same options, in both encodings', () => {
    for (const encoding of ['json', 'msgpack'] as const) {
      const first = generateLoad({ generator: options(), count: 3_000, encoding });
      const second = generateLoad({ generator: options(), count: 3_000, encoding });
      expect(Buffer.compare(Buffer.from(first.bytes), Buffer.from(second.bytes))).toBe(0);
      expect(Array.from(first.offsets)).toEqual(Array.from(second.offsets));
      expect(Array.from(first.memberRanks)).toEqual(Array.from(second.memberRanks));
    }
  });

  it('produces different events for another seed', () => {
    const first = generateLoad({ generator: options({ seed: 1 }), count: 500, encoding: 'json' });
    const second = generateLoad({ generator: options({ seed: 2 }), count: 500, encoding: 'json' });
    expect(Buffer.compare(Buffer.from(first.bytes), Buffer.from(second.bytes))).not.toBe(0);
  });

  it('follows the purchase contract, with amounts that add up and ids that encode the index', () => {
    const generator = new EventGenerator(options({ currency: 'EUR' }));
    const lineCounts = new Set<number>();
    let previousTime = -Infinity;
    for (let index = 0; index < 5_000; index++) {
      const { event, memberRank, kind } = generator.next();
      expect(kind).toBe('purchase');
      expect(purchaseContract.safeParse(event).success).toBe(true);
      expect(event.id).toBe(eventIdOf('test1', index));
      expect(eventIndexOf('test1', event.id)).toBe(index);
      expect(event.memberId).toBe(`m${memberRank}`);
      expect(memberRank).toBeLessThan(5_000);
      expect(event.amountMinor).toBe(event.items.reduce((sum, item) => sum + item.quantity * item.unitPriceMinor, 0));
      for (const item of event.items) expect(item.unitPriceMinor % 100).toBe(99);
      const time = Date.parse(event.occurredAt);
      expect(time).toBeGreaterThanOrEqual(previousTime);
      previousTime = time;
      lineCounts.add(event.items.length);
    }
    // Every basket size from 1 to 8 lines shows up in 5,000 events.
    expect([...lineCounts].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('encodes msgpack and JSON payloads of the same event', () => {
    const json = generateLoad({ generator: options(), count: 200, encoding: 'json' });
    const msgpack = generateLoad({ generator: options(), count: 200, encoding: 'msgpack' });
    for (let index = 0; index < 200; index++) {
      const fromJson: unknown = JSON.parse(Buffer.from(payloadOf(json, index)).toString('utf8'));
      expect(unpack(payloadOf(msgpack, index))).toEqual(fromJson);
      expect(json.amountsMinor[index]).toBe((fromJson as { amountMinor: number }).amountMinor);
    }
    expect(json.subjectOfRank(json.memberRanks[0]!)).toBe(`loyalty.tx.m${json.memberRanks[0]}`);
  });

  it('gives the same SKU the same price everywhere', () => {
    const generator = new EventGenerator(options());
    const prices = new Map<string, number>();
    for (let index = 0; index < 5_000; index++) {
      for (const item of generator.next().event.items) {
        const known = prices.get(item.sku);
        if (known !== undefined) expect(item.unitPriceMinor).toBe(known);
        prices.set(item.sku, item.unitPriceMinor);
      }
    }
  });

  it('refuses kinds it cannot generate yet and bad options', () => {
    expect(() => new EventGenerator(options({ mix: { purchase: 1, return: 1 } }))).toThrow(/not generated yet/);
    expect(() => new EventGenerator(options({ mix: {} }))).toThrow(/positive weight/);
    expect(() => new EventGenerator(options({ runId: 'has-dash' }))).toThrow(/runId/);
    expect(() => new EventGenerator(options({ members: 0 }))).toThrow(/members/);
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
