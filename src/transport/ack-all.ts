import type { NatsConnection } from '@nats-io/nats-core';

/**
 * Sends the engine's ack-all watermarks, each through its delivery's own
 * ack subject, and sends the last one again when the connection comes back:
 * one published just before a cut may be lost with it, and with nothing newer
 * to ack the server would redeliver everything above its floor after
 * ack_wait.
 *
 * Known and left as it is: with AckPolicy all, nats-server drops an ack whose
 * delivery sequence is not above the last one it took (`dseq <= o.adflr` in
 * processAckMsg), and after redeliveries a watermark can come through an
 * older delivery than the previous one; its messages are then redelivered
 * after ack_wait and found to be duplicates (measured after cut connections:
 * up to 60 s more). Numbering the watermarks 1, 2, 3… in the subject avoided
 * that, but after a nats-server restart on its store left ack-pending entries
 * below the ack floor that were redelivered for good (nats-external fault
 * test under load), so it was taken out.
 */
export class AckAllSender {
  private lastSubject: string | undefined;

  constructor(private readonly nc: Pick<NatsConnection, 'publish'>) {}

  /** Acks (all up to) the delivery of `reply`, its `$JS.ACK…` subject. */
  ack(reply: string): void {
    if (reply === '') return;
    this.lastSubject = reply;
    this.nc.publish(reply, ACK);
  }

  /** Before the consumer is recreated: its old deliveries' subjects must not be sent again. */
  forget(): void {
    this.lastSubject = undefined;
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
