import { describe, expect, it } from 'vitest';
import { AckAllSender, redeliverNow, withDeliverySequence } from '../../../src/transport/ack-all.js';
import { parseAckSubject } from '../../../src/transport/intake.js';

const reply = (streamSequence: number, deliverySequence: number, deliveryCount = 1) => `$JS.ACK.LOYALTY_TX.loyalty-engine.${deliveryCount}.${streamSequence}.${deliverySequence}.1700000000000000000.0`;

function sender() {
  const sent: string[] = [];
  const acks = new AckAllSender({ publish: (subject: string) => void sent.push(subject) });
  /** What the server takes of what was sent: an ack-all above the last one's delivery and stream sequences (processAckMsg). */
  const taken = () => {
    let floor = { delivery: 0, stream: 0 };
    const kept: number[] = [];
    for (const subject of sent) {
      const info = parseAckSubject(subject)!;
      if (info.deliverySequence <= floor.delivery || info.streamSequence <= floor.stream) continue;
      floor = { delivery: info.deliverySequence, stream: info.streamSequence };
      kept.push(info.streamSequence);
    }
    return kept;
  };
  return { acks, sent, taken };
}

describe('AckAllSender', () => {
  it('numbers the watermarks 1, 2, 3 … in the delivery sequence, stream sequences unchanged: the server takes each', () => {
    const { acks, sent, taken } = sender();
    for (let sequence = 1; sequence <= 5; sequence++) acks.seen(sequence);
    acks.ack(reply(2, 2));
    acks.ack(reply(5, 5));
    expect(sent).toEqual([reply(2, 1), reply(5, 2)]);
    expect(taken()).toEqual([2, 5]);
  });

  it('after redeliveries, an ack through an older delivery than the last one is still taken', () => {
    const { acks, sent, taken } = sender();
    // 101 delivered first (delivery 300), then 100 redelivered (500): 100 is acked through its redelivery first.
    for (const delivery of [300, 500]) acks.seen(delivery);
    acks.ack(reply(100, 500, 2));
    acks.ack(reply(101, 300));
    expect(sent).toEqual([reply(100, 1, 2), reply(101, 2)]);
    expect(taken()).toEqual([100, 101]);
    // Sent as they came, the server would drop the second (300 <= 500) and redeliver 101 after ack_wait.
    const naive = [reply(100, 500, 2), reply(101, 300)].map((subject) => parseAckSubject(subject)!);
    expect(naive[1]!.deliverySequence <= naive[0]!.deliverySequence).toBe(true);
    expect(acks.deferrals).toBe(0);
  });

  it('never numbers past the highest delivery seen: waits for the next one, then sends the latest ack', () => {
    const { acks, sent, taken } = sender();
    acks.seen(1);
    acks.ack(reply(1, 1));
    acks.ack(reply(2, 1)); // (not possible from the engine: an ack moves over a delivered message) waits
    acks.ack(reply(3, 1));
    expect(sent).toEqual([reply(1, 1)]);
    expect(acks.deferrals).toBe(2);
    acks.seen(2);
    expect(sent).toEqual([reply(1, 1), reply(3, 2)]);
    expect(taken()).toEqual([1, 3]);
  });

  it('sends the last ack again after a reconnect, unchanged', () => {
    const { acks, sent } = sender();
    acks.seen(7);
    acks.ack(reply(7, 7));
    acks.resendLast();
    expect(sent).toEqual([reply(7, 1), reply(7, 1)]);
  });

  it('asks for lost deliveries again with a NAK on their behalf: their stream sequence, the consumer\'s last delivery', () => {
    const published: [string, string][] = [];
    redeliverNow({ publish: (subject: string, data?: string | Uint8Array) => void published.push([subject, new TextDecoder().decode(data as Uint8Array)]) }, 'LOYALTY_TX', 'loyalty-engine', [41, 43], 900);
    expect(published.map(([, body]) => body)).toEqual(['-NAK', '-NAK']);
    expect(published.map(([subject]) => parseAckSubject(subject))).toMatchObject([
      { streamSequence: 41, deliverySequence: 900 },
      { streamSequence: 43, deliverySequence: 900 },
    ]);
    expect(published[0]![0]).toMatch(/^\$JS\.ACK\.LOYALTY_TX\.loyalty-engine\./);
  });

  it('rewrites the delivery sequence of both ack subject forms', () => {
    expect(withDeliverySequence(reply(5, 9), 12)).toBe(reply(5, 12));
    const v2 = '$JS.ACK.domain.hash.LOYALTY_TX.loyalty-engine.1.5.9.1700000000000000000.0.token';
    expect(withDeliverySequence(v2, 12)).toBe('$JS.ACK.domain.hash.LOYALTY_TX.loyalty-engine.1.5.12.1700000000000000000.0.token');
    expect(parseAckSubject(withDeliverySequence(v2, 12))).toMatchObject({ streamSequence: 5, deliverySequence: 12 });
  });
});
