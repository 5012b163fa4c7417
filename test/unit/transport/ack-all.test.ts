import { describe, expect, it } from 'vitest';
import { AckAllSender, redeliverNow } from '../../../src/transport/ack-all.js';
import { parseAckSubject } from '../../../src/transport/intake.js';

const reply = (streamSequence: number, deliverySequence: number, deliveryCount = 1) => `$JS.ACK.LOYALTY_TX.loyalty-engine.${deliveryCount}.${streamSequence}.${deliverySequence}.1700000000000000000.0`;

describe('AckAllSender', () => {
  it('sends each watermark through its own ack subject, and the last one again after a reconnect', () => {
    const sent: string[] = [];
    const acks = new AckAllSender({ publish: (subject: string) => void sent.push(subject) });
    acks.resendLast(); // nothing acked yet: nothing to send
    acks.ack(reply(2, 2));
    acks.ack('');
    acks.ack(reply(5, 7, 2));
    acks.resendLast();
    expect(sent).toEqual([reply(2, 2), reply(5, 7, 2), reply(5, 7, 2)]);
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

});
