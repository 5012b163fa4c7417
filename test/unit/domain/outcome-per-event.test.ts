import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseProgramText } from '../../../src/config/program-file.js';
import { applyEvent, unlimitedBudgets, validateEvent } from '../../../src/domain/index.js';

/** The contract: every accepted event has an outcome, even one that earned nothing. */
const program = parseProgramText(readFileSync(new URL('../../../config/programs/simple.yaml', import.meta.url), 'utf8'));

function apply(state: Parameters<typeof applyEvent>[0], body: Record<string, unknown>) {
  const validation = validateEvent(body);
  if (!validation.ok) throw new Error(validation.reason);
  return applyEvent(state, validation.event, validation.occurredAtMs, program, { budgets: unlimitedBudgets });
}

describe('an outcome per event', () => {
  it('answers a purchase too small to earn a point with a balance outcome of zero deltas', () => {
    const first = apply(undefined, { id: 'p1', memberId: 'ann', type: 'purchase', occurredAt: '2026-11-23T10:00:00Z', amountMinor: 1_000, currency: 'EUR' });
    const small = apply(first.state, { id: 'p2', memberId: 'ann', type: 'purchase', occurredAt: '2026-11-23T11:00:00Z', amountMinor: 50, currency: 'EUR' });
    expect(small.ledger).toEqual([]);
    expect(small.outcomes).toEqual([
      expect.objectContaining({ kind: 'balance', eventId: 'p2', memberId: 'ann', delta: 0, pendingDelta: 0, qualifyingDelta: 0, spendable: 10 }),
    ]);
  });
});
