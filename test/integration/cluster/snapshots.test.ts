import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PartitionSnapshots, SNAPSHOT_BUCKET } from '../../../src/cluster/snapshots.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { incompleteImports } from '../../../src/store/partition-transfer.js';
import { emptyStore, filledStore, PARTITIONS, partitionView, purchase } from '../../helpers/partition-stores.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Partition snapshots in the JetStream object store, against a real
 * nats-server: what one owner saved, another restores, with its position.
 */
let server: TestNatsServer;
let nc: NatsConnection;
const root = mkdtempSync(join(tmpdir(), 'loyalty-snapshots-'));

beforeAll(async () => {
  server = await startTestNatsServer();
  nc = await connectTest(server.url);
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe('partition snapshots in the object store', () => {
  it('a snapshot saved by one owner restores into another store: the same partition view, its position, a newer one replaces it', async () => {
    const snapshots = await PartitionSnapshots.open(nc, { replicas: 1 });
    const source = await filledStore(root, 'a', 400, 4_000, 1);
    const partition = partitionOf('a-m1', PARTITIONS);
    expect(await snapshots.info(partition)).toBeUndefined();
    const saved = await snapshots.save(source.store.root, partition, { changelogSeq: 41, watermark: 4_000, owner: 'engine-a', epoch: 7 });
    expect(saved).toMatchObject({ partition, changelogSeq: 41, watermark: 4_000, owner: 'engine-a', epoch: 7 });
    expect(saved.records).toBeGreaterThan(100);
    expect(saved.bytes).toBeGreaterThan(10_000);

    const target = await emptyStore(root, 'b');
    const restored = await snapshots.restore(target.root, partition);
    expect(restored).toMatchObject({ partition, changelogSeq: 41, watermark: 4_000, owner: 'engine-a', epoch: 7, records: saved.records, sha256: saved.sha256 });
    expect(partitionView(target, partition, source.ids)).toEqual(partitionView(source.store, partition, source.ids));
    expect(incompleteImports(target.root)).toEqual([]);

    // Later commits, a later snapshot: it replaces the first.
    const members = [...source.ids.keys()].filter((memberId) => partitionOf(memberId, PARTITIONS) === partition);
    await source.actor.process(members.map((memberId, index) => purchase(memberId, `later-${index}`, 7_777, 9)));
    const later = await snapshots.save(source.store.root, partition, { changelogSeq: 99, watermark: 4_000 + members.length, owner: 'engine-a', epoch: 7 });
    expect(await snapshots.info(partition)).toMatchObject({ changelogSeq: 99 });
    const second = await emptyStore(root, 'c');
    await snapshots.restore(second.root, partition);
    expect(partitionView(second, partition, source.ids)).toEqual(partitionView(source.store, partition, source.ids));
    // The bucket keeps one object per partition: its stream holds the latest one's chunks (128 KiB each) and its meta message.
    const bucket = await (await jetstreamManager(nc)).streams.info(`OBJ_${SNAPSHOT_BUCKET}`);
    expect(bucket.state.messages).toBe(Math.ceil(later.bytes / (128 * 1024)) + 1);

    expect(await snapshots.restore(second.root, (partition + 1) % PARTITIONS)).toBeUndefined();
    await source.store.close();
    await target.close();
    await second.close();
  }, 60_000);
});
