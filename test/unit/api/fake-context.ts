import { readFileSync } from 'node:fs';
import { ConfigError } from '../../../src/config/errors.js';
import { parseProgramText } from '../../../src/config/program-file.js';
import { loadSettings, type Settings } from '../../../src/config/settings.js';
import { applyEvent, createMemoryBudgets, globalBudgetLimits, type LedgerEntry, type LoyaltyEvent, type MemberState, type Program } from '../../../src/domain/index.js';
import type {
  ApiContext,
  EventSubmitter,
  LedgerPage,
  LedgerQuery,
  MemberReads,
  ProgramCheck,
  ProgramManager,
  ReportPeriod,
  ReportReader,
  ReportRow,
  SubmitResult,
} from '../../../src/api/context.js';
import { PROJECT_ROOT } from '../../helpers/engine-process.js';
import type { ProgramReportRow } from '../../../src/reports/report.js';

/**
 * An in-memory engine behind ApiContext: reads, a submitter that applies
 * events with the real domain (like the actor would), programs and reports.
 */

export const TOKENS = {
  read: 'read-token-0123456789abcdef',
  write: 'write-token-0123456789abcdef',
  admin: 'admin-token-0123456789abcdef',
};
export const TOKEN_LIST = `read:${TOKENS.read},write:${TOKENS.write}:alice,admin:${TOKENS.admin}:root`;

export const auth = (role: keyof typeof TOKENS) => ({ authorization: `Bearer ${TOKENS[role]}` });

export function programText(name = 'simple'): string {
  return readFileSync(`${PROJECT_ROOT}/config/programs/${name}.yaml`, 'utf8');
}

type Listener = (outcome: Record<string, unknown>) => void;

export class FakeEngine implements MemberReads, EventSubmitter, ProgramManager, ReportReader {
  readonly states = new Map<string, MemberState>();
  readonly ledgers = new Map<string, LedgerEntry[]>();
  readonly firstOutcomes = new Map<string, Record<string, unknown>[]>();
  readonly submitted: LoyaltyEvent[] = [];
  readonly listeners = new Map<string, Set<Listener>>();
  /** apply: like the engine; accept: stored, never applied (waits time out); fail: publish fails. */
  mode: 'apply' | 'accept' | 'fail' = 'apply';
  sequence = 0;
  program: Program;
  since = { atMs: Date.parse('2026-11-01T00:00:00Z'), source: 'file' as 'file' | 'api' };
  kpiCalls: { period: ReportPeriod; fromMs: number; toMs: number }[] = [];
  private readonly budgets;

  constructor(programName = 'simple') {
    this.program = parseProgramText(programText(programName));
    this.budgets = createMemoryBudgets(globalBudgetLimits(this.program));
  }

  // ---- MemberReads ----
  member(memberId: string): MemberState | undefined {
    return this.states.get(memberId);
  }

  ledger(memberId: string, query: LedgerQuery): LedgerPage {
    const matching = (this.ledgers.get(memberId) ?? []).filter(
      (entry) =>
        entry.seq > query.afterSeq &&
        (query.kinds === undefined || query.kinds.includes(entry.kind)) &&
        (query.fromMs === undefined || entry.occurredAtMs >= query.fromMs) &&
        (query.toMs === undefined || entry.occurredAtMs < query.toMs),
    );
    const entries = matching.slice(0, query.limit);
    return { entries, nextAfterSeq: matching.length > query.limit ? entries[entries.length - 1]!.seq : undefined };
  }

  // ---- EventSubmitter ----
  async submit(event: LoyaltyEvent, options: { readonly waitMs?: number } = {}): Promise<SubmitResult> {
    if (this.mode === 'fail') throw new Error('no responders available for request');
    const key = `${event.memberId}:${event.id}`;
    const duplicate = this.submitted.some((previous) => `${previous.memberId}:${previous.id}` === key);
    this.submitted.push(event);
    this.sequence += 1;
    const sequence = this.sequence;
    if (this.mode === 'accept') {
      return { eventId: event.id, sequence, duplicate, ...(options.waitMs ? { outcomes: [], timedOut: true } : {}) };
    }
    const outcomes = this.apply(event);
    const listeners = this.listeners.get(key);
    if (listeners !== undefined) setImmediate(() => outcomes.forEach((outcome) => [...listeners].forEach((listener) => listener(outcome))));
    return { eventId: event.id, sequence, duplicate, ...(options.waitMs ? { outcomes } : {}) };
  }

  trackOutcomes(memberId: string, eventId: string, listener: Listener): () => void {
    const key = `${memberId}:${eventId}`;
    let set = this.listeners.get(key);
    if (set === undefined) this.listeners.set(key, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(key);
    };
  }

  /** Applies like the actor: the first outcome again for a known id. */
  apply(event: LoyaltyEvent): Record<string, unknown>[] {
    const key = `${event.memberId}:${event.id}`;
    const first = this.firstOutcomes.get(key);
    if (first !== undefined) return first;
    const decision = applyEvent(this.states.get(event.memberId), event, Date.parse(event.occurredAt), this.program, { budgets: this.budgets });
    if (decision.state !== undefined) this.states.set(event.memberId, decision.state);
    const ledger = this.ledgers.get(event.memberId) ?? [];
    ledger.push(...decision.ledger);
    this.ledgers.set(event.memberId, ledger);
    const outcomes = decision.outcomes.map((outcome) => ({ ...outcome }) as Record<string, unknown>);
    this.firstOutcomes.set(key, outcomes);
    return outcomes;
  }

  // ---- ProgramManager ----
  active(): Program {
    return this.program;
  }

  activeSince(): { atMs: number; source: 'file' | 'api' } {
    return this.since;
  }

  validate(text: string): ProgramCheck {
    try {
      return { ok: true, program: parseProgramText(text, 'program') };
    } catch (error) {
      if (error instanceof ConfigError) return { ok: false, errors: error.fields };
      throw error;
    }
  }

  async activate(text: string): Promise<ProgramCheck> {
    const check = this.validate(text);
    if (check.ok) {
      this.program = check.program;
      this.since = { atMs: Date.now(), source: 'api' };
    }
    return check;
  }

  // ---- ReportReader ----
  kpis(period: ReportPeriod, fromMs: number, toMs: number): readonly ReportRow[] {
    this.kpiCalls.push({ period, fromMs, toMs });
    const row = (day: string, issued: number): ReportRow => ({
      period: day,
      currency: 'points',
      pointsIssued: issued,
      pointsRedeemed: 10,
      pointsExpired: 0,
      pointsAdjusted: 5,
      pointsClawedBack: 0,
      liabilityPoints: 1000,
      liabilityMinor: 1000,
      activeMembers: 3,
      enrollments: 1,
      redemptions: 1,
      redemptionRate: 10 / issued,
      breakageRate: 0,
      breakageRateLifetime: 0,
      liabilityNetPoints: 1000,
      liabilityNetMinor: 1000,
      tierDistribution: day === '2026-11-01' ? { member: 2, gold: 1 } : { member: 2, silver: 1 },
      tierMovements: { upgrades: 1, downgrades: 0 },
      promotions: [{ promotionId: 'double', points: 40, uses: 2 }],
    });
    return [row('2026-11-01', 100), row('2026-11-02', 200)];
  }

  programKpis(period: ReportPeriod, fromMs: number, toMs: number): readonly ProgramReportRow[] {
    this.kpiCalls.push({ period, fromMs, toMs });
    return [
      {
        period: '2026-11-01',
        orders: 4,
        revenueMinor: 10_000,
        averageOrderMinor: 2_500,
        ordersWithPoints: 1,
        revenueWithPointsMinor: 4_000,
        averageOrderWithPointsMinor: 4_000,
        ordersWithoutPoints: 3,
        revenueWithoutPointsMinor: 6_000,
        averageOrderWithoutPointsMinor: 2_000,
        returns: 1,
        returnedMinor: 1_000,
        returnRate: 0.25,
        activeMembers: 3,
        orderFrequency: 4 / 3,
        purchasers: 3,
        repeatPurchasers: 1,
        repeatPurchaseRate: 1 / 3,
        members: 5,
        enrollments: 2,
        unenrollments: 1,
        lapsed: 0,
        reactivated: 0,
        inactiveMembers: 0,
        churned: 1,
        churnRate: 0.25,
        retentionRate: 0.75,
        paidMemberships: [{ planId: 'plus', members: 2, joined: 1, renewed: 1, switched: 0, lapsed: 0, cancelled: 0, feesMinor: 9_800 }],
        donations: [{ causeId: 'trees', currency: 'points', points: 500, donations: 2, valueMinor: 500 }],
        badges: { 'first-order': 2 },
      },
    ];
  }
}

export function testSettings(overrides: Record<string, unknown> = {}): Settings {
  return loadSettings({}, { apiTokens: TOKEN_LIST, actors: 1, ...overrides });
}

export function fakeContext(engine: FakeEngine, settings: Settings = testSettings()): ApiContext {
  return {
    settings,
    reads: engine,
    submitter: engine,
    programs: engine,
    reports: engine,
    health: () => ({ ok: true, detail: { consuming: true } }),
  };
}

export function purchase(memberId: string, id: string, amountMinor: number, occurredAt = '2026-11-20T10:00:00Z'): LoyaltyEvent {
  return { id, memberId, type: 'purchase', occurredAt, amountMinor, currency: 'EUR' } as LoyaltyEvent;
}
