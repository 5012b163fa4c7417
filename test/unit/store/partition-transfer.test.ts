import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack, unpack } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';
import { Actor } from '../../../src/actors/actor.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { exportPartition, importPartition, incompleteImports } from '../../../src/store/partition-transfer.js';
import { actorOptions as options, emptyStore, filledStore, PARTITIONS, partitionView as viewOf, program, purchase } from '../../helpers/partition-stores.js';

const root = mkdtempSync(join(tmpdir(), 'loyalty-partition-transfer-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const storeWith = (name: string, members: number, events: number, seed: number) => filledStore(root, name, members, events, seed);

describe('a partition exported from one store and imported into another', () => {
  it('holds every member, ledger row, idempotency record, list and due entry of the partition, and nothing else', async () => {
    const source = await storeWith('a', 400, 3_000, 1);
    const target = await storeWith('b', 200, 500, 2); // other state, in the same partition too: replaced
    const partition = partitionOf('a-m1', PARTITIONS);
    const other = (partition + 1) % PARTITIONS;
    const targetOther = viewOf(target.store, other, target.ids);
    const frames = [...exportPartition(source.store.root, partition, 4096)];
    expect(frames.length).toBeGreaterThan(10); // small frames: the unit is many of them
    for (const frame of frames) expect(frame.length).toBeLessThan(4096 + 16_384);
    const summary = await importPartition(target.store.root, partition, frames);
    expect(summary.records).toBeGreaterThan(100);
    expect(viewOf(target.store, partition, source.ids)).toEqual(viewOf(source.store, partition, source.ids));
    const moved = viewOf(target.store, partition, source.ids) as { members: { ledger: unknown[]; processed: unknown[] }[]; due: unknown[] };
    expect(moved.members.length).toBeGreaterThan(10);
    expect(moved.members.every((member) => member.ledger.length > 0 && member.processed.every((record) => record !== undefined))).toBe(true);
    expect(moved.due.length).toBeGreaterThan(0); // retail's pending points: every member is due for their release
    // The target's own members of that partition are gone; its other partitions are untouched.
    const stale = [...target.ids.keys()].filter((memberId) => partitionOf(memberId, PARTITIONS) === partition);
    expect(stale.length).toBeGreaterThan(0);
    for (const memberId of stale) expect(target.store.readMember(partition, memberId)).toBeUndefined();
    expect(viewOf(target.store, other, target.ids)).toEqual(targetOther);
    expect(incompleteImports(target.store.root)).toEqual([]);
    // A re-sent event of a moved member is a duplicate on the new owner, with its first outcomes.
    const owner = new Actor(target.store, program, { ...options, bootId: 2 });
    const memberId = [...source.ids.keys()].find((id) => partitionOf(id, PARTITIONS) === partition)!;
    const eventId = source.ids.get(memberId)![0]!;
    const again = await owner.process([purchase(memberId, eventId, 12_345, 3)]);
    expect(again.result.counts).toEqual({ 'purchase|duplicate': 1 });
    await source.store.close();
    await target.store.close();
  });

  it('is one snapshot: writes committed while the export runs are not in it', async () => {
    const source = await storeWith('c', 100, 800, 3);
    const partition = partitionOf('c-m1', PARTITIONS);
    const before = viewOf(source.store, partition, source.ids);
    const exporter = exportPartition(source.store.root, partition, 2048);
    const frames = [exporter.next().value as Uint8Array];
    // More purchases for the partition's members, committed mid-export.
    const members = [...source.ids.keys()].filter((memberId) => partitionOf(memberId, PARTITIONS) === partition);
    await source.actor.process(members.map((memberId, index) => purchase(memberId, `late-${index}`, 9_999, 5)));
    expect(viewOf(source.store, partition, source.ids)).not.toEqual(before);
    for (let next = exporter.next(); !next.done; next = exporter.next()) frames.push(next.value);
    const target = await emptyStore(root, 'c-target');
    await importPartition(target.root, partition, frames);
    expect(viewOf(target, partition, source.ids)).toEqual(before);
    await source.store.close();
    await target.close();
  });

  it('refuses a unit cut short, altered, or from another partition or partition count; the partition stays marked until a whole unit is imported', async () => {
    const source = await storeWith('d', 100, 600, 4);
    const partition = partitionOf('d-m1', PARTITIONS);
    const frames = [...exportPartition(source.store.root, partition, 2048)];
    const target = await emptyStore(root, 'd-target');

    await expect(importPartition(target.root, partition, frames.slice(0, -1))).rejects.toThrow(/ends without its trailer/);
    expect(incompleteImports(target.root)).toEqual([partition]);

    const altered = frames.map((frame, index) => {
      if (index !== 1) return frame;
      const decoded = unpack(frame) as { kind: string; entries: [number, unknown[], Uint8Array][] };
      const value = Uint8Array.from(decoded.entries[0]![2]);
      value[value.length - 1] = value[value.length - 1]! ^ 1;
      decoded.entries[0]![2] = value;
      return pack(decoded);
    });
    await expect(importPartition(target.root, partition, altered)).rejects.toThrow(/trailer says/);
    await expect(importPartition(target.root, (partition + 1) % PARTITIONS, frames)).rejects.toThrow(/holds partition/);
    const otherCount = await emptyStore(root, 'd-other', 8);
    await expect(importPartition(otherCount.root, partition % 8, [pack({ ...(unpack(frames[0]!) as object), partition: partition % 8 }), ...frames.slice(1)])).rejects.toThrow(/16 partitions, this one has 8/);
    await otherCount.close();

    const summary = await importPartition(target.root, partition, frames);
    expect(incompleteImports(target.root)).toEqual([]);
    expect(summary.frames).toBe(frames.length);
    expect(viewOf(target, partition, source.ids)).toEqual(viewOf(source.store, partition, source.ids));
    await source.store.close();
    await target.close();
  });
});
