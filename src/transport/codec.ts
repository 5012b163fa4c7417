import { C1, Unpackr } from 'msgpackr';
import { Encoding } from '../routing/batch-buffer.js';
import { CONTENT_TYPE_MSGPACK } from './subjects.js';

/**
 * Payload codecs. Pure functions of bytes: the main thread only picks the
 * encoding from the header; decoding happens in the actor threads.
 */

export function encodingOf(contentType: string | undefined): Encoding {
  if (contentType === undefined || contentType === '') return Encoding.Json;
  const type = contentType.toLowerCase();
  return type.startsWith(CONTENT_TYPE_MSGPACK) || type.startsWith('application/x-msgpack') || type.startsWith('application/vnd.msgpack')
    ? Encoding.Msgpack
    : Encoding.Json;
}

export type DecodeFailure = 'bad_json' | 'bad_msgpack' | 'empty';
export type Decoded =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly kind: DecodeFailure; readonly reason: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });
// Plain maps to objects, no records extension: producers speak standard msgpack.
const unpackr = new Unpackr({ mapsAsObjects: true, useRecords: false, int64AsType: 'number' });

export function decodePayload(payload: Uint8Array, encoding: Encoding): Decoded {
  if (payload.length === 0) return { ok: false, kind: 'empty', reason: 'empty payload' };
  if (encoding === Encoding.Msgpack) {
    try {
      // One value that spans the whole payload: trailing bytes mean a framing error.
      let values = 0;
      let value: unknown;
      let end = 0;
      unpackr.unpackMultiple(payload, (item: unknown, _start?: number, itemEnd?: number) => {
        values += 1;
        value = item;
        end = itemEnd ?? payload.length;
        return values < 2;
      });
      if (values !== 1 || end !== payload.length) return { ok: false, kind: 'bad_msgpack', reason: 'not valid msgpack: trailing bytes after the first value' };
      // 0xc1 is "never used" in the msgpack spec; msgpackr returns a marker for it.
      if (value === C1 || (typeof value === 'object' && value !== null && value.constructor?.name === 'C1Type')) {
        return { ok: false, kind: 'bad_msgpack', reason: 'not valid msgpack: reserved byte 0xc1' };
      }
      return { ok: true, value };
    } catch (error) {
      return { ok: false, kind: 'bad_msgpack', reason: `not valid msgpack: ${(error as Error).message}` };
    }
  }
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return { ok: false, kind: 'bad_json', reason: 'not valid UTF-8' };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, kind: 'bad_json', reason: `not valid JSON: ${(error as Error).message}` };
  }
}
