/**
 * Deterministic identifiers. Voucher codes are derived from (member, event,
 * rule), never drawn at random, so a replay of the same events issues the
 * same codes and the state stays byte-for-byte reproducible.
 */

/** A 53-bit string hash (cyrb53): two Math.imul lanes, well mixed, pure. */
export function hash53(text: string, seed = 0): number {
  let first = 0xdeadbeef ^ seed;
  let second = 0x41c6ce57 ^ seed;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    first = Math.imul(first ^ code, 2654435761);
    second = Math.imul(second ^ code, 1597334677);
  }
  first = Math.imul(first ^ (first >>> 16), 2246822507);
  first ^= Math.imul(second ^ (second >>> 13), 3266489909);
  second = Math.imul(second ^ (second >>> 16), 2246822507);
  second ^= Math.imul(first ^ (first >>> 13), 3266489909);
  return 4294967296 * (2097151 & second) + (first >>> 0);
}

/** PREFIX-XXXXXXXXXXX: 11 base-36 characters of the hash of member, event and rule. */
export function voucherCode(prefix: string, memberId: string, eventId: string, ruleId: string): string {
  const digest = hash53(`${memberId}\u0000${eventId}\u0000${ruleId}`);
  return `${prefix}-${digest.toString(36).toUpperCase().padStart(11, '0')}`;
}
