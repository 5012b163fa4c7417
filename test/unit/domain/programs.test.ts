import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { compileProgram, globalBudgetLimits, programSchema } from '../../../src/domain/index.js';
import { makeProgram } from './helpers.js';

function issuesOf(value: unknown): string[] {
  const parsed = programSchema.safeParse(value);
  return parsed.success ? [] : parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

const minimal = {
  id: 'p',
  name: 'P',
  currency: 'EUR',
  earn: { points: 1, perAmountMinor: 100, rounding: 'floor' },
  tiers: [
    { id: 'member', name: 'Member', qualifyingPointsMin: 0 },
    { id: 'gold', name: 'Gold', qualifyingPointsMin: 100 },
  ],
};

describe('sample programs', () => {
  for (const name of ['retail', 'travel', 'simple']) {
    it(`config/programs/${name}.yaml parses with programSchema`, () => {
      const text = readFileSync(new URL(`../../../config/programs/${name}.yaml`, import.meta.url), 'utf8');
      const raw = parseYaml(text, { strict: true, uniqueKeys: true });
      expect(issuesOf(raw)).toEqual([]);
      const program = programSchema.parse(raw);
      expect(program.id).toBe(name);
      expect(() => compileProgram(program)).not.toThrow();
    });
  }

  it('retail keeps its id and has the Cyber Week promotion with a global budget', () => {
    const program = programSchema.parse(parseYaml(readFileSync(new URL('../../../config/programs/retail.yaml', import.meta.url), 'utf8')));
    expect(program.id).toBe('retail');
    expect(globalBudgetLimits(program)['cyber-week']).toEqual({ points: 50_000_000 });
  });

  it('simple is base earn and three tiers, every feature left at its default (off)', () => {
    const program = programSchema.parse(parseYaml(readFileSync(new URL('../../../config/programs/simple.yaml', import.meta.url), 'utf8')));
    expect(program.tiers).toHaveLength(3);
    expect(program.earn.rules).toEqual([]);
    expect(program.promotions).toEqual([]);
    expect(program.returns).toBeUndefined();
    expect(program.earn.pendingDays).toBe(0);
    expect(program.currencies).toEqual([{ id: 'points', qualifying: true, expiry: { kind: 'none' } }]);
  });
});

describe('programSchema refinements name the bad field', () => {
  it('accepts the minimal program and fills defaults', () => {
    expect(issuesOf(minimal)).toEqual([]);
    const program = programSchema.parse(minimal);
    expect(program.tierQualification).toEqual({ basis: 'points', window: { kind: 'lifetime' }, downgrade: 'one_step', graceDays: 0 });
    expect(program.membership).toEqual({ autoEnroll: true, unenrollPolicy: 'forfeit' });
  });

  it('tiers must start at 0 and increase strictly; ids unique', () => {
    const issues = issuesOf({
      ...minimal,
      tiers: [
        { id: 'a', name: 'A', qualifyingPointsMin: 10 },
        { id: 'b', name: 'B', qualifyingPointsMin: 5 },
        { id: 'b', name: 'B2', qualifyingPointsMin: 50 },
      ],
    });
    expect(issues).toContain('tiers.0.qualifyingPointsMin: the first tier must start at 0');
    expect(issues).toContain('tiers.1.qualifyingPointsMin: tiers must be ordered by strictly increasing qualifyingPointsMin');
    expect(issues).toContain('tiers.2.id: duplicate id b');
  });

  it('a spend basis needs spend thresholds', () => {
    const issues = issuesOf({ ...minimal, tierQualification: { basis: 'spend' } });
    expect(issues).toContain('tiers.0.qualifyingSpendMinorMin: every tier needs qualifyingSpendMinorMin (tierQualification.basis is spend)');
    expect(issues).toContain('tiers.0.qualifyingPointsMin: tiers are measured on spend; use qualifyingSpendMinorMin');
  });

  it('referenced ids must exist', () => {
    const issues = issuesOf({
      ...minimal,
      earn: { ...minimal.earn, currency: 'miles', rules: [{ id: 'r', award: { kind: 'bonus', points: 5 }, currency: 'nope' }] },
      promotions: [
        {
          id: 'promo',
          name: 'Promo',
          startsAt: '2026-01-02T00:00:00Z',
          endsAt: '2026-01-01T00:00:00Z',
          eligibility: { tiers: ['platinum'] },
          award: { kind: 'multiplier', percent: 200 },
          budget: { global: {} },
        },
      ],
      benefits: [
        { id: 'b1', name: 'B', trigger: { kind: 'challenge_completed', challengeId: 'ghost' }, issue: { kind: 'voucher', validDays: 10 } },
        { id: 'b2', name: 'B', trigger: { kind: 'tier_reached', tierId: 'ghost' }, issue: { kind: 'voucher', validDays: 10 } },
      ],
      redemption: { rewards: [{ id: 'x', name: 'X', points: 5, tiers: ['ghost'] }] },
    });
    expect(issues).toEqual(
      expect.arrayContaining([
        'earn.currency: unknown points currency miles',
        'earn.rules.0.currency: unknown points currency nope',
        'promotions.0.endsAt: endsAt must be after startsAt',
        'promotions.0.eligibility.tiers.0: unknown tier platinum',
        'promotions.0.budget.global: a budget needs points, uses or both',
        'benefits.0.trigger.challengeId: unknown challenge ghost',
        'benefits.1.trigger.tierId: unknown tier ghost',
        'redemption.rewards.0.tiers.0: unknown tier ghost',
      ]),
    );
  });

  it('rules, promotions, activities and benefits share one id namespace', () => {
    const issues = issuesOf({
      ...minimal,
      earn: { ...minimal.earn, rules: [{ id: 'same', award: { kind: 'bonus', points: 5 } }] },
      activities: [{ id: 'same', activity: 'review', points: 5 }],
    });
    expect(issues).toContain('activities.0.id: duplicate rule id same (rules, promotions, activities and benefits share ids)');
  });

  it('custom activities need a customType; a per-unit bonus needs a line selector; unknown keys are refused', () => {
    const issues = issuesOf({
      ...minimal,
      earn: { ...minimal.earn, rules: [{ id: 'u', award: { kind: 'bonus', points: 5, per: 'unit' } }] },
      activities: [{ id: 'c', activity: 'custom', points: 5 }],
      surprise: true,
    });
    expect(issues).toEqual(
      expect.arrayContaining([
        'earn.rules.0.award.per: a per-unit bonus needs when.skus or when.categories to say which units',
        'activities.0.customType: custom activities need a customType',
      ]),
    );
    expect(issues.some((issue) => issue.includes('surprise'))).toBe(true);
  });

  it('refuses an id that would shadow Object.prototype in member state', () => {
    expect(issuesOf({ ...minimal, currencies: [{ id: 'constructor' }] })).toContain('currencies.0.id: this id is reserved');
  });

  it('makeProgram helper builds valid programs', () => {
    expect(makeProgram().id).toBe('test');
  });
});
