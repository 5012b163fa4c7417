import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENGINE_ERROR_CODES, isEngineErrorCode } from '../../../src/config/errors.js';

const root = join(import.meta.dirname, '..', '..', '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('the engine error-code registry', () => {
  it('docs/operations.md lists exactly the registry, with the same meanings', () => {
    const docs = readFileSync(join(root, 'docs', 'operations.md'), 'utf8');
    const section = docs.slice(docs.indexOf('## Error codes'), docs.indexOf('## Crash recovery'));
    const rows = [...section.matchAll(/^\| `(ERR_[A-Z_]+)` \| (.+) \|$/gm)].map((match) => [match[1], match[2]]);
    expect(Object.fromEntries(rows)).toEqual(ENGINE_ERROR_CODES);
  });

  it('every ERR_ code the source throws or tags is in the registry, and every registry code is used', () => {
    const used = new Set<string>();
    for (const file of sourceFiles(join(root, 'src'))) {
      let text = readFileSync(file, 'utf8');
      if (file.endsWith(join('config', 'errors.ts'))) text = text.slice(text.indexOf('export type EngineErrorCode')); // past the registry itself
      for (const match of text.matchAll(/'(ERR_[A-Z_]+)'/g)) {
        if (!match[1]!.startsWith('ERR_PARSE_ARGS')) used.add(match[1]!); // Node's parseArgs codes, mapped by the CLI
      }
    }
    expect([...used].filter((code) => !isEngineErrorCode(code))).toEqual([]);
    expect(Object.keys(ENGINE_ERROR_CODES).filter((code) => !used.has(code))).toEqual([]);
  });
});
