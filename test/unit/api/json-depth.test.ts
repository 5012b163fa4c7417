import { describe, expect, it } from 'vitest';
import { JSON_NESTING_MAX, jsonNestingError } from '../../../src/api/json-depth.js';

describe('jsonNestingError', () => {
  it('accepts documents up to the bound and refuses one level more', () => {
    const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
    expect(jsonNestingError(nested(JSON_NESTING_MAX))).toBeUndefined();
    expect(jsonNestingError(nested(JSON_NESTING_MAX + 1))).toBe(`JSON nested more than ${JSON_NESTING_MAX} levels deep`);
    expect(jsonNestingError('{"a":'.repeat(100_000))).toMatch(/nested more than/);
  });

  it('does not count brackets inside strings, escaped quotes included', () => {
    const inString = JSON.stringify({ text: '['.repeat(1_000) + '\\"{{{' });
    expect(jsonNestingError(inString)).toBeUndefined();
    expect(JSON.parse(inString).text).toHaveLength(1_005);
    expect(jsonNestingError('{"a":"\\\\"}')).toBeUndefined();
  });

  it('measures depth, not the number of brackets', () => {
    const wide = '[' + '[],'.repeat(10_000) + '[]]';
    expect(jsonNestingError(wide)).toBeUndefined();
  });
});
