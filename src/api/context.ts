import type { LoyaltyEvent } from '../domain/events.js';
import type { Program } from '../domain/program.js';
import type { LedgerEntry, MemberState } from '../domain/state.js';
import type { Settings } from '../config/settings.js';
import type { ProgramReportRow } from '../reports/report.js';
import type { WalletCache } from './wallet-cache.js';

/**
 * What the HTTP API and the NATS services get from the engine. Reads come
 * straight from LMDB; every write travels as an event through JetStream to the
 * owning actor (the single writer), never around it.
 */

export interface LedgerQuery {
  /** Entries with a sequence number greater than this (the cursor); 0 = from the start. */
  readonly afterSeq: number;
  readonly limit: number;
  /** Only these entry kinds, if given. */
  readonly kinds?: readonly string[];
  /** Event time range, inclusive start, exclusive end. */
  readonly fromMs?: number;
  readonly toMs?: number;
}

export interface LedgerPage {
  readonly entries: readonly LedgerEntry[];
  /** Pass as afterSeq for the next page; undefined when there is no more. */
  readonly nextAfterSeq: number | undefined;
}

export interface MemberReads {
  member(memberId: string): MemberState | undefined;
  /**
   * The member as the wallet shows it: orders and redemptions left out
   * (empty lists), which a wallet never reads and which are most of a busy
   * member's records. Readers without it use member().
   */
  walletMember?(memberId: string): MemberState | undefined;
  ledger(memberId: string, query: LedgerQuery): LedgerPage;
}

export interface SubmitResult {
  readonly eventId: string;
  /** The JetStream stream sequence the event was stored at. */
  readonly sequence: number;
  readonly duplicate: boolean;
  /** The outcome messages (parsed JSON), when waited for and received in time. */
  readonly outcomes?: readonly Record<string, unknown>[];
  /** True when an outcome was requested and did not arrive within the wait. */
  readonly timedOut?: boolean;
}

export interface EventSubmitter {
  /** Validates, publishes to the input stream, and optionally waits for the outcome. */
  submit(event: LoyaltyEvent, options?: { readonly waitMs?: number }): Promise<SubmitResult>;
  /**
   * Optional (JetStreamSubmitter has it): calls `listener` with every outcome
   * (parsed JSON) of the event until the returned function is called; register
   * before submitting. Bulk jobs use it to follow each line; without it a bulk
   * job reports lines as submitted, never applied or rejected.
   */
  trackOutcomes?(memberId: string, eventId: string, listener: (outcome: Record<string, unknown>) => void): () => void;
}

export type ProgramCheck = { readonly ok: true; readonly program: Program } | { readonly ok: false; readonly errors: readonly string[] };

export interface ProgramManager {
  active(): Program;
  /** When the active program was activated (ms), and from where ('file' or 'api'). */
  activeSince(): { readonly atMs: number; readonly source: 'file' | 'api' };
  validate(text: string): ProgramCheck;
  /** Validates, persists and hands the program to every actor; no restart. */
  activate(text: string): Promise<ProgramCheck>;
}

export type ReportPeriod = 'day' | 'week' | 'month';

export interface ReportRow {
  /** Period start, ISO date (UTC at the program's offset). */
  readonly period: string;
  readonly currency: string;
  readonly pointsIssued: number;
  readonly pointsRedeemed: number;
  readonly pointsExpired: number;
  readonly pointsAdjusted: number;
  readonly pointsClawedBack: number;
  /** Outstanding spendable points at the period's end, and their value in minor units. */
  readonly liabilityPoints: number;
  readonly liabilityMinor: number;
  readonly activeMembers: number;
  readonly enrollments: number;
  readonly redemptions: number;
  /** pointsRedeemed / pointsIssued over the period (0 when nothing was issued). */
  readonly redemptionRate: number;
  /** Breakage: pointsExpired / pointsIssued over the period, and over everything up to its end. */
  readonly breakageRate: number;
  readonly breakageRateLifetime: number;
  /** The liability net of expected breakage (the currency's expectedBreakagePercent, else breakageRateLifetime), in points and minor units. */
  readonly liabilityNetPoints: number;
  readonly liabilityNetMinor: number;
  readonly tierDistribution: Readonly<Record<string, number>>;
  readonly tierMovements: { readonly upgrades: number; readonly downgrades: number };
  readonly promotions: readonly { readonly promotionId: string; readonly points: number; readonly uses: number; readonly budgetPoints?: number; readonly budgetUses?: number }[];
}

export interface ReportReader {
  kpis(period: ReportPeriod, fromMs: number, toMs: number): readonly ReportRow[];
  /** Program KPIs: orders, revenue, members, churn, paid memberships, donations, badges. */
  programKpis(period: ReportPeriod, fromMs: number, toMs: number): readonly ProgramReportRow[];
}

/**
 * Cluster mode: a report summed over every instance that holds KPI counters
 * (src/api/report-reader.ts clusterReportReader over KpiAggregator), with
 * whether every one of them answered. `missing`: expected instances that did
 * not answer in time; `failed`: instances that answered with an error or
 * whose reply was refused (their codes are logged, not in the report).
 */
export interface AggregatedReport<Row> {
  readonly rows: readonly Row[];
  readonly complete: boolean;
  /** Instances whose counters are in the rows. */
  readonly answered: readonly string[];
  readonly missing: readonly string[];
  readonly failed: readonly string[];
  /** Partitions whose counters no instance answered for (between owners), or more than one did. */
  readonly uncoveredPartitions: readonly number[];
  readonly overlappingPartitions: readonly number[];
}

/** The asynchronous ReportReader of cluster mode: the same rows, from every instance's counters. */
export interface ClusterReports {
  kpis(period: ReportPeriod, fromMs: number, toMs: number): Promise<AggregatedReport<ReportRow>>;
  programKpis(period: ReportPeriod, fromMs: number, toMs: number): Promise<AggregatedReport<ProgramReportRow>>;
}

/** Engine health as /health shows it. */
export interface Health {
  readonly ok: boolean;
  readonly detail: Record<string, unknown>;
}

export interface ApiContext {
  readonly settings: Settings;
  readonly reads: MemberReads;
  readonly submitter: EventSubmitter;
  readonly programs: ProgramManager;
  readonly reports: ReportReader;
  /**
   * What GET /v1/members/{id}/wallet answers from: a WalletCache over `reads`
   * (the API thread's keeps rendered wallets while their records are unchanged).
   * Default: one that renders every read.
   */
  readonly wallets?: WalletCache;
  /** Engine health for /health (from the API thread: asked of the engine's main thread). */
  readonly health: () => Health | Promise<Health>;
  /**
   * Cluster mode (src/api/member-routing.ts): this instance's store holds only
   * the partitions it consumes, so a wallet or ledger read of another
   * partition is answered by that partition's owner over NATS. Absent (a
   * single instance): every read is local.
   */
  readonly memberRouting?: MemberRouting;
  /**
   * Cluster mode: this instance's store holds only the KPI counters of what it
   * committed, so the report routes sum every instance's over NATS through
   * this instead of `reports`. Absent (a single instance): `reports`, local
   * and synchronous.
   */
  readonly clusterReports?: ClusterReports;
}

/**
 * Which member reads are this instance's, and the owner's answer for the rest.
 * Implementations throw WalletRoutingError (src/cluster/wallet-routing.ts);
 * the routes turn its codes into the API's (member-routing.ts routedReadError).
 */
export interface MemberRouting {
  /** True when this instance consumes the member's partition: the read stays local. Synchronous and cheap, called on every read. */
  owns(memberId: string): boolean;
  /** The owner's wallet JSON text, as GET /v1/members/{id}/wallet writes it. */
  wallet(memberId: string): Promise<string>;
  /** The owner's ledger page JSON text, as GET /v1/members/{id}/ledger writes it. */
  ledger(memberId: string, query: LedgerQuery): Promise<string>;
}
