import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { envNameOf, loadSettings, settingsSchema } from '../../../src/config/settings.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const read = (path: string) => readFileSync(root + path, 'utf8');

/** Figures the docs state, checked against the code they describe. */
describe('docs match the code', () => {
  const readme = read('README.md');
  const operations = read('docs/operations.md');

  it('operations.md: every setting has its row in the settings table', () => {
    const shape = (settingsSchema as unknown as { _def: { schema?: { shape: Record<string, unknown> } } })._def.schema?.shape ?? (settingsSchema as unknown as { shape: Record<string, unknown> }).shape;
    const keys = Object.keys(shape);
    expect(keys.length).toBeGreaterThan(40);
    const rows = new Set(operations.split('\n').filter((line) => line.startsWith('| `LOYALTY_')).map((line) => line.slice(3, line.indexOf('`', 3))));
    expect(keys.map(envNameOf).filter((name) => !rows.has(name))).toEqual([]);
  });

  it('README: cached members per actor is the default of LOYALTY_MEMBER_CACHE_MAX', () => {
    const settings = loadSettings({});
    const stated = /([\d,]+) cached members per actor/.exec(readme)![1]!;
    expect(Number(stated.replaceAll(',', ''))).toBe(settings.memberCacheMax);
  });

  it('README: no `nats pub` as the way to publish (no nats CLI here); the example it gives instead takes an event', () => {
    expect(readme).not.toMatch(/nats pub loyalty\.tx\.alice '\{/);
    expect(readme).toMatch(/node examples\/publish-order\.mjs '\{"id":"o-1"/);
    expect(read('examples/publish-order.mjs')).toMatch(/JSON\.parse\(process\.argv\[2\]\)/);
  });

  it('operations.md: LOYALTY_ACTORS bound is the schema bound', () => {
    const row = operations.split('\n').find((line) => line.startsWith('| `LOYALTY_ACTORS`'))!;
    expect(row).toMatch(/1–4096, and ≤ partitions/);
    expect(() => loadSettings({ LOYALTY_ACTORS: '4096', LOYALTY_PARTITIONS: '4096' })).not.toThrow();
    expect(() => loadSettings({ LOYALTY_ACTORS: '4097', LOYALTY_PARTITIONS: '4096' })).toThrow();
  });

  it('operations.md: the dead-letter reasons are the kinds of the actor and the codec (oversized also from the main thread)', () => {
    const kinds = new Set<string>();
    const union = (source: string, type: string) => new RegExp(`export type ${type} = ([^;]+);`).exec(source)![1]!;
    for (const match of union(read('src/transport/codec.ts'), 'DecodeFailure').matchAll(/'([a-z_]+)'/g)) kinds.add(match[1]!);
    for (const match of union(read('src/actors/actor.ts'), 'DeadLetterKind').matchAll(/'([a-z_]+)'/g)) kinds.add(match[1]!);
    expect(read('src/engine.ts')).toMatch(/deadLetters\.inc\(\{ reason: 'oversized' \}\)/);
    const row = operations.split('\n').find((line) => line.startsWith('| `loyalty_dead_letters_total`'))!;
    const documented = new Set([...row.slice(row.indexOf('`reason`:') + '`reason`:'.length).matchAll(/`([a-z_]+)`/g)].map((match) => match[1]!));
    expect(documented).toEqual(kinds);
    const words = ['', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
    expect(operations).toContain(`\`reason\` one of ${words[kinds.size]}.`);
  });

  it('api.md: the redemption example names a reward of the default program at its price', () => {
    const rewardsOf = (value: unknown): { id: string; points: number }[] | undefined => {
      if (value === null || typeof value !== 'object') return undefined;
      if (Array.isArray((value as { rewards?: unknown }).rewards)) return (value as { rewards: { id: string; points: number }[] }).rewards;
      for (const child of Object.values(value)) {
        const found = rewardsOf(child);
        if (found !== undefined) return found;
      }
      return undefined;
    };
    const list = rewardsOf(parse(read('config/programs/retail.yaml')))!;
    expect(list.length).toBeGreaterThan(0);
    const example = /\| `POST \/v1\/members\/\{id\}\/redemptions` \| `\{"rewardId": "([^"]+)", "points": (\d+)/.exec(read('docs/api.md'))!;
    expect(list).toContainEqual(expect.objectContaining({ id: example[1], points: Number(example[2]) }));
  });

  it('submit.ts: no dead Loyalty-Outcome-Count path (the actors never set it)', () => {
    expect(read('src/transport/submit.ts')).not.toMatch(/Outcome-Count|HEADER_OUTCOME_COUNT/);
    expect(read('src/actors/worker.ts')).not.toMatch(/Outcome-Count/);
  });
});
