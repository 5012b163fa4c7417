import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { Actor } from '../../src/actors/actor.js';
import { PartitionChangelog } from '../../src/cluster/changelog.js';
import type { BatchRecord } from '../../src/routing/batch-buffer.js';
import { partitionOf } from '../../src/routing/partitioner.js';

/**
 * What the restore test and the restore bench (bench/cluster/restore-figures.ts) both do: open
 * partition changelogs on a stream named `<stream>_<PREFIX>`, fence them for an owner, and feed an
 * actor batches while keeping each partition's committed watermark.
 */
export class ChangelogRig {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
  ) {}

  streamOf(prefix: string): string {
    return `${this.stream}_${prefix.toUpperCase()}`;
  }

  changelogOf(prefix: string, partition: number, owner: string): PartitionChangelog {
    return new PartitionChangelog(this.js, this.jsm, this.streamOf(prefix), prefix, partition, owner);
  }

  async fencedChangelogs(prefix: string, partitions: Iterable<number>, owner: string, epoch: number): Promise<Map<number, PartitionChangelog>> {
    const changelogs = new Map<number, PartitionChangelog>();
    for (const partition of partitions) {
      const changelog = this.changelogOf(prefix, partition, owner);
      await changelog.fence(epoch);
      changelogs.set(partition, changelog);
    }
    return changelogs;
  }
}

/** Processes batches and keeps, by partition, the highest input sequence the actor says it committed. */
export async function feed(actor: Actor, batches: readonly BatchRecord[][], partitions: number, watermarks: Map<number, number>): Promise<void> {
  for (const batch of batches) {
    const { result } = await actor.process(batch);
    const partitionOfSequence = new Map(batch.map((record) => [record.streamSequence, partitionOf(record.memberId, partitions)]));
    for (const sequence of result.committedSequences) {
      const partition = partitionOfSequence.get(sequence)!;
      watermarks.set(partition, Math.max(watermarks.get(partition) ?? 0, sequence));
    }
  }
}

export function inBatches(records: readonly BatchRecord[], size: number): BatchRecord[][] {
  const batches: BatchRecord[][] = [];
  for (let offset = 0; offset < records.length; offset += size) batches.push(records.slice(offset, offset + size));
  return batches;
}
