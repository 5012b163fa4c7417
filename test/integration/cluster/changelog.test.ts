import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChangelogStream, PartitionChangelog, PartitionFencedError, type ChangelogRecord } from '../../../src/cluster/changelog.js';
import { nextOnSubject } from '../../../src/transport/stream-reads.js';
import { startTestNatsCluster } from '../../helpers/nats-cluster.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * The changelog as cluster mode's commit point, against a real nats-server:
 * the new owner's fence refuses every later append of the old one (a zombie
 * back from SIGSTOP), and the tail replays in order for a restore.
 */

let server: TestNatsServer;
let nc: NatsConnection;
const STREAM = 'LOYALTY_CHANGELOG_TEST';
const PREFIX = 'loyalty';
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

beforeAll(async () => {
  server = await startTestNatsServer();
  nc = await connectTest(server.url);
  await ensureChangelogStream(await jetstreamManager(nc), { stream: STREAM, subjectPrefix: PREFIX, replicas: 1 });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

async function changelog(partition: number, owner: string): Promise<PartitionChangelog> {
  return new PartitionChangelog(jetstream(nc), await jetstreamManager(nc), STREAM, PREFIX, partition, owner);
}

async function all(log: PartitionChangelog, afterSeq = 0): Promise<ChangelogRecord[]> {
  const records: ChangelogRecord[] = [];
  for await (const record of log.readAfter(afterSeq)) records.push(record);
  return records;
}

describe('a partition changelog fenced by lease epochs', () => {
  it('refuses the old owner\'s appends once the new owner fenced, and replays the tail in order', async () => {
    const old = await changelog(7, 'engine-a');
    await old.fence(11);
    await old.append(bytes('a1'));
    await old.append(bytes('a2'));
    const other = await changelog(8, 'engine-a'); // another partition's log is independent
    await other.fence(12);
    await other.append(bytes('p8'));

    const next = await changelog(7, 'engine-b');
    const fenceSeq = await next.fence(15);
    await expect(old.append(bytes('zombie'))).rejects.toBeInstanceOf(PartitionFencedError);
    await expect(old.append(bytes('zombie again'))).rejects.toMatchObject({ code: 'ERR_PARTITION_FENCED', partition: 7, epoch: 11 });
    await next.append(bytes('b1'));

    const records = await all(next);
    expect(records.map((record) => [record.kind, record.owner, record.epoch, text(record.data)])).toEqual([
      ['fence', 'engine-a', 11, ''],
      ['commit', 'engine-a', 11, 'a1'],
      ['commit', 'engine-a', 11, 'a2'],
      ['fence', 'engine-b', 15, ''],
      ['commit', 'engine-b', 15, 'b1'],
    ]);
    expect(records.some((record) => text(record.data).startsWith('zombie'))).toBe(false);
    expect(records[3]!.seq).toBe(fenceSeq);
    expect((await all(next, fenceSeq)).map((record) => text(record.data))).toEqual(['b1']);
    expect((await all(other)).map((record) => text(record.data))).toEqual(['', 'p8']);
  });

  it('keeps what a snapshot does not hold after a compaction, and an empty log reads as empty', async () => {
    const log = await changelog(20, 'engine-a');
    expect(await all(log)).toEqual([]);
    await log.fence(3);
    const keep = await log.append(bytes('one'));
    await log.append(bytes('two'));
    await log.compact(keep);
    expect((await all(log)).map((record) => text(record.data))).toEqual(['one', 'two']);
    await log.append(bytes('three')); // the owner's expected sequence is unaffected by the purge
    expect((await all(log, keep)).map((record) => text(record.data))).toEqual(['two', 'three']);
  });

  it('asks an unanswered append again with the same message id: a lost acknowledgement stores the commit once, a lost request stores it after', async () => {
    await appendsThroughLostAnswers(nc, STREAM, 30);
  });
});

/** A client whose publishes fail as `plan` says: 'ack' stores the message and loses its answer, 'request' loses the request. */
function unreliable(js: JetStreamClient, plan: ('ack' | 'request' | 'ok')[]): JetStreamClient {
  const timeout = () => Object.assign(new Error('timeout'), { name: 'TimeoutError' });
  return new Proxy(js, {
    get(target, property, receiver) {
      if (property !== 'publish') return Reflect.get(target, property, receiver) as unknown;
      return async (...args: Parameters<JetStreamClient['publish']>) => {
        const step = plan.shift() ?? 'ok';
        if (step === 'request') throw timeout();
        const ack = await target.publish(...args);
        if (step === 'ack') throw timeout();
        return ack;
      };
    },
  });
}

async function appendsThroughLostAnswers(connection: NatsConnection, stream: string, partition: number): Promise<void> {
  const retries: number[] = [];
  // fence: ok; one: stored and answer lost, then the retry answered; two: stored and answer lost, then 2 requests lost, then answered; three: request lost, then stored.
  const plan: ('ack' | 'request' | 'ok')[] = ['ok', 'ack', 'ok', 'ack', 'request', 'request', 'ok', 'request', 'ok'];
  const log = new PartitionChangelog(unreliable(jetstream(connection), plan), await jetstreamManager(connection), stream, PREFIX, partition, 'engine-a', 10_000, (attempt) => retries.push(attempt));
  const fenceSeq = await log.fence(5); // ok
  const one = await log.append(bytes('one'));
  const two = await log.append(bytes('two'));
  const three = await log.append(bytes('three'));
  expect([one, two, three].every((seq) => seq > fenceSeq)).toBe(true);
  expect(retries).toEqual([1, 1, 2, 3, 1]);
  expect(plan).toEqual([]);
  const reader = new PartitionChangelog(jetstream(connection), await jetstreamManager(connection), stream, PREFIX, partition, 'reader');
  const records: ChangelogRecord[] = [];
  for await (const record of reader.readAfter(0)) records.push(record);
  expect(records.map((record) => [record.seq, record.kind, text(record.data)])).toEqual([
    [fenceSeq, 'fence', ''],
    [one, 'commit', 'one'],
    [two, 'commit', 'two'],
    [three, 'commit', 'three'],
  ]);
}

describe('a tail read in ranges side by side', () => {
  it('reads every record of the partition after any position, in order, among other partitions\' records (and says how long against one get after another)', async () => {
    const partitions = [20, 21, 22, 23];
    const logs = await Promise.all(partitions.map((partition) => changelog(partition, 'engine-r')));
    for (const [index, log] of logs.entries()) await log.fence(100 + index);
    // 600 rounds, one record of each partition per round: the partition's records are a quarter of the stream's, spread out.
    for (let round = 0; round < 600; round++) await Promise.all(logs.map((log, index) => log.append(bytes(`p${partitions[index]}-${round}`))));
    const reader = await changelog(21, 'engine-s');
    const started = performance.now();
    const records = await all(reader);
    const rangedMs = performance.now() - started;
    expect(records.map((record) => text(record.data))).toEqual(['', ...Array.from({ length: 600 }, (_, round) => `p21-${round}`)]);
    expect(records.every((record, index) => index === 0 || record.seq > records[index - 1]!.seq)).toBe(true);
    // From a position in the middle (a snapshot's): exactly the records after it.
    const middle = records[300]!.seq;
    expect((await all(reader, middle)).map((record) => text(record.data))).toEqual(Array.from({ length: 300 }, (_, index) => `p21-${index + 300}`));
    expect(await all(reader, records.at(-1)!.seq)).toEqual([]);
    // The same tail one get after another, as before the ranges.
    const jsm = await jetstreamManager(nc);
    const oneByOne = performance.now();
    let seq = 1;
    let count = 0;
    for (;;) {
      const message = await nextOnSubject(jsm, STREAM, `${PREFIX}.changelog.21`, seq);
      if (message === null) break;
      count += 1;
      seq = message.seq + 1;
    }
    const sequentialMs = performance.now() - oneByOne;
    expect(count).toBe(601);
    console.log(`tail of 601 records among 2,404: ranges side by side ${rangedMs.toFixed(0)} ms, one get after another ${sequentialMs.toFixed(0)} ms (${(sequentialMs / rangedMs).toFixed(1)}x)`);
  }, 60_000);
});

describe('a partition changelog on a 3-node cluster (R3)', () => {
  it('asks an unanswered append again: a retry of a stored commit, refused by the expected-sequence check, is found as ours', async () => {
    const cluster = await startTestNatsCluster(3, 'loyalty-changelog');
    const connection = await connectTest(cluster.urls);
    try {
      await ensureChangelogStream(await jetstreamManager(connection, { timeout: 20_000 }), { stream: 'CHANGELOG_R3', subjectPrefix: PREFIX, replicas: 3 });
      await appendsThroughLostAnswers(connection, 'CHANGELOG_R3', 4);
    } finally {
      await connection.close();
      await cluster.stop();
    }
  }, 60_000);
});
