import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fnv1a32, partitionOf } from '../../src/routing/partitioner.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';

/**
 * Proof that the engine's partitioner is nats-server's `partition()` subject
 * mapping, so a NATS cluster can route partitions to engine instances without
 * the engine in the path. Each P gets its own source subject on one server.
 */

const PARTITION_COUNTS = [64, 7, 1, 4096] as const;
const sourcePrefix = (partitions: number) => `loyalty.tx${partitions}`;
const targetPrefix = (partitions: number) => `loyalty.part${partitions}`;

// nats-server 2.9 accepts the lowercase `partition(...)` / `wildcard(...)` spelling (checked on 2.9.10).
const extraConfig = `mappings = {\n${PARTITION_COUNTS.map(
  (partitions) => `  "${sourcePrefix(partitions)}.*": "${targetPrefix(partitions)}.{{partition(${partitions},1)}}.{{wildcard(1)}}"`,
).join('\n')}\n}`;

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Deterministic, so a failure names the same ids on every run. */
function memberIds(count: number): string[] {
  let seed = 0x2545f491;
  const next = () => {
    // xorshift32
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const ids = new Set<string>([...ALPHABET]); // every single character
  ids.add('x'.repeat(64));
  ids.add('-'.repeat(64));
  ids.add('member-000001');
  ids.add('M_1');
  while (ids.size < count) {
    const length = 1 + Math.floor(next() * 64);
    let id = '';
    for (let index = 0; index < length; index++) id += ALPHABET[Math.floor(next() * ALPHABET.length)];
    ids.add(id);
  }
  return [...ids];
}

interface Observation {
  partitions: number;
  partition: number;
  memberId: string;
}

describe('partitionOf matches nats-server partition() subject mapping', () => {
  let server: TestNatsServer;
  let connection: NatsConnection;
  const ids = memberIds(3_000);
  const observations = new Map<number, Observation[]>();

  beforeAll(async () => {
    server = await startTestNatsServer({ extraConfig });
    connection = await connectTest(server.url);
    const expected = ids.length * PARTITION_COUNTS.length;
    let received = 0;
    let resolveAll!: () => void;
    const all = new Promise<void>((resolvePromise) => (resolveAll = resolvePromise));
    for (const partitions of PARTITION_COUNTS) {
      const list: Observation[] = [];
      observations.set(partitions, list);
      connection.subscribe(`${targetPrefix(partitions)}.*.*`, {
        callback: (error, message) => {
          if (error !== null) throw error;
          const [, partition, memberId] = message.subject.split('.').slice(1);
          list.push({ partitions, partition: Number(partition), memberId: memberId! });
          if (++received === expected) resolveAll();
        },
      });
    }
    // The subscriptions must be known to the server before the first publish.
    await connection.flush();
    for (const partitions of PARTITION_COUNTS) {
      for (const id of ids) connection.publish(`${sourcePrefix(partitions)}.${id}`);
    }
    await connection.flush();
    await Promise.race([
      all,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`received ${received} of ${expected} mapped messages within 10 s`)), 10_000)),
    ]);
  });

  afterAll(async () => {
    await connection?.close();
    await server?.stop();
  });

  for (const partitions of PARTITION_COUNTS) {
    it(`P = ${partitions}: every member id lands in partitionOf(id, ${partitions})`, () => {
      const list = observations.get(partitions)!;
      expect(list).toHaveLength(ids.length);
      expect(new Set(list.map((observation) => observation.memberId))).toEqual(new Set(ids));
      const mismatches = list
        .filter((observation) => observation.partition !== partitionOf(observation.memberId, partitions))
        .map((observation) => ({
          memberId: observation.memberId,
          server: observation.partition,
          engine: partitionOf(observation.memberId, partitions),
          fnv1a32: fnv1a32(new TextEncoder().encode(observation.memberId)),
        }));
      expect(mismatches.slice(0, 10), `${mismatches.length} of ${list.length} ids differ`).toEqual([]);
      // A mapping that put everything in a few partitions could agree by accident; these ids spread.
      const distinct = new Set(list.map((observation) => observation.partition)).size;
      if (partitions <= 64) expect(distinct).toBe(partitions);
      else expect(distinct).toBeGreaterThan(1_500); // 3,000 ids in 4,096 bins: ~2,100 expected
    });
  }
});
