/**
 * Probe: how large a changelog record (src/store/partition-changes.ts) is for
 * one batch whose events mostly fall in one partition, plain and compressed,
 * and what compressing costs, against the record bound (one JetStream
 * message). Real retail traffic through the actor and the store's recorder.
 *
 *   npx tsx bench/cluster/changelog-record-size.ts [--batch 1024] [--members 5000] [--batches 8]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Actor } from '../../src/actors/actor.js';
import { partitionOf } from '../../src/routing/partitioner.js';
import { decodePartitionChanges, encodePartitionChanges, PARTITION_CHANGES_BYTES_MAX, PARTITION_CHANGES_VERSION_COMPRESSED, storeIdentity, type PartitionChanges } from '../../src/store/partition-changes.js';
import { actorOptions, emptyStore, generatedRecords, PARTITIONS, program } from '../../test/helpers/partition-stores.js';

const { values } = parseArgs({ options: { batch: { type: 'string', default: '1024' }, members: { type: 'string', default: '5000' }, batches: { type: 'string', default: '8' } } });
const batchSize = Number(values.batch);
const batches = Number(values.batches);
const members = Number(values.members);
const root = mkdtempSync(join(tmpdir(), 'loyalty-record-size-'));
try {
  // Only the members of partition 0: every event of a batch is that partition's (the worst case for one record).
  const records = generatedRecords({ runId: 'recordsize', members, count: batchSize * batches * PARTITIONS * 2, keep: (memberId) => partitionOf(memberId, PARTITIONS) === 0 }).slice(0, batchSize * batches);
  const store = await emptyStore(root, 'store');
  let captured: readonly PartitionChanges[] = [];
  store.setChangeRecorder((changes) => {
    captured = changes;
  });
  const identity = storeIdentity(store.root);
  const actor = new Actor(store, program, actorOptions);
  console.log(`batches of ${batchSize} events of one partition (bound ${PARTITION_CHANGES_BYTES_MAX} bytes):`);
  for (let offset = 0; offset + batchSize <= records.length; offset += batchSize) {
    await actor.process(records.slice(offset, offset + batchSize));
    const changes = captured.find((share) => share.partition === 0)!;
    const plain = encodePartitionChanges(changes, 0, Number.MAX_SAFE_INTEGER);
    const started = performance.now();
    const compressed = encodePartitionChanges(changes, 0, plain.length - 1);
    const compressMs = performance.now() - started;
    const decodeStarted = performance.now();
    decodePartitionChanges(compressed, { partition: 0, ...identity }, plain.length - 1);
    const decodeMs = performance.now() - decodeStarted;
    console.log(
      `  plain ${plain.length} B (${Math.round(plain.length / batchSize)} B per event, ${plain.length <= PARTITION_CHANGES_BYTES_MAX ? 'fits' : 'too large'}), compressed ${compressed.length} B (${(plain.length / compressed.length).toFixed(2)}×, ${compressed[0] === PARTITION_CHANGES_VERSION_COMPRESSED ? 'v2' : '?'}, ${compressed.length <= PARTITION_CHANGES_BYTES_MAX ? 'fits' : 'too large'}); encode ${compressMs.toFixed(1)} ms (${((compressMs * 1000) / batchSize).toFixed(1)} µs per event), decode ${decodeMs.toFixed(1)} ms`,
    );
  }
  await store.close();
} finally {
  rmSync(root, { recursive: true, force: true });
}
