import { headers, type MsgHdrs } from '@nats-io/nats-core';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Encoding } from '../routing/batch-buffer.js';
import {
  CONTENT_TYPE_JSON,
  CONTENT_TYPE_MSGPACK,
  HEADER_CONTENT_TYPE,
  HEADER_BODY_TRUNCATED,
  HEADER_DEAD_LETTER_REASON,
  HEADER_ORIGINAL_SEQUENCE,
  HEADER_ORIGINAL_SIZE,
  HEADER_ORIGINAL_SUBJECT,
  type Subjects,
} from './subjects.js';

export interface DeadLetterInput {
  readonly streamSequence: number;
  readonly memberToken: string;
  readonly reason: string;
  readonly encoding: number;
  readonly payload: Uint8Array;
  /**
   * The most bytes (headers and body) the dead-letter stream takes in one
   * message, when it is less than the server's max_payload (its max_msg_size).
   */
  readonly messageBytesMax?: number;
}

/** Longest reason kept in a header; the rest is cut (headers are bounded too). */
const REASON_LENGTH_MAX = 1024;
const SUBJECT_TOKEN_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Kept free below the message limit for the Nats-Msg-Id header the publish adds, and slack. */
const HEADER_ROOM_BYTES = 1024;

/** Growing delays between attempts at storing one dead letter; about 2 minutes in all, then the batch fails. */
export const DEAD_LETTER_RETRY_DELAYS_MS: readonly number[] = [100, 200, 400, 800, 1_600, 3_200, 5_000, ...Array<number>(22).fill(5_000)];

/**
 * Publishes one invalid message to the dead-letter stream and waits for the
 * stream's ack, trying again (same message id: the stream keeps one copy)
 * while NATS is away or slow: a reconnect or a stalled server must not turn
 * a producer's bad message into a stopped engine. The message id also makes
 * a re-publish after a crash a no-op. The source message is acked only after
 * this resolves.
 */
export async function publishDeadLetter(
  js: JetStreamClient,
  subjects: Subjects,
  sourceStream: string,
  letter: DeadLetterInput,
  delaysMs: readonly number[] = DEAD_LETTER_RETRY_DELAYS_MS,
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await publishDeadLetterOnce(js, subjects, sourceStream, letter);
    } catch (error) {
      const delayMs = delaysMs[attempt];
      if (delayMs === undefined) throw error;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

async function publishDeadLetterOnce(js: JetStreamClient, subjects: Subjects, sourceStream: string, letter: DeadLetterInput): Promise<void> {
  const token = SUBJECT_TOKEN_PATTERN.test(letter.memberToken) ? letter.memberToken : '_invalid';
  const messageHeaders = headers();
  messageHeaders.set(HEADER_DEAD_LETTER_REASON, oneLine(letter.reason).slice(0, REASON_LENGTH_MAX));
  messageHeaders.set(HEADER_ORIGINAL_SUBJECT, subjects.transaction(oneLine(letter.memberToken).slice(0, 128)));
  messageHeaders.set(HEADER_ORIGINAL_SEQUENCE, String(letter.streamSequence));
  messageHeaders.set(HEADER_ORIGINAL_SIZE, String(letter.payload.length));
  messageHeaders.set(HEADER_CONTENT_TYPE, letter.encoding === Encoding.Msgpack ? CONTENT_TYPE_MSGPACK : CONTENT_TYPE_JSON);
  const body = deadLetterBody(letter.payload, headerBytesOf(messageHeaders), messageBytesMaxOf(js, letter.messageBytesMax));
  if (body.length < letter.payload.length) messageHeaders.set(HEADER_BODY_TRUNCATED, 'true');
  await js.publish(subjects.deadLetter(token), body, {
    headers: messageHeaders,
    msgID: `dlq:${sourceStream}:${letter.streamSequence}`,
  });
}

/**
 * The payload as it came, unless the dead letter would then be larger than
 * the server or the stream takes (a payload near max_payload plus our
 * headers): then its first bytes, so that the dead letter is stored and the
 * source message acked instead of failing its batch. The whole payload stays
 * in the source stream at Loyalty-Original-Sequence (until its max_age).
 */
export function deadLetterBody(payload: Uint8Array, headerBytes: number, messageBytesMax: number): Uint8Array {
  const room = Math.max(0, messageBytesMax - headerBytes - HEADER_ROOM_BYTES);
  return payload.length <= room ? payload : payload.subarray(0, room);
}

/** The encoded size of headers: `NATS/1.0\r\n`, `Name: value\r\n` each, `\r\n`. */
function headerBytesOf(messageHeaders: MsgHdrs): number {
  let bytes = 12;
  for (const key of messageHeaders.keys()) {
    for (const value of messageHeaders.values(key)) bytes += Buffer.byteLength(key) + Buffer.byteLength(value) + 4;
  }
  return bytes;
}

/** The smaller of the server's max_payload (known once connected) and the stream's limit. */
function messageBytesMaxOf(js: JetStreamClient, streamLimit: number | undefined): number {
  // JetStreamClientImpl keeps its connection as `nc`; the interface does not show it.
  const serverLimit = (js as { nc?: { info?: { max_payload?: number } } }).nc?.info?.max_payload;
  const limits = [serverLimit, streamLimit].filter((limit): limit is number => limit !== undefined && limit > 0);
  return limits.length === 0 ? Number.POSITIVE_INFINITY : Math.min(...limits);
}

/** Header values may not hold line breaks. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}
