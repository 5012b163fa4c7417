import { fnv1a32OfString } from '../routing/partitioner.js';
import { assert } from '../domain/assert.js';

/**
 * Which live instance should own each partition: rendezvous (highest random
 * weight) hashing. Every instance computes the same answer from the same live
 * set, with no coordinator, and when an instance joins or leaves only the
 * partitions it wins or held move (about P/N of them), not a reshuffle.
 *
 * The weight is fnv1a32 of "<instance>/<partition>" passed through murmur3's
 * 32-bit finaliser: FNV alone avalanches poorly on strings that differ only in
 * their last characters, which would give one instance most partitions.
 */

/** murmur3 fmix32: every input bit affects every output bit. */
function mix32(value: number): number {
  let hash = value >>> 0;
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

export function rendezvousWeight(instanceId: string, partition: number): number {
  return mix32(fnv1a32OfString(`${instanceId}/${partition}`));
}

/** The owner of one partition among `instances` (ties, which need equal weights, go to the smaller id). */
export function ownerOf(partition: number, instances: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1;
  for (const instance of instances) {
    const weight = rendezvousWeight(instance, partition);
    if (weight > bestWeight || (weight === bestWeight && best !== undefined && instance < best)) {
      best = instance;
      bestWeight = weight;
    }
  }
  return best;
}

/** partition → owner for partitions 0..count-1; empty when no instance is live. */
export function assignPartitions(count: number, instances: readonly string[]): Map<number, string> {
  assert(Number.isInteger(count) && count >= 1, 'partition count must be a positive integer');
  const owners = new Map<number, string>();
  if (instances.length === 0) return owners;
  for (let partition = 0; partition < count; partition++) owners.set(partition, ownerOf(partition, instances)!);
  return owners;
}
