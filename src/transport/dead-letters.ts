import { headers } from '@nats-io/nats-core';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Encoding } from '../routing/batch-buffer.js';
import {
  CONTENT_TYPE_JSON,
  CONTENT_TYPE_MSGPACK,
  HEADER_CONTENT_TYPE,
  HEADER_DEAD_LETTER_REASON,
  HEADER_ORIGINAL_SEQUENCE,
  HEADER_ORIGINAL_SUBJECT,
  type Subjects,
} from './subjects.js';

export interface DeadLetterInput {
  readonly streamSequence: number;
  readonly memberToken: string;
  readonly reason: string;
  readonly encoding: number;
  readonly payload: Uint8Array;
}

/** Longest reason kept in a header; the rest is cut (headers are bounded too). */
const REASON_LENGTH_MAX = 1024;
const SUBJECT_TOKEN_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Publishes one invalid message to the dead-letter stream and waits for the
 * stream's ack. The message id makes a re-publish after a crash a no-op.
 */
export async function publishDeadLetter(js: JetStreamClient, subjects: Subjects, sourceStream: string, letter: DeadLetterInput): Promise<void> {
  const token = SUBJECT_TOKEN_PATTERN.test(letter.memberToken) ? letter.memberToken : '_invalid';
  const messageHeaders = headers();
  messageHeaders.set(HEADER_DEAD_LETTER_REASON, oneLine(letter.reason).slice(0, REASON_LENGTH_MAX));
  messageHeaders.set(HEADER_ORIGINAL_SUBJECT, subjects.transaction(oneLine(letter.memberToken).slice(0, 128)));
  messageHeaders.set(HEADER_ORIGINAL_SEQUENCE, String(letter.streamSequence));
  messageHeaders.set(HEADER_CONTENT_TYPE, letter.encoding === Encoding.Msgpack ? CONTENT_TYPE_MSGPACK : CONTENT_TYPE_JSON);
  await js.publish(subjects.deadLetter(token), letter.payload, {
    headers: messageHeaders,
    msgID: `dlq:${sourceStream}:${letter.streamSequence}`,
  });
}

/** Header values may not hold line breaks. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}
