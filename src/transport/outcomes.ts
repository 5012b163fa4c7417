/**
 * [subject, message id, JSON payload] of one outcome to publish. Outcomes go
 * to the outcome stream as JetStream publishes whose PubAcks are awaited per
 * batch (src/transport/pub-acks.ts, src/actors/worker.ts): each carries its
 * message id, so the stream drops a re-publication (after a crash, or of a
 * duplicate event's first outcome).
 */
export type OutcomeMessage = [subject: string, messageId: string, payload: string];
