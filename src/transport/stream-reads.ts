import type { JetStreamManager, MsgRequest, StoredMsg } from '@nats-io/jetstream';
import { assert } from '../domain/assert.js';

/** Most sequences one call walks: a gap is bounded by the ingest's hold (REDELIVERY_HOLD_MAX) long before this. */
const SEQUENCES_MAX = 1_048_576;

/**
 * The stream sequences from..to whose subject matches `subject` (wildcards
 * allowed), read one message at a time with STREAM.MSG.GET next_by_subj
 * (nextOnSubject), so no consumer is created: a partition's messages among every partition's.
 */
export async function sequencesOnSubject(jsm: JetStreamManager, stream: string, subject: string, from: number, to: number): Promise<number[]> {
  assert(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from > 0, 'sequences are positive integers');
  const sequences: number[] = [];
  for (let seq = from; seq <= to && sequences.length < SEQUENCES_MAX; ) {
    const message = await nextOnSubject(jsm, stream, subject, seq);
    if (message === null || message.seq > to) break;
    sequences.push(message.seq);
    seq = message.seq + 1;
  }
  return sequences;
}

/**
 * The first message at or after `seq` whose subject matches `subject`, or
 * null. nats-server 2.9's STREAM.MSG.GET takes next_by_subj (the changelog
 * and the partition gap tests read through it against 2.9.10); nats.js 3.3
 * types it for direct gets only.
 */
export function nextOnSubject(jsm: JetStreamManager, stream: string, subject: string, seq: number): Promise<StoredMsg | null> {
  return jsm.streams.getMessage(stream, { next_by_subj: subject, seq } as unknown as MsgRequest);
}
