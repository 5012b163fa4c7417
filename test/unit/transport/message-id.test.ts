import { describe, expect, it } from 'vitest';
import { messageIdPart } from '../../../src/transport/subjects.js';

describe('messageIdPart', () => {
  it('keeps ordinary ids, control characters other than CR and LF included', () => {
    for (const id of ['order-1', 'a:b', '50%', 'tab\there', '\u0001x']) expect(messageIdPart(id)).toBe(id);
  });

  it('escapes ids with CR or LF into a header-safe form, one per id', () => {
    const ids = ['a\nb', 'a\rb', 'a\r\nb', '\n'];
    const parts = ids.map(messageIdPart);
    for (const part of parts) expect(part).not.toMatch(/[\r\n]/);
    expect(new Set(parts).size).toBe(ids.length);
    expect(decodeURIComponent(parts[0]!.slice(3))).toBe('a\nb');
  });
});
