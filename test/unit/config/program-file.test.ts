import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, EngineError } from '../../../src/config/errors.js';
import { loadProgramFile, parseProgramText } from '../../../src/config/program-file.js';

const simplePath = new URL('../../../config/programs/simple.yaml', import.meta.url);
const simpleText = readFileSync(simplePath, 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'loyalty-program-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configError(action: () => unknown): ConfigError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('ERR_CONFIG_INVALID');
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

function isDeepFrozen(value: unknown, path = '(root)', seen = new Set<unknown>()): string[] {
  if (value === null || typeof value !== 'object' || seen.has(value)) return [];
  seen.add(value);
  const notFrozen = Object.isFrozen(value) ? [] : [path];
  for (const [key, inner] of Object.entries(value)) notFrozen.push(...isDeepFrozen(inner, `${path}.${key}`, seen));
  return notFrozen;
}

const minimal = (extra = '') => `id: test
name: Test
currency: EUR
earn: { points: 1, perAmountMinor: 100, rounding: floor }
tiers:
  - { id: member, name: Member, qualifyingPointsMin: 0 }
${extra}`;

describe('parseProgramText', () => {
  it('parses the sample program', () => {
    const program = parseProgramText(simpleText);
    expect(program.id).toBe('simple');
    expect(program.currency).toBe('EUR');
    expect(program.tiers.map((tier) => tier.id)).toEqual(['member', 'silver', 'gold']);
  });

  it('accepts JSON (JSON is YAML)', () => {
    const program = parseProgramText(
      JSON.stringify({
        id: 'json',
        name: 'JSON',
        currency: 'EUR',
        earn: { points: 1, perAmountMinor: 100, rounding: 'floor' },
        tiers: [{ id: 'member', name: 'Member', qualifyingPointsMin: 0 }],
      }),
    );
    expect(program.id).toBe('json');
  });

  it('returns a deep-frozen program', () => {
    const program = parseProgramText(simpleText);
    expect(isDeepFrozen(program)).toEqual([]);
    expect(() => {
      (program.tiers[0] as { name: string }).name = 'changed';
    }).toThrow(TypeError);
    expect(() => {
      (program.tiers as unknown as unknown[]).push({});
    }).toThrow(TypeError);
  });

  it('refuses text that is not YAML', () => {
    const error = configError(() => parseProgramText('id: [unclosed', 'program file x.yaml'));
    expect(error.fields).toHaveLength(1);
    expect(error.fields[0]).toMatch(/^\(file\): not valid YAML or JSON: /);
    expect(error.message).toMatch(/^invalid program file x\.yaml:/);
  });

  it('refuses duplicate keys, in YAML and in JSON', () => {
    expect(configError(() => parseProgramText(`${minimal()}id: again\n`)).fields[0]).toMatch(/^\(file\): not valid YAML or JSON: .*unique/s);
    expect(configError(() => parseProgramText('{"id": "a", "id": "b"}')).fields[0]).toMatch(/^\(file\): not valid YAML or JSON/);
  });

  it('refuses an empty file as a whole', () => {
    expect(configError(() => parseProgramText('')).fields).toEqual([expect.stringMatching(/^\(root\): /)]);
  });

  it('refuses unknown keys, at the top and nested, naming where', () => {
    const error = configError(() =>
      parseProgramText(`id: test
name: Test
currency: EUR
colour: blue
earn: { points: 1, perAmountMinor: 100, rounding: floor, bonus: 5 }
tiers:
  - { id: member, name: Member, qualifyingPointsMin: 0, icon: star }
`),
    );
    expect(error.fields).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\(root\): .*"colour"/),
        expect.stringMatching(/^earn: .*"bonus"/),
        expect.stringMatching(/^tiers\.0: .*"icon"/),
      ]),
    );
    expect(error.fields).toHaveLength(3);
  });

  it('names every bad field with its path, all at once', () => {
    const error = configError(() =>
      parseProgramText(`id: test
name: Test
currency: eur
earn: { points: 1, perAmountMinor: 100, rounding: sideways }
tiers:
  - { id: member, name: Member, qualifyingPointsMin: 0 }
  - { id: silver, name: Silver, qualifyingPointsMin: -5 }
`),
    );
    const paths = error.fields.map((field) => field.slice(0, field.indexOf(': ')));
    expect(paths).toEqual(expect.arrayContaining(['currency', 'earn.rounding', 'tiers.1.qualifyingPointsMin']));
    // The tier-order rule runs too (it may name tiers.1 a second time): the same three fields.
    expect(new Set(paths)).toEqual(new Set(['currency', 'earn.rounding', 'tiers.1.qualifyingPointsMin']));
  });

  it('names missing required fields', () => {
    const error = configError(() => parseProgramText('id: lonely\n'));
    const paths = error.fields.map((field) => field.slice(0, field.indexOf(': ')));
    expect(paths).toEqual(expect.arrayContaining(['name', 'currency', 'earn', 'tiers']));
  });
});

describe('loadProgramFile', () => {
  it('reads and parses a file', () => {
    expect(loadProgramFile(fileURLToPath(simplePath)).id).toBe('simple');
  });

  it('names the file in a validation error', () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, minimal('unknownField: 1\n'));
    const error = configError(() => loadProgramFile(path));
    expect(error.message).toContain(`invalid program file ${path}:`);
  });

  it('gives ERR_PROGRAM_FILE_UNREADABLE for a missing file, with the cause', () => {
    const path = join(dir, 'missing.yaml');
    try {
      loadProgramFile(path);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(EngineError);
      expect(error).not.toBeInstanceOf(ConfigError);
      expect((error as EngineError).code).toBe('ERR_PROGRAM_FILE_UNREADABLE');
      expect((error as Error).message).toContain(path);
      expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
    }
  });

  it('gives ERR_PROGRAM_FILE_UNREADABLE for a directory', () => {
    expect(() => loadProgramFile(dir)).toThrow(expect.objectContaining({ code: 'ERR_PROGRAM_FILE_UNREADABLE' }));
  });
});
