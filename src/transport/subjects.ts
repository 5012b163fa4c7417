/**
 * Every subject the engine reads or writes, in one place (docs/contract.md
 * documents the same names for producers and consumers).
 */
export interface Subjects {
  /** Input: `<prefix>.tx.<memberId>`; the stream captures `<prefix>.tx.*`. */
  readonly transactions: string;
  readonly transactionPrefix: string;
  /**
   * Cluster mode: the servers map `<prefix>.tx.<member>` to
   * `<prefix>.txp.<partition>.<member>` (docs/cluster.md); the stream captures these.
   */
  readonly partitionedTransactions: string;
  /** Cluster mode: one partition's input, its consumer's filter. */
  partitionTransactions(partition: number): string;
  partitionTransactionPrefix(partition: number): string;
  /** Outcomes: `<prefix>.outcome.<kind>.<memberId>`. */
  readonly outcomeWildcard: string;
  readonly deadLetterWildcard: string;
  outcome(kind: string, memberId: string): string;
  deadLetter(memberToken: string): string;
  transaction(memberId: string): string;
}

export function subjectsFor(prefix: string): Subjects {
  return Object.freeze({
    transactions: `${prefix}.tx.*`,
    transactionPrefix: `${prefix}.tx.`,
    partitionedTransactions: `${prefix}.txp.*.*`,
    partitionTransactions: (partition: number) => `${prefix}.txp.${partition}.*`,
    partitionTransactionPrefix: (partition: number) => `${prefix}.txp.${partition}.`,
    outcomeWildcard: `${prefix}.outcome.>`,
    deadLetterWildcard: `${prefix}.dlq.>`,
    outcome: (kind: string, memberId: string) => `${prefix}.outcome.${kind}.${memberId}`,
    deadLetter: (memberToken: string) => `${prefix}.dlq.${memberToken}`,
    transaction: (memberId: string) => `${prefix}.tx.${memberId}`,
  });
}

/** Header names of the contract. */
export const HEADER_CONTENT_TYPE = 'Content-Type';
export const CONTENT_TYPE_MSGPACK = 'application/msgpack';
export const CONTENT_TYPE_JSON = 'application/json';
export const HEADER_MESSAGE_ID = 'Nats-Msg-Id';

/**
 * An id as a part of a Nats-Msg-Id. The contract takes ids with control
 * characters, but a NATS header value cannot hold CR or LF (nats.js refuses the
 * publish, so such an event's outcomes were retried forever). An id with either
 * is written `~u:` + its encodeURIComponent form; every other id as it is. Two
 * ids then share a message id only if one is literally the other's escaped
 * form, `~u:` included.
 */
export function messageIdPart(id: string): string {
  return id.includes('\n') || id.includes('\r') ? `~u:${encodeURIComponent(id)}` : id;
}
export const HEADER_DEAD_LETTER_REASON = 'Loyalty-Dead-Letter-Reason';
export const HEADER_ORIGINAL_SUBJECT = 'Loyalty-Original-Subject';
export const HEADER_ORIGINAL_SEQUENCE = 'Loyalty-Original-Sequence';
/** A dead letter's payload size as received, in bytes. */
export const HEADER_ORIGINAL_SIZE = 'Loyalty-Original-Size';
/** 'true' when a dead letter carries only the first bytes of its payload (it would not fit the server's or the stream's message limit). */
export const HEADER_BODY_TRUNCATED = 'Loyalty-Body-Truncated';
export const HEADER_DUPLICATE = 'Loyalty-Duplicate';
