import { assert } from '../domain/assert.js';

/**
 * The wire format of one actor batch: raw payloads copied once from the NATS
 * socket into a single ArrayBuffer that is transferred (not cloned) to the
 * actor thread. The main thread never decodes a payload.
 *
 * Layout: [u32 count] then per message
 *   f64 streamSequence | f64 publishedAtMs | u8 encoding | u8 memberIdLength | u32 payloadLength
 *   | memberId bytes (the subject token, ASCII) | payload bytes
 */
export const RECORD_HEADER_BYTES = 8 + 8 + 1 + 1 + 4;
const COUNT_BYTES = 4;
export const MEMBER_ID_BYTES_MAX = 255;

/** Payload encodings, picked by the main thread from the Content-Type header. */
export const Encoding = { Json: 0, Msgpack: 1 } as const;
export type Encoding = (typeof Encoding)[keyof typeof Encoding];

export interface BatchRecord {
  readonly streamSequence: number;
  readonly publishedAtMs: number;
  readonly encoding: Encoding;
  readonly memberId: string;
  readonly payload: Uint8Array;
}

/** Growable writer; `finish()` hands the exact-size buffer over and resets. */
export class BatchWriter {
  private bytes: Uint8Array;
  private view: DataView;
  private length = COUNT_BYTES;
  private countValue = 0;

  constructor(initialBytes = 64 * 1024) {
    assert(initialBytes >= COUNT_BYTES, 'initialBytes too small');
    this.bytes = new Uint8Array(initialBytes);
    this.view = new DataView(this.bytes.buffer);
  }

  get count(): number {
    return this.countValue;
  }

  get byteLength(): number {
    return this.length;
  }

  /** memberIdBytes: the subject's member token as bytes (ASCII for valid ids). */
  append(streamSequence: number, publishedAtMs: number, encoding: Encoding, memberId: string, payload: Uint8Array): void {
    const memberIdLength = Math.min(memberId.length, MEMBER_ID_BYTES_MAX);
    const needed = RECORD_HEADER_BYTES + memberIdLength + payload.length;
    this.ensure(needed);
    let offset = this.length;
    this.view.setFloat64(offset, streamSequence, true);
    this.view.setFloat64(offset + 8, publishedAtMs, true);
    this.view.setUint8(offset + 16, encoding);
    this.view.setUint8(offset + 17, memberIdLength);
    this.view.setUint32(offset + 18, payload.length, true);
    offset += RECORD_HEADER_BYTES;
    // Non-ASCII code units are folded to '?': such an id is invalid anyway and
    // the actor dead-letters it after decoding the payload.
    for (let index = 0; index < memberIdLength; index++) {
      const code = memberId.charCodeAt(index);
      this.bytes[offset + index] = code < 0x80 ? code : 0x3f;
    }
    offset += memberIdLength;
    this.bytes.set(payload, offset);
    this.length = offset + payload.length;
    this.countValue += 1;
  }

  /** Returns an ArrayBuffer holding exactly this batch, ready to transfer. */
  finish(): ArrayBuffer {
    this.view.setUint32(0, this.countValue, true);
    const out = this.bytes.buffer.slice(0, this.length) as ArrayBuffer;
    this.length = COUNT_BYTES;
    this.countValue = 0;
    return out;
  }

  private ensure(needed: number): void {
    if (this.length + needed <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + needed) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }
}

const latin1 = new TextDecoder('latin1');

/** Reads a batch back, checking every length against the buffer's bounds. */
export function readBatch(buffer: ArrayBuffer): BatchRecord[] {
  const view = new DataView(buffer);
  const bytes = new Uint8Array(buffer);
  assert(buffer.byteLength >= COUNT_BYTES, 'batch shorter than its header');
  const count = view.getUint32(0, true);
  const records: BatchRecord[] = new Array(count);
  let offset = COUNT_BYTES;
  for (let index = 0; index < count; index++) {
    assert(offset + RECORD_HEADER_BYTES <= buffer.byteLength, 'batch record header out of bounds');
    const streamSequence = view.getFloat64(offset, true);
    const publishedAtMs = view.getFloat64(offset + 8, true);
    const encoding = view.getUint8(offset + 16) as Encoding;
    const memberIdLength = view.getUint8(offset + 17);
    const payloadLength = view.getUint32(offset + 18, true);
    offset += RECORD_HEADER_BYTES;
    assert(offset + memberIdLength + payloadLength <= buffer.byteLength, 'batch record body out of bounds');
    const memberId = latin1.decode(bytes.subarray(offset, offset + memberIdLength));
    offset += memberIdLength;
    const payload = bytes.subarray(offset, offset + payloadLength);
    offset += payloadLength;
    records[index] = { streamSequence, publishedAtMs, encoding, memberId, payload };
  }
  assert(offset === buffer.byteLength, 'batch has trailing bytes');
  return records;
}
