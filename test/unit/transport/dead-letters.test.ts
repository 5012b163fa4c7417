import type { JetStreamClient } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/nats-core';
import { describe, expect, it } from 'vitest';
import { Encoding } from '../../../src/routing/batch-buffer.js';
import { deadLetterBody, publishDeadLetter } from '../../../src/transport/dead-letters.js';
import { subjectsFor } from '../../../src/transport/subjects.js';

type Published = { subject: string; body: Uint8Array; headers: MsgHdrs; msgID: string };

/** A JetStream client that records publishes and checks the server's limit as nats.js does (headers + body ≤ max_payload). */
function fakeJs(maxPayload: number | undefined, failures = 0) {
  const published: Published[] = [];
  let failuresLeft = failures;
  const js = {
    nc: maxPayload === undefined ? {} : { info: { max_payload: maxPayload } },
    async publish(subject: string, body: Uint8Array, options: { headers: MsgHdrs; msgID: string }) {
      if (failuresLeft > 0) {
        failuresLeft -= 1;
        throw new Error('TimeoutError');
      }
      // What js.publish adds before sending.
      options.headers.set('Nats-Msg-Id', options.msgID);
      const headerBytes = (options.headers as unknown as { encode(): Uint8Array }).encode().length;
      if (maxPayload !== undefined && headerBytes + body.length > maxPayload) throw new Error('max_payload size exceeded');
      published.push({ subject, body, headers: options.headers, msgID: options.msgID });
      return { seq: published.length };
    },
  };
  return { js: js as unknown as JetStreamClient, published };
}

const subjects = subjectsFor('loyalty');
const letter = (payload: Uint8Array, extra: { messageBytesMax?: number } = {}) => ({
  streamSequence: 42,
  memberToken: 'alice',
  reason: `payload of ${payload.length} bytes exceeds the limit of 65536`,
  encoding: Encoding.Json,
  payload,
  ...extra,
});

describe('publishDeadLetter', () => {
  it('publishes the payload unchanged with its reason, origin and size when it fits', async () => {
    const { js, published } = fakeJs(1024 * 1024);
    const payload = new Uint8Array(270_000).fill(0x7a);
    await publishDeadLetter(js, subjects, 'LOYALTY_TX', letter(payload));
    expect(published).toHaveLength(1);
    const [sent] = published;
    expect(sent!.subject).toBe('loyalty.dlq.alice');
    expect(sent!.body).toBe(payload);
    expect(sent!.msgID).toBe('dlq:LOYALTY_TX:42');
    expect(sent!.headers.get('Loyalty-Dead-Letter-Reason')).toBe('payload of 270000 bytes exceeds the limit of 65536');
    expect(sent!.headers.get('Loyalty-Original-Sequence')).toBe('42');
    expect(sent!.headers.get('Loyalty-Original-Size')).toBe('270000');
    expect(sent!.headers.has('Loyalty-Body-Truncated')).toBe(false);
  });

  it('cuts the body of a payload at the server’s max_payload, so the dead letter is stored instead of failing its batch', async () => {
    const maxPayload = 8 * 1024 * 1024;
    const { js, published } = fakeJs(maxPayload);
    const payload = new Uint8Array(maxPayload).fill(0x7a); // as large as the server takes: no room for our headers
    await publishDeadLetter(js, subjects, 'LOYALTY_TX', letter(payload), []);
    const [sent] = published;
    expect(sent!.body.length).toBeLessThan(maxPayload);
    expect(sent!.body.length).toBeGreaterThan(maxPayload - 4096);
    // Buffer.equals, not toEqual: a deep equal of 8 MiB element by element took 86 s on a loaded machine.
    expect(Buffer.from(sent!.body.buffer, sent!.body.byteOffset, sent!.body.length).equals(payload.subarray(0, sent!.body.length))).toBe(true);
    expect(sent!.headers.get('Loyalty-Original-Size')).toBe(String(maxPayload));
    expect(sent!.headers.get('Loyalty-Body-Truncated')).toBe('true');
  });

  it('cuts it at the stream’s max_msg_size when that is smaller', async () => {
    const { js, published } = fakeJs(1024 * 1024);
    await publishDeadLetter(js, subjects, 'LOYALTY_TX', letter(new Uint8Array(200_000), { messageBytesMax: 100_000 }), []);
    const [sent] = published;
    expect(sent!.body.length).toBeLessThanOrEqual(100_000 - 1024);
    expect(sent!.headers.get('Loyalty-Body-Truncated')).toBe('true');
  });

  it('tries again (same message id) while the stream does not answer', async () => {
    const { js, published } = fakeJs(1024 * 1024, 2);
    await publishDeadLetter(js, subjects, 'LOYALTY_TX', letter(new Uint8Array(10)), [0, 0]);
    expect(published.map((sent) => sent.msgID)).toEqual(['dlq:LOYALTY_TX:42']);
  });

  it('a member token that is no subject token goes to loyalty.dlq._invalid', async () => {
    const { js, published } = fakeJs(undefined);
    await publishDeadLetter(js, subjects, 'LOYALTY_TX', { ...letter(new Uint8Array(10)), memberToken: 'a\u0000b' });
    expect(published[0]!.subject).toBe('loyalty.dlq._invalid');
    expect(published[0]!.body.length).toBe(10);
  });
});

describe('deadLetterBody', () => {
  it('keeps the payload when headers and payload fit, else its first bytes, never a negative length', () => {
    const payload = new Uint8Array(5_000);
    expect(deadLetterBody(payload, 300, Number.POSITIVE_INFINITY)).toBe(payload);
    expect(deadLetterBody(payload, 300, 6_324)).toBe(payload);
    expect(deadLetterBody(payload, 300, 6_323).length).toBe(4_999);
    expect(deadLetterBody(payload, 300, 100).length).toBe(0);
  });
});
