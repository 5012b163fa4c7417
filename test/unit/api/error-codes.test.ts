import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../../src/api/errors.js';
import { WALLET_ROUTING_CODES } from '../../../src/cluster/wallet-routing.js';

const root = join(import.meta.dirname, '..', '..', '..');
const docs = readFileSync(join(root, 'docs', 'api.md'), 'utf8');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

function section(start: string, end: string): string {
  const from = docs.indexOf(start);
  const to = docs.indexOf(end, from + start.length);
  expect(from, start).toBeGreaterThanOrEqual(0);
  expect(to, end).toBeGreaterThan(from);
  return docs.slice(from, to);
}

describe('the HTTP API error codes', () => {
  it('docs/api.md ("Errors") lists exactly the registry, with the same statuses', () => {
    const rows = [...section('## Errors', '## Writes').matchAll(/^\| (\d{3}) \| `([A-Z_]+)` \| .+ \|$/gm)];
    expect(Object.fromEntries(rows.map((row) => [row[2]!, Number(row[1])]))).toEqual(ERROR_CODES);
  });

  it('every code the API source throws is in the registry, and every registry code is used', () => {
    const thrown = new Set<string>();
    const quoted = new Set<string>();
    for (const file of sourceFiles(join(root, 'src', 'api'))) {
      let text = readFileSync(file, 'utf8');
      if (file.endsWith('errors.ts')) text = text.slice(text.indexOf('export type ErrorCode')); // past the registry itself
      for (const match of text.matchAll(/new ApiError\(\s*'([A-Z_]+)'/g)) thrown.add(match[1]!);
      for (const match of text.matchAll(/'([A-Z][A-Z_]+)'/g)) quoted.add(match[1]!);
    }
    expect([...thrown].filter((code) => !(code in ERROR_CODES))).toEqual([]);
    expect(Object.keys(ERROR_CODES).filter((code) => !quoted.has(code))).toEqual([]);
  });

  it('docs/api.md (cluster mode) maps every code of the wallet router to an API code of the registry', () => {
    const rows = [...section('## Cluster mode: member reads', '## Limits and measurements').matchAll(/^\| (.+) \| (\d{3}) \| `([A-Z_]+)`.* \|$/gm)];
    const mapped = new Map<string, [number, string]>();
    for (const row of rows) for (const code of row[1]!.matchAll(/`([A-Z_]+)`/g)) mapped.set(code[1]!, [Number(row[2]), row[3]!]);
    expect([...mapped.keys()].sort()).toEqual(Object.keys(WALLET_ROUTING_CODES).sort());
    for (const [, [status, code]] of mapped) expect(ERROR_CODES[code as keyof typeof ERROR_CODES], code).toBe(status);
  });
});
