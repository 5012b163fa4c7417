import type { KV } from '@nats-io/kv';
import { createBudgetLayout, SharedBudgets, type BudgetLayout } from '../actors/budgets.js';
import { BudgetReservations, type BudgetLimits, type Reservation } from '../cluster/budget-reservations.js';
import { ClusterProgram } from '../cluster/program-sync.js';
import { assert } from '../domain/assert.js';
import { globalBudgetLimits, type BudgetLimit } from '../domain/ports.js';
import type { Program } from '../domain/program.js';
import type { Logger } from '../log.js';
import type { EngineProgramManager } from './program-manager.js';

/**
 * Cluster mode's two global pieces in `loyalty start` (docs/cluster.md,
 * "Budgets and the program across instances"):
 *
 * - promotion budgets exact across instances: the actors keep drawing from
 *   their SharedArrayBuffer slots (src/actors/budgets.ts), whose limit is what
 *   this instance reserved of the cluster's KV counter
 *   (src/cluster/budget-reservations.ts). `ClusterBudgets`, on the main
 *   thread, watches the slots and reserves the next chunk before the current
 *   one runs out, so no event waits for NATS; an exhausted allowance is "out
 *   of budget" until a chunk comes, never an over-spend.
 * - one program for every instance: an activation writes the cluster's key
 *   (src/cluster/program-sync.ts), and every instance switches when its watch
 *   delivers the key, through the engine's exclusive path (no batch in flight).
 */

/** How often the slots are looked at: a refill is asked within this of the need, plus a KV round trip. */
const POLL_MS = 10;
/** The draw of this many polls is what a refill aims to hold (so a chunk lasts over a round trip under load). */
const AHEAD_POLLS = 4;
/** A promotion nothing drew from or was refused by for this long is idle. */
const IDLE_MS = 2_000;
/** After the cluster's budget was found fully reserved, ask again this often (an instance may give some back). */
const SPENT_RECHECK_MS = 500;
/** Asking again after a failed reservation (NATS away): doubling from the first, up to the last. */
const RETRY_MS_MIN = 100;
const RETRY_MS_MAX = 5_000;
/** A failure is logged at once, then at most this often while it lasts. */
const WARN_EVERY_MS = 30_000;
/** At stop or a program switch, how long giving back may take before what is left stays reserved (never spent). */
const GIVE_BACK_WAIT_MS = 10_000;

export interface ClusterBudgetsOptions {
  /** The cluster's counters (BudgetReservations). */
  readonly reservations: Pick<BudgetReservations, 'reserve' | 'giveBack' | 'reserved'>;
  /** The program's global budgets (globalBudgetLimits), keyed by promotion id: the slots' promotions. */
  readonly limits: Readonly<Record<string, BudgetLimit>>;
  /** A chunk is 1/this of a promotion's budget (settings.clusterBudgetChunks). */
  readonly chunks: number;
  readonly logger: Logger;
  readonly pollMs?: number;
  readonly now?: () => number;
}

interface Tracked {
  readonly id: string;
  readonly limits: BudgetLimits;
  readonly chunk: Reservation;
  lastUsedPoints: number;
  lastUsedUses: number;
  lastRefused: number;
  lastDemandAtMs: number;
  /** The last reservation got nothing of a kind it asked for: the cluster's budget is all reserved. */
  spentOut: boolean;
  retryAtMs: number;
  /** While idle and holding an allowance: when to look whether the cluster's budget is all reserved. */
  idleCheckAtMs: number;
  failures: number;
  lastWarnedAtMs: number;
  busy: Promise<void> | undefined;
}

/**
 * Keeps each promotion's local allowance (the slot's limit minus its usage)
 * at about a chunk, or at what the actors draw in AHEAD_POLLS polls when that
 * is more, by reserving from the cluster ahead of need: the unspent allowance
 * stays below two such amounts. An allowance nobody draws from while the
 * cluster's budget is all reserved (found by its own reservation coming back
 * empty, or by looking at the counter every IDLE_MS while idle) is given back,
 * as another instance's actors may be refused meanwhile, and is taken again
 * if demand returns here. `stop`
 * gives everything unspent back; a crash leaves it reserved: the cluster
 * then spends less than its budget by at most that, never more.
 */
export class ClusterBudgets {
  private readonly tracked: Tracked[];
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Reserved and given back so far (for the log and tests). */
  readonly totals = { reservations: 0, reservedPoints: 0, reservedUses: 0, givenBackPoints: 0, givenBackUses: 0 };

  constructor(
    readonly budgets: SharedBudgets,
    private readonly options: ClusterBudgetsOptions,
  ) {
    assert(Number.isSafeInteger(options.chunks) && options.chunks >= 1, 'chunks must be a positive integer');
    this.now = options.now ?? Date.now;
    const nowMs = this.now();
    this.tracked = budgets.ids.map((id) => {
      const limit = options.limits[id];
      assert(limit !== undefined, `promotion ${id} has a budget slot but no global budget`);
      const limits: BudgetLimits = { points: limit.points ?? null, uses: limit.uses ?? null };
      const standing = budgets.standing(id);
      return {
        id,
        limits,
        chunk: { points: limits.points === null ? 0 : Math.max(1, Math.ceil(limits.points / options.chunks)), uses: limits.uses === null ? 0 : Math.max(1, Math.ceil(limits.uses / options.chunks)) },
        lastUsedPoints: standing.usedPoints,
        lastUsedUses: standing.usedUses,
        lastRefused: standing.refused,
        // New: as if just in demand, so the first chunk is reserved before the first event.
        lastDemandAtMs: nowMs,
        spentOut: false,
        retryAtMs: 0,
        idleCheckAtMs: 0,
        failures: 0,
        lastWarnedAtMs: 0,
        busy: undefined,
      };
    });
  }

  /** Reserves every promotion's first chunk (before intake, or before a switched program's first batch); failures are left to the polls. */
  async fill(): Promise<void> {
    await Promise.all(this.tracked.map((tracked) => this.refill(tracked, tracked.chunk)));
  }

  start(): void {
    assert(this.timer === undefined && !this.stopped, 'ClusterBudgets started once');
    this.timer = setInterval(() => void this.poll(), this.options.pollMs ?? POLL_MS);
    this.timer.unref();
  }

  /**
   * No more refills; what is unspent is withdrawn from the slots (a take after
   * it is refused) and given back. Call it when no batch is in flight (stop,
   * the exclusive path of a program switch): then the usage is committed and
   * nothing is given back that a batch still holds. Does not throw: what
   * cannot be given back in time stays reserved, and is never spent.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await Promise.allSettled(this.tracked.map((tracked) => tracked.busy));
    const giving = Promise.allSettled(this.tracked.map((tracked) => this.giveBack(tracked)));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), GIVE_BACK_WAIT_MS)));
    const outcome = await Promise.race([giving, late]);
    clearTimeout(timer);
    if (outcome === 'late') this.options.logger.warn({ waitedMs: GIVE_BACK_WAIT_MS }, 'cluster budgets: unspent reservations not all given back in time (NATS away?); what is left stays reserved and is never spent');
    else if (this.tracked.length > 0) this.options.logger.info({ promotions: this.tracked.map((tracked) => tracked.id), ...this.totals }, 'cluster budgets: unspent reservations given back');
  }

  /**
   * One look at every slot: refill what runs low, give back what idles while
   * others may be refused. Resolves when the work it started is done (the
   * timer does not wait for it; tests do).
   */
  poll(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const nowMs = this.now();
    const started: Promise<void>[] = [];
    for (const tracked of this.tracked) {
      const standing = this.budgets.standing(tracked.id);
      const drawnPoints = Math.max(0, standing.usedPoints - tracked.lastUsedPoints);
      const drawnUses = Math.max(0, standing.usedUses - tracked.lastUsedUses);
      const refused = standing.refused > tracked.lastRefused;
      tracked.lastUsedPoints = standing.usedPoints;
      tracked.lastUsedUses = standing.usedUses;
      tracked.lastRefused = standing.refused;
      if (drawnPoints > 0 || drawnUses > 0 || refused) tracked.lastDemandAtMs = nowMs;
      if (tracked.busy !== undefined || nowMs < tracked.retryAtMs) continue;
      const idle = nowMs - tracked.lastDemandAtMs >= IDLE_MS;
      const leftPoints = standing.limitPoints === null ? Infinity : standing.limitPoints - standing.usedPoints;
      const leftUses = standing.limitUses === null ? Infinity : standing.limitUses - standing.usedUses;
      const holding = (leftPoints > 0 && leftPoints !== Infinity) || (leftUses > 0 && leftUses !== Infinity);
      if (idle && tracked.spentOut) {
        // Held here while nobody draws, and maybe wanted elsewhere: back to the cluster.
        if (holding) started.push((tracked.busy = this.track(tracked, this.giveBack(tracked))));
        continue;
      }
      if (idle && holding && nowMs >= tracked.idleCheckAtMs) {
        tracked.idleCheckAtMs = nowMs + IDLE_MS;
        started.push((tracked.busy = this.track(tracked, this.checkSpent(tracked))));
        continue;
      }
      const targetPoints = tracked.limits.points === null ? 0 : Math.max(tracked.chunk.points, AHEAD_POLLS * drawnPoints);
      const targetUses = tracked.limits.uses === null ? 0 : Math.max(tracked.chunk.uses, AHEAD_POLLS * drawnUses);
      const want: Reservation = { points: leftPoints < targetPoints ? targetPoints : 0, uses: leftUses < targetUses ? targetUses : 0 };
      if (want.points === 0 && want.uses === 0) continue;
      started.push((tracked.busy = this.track(tracked, this.refill(tracked, want))));
    }
    return Promise.all(started).then(() => undefined);
  }

  private track(tracked: Tracked, work: Promise<void>): Promise<void> {
    return work.finally(() => (tracked.busy = undefined));
  }

  private async refill(tracked: Tracked, want: Reservation): Promise<void> {
    const wanted: Reservation = { points: tracked.limits.points === null ? 0 : want.points, uses: tracked.limits.uses === null ? 0 : want.uses };
    if (wanted.points === 0 && wanted.uses === 0) return;
    try {
      const granted = await this.options.reservations.reserve(tracked.id, tracked.limits, wanted);
      // Stopped while the answer was on its way: give it straight back, the slots are no longer drawn from.
      if (this.stopped) {
        await this.options.reservations.giveBack(tracked.id, granted);
        return;
      }
      this.budgets.grant(tracked.id, granted.points, granted.uses);
      this.totals.reservations += 1;
      this.totals.reservedPoints += granted.points;
      this.totals.reservedUses += granted.uses;
      tracked.failures = 0;
      tracked.spentOut = (wanted.points > 0 && granted.points === 0) || (wanted.uses > 0 && granted.uses === 0);
      tracked.retryAtMs = tracked.spentOut ? this.now() + SPENT_RECHECK_MS : 0;
    } catch (error) {
      this.failed(tracked, 'reserve', error);
    }
  }

  /** Whether the cluster's budget is all reserved (by any instance): then what idles here is given back at the next poll. */
  private async checkSpent(tracked: Tracked): Promise<void> {
    try {
      const reserved = await this.options.reservations.reserved(tracked.id);
      const { points, uses } = tracked.limits;
      tracked.spentOut = (points !== null && reserved.points >= points) || (uses !== null && reserved.uses >= uses);
    } catch (error) {
      this.failed(tracked, 'read', error);
    }
  }

  private async giveBack(tracked: Tracked): Promise<void> {
    const unspent = this.budgets.withdraw(tracked.id);
    if (unspent.points === 0 && unspent.uses === 0) return;
    try {
      await this.options.reservations.giveBack(tracked.id, unspent);
      this.totals.givenBackPoints += unspent.points;
      this.totals.givenBackUses += unspent.uses;
    } catch (error) {
      // Withdrawn already: it is never spent here, it only stays reserved (the cluster spends less, never more).
      this.failed(tracked, 'give back', error, unspent);
    }
  }

  private failed(tracked: Tracked, what: string, error: unknown, lost?: Reservation): void {
    tracked.failures += 1;
    tracked.retryAtMs = this.now() + Math.min(RETRY_MS_MAX, RETRY_MS_MIN * 2 ** Math.min(tracked.failures - 1, 10));
    const nowMs = this.now();
    if (tracked.failures > 1 && nowMs - tracked.lastWarnedAtMs < WARN_EVERY_MS && lost === undefined) return;
    tracked.lastWarnedAtMs = nowMs;
    this.options.logger.warn(
      { err: error, promotion: tracked.id, failures: tracked.failures, ...(lost === undefined ? {} : { stayReserved: lost }) },
      lost === undefined
        ? `cluster budgets: could not ${what} budget of promotion ${tracked.id} (NATS away?); this instance grants from what it holds, then treats the promotion as out of budget until a chunk is reserved again`
        : `cluster budgets: could not give back unspent budget of promotion ${tracked.id}; it stays reserved and is never spent`,
    );
  }
}

export interface ClusterGlobalsOptions {
  /** Opens (creates) the budgets and programs buckets; called after activations are routed to the key. */
  readonly openBuckets: () => Promise<{ readonly budgets: KV; readonly programs: KV }>;
  readonly instanceId: string;
  readonly chunks: number;
  /** The live instances now (a cached count; near the end a chunk is the remainder divided by it). */
  readonly liveInstances: () => number;
  /** The layout the actors started with: its limits are lowered to its usage here, before any batch. */
  readonly layout: BudgetLayout;
  /** The program the actors started with. */
  readonly program: Program;
  /** The text of that program when it came from the API (store.storedProgram()). */
  readonly runningText: string | undefined;
  readonly programs: EngineProgramManager;
  /** Runs `action` while no batch is in flight (PartitionConsumers.exclusive). */
  readonly exclusive: <T>(action: () => Promise<T>) => Promise<T>;
  /** Swaps the program and its budget layout in every actor (ActorPool.setProgram). */
  readonly setProgram: (program: Program, layout: BudgetLayout) => Promise<void>;
  /** Committed budget usage (store.budgetTotals()). */
  readonly budgetTotals: () => ReadonlyMap<string, { readonly points: number; readonly uses: number }>;
  /** Told after a program from the key is applied here (the API thread's view). */
  readonly onApplied: () => void;
  /** A program from the key could not be applied here: the engine must stop rather than run another program than its peers. */
  readonly onFatal: (error: unknown) => void;
  readonly logger: Logger;
}

export interface ClusterGlobals {
  /** The budgets of the program running now. */
  readonly budgets: () => ClusterBudgets;
  /** Stops watching the key and gives every unspent reservation back; call once no batch is in flight. */
  stop(): Promise<void>;
}

/**
 * Wires both pieces before the instance takes any partition: the actors'
 * allowances cut to nothing and the first chunks reserved; program
 * activations routed through the key; the key read and applied first (an
 * instance starting runs the cluster's program, not its file's or an older
 * one it stored), then watched.
 */
export async function startClusterGlobals(options: ClusterGlobalsOptions): Promise<ClusterGlobals> {
  const { logger } = options;
  // First, before any await: from here on no activation can be applied here alone (with a layout granting the
  // whole budgets); one asked while the buckets open waits for them, then for this instance's watch.
  const buckets = options.openBuckets();
  void buckets.catch(() => undefined); // its failure is thrown below, by the start
  const cluster = buckets.then(({ programs }) => new ClusterProgram(programs));
  let budgets: ClusterBudgets | undefined;
  options.programs.distribute({
    publish: async (text, atMs) => (await cluster).publish(text, options.instanceId, atMs),
    ...(options.runningText === undefined ? {} : { runningText: options.runningText }),
    // At the switch, no batch is in flight: the old program's unspent chunks go back, the new one's first chunks
    // are reserved before its first batch, then every actor takes the program with its layout.
    apply: (next) =>
      options.exclusive(async () => {
        assert(budgets !== undefined, 'a program of the cluster is applied once the budgets run');
        await budgets.stop();
        const layout = createBudgetLayout(globalBudgetLimits(next), options.budgetTotals(), 'reserved');
        const fresh = budgetsOf(next, layout);
        await fresh.fill();
        await options.setProgram(next, layout);
        fresh.start();
        budgets = fresh;
        logger.info({ program: next.id }, 'program of the cluster activated');
      }),
    onNotYetApplied: (revision, waitedMs) => logger.warn({ revision, waitedMs }, 'program published to the cluster but not yet applied here; the activation answers, this instance switches when its watch delivers it'),
  });

  const reservations = new BudgetReservations((await buckets).budgets, options.liveInstances);
  const budgetsOf = (program: Program, layout: BudgetLayout) => new ClusterBudgets(new SharedBudgets(layout), { reservations, limits: globalBudgetLimits(program), chunks: options.chunks, logger });
  // The actors were started with the promotions' whole budgets as their limits; nothing was drawn yet (no partition
  // is held). Lowered to the usage, what they may grant is only what is reserved from here on (the difference was
  // never reserved: nothing to give back).
  const initial = new SharedBudgets(options.layout);
  for (const id of initial.ids) initial.withdraw(id);
  budgets = budgetsOf(options.program, options.layout);
  await budgets.fill();
  budgets.start();

  const current = await (await cluster).current();
  if (current !== undefined) {
    await options.programs.applyPublished(current);
    options.onApplied();
    logger.info({ revision: current.revision, by: current.by }, 'running the program of the cluster');
  }
  const stopWatch = await (await cluster).watch(
    async (program) => {
      await options.programs.applyPublished(program);
      options.onApplied();
    },
    (error) => {
      logger.fatal({ err: error }, 'a program of the cluster could not be applied here; stopping rather than run another program than the other instances');
      options.onFatal(error);
    },
    options.programs.revision,
  );
  return {
    budgets: () => budgets!,
    async stop() {
      await stopWatch();
      await budgets!.stop();
    },
  };
}
