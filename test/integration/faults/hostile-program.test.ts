import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/errors.js';
import { parseProgramText, PROGRAM_NESTING_MAX, PROGRAM_TEXT_CHARS_MAX } from '../../../src/config/program-file.js';
import { PROJECT_ROOT } from '../../helpers/engine-process.js';

/**
 * Issue 14, item 3: hostile program files (what LOYALTY_PROGRAM_FILE or an
 * admin's program activation could carry) are refused with a ConfigError,
 * quickly and without growing the heap: YAML alias expansion ("billion
 * laughs"), deep nesting, oversized text, huge numbers, prototype keys.
 */
function billionLaughs(levels: number): string {
  const lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let level = 1; level < levels; level++) lines.push(`a${level}: &a${level} [${Array(9).fill(`*a${level - 1}`).join(',')}]`);
  return lines.join('\n');
}

const simple = readFileSync(join(PROJECT_ROOT, 'config/programs/simple.yaml'), 'utf8');

const hostile: Record<string, string> = {
  'billion laughs (9^10 strings)': billionLaughs(10),
  'aliases inside a valid program': `${simple}\nx-laughs: ${'&l [1]'}\n${Array.from({ length: 200 }, (_, index) => `x${index}: *l`).join('\n')}`,
  'brackets nested 200,000 deep': '['.repeat(200_000) + ']'.repeat(200_000),
  'maps nested just past the bound': '{a: '.repeat(PROGRAM_NESTING_MAX + 1) + '1' + '}'.repeat(PROGRAM_NESTING_MAX + 1),
  'block maps nested 5,000 deep': Array.from({ length: 5_000 }, (_, index) => `${' '.repeat(index)}a:`).join('\n'),
  'a 20 MB string': `id: "${'x'.repeat(20_000_000)}"`,
  'just over the size bound': `# ${'x'.repeat(PROGRAM_TEXT_CHARS_MAX)}\n${simple}`,
  'a 100,000-digit number': simple.replace(/^id: .*$/m, `id: ${'9'.repeat(100_000)}`),
  'a number beyond float range': simple.replace(/^id: .*$/m, 'id: 1e400'),
  '__proto__ and constructor keys': `__proto__: {polluted: 1}\nconstructor: {prototype: {polluted: 1}}\n${simple}`,
  'control characters': `id: "a\u0000b"\n${simple.replace(/^id: .*$/m, '')}`,
  'not YAML at all': '\u0000\u0001\u0002{]:',
};

describe('hostile program files', () => {
  it('the sample program parses (the bounds leave real programs alone)', () => {
    for (const name of ['simple.yaml', 'retail.yaml', 'travel.yaml']) {
      expect(() => parseProgramText(readFileSync(join(PROJECT_ROOT, 'config/programs', name), 'utf8'), name)).not.toThrow();
    }
  });

  for (const [name, text] of Object.entries(hostile)) {
    it(`refuses ${name} with a ConfigError, without exhausting memory`, () => {
      const heapBefore = process.memoryUsage().heapUsed;
      let error: unknown;
      try {
        parseProgramText(text, 'hostile');
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ConfigError);
      // The text itself is up to 20 MB (40 MB as UTF-16); parsing must not add hundreds more.
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });
  }
});
