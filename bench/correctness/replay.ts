import { performance } from 'node:perf_hooks';
import { unpack } from 'msgpackr';
import { loadProgramFile } from '../../src/config/program-file.js';
import {
  applyEvent,
  compileProgram,
  globalBudgetLimits,
  validateEvent,
  type BalanceOutcome,
  type BudgetLimit,
  type BudgetPort,
  type CompiledProgram,
  type Decision,
  type MemberState,
} from '../../src/domain/index.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import { payloadOf, type Spool, type SpoolChunk } from '../generator/spool.js';
import type { OutcomeCollector } from '../measure/outcomes.js';
import { bar, formatCount } from '../report/progress.js';

/** How often the replay's progress line is refreshed, and every how many wallets the comparison reports. */
const PROGRESS_INTERVAL_MS = 250;
const WALLET_PROGRESS_EVERY = 1_000;

/**
 * Correctness under load: the engine's results are compared with an
 * independent computation from the events the bench published.
 *
 * The computation runs the project's pure domain (src/domain applyEvent) in
 * this process over each member's events in stream order (the order they were
 * published on the member's subject), from the very bytes that were sent. It
 * shares the rules with the engine but nothing of its runtime: no actors,
 * batching, caches, LMDB, transport, ordering, redelivery or idempotency,
 * which is where a fast engine goes wrong under backlog.
 *
 * Two comparisons:
 * 1. every event's outcome as the engine published it: the rejection code, or
 *    the points currency's spendable, pending, qualifying and debt balances
 *    after the event (and no balance outcome where the domain has none);
 * 2. after the engine stopped, each member's wallet in the engine's LMDB
 *    (LmdbStore.member): status, tier, event count, every currency's
 *    balances and lifetime earned, and the sizes of orders, redemptions and
 *    vouchers, against the domain's final state.
 *
 * Global promotion budgets (retail's Cyber Week double points draw on one
 * budget of 50 million points for all members) are shared by all actor
 * threads, so which member's purchase got the last points depends on timing
 * across members and cannot be recomputed. The replay takes that one fact from
 * the engine: where the domain asks a global budget and the engine's outcome
 * shows it granted less (nothing, or the budget's remainder), the replay grants
 * the same, and then checks what only a correct engine satisfies: the grants
 * add up to no more than the budget, to exactly the budget once any purchase
 * was refused, and to what the engine committed in LMDB.
 *
 * Memory stays bounded: members are split into groups (rank modulo the number
 * of passes) and each pass re-reads the spool for one group.
 */

export interface ReplayOptions {
  spool: Spool;
  programFile: string;
  collector: OutcomeCollector;
  /** The engine's data directory after it stopped, for the wallet comparison; null: outcomes only. */
  dataDir: string | null;
  /** Whether every event got through the engine; if not, missing outcomes are expected and wallets are not compared. */
  runComplete: boolean;
  membersPerPass?: number;
  onProgress?: (text: string) => void;
}

export interface BudgetCheck {
  promotionId: string;
  limitPoints: number | null;
  limitUses: number | null;
  /** Points and uses the replay granted, following the engine where the budget was short. */
  grantedPoints: number;
  grantedUses: number;
  /** Purchases that asked and got all they asked, nothing, or part of it. */
  fullGrants: number;
  refused: number;
  partial: number;
  /** What the engine committed to LMDB (null when not read). */
  engineCommittedPoints: number | null;
  engineCommittedUses: number | null;
  problems: string[];
}

export interface Mismatch {
  eventIndex: number;
  memberId: string;
  type: string;
  what: string;
  expected: string;
  engine: string;
}

export interface CorrectnessResult {
  checked: boolean;
  passed: boolean;
  /** Which checks ran, for the report. */
  method: string;
  note: string;
  eventsChecked: number;
  /** Events the domain refuses, by code (the engine must refuse the same). */
  expectedRejections: Record<string, number>;
  /** Events with a wrong outcome: rejection code or balances. */
  outcomeMismatches: number;
  /** Events the domain gives an outcome but the engine published none for (or never processed). */
  missingOutcomes: number;
  /** Generated events the domain's schema refuses (must be 0: the engine would dead-letter them). */
  invalidEvents: number;
  membersChecked: number;
  walletsCompared: number;
  walletMismatches: number;
  budgets: BudgetCheck[];
  passes: number;
  durationMs: number;
  samples: Mismatch[];
}

export function skippedCorrectness(note: string): CorrectnessResult {
  return {
    checked: false,
    passed: true,
    method: 'none',
    note,
    eventsChecked: 0,
    expectedRejections: {},
    outcomeMismatches: 0,
    missingOutcomes: 0,
    invalidEvents: 0,
    membersChecked: 0,
    walletsCompared: 0,
    walletMismatches: 0,
    budgets: [],
    passes: 0,
    durationMs: 0,
    samples: [],
  };
}

const SAMPLES_MAX = 20;

/** How the replay answers global budget requests while it tries to match the engine. */
class OracleBudgets implements BudgetPort {
  /**
   * 'auto': grant what is asked, or nothing when the engine refused this
   * promotion's previous request (once a budget is spent, every later one is
   * refused: trying that first saves a second pass over most events);
   * 'full': what is asked; a number: at most that.
   */
  grant: 'auto' | 'full' | number = 'auto';
  readonly requests: { promotionId: string; points: number; granted: number }[] = [];
  private readonly lastRefused = new Map<string, boolean>();

  tryConsume(promotionId: string, points: number): number {
    const granted =
      this.grant === 'auto' ? (this.lastRefused.get(promotionId) === true ? 0 : points) : this.grant === 'full' ? points : Math.min(points, this.grant);
    this.requests.push({ promotionId, points, granted });
    return granted;
  }

  release(): void {
    // The replay never drops a decision it took budget for.
  }

  reset(grant: 'auto' | 'full' | number): void {
    this.grant = grant;
    this.requests.length = 0;
  }

  /** Remembers what the engine did with the requests of the decision kept. */
  settle(): void {
    for (const request of this.requests) this.lastRefused.set(request.promotionId, request.granted < request.points);
  }
}

interface EngineView {
  done: boolean;
  rejection: string | undefined;
  hasBalance: boolean;
  spendable: number;
  pending: number;
  qualifying: number;
  debt: number;
}

export async function replayAndCompare(options: ReplayOptions): Promise<CorrectnessResult> {
  const started = performance.now();
  const { spool, collector } = options;
  const program = loadProgramFile(options.programFile);
  const compiled = compileProgram(program);
  const pointsCurrency = program.earn.currency ?? program.currencies[0]!.id;
  const limits = globalBudgetLimits(program);
  const budgets = new Map<string, BudgetCheck>(
    Object.entries(limits).map(([promotionId, limit]: [string, BudgetLimit]) => [
      promotionId,
      {
        promotionId,
        limitPoints: limit.points ?? null,
        limitUses: limit.uses ?? null,
        grantedPoints: 0,
        grantedUses: 0,
        fullGrants: 0,
        refused: 0,
        partial: 0,
        engineCommittedPoints: null,
        engineCommittedUses: null,
        problems: [],
      },
    ]),
  );
  const oracle = new OracleBudgets();
  const ports = { budgets: oracle };
  const membersPerPass = options.membersPerPass ?? 200_000;
  const passes = Math.max(1, Math.ceil(spool.facts.distinctMembers / membersPerPass));
  const store = options.dataDir !== null && options.runComplete ? new LmdbStore({ dataDir: options.dataDir, mapSizeBytes: 64 * 1024 ** 3 }) : null;
  const result = skippedCorrectness('');
  result.checked = true;
  result.passes = passes;
  result.method =
    'domain replay (src/domain applyEvent per member in stream order, in the bench process) compared with every event\'s published outcome' +
    (store === null ? '' : ', and with each member\'s wallet read from the engine\'s LMDB after it stopped');
  const sample = (mismatch: Mismatch): void => {
    if (result.samples.length < SAMPLES_MAX) result.samples.push(mismatch);
  };

  const engineView = (index: number): EngineView => ({
    done: collector.isDone(index),
    rejection: collector.rejectionOf(index),
    hasBalance: collector.hadBalance(index),
    spendable: collector.spendable[index]!,
    pending: collector.pending[index]!,
    qualifying: collector.qualifying[index]!,
    debt: collector.debt[index]!,
  });

  // A bar over every chunk of every pass, the rate so far, and the phase: the replay of a large run takes minutes.
  const steps = passes * spool.chunks.length;
  let lastProgressMs = 0;
  const progressOf = (step: number, what: string): void => {
    const now = performance.now();
    if (options.onProgress === undefined || now - lastProgressMs < PROGRESS_INTERVAL_MS) return;
    lastProgressMs = now;
    const rate = result.eventsChecked / Math.max(0.001, (now - started) / 1000);
    options.onProgress(`${bar(step / steps)} correctness ${what} (${formatCount(rate)} events/s, ${((now - started) / 1000).toFixed(0)} s)`);
  };
  try {
    for (let pass = 0; pass < passes; pass++) {
      const states = new Map<number, MemberState | undefined>();
      let chunkNumber = 0;
      for await (const chunk of spool.readAll()) {
        chunkNumber += 1;
        progressOf(pass * spool.chunks.length + chunkNumber, `pass ${pass + 1}/${passes}: replaying, ${formatCount(result.eventsChecked)} events checked`);
        for (let position = 0; position < chunk.count; position++) {
          const rank = chunk.memberRanks[position]!;
          if (rank % passes !== pass) continue;
          const index = chunk.start + position;
          const decoded = decode(chunk, position, spool.encoding);
          const validation = validateEvent(decoded);
          result.eventsChecked += 1;
          if (!validation.ok) {
            result.invalidEvents += 1;
            sample({ eventIndex: index, memberId: spool.memberIdOfRank(rank), type: '?', what: 'schema', expected: 'a valid event', engine: validation.reason });
            continue;
          }
          const { event, occurredAtMs } = validation;
          const current = states.get(rank);
          const engine = engineView(index);
          const decision = decide(compiled, current, event, occurredAtMs, ports, oracle, engine, pointsCurrency, budgets);
          states.set(rank, decision.state ?? current);
          const rejected = decision.outcomes.find((outcome) => outcome.kind === 'rejected');
          if (rejected !== undefined) result.expectedRejections[rejected.code] = (result.expectedRejections[rejected.code] ?? 0) + 1;
          if (!engine.done) {
            if (decision.outcomes.length > 0 && options.runComplete) {
              result.missingOutcomes += 1;
              sample({ eventIndex: index, memberId: event.memberId, type: event.type, what: 'outcome', expected: describeDecision(decision, pointsCurrency), engine: 'none' });
            }
            continue;
          }
          const difference = compareOutcome(decision, engine, pointsCurrency);
          if (difference !== null) {
            result.outcomeMismatches += 1;
            sample({ eventIndex: index, memberId: event.memberId, type: event.type, what: difference, expected: describeDecision(decision, pointsCurrency), engine: describeEngine(engine) });
          }
        }
      }
      result.membersChecked += states.size;
      if (store !== null) {
        let compared = 0;
        for (const [rank, state] of states) {
          if (++compared % WALLET_PROGRESS_EVERY === 0) {
            progressOf((pass + 1) * spool.chunks.length, `pass ${pass + 1}/${passes}: comparing wallets ${formatCount(compared)}/${formatCount(states.size)}`);
          }
          const memberId = spool.memberIdOfRank(rank);
          const stored = store.member(memberId);
          result.walletsCompared += 1;
          const difference = compareWallet(state, stored);
          if (difference !== null) {
            result.walletMismatches += 1;
            sample({ eventIndex: -1, memberId, type: 'wallet', what: difference.what, expected: difference.expected, engine: difference.engine });
          }
        }
      }
    }
    if (store !== null) {
      for (const [promotionId, committed] of store.budgetTotals()) {
        const check = budgets.get(promotionId);
        if (check === undefined) continue;
        check.engineCommittedPoints = committed.points;
        check.engineCommittedUses = committed.uses;
      }
    }
  } finally {
    await store?.close();
  }

  for (const check of budgets.values()) {
    const short = check.refused + check.partial > 0;
    if (check.limitPoints !== null && check.grantedPoints > check.limitPoints) check.problems.push(`granted ${check.grantedPoints} points, over the budget of ${check.limitPoints}`);
    if (check.limitUses !== null && check.grantedUses > check.limitUses) check.problems.push(`granted ${check.grantedUses} uses, over the budget of ${check.limitUses}`);
    if (short && options.runComplete) {
      const exhausted =
        (check.limitPoints !== null && check.grantedPoints === check.limitPoints) || (check.limitUses !== null && check.grantedUses === check.limitUses);
      if (!exhausted) check.problems.push(`the engine refused ${check.refused + check.partial} grants while ${check.grantedPoints} points / ${check.grantedUses} uses were granted: the budget was not spent`);
    }
    if (check.engineCommittedPoints !== null && check.engineCommittedPoints !== check.grantedPoints) {
      check.problems.push(`the engine committed ${check.engineCommittedPoints} points of this budget, its outcomes add up to ${check.grantedPoints}`);
    }
  }
  const budgetProblems = [...budgets.values()].reduce((sum, check) => sum + check.problems.length, 0);
  result.budgets = [...budgets.values()];
  result.passed =
    result.outcomeMismatches === 0 && result.missingOutcomes === 0 && result.invalidEvents === 0 && result.walletMismatches === 0 && budgetProblems === 0;
  result.note =
    `${result.eventsChecked.toLocaleString('en-US')} events of ${result.membersChecked.toLocaleString('en-US')} members replayed in ${passes} pass(es)` +
    (store === null ? (options.runComplete ? '; wallets not read (no data directory)' : '; wallets not compared: the run did not complete') : '');
  result.durationMs = Math.round(performance.now() - started);
  return result;
}

function decode(chunk: SpoolChunk, position: number, encoding: 'json' | 'msgpack'): unknown {
  const payload = payloadOf(chunk, position);
  return encoding === 'json' ? JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8')) : unpack(payload);
}

/**
 * The domain's decision for one event. Where it draws on a global promotion
 * budget and the engine shows a smaller grant, the grant the engine made is
 * found (nothing, else the one partial amount that matches) and used.
 */
function decide(
  program: CompiledProgram,
  current: MemberState | undefined,
  event: Parameters<typeof applyEvent>[1],
  occurredAtMs: number,
  ports: { budgets: OracleBudgets },
  oracle: OracleBudgets,
  engine: EngineView,
  pointsCurrency: string,
  budgets: Map<string, BudgetCheck>,
): Decision {
  oracle.reset('auto');
  let decision = applyEvent(current, event, occurredAtMs, program, ports);
  if (oracle.requests.length === 0) return decision;
  const first = oracle.requests[0]!;
  // Only one global budget per event can be solved for; the engine's outcome is needed to know what it granted.
  if (oracle.requests.length === 1 && engine.done && compareOutcome(decision, engine, pointsCurrency) !== null) {
    const apply = (grant: 'full' | number): Decision => {
      oracle.reset(grant);
      return applyEvent(current, event, occurredAtMs, program, ports);
    };
    const other = apply(first.granted === 0 ? 'full' : 0);
    if (compareOutcome(other, engine, pointsCurrency) === null) decision = other;
    else {
      // The budget's last points: the grant is between 1 and what was asked; the balances grow with it.
      const target = measure(engine.spendable, engine.pending, engine.qualifying, engine.debt);
      let low = 1;
      let high = Math.max(1, first.points - 1);
      while (low < high) {
        const middle = Math.floor((low + high) / 2);
        if (measureDecision(apply(middle), pointsCurrency) < target) low = middle + 1;
        else high = middle;
      }
      const partial = apply(low);
      // Nothing matches: keep the full grant and let the comparison report the event.
      decision = compareOutcome(partial, engine, pointsCurrency) === null ? partial : apply('full');
    }
  }
  oracle.settle();
  for (const request of oracle.requests) {
    const check = budgets.get(request.promotionId);
    if (check === undefined) continue;
    check.grantedPoints += request.granted;
    if (request.granted > 0) check.grantedUses += 1;
    if (request.granted === request.points) check.fullGrants += 1;
    else if (request.granted === 0) check.refused += 1;
    else check.partial += 1;
  }
  return decision;
}

function measure(spendable: number, pending: number, qualifying: number, debt: number): number {
  return spendable + pending + qualifying - debt;
}

function measureDecision(decision: Decision, pointsCurrency: string): number {
  const balance = balanceOf(decision, pointsCurrency);
  return balance === undefined ? Number.NEGATIVE_INFINITY : measure(balance.spendable, balance.pending, balance.qualifying, balance.debt);
}

function balanceOf(decision: Decision, pointsCurrency: string): BalanceOutcome | undefined {
  for (const outcome of decision.outcomes) if (outcome.kind === 'balance' && outcome.currency === pointsCurrency) return outcome;
  return undefined;
}

/** null when the engine's outcome matches the decision; else what differs. */
export function compareOutcome(decision: Decision, engine: EngineView, pointsCurrency: string): string | null {
  const rejected = decision.outcomes.find((outcome) => outcome.kind === 'rejected');
  const expectedCode = rejected?.kind === 'rejected' ? rejected.code : undefined;
  if (expectedCode !== engine.rejection) return 'rejection';
  const balance = balanceOf(decision, pointsCurrency);
  if (balance === undefined) return engine.hasBalance ? 'unexpected balance outcome' : null;
  if (!engine.hasBalance) return 'no balance outcome';
  if (balance.spendable !== engine.spendable) return 'spendable';
  if (balance.pending !== engine.pending) return 'pending';
  if (balance.qualifying !== engine.qualifying) return 'qualifying';
  if (balance.debt !== engine.debt) return 'debt';
  return null;
}

function describeDecision(decision: Decision, pointsCurrency: string): string {
  const rejected = decision.outcomes.find((outcome) => outcome.kind === 'rejected');
  if (rejected?.kind === 'rejected') return `rejected ${rejected.code}`;
  const balance = balanceOf(decision, pointsCurrency);
  if (balance === undefined) return decision.outcomes.length === 0 ? 'no outcome' : `no balance outcome (${decision.outcomes.map((outcome) => outcome.kind).join(', ')})`;
  return `spendable ${balance.spendable}, pending ${balance.pending}, qualifying ${balance.qualifying}, debt ${balance.debt}`;
}

function describeEngine(engine: EngineView): string {
  if (engine.rejection !== undefined) return `rejected ${engine.rejection}`;
  if (!engine.hasBalance) return 'no balance outcome';
  return `spendable ${engine.spendable}, pending ${engine.pending}, qualifying ${engine.qualifying}, debt ${engine.debt}`;
}

/** The parts of a member's state a wallet shows, in a form that compares with ===. */
export function walletOf(state: MemberState): Record<string, string | number> {
  const wallet: Record<string, string | number> = {
    status: state.status,
    tierId: state.tierId,
    eventCount: state.eventCount,
    ledgerSeq: state.ledgerSeq,
    orders: state.orders.length,
    redemptions: state.redemptions.length,
    vouchers: state.vouchers.length,
  };
  for (const [id, currency] of Object.entries(state.currencies)) {
    wallet[`${id}.spendable`] = currency.spendable;
    wallet[`${id}.pending`] = currency.pending;
    wallet[`${id}.qualifying`] = currency.qualifying;
    wallet[`${id}.debt`] = currency.debt;
    wallet[`${id}.lifetimeEarned`] = currency.lifetimeEarned;
  }
  return wallet;
}

export function compareWallet(
  expected: MemberState | undefined,
  stored: MemberState | undefined,
): { what: string; expected: string; engine: string } | null {
  if (expected === undefined || stored === undefined) {
    return expected === stored ? null : { what: 'member', expected: expected === undefined ? 'absent' : 'present', engine: stored === undefined ? 'absent' : 'present' };
  }
  const want = walletOf(expected);
  const have = walletOf(stored);
  for (const key of new Set([...Object.keys(want), ...Object.keys(have)])) {
    if (want[key] !== have[key]) return { what: key, expected: String(want[key]), engine: String(have[key]) };
  }
  return null;
}
