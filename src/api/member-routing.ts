import { performance } from 'node:perf_hooks';
import { WalletRoutingError, type WalletRouter } from '../cluster/wallet-routing.js';
import { partitionOf } from '../routing/partitioner.js';
import type { LedgerQuery, MemberReads, MemberRouting } from './context.js';
import { ApiError } from './errors.js';
import { encodeCursor, ledgerEntryResponse } from './views.js';

/**
 * Member reads in cluster mode (issue 17). Each instance's LMDB holds only the
 * partitions it consumes, so GET /v1/members/{id}/wallet and .../ledger read
 * locally only when the member's partition is this instance's; otherwise the
 * read goes to the partition's owner through WalletRouter
 * (<prefix>.svc.wallet.p<N>, answered by the owner's PartitionWalletServer)
 * and the owner's JSON text is the HTTP body as it stands.
 *
 * The owned set is the engine's word (setPartitions → the API thread): the
 * partitions whose state is restored here and whose intake runs here. Between
 * owners a routed read waits (WalletRouter's handover wait) instead of reading
 * a store that is no longer, or not yet, the partition's truth.
 */

export type RoutedRead = 'wallet' | 'ledger';
/** How a routed read ended: the label of loyalty_http_routed_reads_total. */
export type RoutedOutcome = 'ok' | 'not_found' | 'unavailable' | 'timeout' | 'overloaded' | 'failed';

/** What the router is asked (WalletRouter has it; unit tests pass fakes). */
export type MemberRouter = Pick<WalletRouter, 'wallet' | 'ledger'>;

export interface PartitionMemberRoutingOptions {
  readonly partitions: number;
  /** Routed reads waiting for their owner at once; beyond, 503 OVERLOADED at once. Default 1,000. */
  readonly inFlightMax?: number;
  /** Called once per routed read as it ends (metrics). */
  readonly onRead?: (read: RoutedRead, outcome: RoutedOutcome, seconds: number) => void;
}

export const ROUTED_IN_FLIGHT_MAX_DEFAULT = 1_000;

export class PartitionMemberRouting implements MemberRouting {
  /** 1 for a partition this instance consumes. */
  private readonly owned: Uint8Array;
  private readonly inFlightMax: number;
  private inFlight = 0;

  constructor(
    private readonly router: MemberRouter,
    private readonly options: PartitionMemberRoutingOptions,
  ) {
    if (!Number.isInteger(options.partitions) || options.partitions < 1) throw new RangeError('partitions must be a positive integer');
    this.owned = new Uint8Array(options.partitions);
    this.inFlightMax = options.inFlightMax ?? ROUTED_IN_FLIGHT_MAX_DEFAULT;
    if (!Number.isInteger(this.inFlightMax) || this.inFlightMax < 1) throw new RangeError('inFlightMax must be a positive integer');
  }

  /** The partitions this instance consumes now (replaces the last set); out-of-range numbers are ignored. */
  setOwned(partitions: Iterable<number>): void {
    this.owned.fill(0);
    for (const partition of partitions) {
      if (Number.isInteger(partition) && partition >= 0 && partition < this.owned.length) this.owned[partition] = 1;
    }
  }

  owns(memberId: string): boolean {
    return this.owned[partitionOf(memberId, this.owned.length)] === 1;
  }

  /** Routed reads waiting for their owner now (a gauge). */
  inFlightNow(): number {
    return this.inFlight;
  }

  wallet(memberId: string): Promise<string> {
    return this.route('wallet', () => this.router.wallet(memberId));
  }

  ledger(memberId: string, query: LedgerQuery): Promise<string> {
    return this.route('ledger', () => this.router.ledger(memberId, query));
  }

  private async route(read: RoutedRead, send: () => Promise<string>): Promise<string> {
    const startedAt = performance.now();
    if (this.inFlight >= this.inFlightMax) {
      this.options.onRead?.(read, 'overloaded', 0);
      throw new WalletRoutingError('OVERLOADED', `this instance has ${this.inFlight} reads waiting for their partitions' owners (at most ${this.inFlightMax})`, undefined);
    }
    this.inFlight += 1;
    let outcome: RoutedOutcome = 'failed';
    try {
      const text = await send();
      outcome = 'ok';
      return text;
    } catch (error) {
      outcome = outcomeOf(error);
      throw error;
    } finally {
      this.inFlight -= 1;
      this.options.onRead?.(read, outcome, (performance.now() - startedAt) / 1000);
    }
  }
}

function outcomeOf(error: unknown): RoutedOutcome {
  if (!(error instanceof WalletRoutingError)) return 'failed';
  switch (error.code) {
    case 'MEMBER_NOT_FOUND':
      return 'not_found';
    case 'PARTITION_UNAVAILABLE':
    case 'PARTITION_NOT_OWNED':
    case 'REQUEST_FAILED':
      return 'unavailable';
    case 'PARTITION_TIMEOUT':
      return 'timeout';
    case 'OVERLOADED':
      return 'overloaded';
    default:
      return 'failed';
  }
}

/** Retry-After of a routed read refused for now: a handover takes about a lease's time-to-live. */
export const ROUTED_RETRY_AFTER_SECONDS = 1;

/**
 * The API error of a failed routed read (anything else is passed through, for
 * the error handler's INTERNAL_ERROR). An unknown member is the same 404 as a
 * local read; a partition between owners for longer than the router waits, a
 * connection going away, or too many reads in flight are 503s with
 * Retry-After; an owner that is subscribed but silent is 504; a refusal the
 * HTTP client could not have caused (the routes checked the request: a
 * partition count that differs between instances, an owner's failed read) is
 * 500 and logged.
 */
export function routedReadError(error: unknown, memberId: string): unknown {
  if (!(error instanceof WalletRoutingError)) return error;
  const details = { ...(error.partition !== undefined ? { partition: error.partition } : {}), routingCode: error.code };
  const retryAfter = { 'retry-after': String(ROUTED_RETRY_AFTER_SECONDS) };
  switch (error.code) {
    case 'MEMBER_NOT_FOUND':
      return new ApiError('MEMBER_NOT_FOUND', `member ${memberId} is not known`);
    case 'PARTITION_UNAVAILABLE':
    case 'PARTITION_NOT_OWNED':
    case 'REQUEST_FAILED':
      return new ApiError('PARTITION_UNAVAILABLE', `member ${memberId}: ${error.message}`, details, retryAfter);
    case 'OVERLOADED':
      return new ApiError('OVERLOADED', `member ${memberId}: ${error.message}`, details, retryAfter);
    case 'PARTITION_TIMEOUT':
      return new ApiError('PARTITION_TIMEOUT', `member ${memberId}: ${error.message}`, details);
    default:
      return new ApiError('INTERNAL_ERROR', `member ${memberId}: the owner's answer was a refusal: ${error.message}`, details);
  }
}

// ---- the ledger page, as the route answers it locally and the owner answers it over NATS ----

export interface LedgerPageResponse {
  readonly memberId: string;
  readonly entries: ReturnType<typeof ledgerEntryResponse>[];
  readonly nextCursor: string | null;
}

/** A page of the member's ledger (the route's 200 body), or undefined when the member is not known. */
export function ledgerPageResponse(reads: MemberReads, memberId: string, query: LedgerQuery): LedgerPageResponse | undefined {
  if (reads.member(memberId) === undefined) return undefined;
  const page = reads.ledger(memberId, query);
  return {
    memberId,
    entries: page.entries.map(ledgerEntryResponse),
    nextCursor: page.nextAfterSeq === undefined ? null : encodeCursor(page.nextAfterSeq),
  };
}

/**
 * The page as JSON text, exactly JSON.stringify(ledgerPageResponse(...))
 * (what the route sends locally) while it fits in `bytesMax` bytes of UTF-8.
 * A page that would not (500 entries with long reasons can pass a NATS
 * max_payload of 1 MiB) keeps the entries that fit, at least one, and its
 * nextCursor points after the last one kept: the client's next page starts
 * there, so nothing is skipped.
 */
export function ledgerPageJson(reads: MemberReads, memberId: string, query: LedgerQuery, bytesMax: number): string | undefined {
  if (reads.member(memberId) === undefined) return undefined;
  const page = reads.ledger(memberId, query);
  const entries = page.entries.map((entry) => JSON.stringify(ledgerEntryResponse(entry)));
  const head = `{"memberId":${JSON.stringify(memberId)},"entries":[`;
  const tail = (cursor: string | null) => `],"nextCursor":${JSON.stringify(cursor)}}`;
  const whole = `${head}${entries.join(',')}${tail(page.nextAfterSeq === undefined ? null : encodeCursor(page.nextAfterSeq))}`;
  if (Buffer.byteLength(whole) <= bytesMax) return whole;
  // Cut short: the longest cursor this API writes is under 30 bytes.
  let bytes = Buffer.byteLength(head) + Buffer.byteLength(tail(encodeCursor(Number.MAX_SAFE_INTEGER)));
  let kept = 0;
  for (const entry of entries) {
    bytes += Buffer.byteLength(entry) + (kept === 0 ? 0 : 1);
    if (bytes > bytesMax && kept > 0) break;
    kept += 1;
  }
  if (kept === entries.length) return whole; // a bound below one entry: the page as it is (the server refuses it if too large)
  return `${head}${entries.slice(0, kept).join(',')}${tail(encodeCursor(page.entries[kept - 1]!.seq))}`;
}
