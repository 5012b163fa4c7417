import type { Program } from '../domain/program.js';
import type { MemberState } from '../domain/state.js';
import { walletView, walletViewStable } from '../domain/wallet.js';
import type { WalletRecords } from '../store/types.js';
import type { MemberReads } from './context.js';
import { isoString, monthEndMs, walletBody } from './views.js';

/**
 * GET /v1/members/{id}/wallet without recomputing an unchanged wallet.
 *
 * Reading a member (LMDB get, msgpack decode of the core and the voucher
 * records, joining them), the wallet view, its ISO dates and its JSON cost
 * the API thread some 55 µs per read on a quiet machine, and about as much
 * again under load; the raw bytes of the records the wallet is made of cost
 * 3 µs per record to read and nothing to compare. So the rendered body is
 * kept per member, and served again only when all of these hold:
 *  - the member's stored records are byte for byte the ones it was rendered
 *    from: the core record (which lists the voucher keys) and each voucher
 *    record it lists; those are everything `walletMember` reads (orders and
 *    redemptions are left out of a wallet), and every write of a member
 *    rewrites its core in the same transaction;
 *  - the active program is the same object (activation replaces it);
 *  - the clock is within [rendered at, stable until): walletStableUntilMs (the
 *    member's next due time and every time the wallet shows: before it, the
 *    view's sweep changes nothing and its time filters keep what they kept)
 *    and the end of the current month (expiringByMonth's periods).
 * Only `asOf` moves meanwhile: the body is kept as the text before and after
 * its value, and `asOf` is written afresh on every read. So a cached read
 * answers exactly what a fresh computation would at that instant.
 *
 * Reads of one synchronous run share one LMDB snapshot (lmdb-js renews its
 * read transaction on a later event turn or after a commit of its own thread,
 * never in the middle of synchronous code; the API thread never writes), so
 * the bytes kept and the state rendered come from the same snapshot. The core
 * is read before the state all the same: were the snapshot renewed in
 * between, the kept core would be the older one, and the next read would
 * find it changed and render afresh.
 *
 * Bounded by an estimate of its bytes (records kept for comparison plus the
 * body), oldest entry out first.
 */

export const WALLET_CACHE_BYTES_MAX_DEFAULT = 32 * 1024 * 1024;

/** Per entry beside its bytes: the entry, the map slot, the strings' and buffer's headers. */
const ENTRY_OVERHEAD_BYTES = 256;

interface Entry {
  readonly program: Program;
  /**
   * The records it was rendered from, side by side in one buffer: the core
   * (bytes [0, coreLength)), then each voucher record named by voucherCodes,
   * voucherEnds[i] being where the i-th ends.
   */
  readonly records: Buffer;
  readonly coreLength: number;
  readonly voucherCodes: readonly string[];
  readonly voucherEnds: readonly number[];
  readonly renderedAtMs: number;
  readonly stableUntilMs: number;
  /** The body up to the value of asOf, and after it. */
  readonly head: string;
  readonly tail: string;
  readonly bytes: number;
}

export interface WalletCacheStats {
  /** Reads answered from a kept body. */
  readonly hits: number;
  /** Reads that rendered the wallet (including unknown members). */
  readonly misses: number;
  readonly entries: number;
  /** Estimated bytes held. */
  readonly bytes: number;
  readonly bytesMax: number;
}

export interface WalletCacheOptions {
  /** Without it every read renders the wallet (readers other than LMDB, tests). */
  readonly records?: WalletRecords;
  readonly bytesMax?: number;
}

export class WalletCache {
  private readonly entries = new Map<string, Entry>();
  private readonly records: WalletRecords | undefined;
  private readonly bytesMax: number;
  private bytes = 0;
  private hits = 0;
  private misses = 0;

  constructor(
    private readonly reads: MemberReads,
    options: WalletCacheOptions = {},
  ) {
    this.records = options.records;
    this.bytesMax = options.bytesMax ?? WALLET_CACHE_BYTES_MAX_DEFAULT;
  }

  /** The wallet as GET /v1/members/{id}/wallet answers it at `nowMs` (JSON text), or undefined for an unknown member. */
  json(memberId: string, program: Program, nowMs: number): string | undefined {
    const records = this.records;
    if (records === undefined || this.bytesMax <= 0) {
      this.misses += 1;
      const state = this.read(memberId);
      return state === undefined ? undefined : walletBody(walletView(state, program, nowMs), program);
    }
    const partition = records.partitionOf(memberId);
    // Read before the state on a miss (see the class comment); undefined: not where the layout says, nothing is kept.
    let core = records.core(partition, memberId);
    const entry = this.entries.get(memberId);
    if (entry !== undefined) {
      const check = this.check(entry, core, records, partition, memberId, program, nowMs);
      if (check === Check.Current) {
        this.hits += 1;
        return entry.head + this.asOf(nowMs) + entry.tail;
      }
      this.remove(memberId, entry);
      // Reading a voucher record reused the buffer the core was in.
      if (check === Check.VoucherChanged) core = records.core(partition, memberId);
    }
    this.misses += 1;
    // Copied now (to the start of the scratch buffer): core may be lmdb-js's reused buffer, which reading the state overwrites.
    const coreLength = core === undefined ? -1 : core.length;
    if (core !== undefined) scratchOf(coreLength).set(core.subarray(0, coreLength));
    const state = this.read(memberId);
    if (state === undefined) return undefined;
    const rendered = walletViewStable(state, program, nowMs);
    const body = walletBody(rendered.view, program);
    const stableUntilMs = Math.min(rendered.stableUntilMs, monthEndMs(nowMs, program.utcOffsetMinutes ?? 0));
    if (coreLength >= 0 && stableUntilMs > nowMs) this.keep(memberId, records, partition, coreLength, state, program, nowMs, stableUntilMs, body);
    return body;
  }

  /** isoString(nowMs), remembered for the next reads of the same millisecond (a few at every thousand per second). */
  private asOf(nowMs: number): string {
    if (nowMs !== this.asOfMs) {
      this.asOfMs = nowMs;
      this.asOfText = isoString(nowMs);
    }
    return this.asOfText;
  }

  private asOfMs = Number.NaN;
  private asOfText = '';

  stats(): WalletCacheStats {
    return { hits: this.hits, misses: this.misses, entries: this.entries.size, bytes: this.bytes, bytesMax: this.bytesMax };
  }

  private read(memberId: string): MemberState | undefined {
    return this.reads.walletMember !== undefined ? this.reads.walletMember(memberId) : this.reads.member(memberId);
  }

  private check(
    entry: Entry,
    core: Uint8Array | undefined,
    records: WalletRecords,
    partition: number,
    memberId: string,
    program: Program,
    nowMs: number,
  ): Check {
    if (entry.program !== program || nowMs < entry.renderedAtMs || nowMs >= entry.stableUntilMs) return Check.Changed;
    if (!sameBytes(entry.records, 0, entry.coreLength, core)) return Check.Changed;
    const codes = entry.voucherCodes;
    let start = entry.coreLength;
    for (let index = 0; index < codes.length; index++) {
      const end = entry.voucherEnds[index]!;
      if (!sameBytes(entry.records, start, end, records.voucher(partition, memberId, codes[index]!))) return Check.VoucherChanged;
      start = end;
    }
    return Check.Current;
  }

  private keep(
    memberId: string,
    records: WalletRecords,
    partition: number,
    coreLength: number,
    state: MemberState,
    program: Program,
    nowMs: number,
    stableUntilMs: number,
    body: string,
  ): void {
    // The core is at the start of the scratch buffer; the voucher records go after it, then all is copied once.
    const voucherCodes: string[] = [];
    const voucherEnds: number[] = [];
    let end = coreLength;
    let codeBytes = 0;
    for (const voucher of state.vouchers) {
      const stored = records.voucher(partition, memberId, voucher.code);
      if (stored === undefined) return; // not where the layout says: no caching for this member
      const length = stored.length;
      scratchOf(end + length).set(stored.subarray(0, length), end);
      end += length;
      voucherCodes.push(voucher.code);
      voucherEnds.push(end);
      codeBytes += voucher.code.length;
    }
    const bytes = ENTRY_OVERHEAD_BYTES + end + codeBytes + body.length;
    if (bytes > this.bytesMax) return;
    // memberId and status come before asOf and are JSON strings, which never hold this unescaped.
    const asOf = `"asOf":"${isoString(nowMs)}"`;
    const at = body.indexOf(asOf);
    if (at === -1) return;
    const entry: Entry = {
      program,
      records: Buffer.copyBytesFrom(scratch, 0, end),
      coreLength,
      voucherCodes,
      voucherEnds,
      renderedAtMs: nowMs,
      stableUntilMs,
      head: body.slice(0, at + 8),
      tail: body.slice(at + asOf.length - 1),
      bytes,
    };
    this.entries.set(memberId, entry);
    this.bytes += bytes;
    while (this.bytes > this.bytesMax) {
      // Oldest first. One iterator for the cache's life: it goes on to entries set after it was made, so
      // evicting never walks again over the slots of the entries it already took out.
      let next = this.eviction.next();
      if (next.done === true) {
        this.eviction = this.entries.entries();
        next = this.eviction.next();
        if (next.done === true) break;
      }
      const [key, oldest] = next.value;
      if (this.entries.get(key) === oldest) this.remove(key, oldest);
    }
  }

  private eviction: MapIterator<[string, Entry]> = this.entries.entries();

  private remove(memberId: string, entry: Entry): void {
    this.entries.delete(memberId);
    this.bytes -= entry.bytes;
  }
}

/** What check() found; Changed: the program, the time or the core (no other record read meanwhile). */
const Check = { Current: 0, Changed: 1, VoucherChanged: 2 } as const;
type Check = (typeof Check)[keyof typeof Check];

/** Where a miss assembles the records it keeps before copying them out once (grown as needed, never shrunk). */
let scratch = Buffer.allocUnsafeSlow(16 * 1024);

function scratchOf(length: number): Buffer {
  if (length > scratch.length) {
    const grown = Buffer.allocUnsafeSlow(Math.max(length, 2 * scratch.length));
    scratch.copy(grown);
    scratch = grown;
  }
  return scratch;
}

function sameBytes(kept: Buffer, start: number, end: number, stored: Uint8Array | undefined): boolean {
  if (stored === undefined) return false;
  // `length`, not the byte length: lmdb-js sets it to the value's size on its reused buffer.
  const length = stored.length;
  return end - start === length && kept.compare(stored, 0, length, start, end) === 0;
}
