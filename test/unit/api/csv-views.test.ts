import { describe, expect, it } from 'vitest';
import { countLines, csvField, csvRow, linesOf, splitCsvLine } from '../../../src/api/csv.js';
import { decodeCursor, encodeCursor, expiringByMonth } from '../../../src/api/views.js';

describe('CSV', () => {
  it('splits a line with RFC 4180 quoting', () => {
    expect(splitCsvLine('a,b,c')).toEqual(['a', 'b', 'c']);
    expect(splitCsvLine(' a , "b, c" ,"say ""hi""",')).toEqual(['a', 'b, c', 'say "hi"', '']);
    expect(splitCsvLine('')).toEqual(['']);
    expect(splitCsvLine('"open,b')).toEqual({ error: expect.stringMatching(/not closed/) });
    expect(splitCsvLine('a"b,c')).toEqual({ error: expect.stringMatching(/quote inside an unquoted field/) });
    expect(splitCsvLine('"a"x,c')).toEqual({ error: expect.stringMatching(/after a closing quote/) });
  });

  it('writes fields safely (quotes, separators, spreadsheet formulas)', () => {
    expect(csvRow(['a', 'b,c', 'say "hi"', 12, -3, null, undefined])).toBe('a,"b,c","say ""hi""",12,-3,,\n');
    expect(csvField('=SUM(A1)')).toBe(`"'=SUM(A1)"`);
    expect(csvField('-12')).toBe('-12');
  });

  it('numbers lines, skipping blank ones, with BOM and CRLF', () => {
    expect([...linesOf('\ufeffh\r\n\r\na\n  \nb')]).toEqual([
      { line: 1, text: 'h' },
      { line: 3, text: 'a' },
      { line: 5, text: 'b' },
    ]);
    expect(countLines('\ufeffh\r\n\r\na\n  \nb\n')).toBe(3);
    expect(countLines('a\nb\nc\nd', 2)).toBe(3);
  });
});

describe('views', () => {
  it('round-trips cursors and refuses foreign ones', () => {
    expect(decodeCursor(encodeCursor(0))).toBe(0);
    expect(decodeCursor(encodeCursor(123_456))).toBe(123_456);
    expect(decodeCursor('abc')).toBeUndefined();
    expect(decodeCursor(Buffer.from('l1:-1').toString('base64url'))).toBeUndefined();
    expect(decodeCursor('not a cursor!')).toBeUndefined();
  });

  it('sums expiring points per coming month at the program offset', () => {
    const now = Date.parse('2026-11-23T12:00:00Z');
    const items = [
      { expiresAtMs: Date.parse('2026-11-30T23:30:00Z'), points: 5 }, // December at UTC+1
      { expiresAtMs: Date.parse('2026-11-25T00:00:00Z'), points: 7 },
      { expiresAtMs: Date.parse('2027-01-15T00:00:00Z'), points: 11 },
      { expiresAtMs: Date.parse('2027-03-01T00:00:00Z'), points: 13 }, // beyond the 3 months
    ];
    expect(expiringByMonth(items, now, 60)).toEqual([
      { period: '2026-11', points: 7 },
      { period: '2026-12', points: 5 },
      { period: '2027-01', points: 11 },
    ]);
    expect(expiringByMonth(items, now, 0)[0]).toEqual({ period: '2026-11', points: 12 });
  });
});
