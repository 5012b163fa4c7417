import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AssertionError } from '../../../src/domain/assert.js';
import { BatchWriter, Encoding, MEMBER_ID_BYTES_MAX, RECORD_HEADER_BYTES, readBatch } from '../../../src/routing/batch-buffer.js';

interface Input {
  streamSequence: number;
  publishedAtMs: number;
  encoding: Encoding;
  memberId: string;
  payload: Uint8Array;
}

const asciiMemberId = fc.stringMatching(/^[\x20-\x7e]{0,80}$/);

const record: fc.Arbitrary<Input> = fc.record({
  streamSequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  publishedAtMs: fc.double({ noNaN: true }),
  encoding: fc.constantFrom(Encoding.Json, Encoding.Msgpack),
  memberId: asciiMemberId,
  payload: fc.uint8Array({ maxLength: 300 }),
});

function write(writer: BatchWriter, inputs: readonly Input[]): ArrayBuffer {
  for (const input of inputs) writer.append(input.streamSequence, input.publishedAtMs, input.encoding, input.memberId, input.payload);
  return writer.finish();
}

function assertionMessage(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(AssertionError);
    return (error as Error).message;
  }
  throw new Error('expected an AssertionError');
}

function sampleBatch(): ArrayBuffer {
  const writer = new BatchWriter();
  writer.append(1, 1000.5, Encoding.Json, 'm-1', new TextEncoder().encode('{"a":1}'));
  writer.append(2, 1001, Encoding.Msgpack, 'm-2', Uint8Array.of(0x80));
  return writer.finish();
}

describe('BatchWriter → readBatch', () => {
  it('round-trips arbitrary records', () => {
    fc.assert(
      fc.property(fc.array(record, { maxLength: 40 }), (inputs) => {
        const writer = new BatchWriter(64);
        const records = readBatch(write(writer, inputs));
        expect(records).toHaveLength(inputs.length);
        records.forEach((read, index) => {
          const input = inputs[index]!;
          expect(read.streamSequence).toBe(input.streamSequence);
          expect(Object.is(read.publishedAtMs, input.publishedAtMs)).toBe(true);
          expect(read.encoding).toBe(input.encoding);
          expect(read.memberId).toBe(input.memberId);
          expect([...read.payload]).toEqual([...input.payload]);
        });
      }),
    );
  });

  it('hands over a buffer of exactly the written size', () => {
    const writer = new BatchWriter();
    writer.append(7, 1, Encoding.Json, 'abc', Uint8Array.of(1, 2, 3, 4));
    const expected = 4 + RECORD_HEADER_BYTES + 3 + 4;
    expect(writer.byteLength).toBe(expected);
    expect(writer.count).toBe(1);
    expect(writer.finish().byteLength).toBe(expected);
  });

  it('grows beyond its initial size, keeping what was written before', () => {
    const writer = new BatchWriter(4);
    const payloads = Array.from({ length: 200 }, (_, index) => new Uint8Array(index * 37).fill(index & 0xff));
    payloads.forEach((payload, index) => writer.append(index + 1, index, Encoding.Json, `member-${index}`, payload));
    expect(writer.count).toBe(200);
    const records = readBatch(writer.finish());
    expect(records.map((read) => read.streamSequence)).toEqual(payloads.map((_, index) => index + 1));
    records.forEach((read, index) => {
      expect(read.memberId).toBe(`member-${index}`);
      expect(read.payload.length).toBe(index * 37);
      expect(read.payload.every((byte) => byte === (index & 0xff))).toBe(true);
    });
  });

  it('grows for a single payload many times its initial size', () => {
    const writer = new BatchWriter(16);
    const payload = new Uint8Array(100_000).map((_, index) => index % 251);
    writer.append(1, 0, Encoding.Msgpack, 'big', payload);
    const [read] = readBatch(writer.finish());
    expect(read!.payload.length).toBe(payload.length);
    expect(Buffer.compare(read!.payload, payload)).toBe(0);
  });

  it('resets after finish: the next batch starts empty and earlier buffers stay intact', () => {
    const writer = new BatchWriter(64);
    writer.append(1, 0, Encoding.Json, 'first', Uint8Array.of(1));
    const first = writer.finish();
    expect(writer.count).toBe(0);
    expect(writer.byteLength).toBe(4);
    expect(readBatch(writer.finish())).toEqual([]);
    writer.append(2, 0, Encoding.Msgpack, 'second', Uint8Array.of(2, 2));
    const second = writer.finish();
    expect(readBatch(first).map((read) => [read.streamSequence, read.memberId, [...read.payload]])).toEqual([[1, 'first', [1]]]);
    expect(readBatch(second).map((read) => [read.streamSequence, read.memberId, [...read.payload]])).toEqual([[2, 'second', [2, 2]]]);
  });

  it('folds non-ASCII member id characters to "?" and keeps at most 255 of them', () => {
    const writer = new BatchWriter();
    writer.append(1, 0, Encoding.Json, 'mé-ü', Uint8Array.of());
    writer.append(2, 0, Encoding.Json, 'x'.repeat(300), Uint8Array.of());
    const [folded, long] = readBatch(writer.finish());
    expect(folded!.memberId).toBe('m?-?');
    expect(long!.memberId).toBe('x'.repeat(MEMBER_ID_BYTES_MAX));
  });
});

describe('readBatch rejects damaged buffers with an assertion', () => {
  it('a buffer shorter than the count', () => {
    expect(assertionMessage(() => readBatch(new ArrayBuffer(3)))).toMatch(/shorter than its header/);
  });

  it('a batch truncated inside a record body', () => {
    const buffer = sampleBatch();
    expect(assertionMessage(() => readBatch(buffer.slice(0, buffer.byteLength - 1)))).toMatch(/body out of bounds/);
  });

  it('a batch truncated inside a record header', () => {
    const buffer = sampleBatch();
    expect(assertionMessage(() => readBatch(buffer.slice(0, 4 + 5)))).toMatch(/header out of bounds/);
  });

  it('a count larger than the records present', () => {
    const buffer = sampleBatch();
    new DataView(buffer).setUint32(0, 3, true);
    expect(assertionMessage(() => readBatch(buffer))).toMatch(/out of bounds/);
  });

  it('a count smaller than the records present (trailing bytes)', () => {
    const buffer = sampleBatch();
    new DataView(buffer).setUint32(0, 1, true);
    expect(assertionMessage(() => readBatch(buffer))).toMatch(/trailing bytes/);
  });

  it('a payload length pointing past the end', () => {
    const buffer = sampleBatch();
    new DataView(buffer).setUint32(4 + 18, 0xffffffff, true);
    expect(assertionMessage(() => readBatch(buffer))).toMatch(/body out of bounds/);
  });

  it('any truncation of a random batch', () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 8 }), fc.nat(), (inputs, cut) => {
        const buffer = write(new BatchWriter(), inputs);
        const length = cut % buffer.byteLength;
        expect(() => readBatch(buffer.slice(0, length))).toThrow(AssertionError);
      }),
    );
  });
});
