import { headers, type NatsConnection } from '@nats-io/nats-core';
import { HEADER_MESSAGE_ID } from './subjects.js';

/** [subject, message id, JSON payload] of one outcome to publish. */
export type OutcomeMessage = [subject: string, messageId: string, payload: string];

/**
 * Publishes outcomes on core NATS, each with its message id, so the outcome
 * stream de-duplicates a re-publication (after a crash, or of a duplicate
 * event's first outcome). Returns how many were handed to the connection; a
 * flush round trip shows the server has them.
 */
export function publishOutcomes(nc: NatsConnection, messages: Iterable<OutcomeMessage>): number {
  let count = 0;
  for (const [subject, messageId, payload] of messages) {
    const messageHeaders = headers();
    messageHeaders.set(HEADER_MESSAGE_ID, messageId);
    nc.publish(subject, payload, { headers: messageHeaders });
    count += 1;
  }
  return count;
}
