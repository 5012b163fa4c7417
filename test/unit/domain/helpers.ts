import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { expect } from 'vitest';
import {
  applyEvent,
  checkLedgerInvariant,
  createMemoryBudgets,
  globalBudgetLimits,
  programSchema,
  sweepMember,
  validateEvent,
  walletView,
  type CurrencyState,
  type Decision,
  type LedgerEntry,
  type MemoryBudgets,
  type MemberState,
  type Outcome,
  type Program,
  type WalletView,
} from '../../../src/domain/index.js';

/** Test support: programs, events and a member harness that checks the ledger after every step. */

export const DAY_MS = 86_400_000;

export function loadProgram(name: 'retail' | 'travel' | 'simple' | 'hybrid'): Program {
  const url = new URL(`../../../config/programs/${name}.yaml`, import.meta.url);
  return programSchema.parse(parseYaml(readFileSync(url, 'utf8')));
}

/** A program from the fields a test cares about; the rest is the simplest valid program. */
export function makeProgram(overrides: Record<string, unknown> = {}): Program {
  const base = {
    id: 'test',
    name: 'Test program',
    currency: 'EUR',
    earn: { points: 1, perAmountMinor: 100, rounding: 'floor' },
    tiers: [
      { id: 'member', name: 'Member', qualifyingPointsMin: 0 },
      { id: 'silver', name: 'Silver', qualifyingPointsMin: 500 },
      { id: 'gold', name: 'Gold', qualifyingPointsMin: 2000 },
    ],
  };
  const merged: Record<string, unknown> = { ...base, ...overrides };
  if (overrides.earn !== undefined) merged.earn = { ...base.earn, ...(overrides.earn as object) };
  const parsed = programSchema.safeParse(merged);
  if (!parsed.success) throw new Error(parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; '));
  return parsed.data;
}

export function ms(iso: string): number {
  const value = Date.parse(iso);
  if (!Number.isFinite(value)) throw new Error(`bad date ${iso}`);
  return value;
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

type EventInput = Record<string, unknown> & { id: string; type: string; occurredAt: string };

/**
 * One member under test. Every event goes through validateEvent (the input
 * contract) and applyEvent with a frozen input state (so any mutation throws),
 * and after every step the ledger invariant is checked against all entries so far.
 */
export class Member {
  state: MemberState | undefined;
  readonly ledger: LedgerEntry[] = [];
  readonly outcomes: Outcome[] = [];
  last: Decision | undefined;

  constructor(
    readonly program: Program,
    readonly memberId = 'm1',
    readonly budgets: MemoryBudgets = createMemoryBudgets(globalBudgetLimits(program)),
  ) {}

  apply(input: EventInput): Decision {
    const validation = validateEvent({ memberId: this.memberId, ...input });
    if (!validation.ok) throw new Error(`invalid test event ${input.id}: ${validation.reason}`);
    const before = this.state;
    if (before !== undefined) deepFreeze(before);
    const decision = applyEvent(before, validation.event, validation.occurredAtMs, this.program, { budgets: this.budgets });
    this.record(decision);
    if (decision.outcomes.some((outcome) => outcome.kind === 'rejected')) {
      expect(decision.state).toBe(before);
      expect(decision.ledger).toHaveLength(0);
    }
    return decision;
  }

  /** Applies and expects acceptance. */
  ok(input: EventInput): Decision {
    const decision = this.apply(input);
    const rejected = decision.outcomes.find((outcome) => outcome.kind === 'rejected');
    if (rejected !== undefined && rejected.kind === 'rejected') throw new Error(`${input.id} rejected: ${rejected.code} ${rejected.reason}`);
    return decision;
  }

  /** Applies and expects a rejection with this code; returns its reason. */
  rejected(input: EventInput, code: string): string {
    const decision = this.apply(input);
    const rejected = decision.outcomes.find((outcome) => outcome.kind === 'rejected');
    expect(rejected?.kind === 'rejected' ? rejected.code : undefined).toBe(code);
    return rejected?.kind === 'rejected' ? rejected.reason : '';
  }

  sweep(atIso: string): Decision {
    const state = this.state;
    if (state === undefined) throw new Error('no member to sweep');
    deepFreeze(state);
    const decision = sweepMember(state, ms(atIso), this.program);
    this.record(decision);
    return decision;
  }

  wallet(atIso: string): WalletView {
    if (this.state === undefined) throw new Error('no member');
    return walletView(this.state, this.program, ms(atIso));
  }

  currency(id = 'points'): CurrencyState {
    const currencies = this.state?.currencies ?? {};
    return (
      currencies[id] ?? { spendable: 0, pending: 0, qualifying: 0, debt: 0, lifetimeEarned: 0, lots: [], pendingLots: [], noticeThroughMs: 0 }
    );
  }

  get spendable(): number {
    return this.currency().spendable;
  }

  get pending(): number {
    return this.currency().pending;
  }

  get qualifying(): number {
    return this.currency().qualifying;
  }

  get tier(): string | undefined {
    return this.state?.tierId;
  }

  outcomesOf<K extends Outcome['kind']>(kind: K, decision?: Decision): Extract<Outcome, { kind: K }>[] {
    const source = decision === undefined ? this.outcomes : decision.outcomes;
    return source.filter((outcome): outcome is Extract<Outcome, { kind: K }> => outcome.kind === kind);
  }

  private record(decision: Decision): void {
    this.last = decision;
    this.state = decision.state;
    this.ledger.push(...decision.ledger);
    this.outcomes.push(...decision.outcomes);
    if (this.state !== undefined) {
      const report = checkLedgerInvariant(this.state, this.ledger, this.program);
      if (!report.ok) throw new Error(`ledger invariant broken: ${report.problems.join('; ')}`);
    }
  }
}

export function purchase(id: string, occurredAt: string, amountMinor: number, extra: Record<string, unknown> = {}): EventInput {
  return { id, type: 'purchase', occurredAt, amountMinor, currency: 'EUR', ...extra };
}

export function item(sku: string, quantity: number, unitPriceMinor: number, category?: string): Record<string, unknown> {
  return category === undefined ? { sku, quantity, unitPriceMinor } : { sku, quantity, unitPriceMinor, category };
}

export function returnLines(id: string, occurredAt: string, orderId: string, lines: { sku: string; quantity: number }[]): EventInput {
  return { id, type: 'return', occurredAt, orderId, lines };
}

export function refund(id: string, occurredAt: string, orderId: string, amountMinor: number): EventInput {
  return { id, type: 'return', occurredAt, orderId, amountMinor };
}

export function redeem(id: string, occurredAt: string, rewardId: string, points: number, currency = 'points'): EventInput {
  return { id, type: 'redemption', occurredAt, rewardId, points, currency };
}

export function cancelRedemption(id: string, occurredAt: string, redemptionId: string): EventInput {
  return { id, type: 'redemption_cancel', occurredAt, redemptionId };
}

export function activity(id: string, occurredAt: string, kind: string, customType?: string): EventInput {
  return customType === undefined ? { id, type: 'activity', occurredAt, activity: kind } : { id, type: 'activity', occurredAt, activity: kind, customType };
}

export function adjust(
  id: string,
  occurredAt: string,
  direction: 'credit' | 'debit',
  points: number,
  extra: Record<string, unknown> = {},
): EventInput {
  return { id, type: 'adjustment', occurredAt, direction, points, currency: 'points', reason: 'goodwill', operator: 'ops@example.com', ...extra };
}
