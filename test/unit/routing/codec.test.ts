import { describe, expect, it } from 'vitest';
import { pack } from 'msgpackr';
import { Encoding } from '../../../src/routing/batch-buffer.js';
import { decodePayload, encodingOf } from '../../../src/transport/codec.js';

// The codec lives in src/transport but is the actor's first step on a routed
// payload; it is tested here with the routing wire format it reads.

const utf8 = (text: string) => new TextEncoder().encode(text);

function failure(payload: Uint8Array, encoding: Encoding): string {
  const decoded = decodePayload(payload, encoding);
  expect(decoded.ok).toBe(false);
  if (decoded.ok) throw new Error('unreachable');
  return decoded.reason;
}

describe('encodingOf (Content-Type header)', () => {
  it('defaults to JSON when the header is absent or empty', () => {
    expect(encodingOf(undefined)).toBe(Encoding.Json);
    expect(encodingOf('')).toBe(Encoding.Json);
  });

  it('reads application/json and application/msgpack', () => {
    expect(encodingOf('application/json')).toBe(Encoding.Json);
    expect(encodingOf('application/msgpack')).toBe(Encoding.Msgpack);
  });

  it('accepts a parameter suffix and any letter case', () => {
    expect(encodingOf('application/json; charset=utf-8')).toBe(Encoding.Json);
    expect(encodingOf('application/msgpack; charset=binary')).toBe(Encoding.Msgpack);
    expect(encodingOf('APPLICATION/MSGPACK')).toBe(Encoding.Msgpack);
    expect(encodingOf('Application/MsgPack;v=1')).toBe(Encoding.Msgpack);
    expect(encodingOf('APPLICATION/JSON')).toBe(Encoding.Json);
  });

  it('treats any other type as JSON (decoding then decides)', () => {
    expect(encodingOf('text/plain')).toBe(Encoding.Json);
    expect(encodingOf('application/octet-stream')).toBe(Encoding.Json);
  });
});

describe('decodePayload', () => {
  const event = { id: 'e-1', memberId: 'm-1', type: 'purchase', amountMinor: 1250, currency: 'EUR', items: [{ sku: 'a', quantity: 2 }] };

  it('decodes JSON', () => {
    expect(decodePayload(utf8(JSON.stringify(event)), Encoding.Json)).toEqual({ ok: true, value: event });
    expect(decodePayload(utf8('"é and 😀"'), Encoding.Json)).toEqual({ ok: true, value: 'é and 😀' });
  });

  it('decodes msgpack maps as plain objects', () => {
    const decoded = decodePayload(pack(event), Encoding.Msgpack);
    expect(decoded).toEqual({ ok: true, value: event });
    if (decoded.ok) expect(Object.getPrototypeOf(decoded.value)).toBe(Object.prototype);
  });

  it('refuses an empty payload in either encoding', () => {
    expect(failure(new Uint8Array(0), Encoding.Json)).toBe('empty payload');
    expect(failure(new Uint8Array(0), Encoding.Msgpack)).toBe('empty payload');
  });

  it('refuses invalid UTF-8 before parsing JSON', () => {
    expect(failure(Uint8Array.of(0x22, 0xff, 0xfe, 0x22), Encoding.Json)).toBe('not valid UTF-8');
    // An overlong encoding of "/" and a lone surrogate are invalid UTF-8 too.
    expect(failure(Uint8Array.of(0xc0, 0xaf), Encoding.Json)).toBe('not valid UTF-8');
    expect(failure(Uint8Array.of(0x22, 0xed, 0xa0, 0x80, 0x22), Encoding.Json)).toBe('not valid UTF-8');
  });

  it('refuses bad JSON with the parser\'s message', () => {
    expect(failure(utf8('{"id": '), Encoding.Json)).toMatch(/^not valid JSON: /);
    expect(failure(utf8('{id: 1}'), Encoding.Json)).toMatch(/^not valid JSON: /);
    expect(failure(pack(event), Encoding.Json)).toMatch(/^not valid (JSON|UTF-8)/);
  });

  it('refuses bad msgpack', () => {
    // 0xc1 is the one byte the msgpack spec never uses.
    expect(failure(Uint8Array.of(0xc1), Encoding.Msgpack)).toMatch(/^not valid msgpack/);
    // A fixarray of two with one element: truncated.
    expect(failure(Uint8Array.of(0x92, 0x01), Encoding.Msgpack)).toMatch(/^not valid msgpack/);
    // A str8 announcing 10 bytes, holding 2.
    expect(failure(Uint8Array.of(0xd9, 10, 0x61, 0x62), Encoding.Msgpack)).toMatch(/^not valid msgpack/);
  });

  it('refuses msgpack with trailing bytes after the first value', () => {
    const packed = pack(event);
    const framed = new Uint8Array(packed.length + 1);
    framed.set(packed);
    framed[packed.length] = 0x01;
    expect(failure(framed, Encoding.Msgpack)).toMatch(/^not valid msgpack/);
  });

  it('JSON text sent as msgpack is not silently accepted as an object', () => {
    const decoded = decodePayload(utf8(JSON.stringify(event)), Encoding.Msgpack);
    // "{" (0x7b) is a positive fixint, followed by trailing bytes.
    expect(decoded.ok).toBe(false);
  });
});
