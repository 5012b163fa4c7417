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
  return `${prefix}-${base36Upper11(digest)}`;
}

/** Char codes of 0-9 and A-Z. */
const BASE36_UPPER_CODES: readonly number[] = Array.from('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ', (character) => character.charCodeAt(0));
/** Scratch digits of base36Upper11, most significant first. */
const digitCodes: number[] = new Array<number>(11).fill(48);

/**
 * `value.toString(36).toUpperCase().padStart(11, '0')` for an integer in
 * [0, 2^53), without the generic radix conversion: 36^11 > 2^53, so eleven
 * digits always hold it, and each step (remainder, then an exact division)
 * is exact.
 */
export function base36Upper11(value: number): string {
  let rest = value;
  for (let position = 10; position >= 0; position--) {
    const digit = rest % 36;
    digitCodes[position] = BASE36_UPPER_CODES[digit]!;
    rest = (rest - digit) / 36;
  }
  const codes = digitCodes;
  return String.fromCharCode(codes[0]!, codes[1]!, codes[2]!, codes[3]!, codes[4]!, codes[5]!, codes[6]!, codes[7]!, codes[8]!, codes[9]!, codes[10]!);
}
