import type { NatsConnection } from '@nats-io/nats-core';
import { parseAckSubject } from './intake.js';

/**
 * Sends the engine's ack-all watermarks so that nats-server takes every one.
 *
 * With AckPolicy all, nats-server ignores an ack whose delivery sequence is
 * not above the one of the last ack it took (`dseq <= o.adflr`, processAckMsg
 * in consumer.go), whatever its stream sequence. Acks go by stream sequence,
 * but a redelivered message carries a newer delivery sequence than a later
 * message delivered before it: acking stream sequence 100 through its
 * redelivery (delivery 500) and then 101 through its first delivery
 * (delivery 300) has the server drop the second ack, and everything above
 * 100 is redelivered after ack_wait (measured after cut connections: 5,673
 * messages acked here but pending there for the full 60 s).
 *
 * For ack-all the server uses the delivery sequence only for that
 * comparison (and keeps it as the ack floor's consumer sequence); what is
 * acked is everything up to the stream sequence. So each ack goes out with
 * the previous ack's delivery sequence + 1 in its subject, the stream
 * sequence unchanged: always above the last, and never past the highest
 * delivery seen (each ack moves the watermark over at least one delivered
 * message, so there are never more acks than deliveries). `nats consumer
 * info` then shows the count of watermarks as the ack floor's consumer
 * sequence; the stream sequence is the real floor. Should the count ever
 * catch up with the deliveries, the ack waits for the next one. The last ack
 * is sent again when the connection comes back: one published just before a
 * cut may be lost with it.
 */
export class AckAllSender {
  private lastDelivery = 0;
  private highestSeen = 0;
  private lastSubject: string | undefined;
  private deferred: string | undefined;
  /** Acks that waited for a newer delivery (expected to stay 0). */
  deferrals = 0;

  constructor(private readonly nc: Pick<NatsConnection, 'publish'>) {}

  /** A delivery arrived (its delivery sequence from the ack subject). */
  seen(deliverySequence: number): void {
    if (deliverySequence <= this.highestSeen) return;
    this.highestSeen = deliverySequence;
    const deferred = this.deferred;
    if (deferred !== undefined) {
      this.deferred = undefined;
      this.ack(deferred);
    }
  }

  /** Acks (all up to) the delivery of `reply`, its `$JS.ACK…` subject. */
  ack(reply: string): void {
    const info = parseAckSubject(reply);
    if (info === undefined) {
      if (reply !== '') this.nc.publish(reply, ACK); // not a JetStream ack subject: as it is
      return;
    }
    if (info.deliverySequence > this.highestSeen) this.highestSeen = info.deliverySequence;
    const next = this.lastDelivery + 1;
    if (next > this.highestSeen) {
      this.deferrals += 1;
      this.deferred = reply; // a later ack supersedes it: acks only move up
      return;
    }
    this.lastDelivery = next;
    this.lastSubject = next === info.deliverySequence ? reply : withDeliverySequence(reply, next);
    this.nc.publish(this.lastSubject, ACK);
  }

  /** Sends the last ack again (after a reconnect): the server ignores it if it had it. */
  resendLast(): void {
    if (this.lastSubject !== undefined) this.nc.publish(this.lastSubject, ACK);
  }
}

const ACK = new TextEncoder().encode('+ACK');
const NAK = new TextEncoder().encode('-NAK');

/**
 * Asks nats-server to deliver these stream sequences again now, not after
 * ack_wait: a NAK on behalf of deliveries that never arrived (lost in a cut
 * connection, so there is no ack subject of theirs to answer). nats-server
 * checks only that the delivery sequence in the subject lies above the
 * consumer's ack floor and not past its last delivery, and that the stream
 * sequence is pending (processNak in consumer.go), then queues it for
 * redelivery; otherwise it ignores the NAK, and ack_wait still applies.
 * `deliverySequence` is the consumer's last delivery (its info's
 * delivered.consumer_seq).
 */
export function redeliverNow(nc: Pick<NatsConnection, 'publish'>, stream: string, consumer: string, streamSequences: readonly number[], deliverySequence: number): void {
  const at = Date.now() * 1_000_000;
  for (const sequence of streamSequences) nc.publish(`$JS.ACK.${stream}.${consumer}.1.${sequence}.${deliverySequence}.${at}.0`, NAK);
}

/** The ack subject with another delivery sequence (the token after the stream sequence). */
export function withDeliverySequence(reply: string, deliverySequence: number): string {
  const tokens = reply.split('.');
  const at = tokens.length === 9 ? 6 : tokens.length >= 11 ? 8 : -1;
  if (at < 0) return reply;
  tokens[at] = String(deliverySequence);
  return tokens.join('.');
}
