/**
 * partition = fnv1a32(memberId) % P, the same function as nats-server's
 * `{{partition(P,1)}}` subject mapping, so a NATS cluster can route partitions
 * to engine instances without the engine in the path.
 */
const FNV_OFFSET_BASIS_32 = 0x811c9dc5;
const FNV_PRIME_32 = 0x01000193;

/** FNV-1a 32 over bytes. Math.imul keeps the multiply in 32 bits. */
export function fnv1a32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let hash = FNV_OFFSET_BASIS_32;
  for (let index = start; index < end; index++) {
    hash ^= bytes[index]!;
    hash = Math.imul(hash, FNV_PRIME_32);
  }
  return hash >>> 0;
}

const encoder = new TextEncoder();

/**
 * fnv1a32 over a string's UTF-8 bytes. Member ids are ASCII, where a char code
 * is its byte: hashing the codes directly avoids encoding (an allocation per
 * event on the hot path); anything else is encoded first.
 */
export function fnv1a32OfString(text: string): number {
  let hash = FNV_OFFSET_BASIS_32;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code >= 0x80) return fnv1a32(encoder.encode(text));
    hash ^= code;
    hash = Math.imul(hash, FNV_PRIME_32);
  }
  return hash >>> 0;
}

export function partitionOf(memberId: string, partitions: number): number {
  return fnv1a32OfString(memberId) % partitions;
}

/** The actor that owns a partition: partitions are dealt round-robin to actors. */
export function actorOfPartition(partition: number, actors: number): number {
  return partition % actors;
}
