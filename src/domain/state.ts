/**
 * Member state and what the domain produces. Plain data only (no Map, Set,
 * Date or class): it is encoded with msgpack into LMDB and carried between
 * threads. Every list in it is bounded by time or by a program maximum, so a
 * member's record cannot grow without limit (see docs/program.md, "State").
 */

export type MemberStatus = 'active' | 'unenrolled' | 'erased';

/** Spendable points that expire together. Lots with the same expiry are merged. */
export interface Lot {
  /** null: no date of its own (no expiry, or inactivity expiry of the whole balance). */
  readonly expiresAtMs: number | null;
  readonly points: number;
}

/** Earned points waiting for their holding period; merged by (release, expiry). */
export interface PendingLot {
  readonly releaseAtMs: number;
  readonly expiresAtMs: number | null;
  readonly points: number;
}

/**
 * One points currency of a member. Invariants (checked by checkLedgerInvariant):
 * each of spendable, pending, qualifying and debt equals the sum of its ledger
 * entries; spendable = Σ lots (or negative with no lots under shortfall
 * `negative`); pending = Σ pendingLots.
 */
export interface CurrencyState {
  readonly spendable: number;
  readonly pending: number;
  readonly qualifying: number;
  /** Points owed after a clawback found too few (shortfall `debt`); repaid from future credits. */
  readonly debt: number;
  /** Earned from purchases and activities, net of returns; drives milestones. Not a balance. */
  readonly lifetimeEarned: number;
  /** Sorted by expiry, soonest first, no-expiry last. */
  readonly lots: readonly Lot[];
  /** Sorted by release time. */
  readonly pendingLots: readonly PendingLot[];
  /** The latest expiry the member was already told about (points_expiring). */
  readonly noticeThroughMs: number;
}

/** Tier measure (qualifying points or spend) per calendar month, to move a qualification window. */
export interface TierBucket {
  /** year × 12 + month at the program's offset; 0 for a lifetime window. */
  readonly key: number;
  readonly amount: number;
}

export interface OrderLine {
  readonly sku: string;
  readonly quantity: number;
  readonly returned: number;
  readonly valueMinor: number;
  /** Points this line earned, by currency, every rule, multiplier and promotion included. */
  readonly points: Readonly<Record<string, number>>;
}

export interface OrderCurrency {
  readonly currency: string;
  readonly earned: number;
  readonly qualifyingEarned: number;
  readonly clawed: number;
  readonly qualifyingClawed: number;
  /** Earned points of this order still pending (a clawback takes them first). */
  readonly pendingLeft: number;
}

/** A purchase kept until its return window closes. */
export interface OrderRecord {
  readonly orderId: string;
  readonly eventId: string;
  readonly atMs: number;
  readonly closesAtMs: number;
  /** When its pending points are released (equal to atMs when there is no holding period). */
  readonly releaseAtMs: number;
  readonly amountMinor: number;
  readonly currencyCode: string;
  readonly refundedMinor: number;
  readonly spendClawedMinor: number;
  readonly tierBucketKey: number;
  readonly currencies: readonly OrderCurrency[];
  readonly lines: readonly OrderLine[];
}

/** A redemption kept for its cancel window, with the lots it consumed so a cancel restores their expiry. */
export interface RedemptionRecord {
  readonly eventId: string;
  readonly rewardId: string;
  readonly currency: string;
  readonly points: number;
  readonly atMs: number;
  readonly cancelUntilMs: number;
  readonly lots: readonly Lot[];
}

export type BenefitKind = 'voucher' | 'free_shipping' | 'custom';

export interface VoucherRecord {
  readonly code: string;
  readonly benefitId: string;
  readonly kind: BenefitKind;
  readonly issuedAtMs: number;
  readonly expiresAtMs: number;
  readonly redeemedAtMs: number | null;
}

export interface CapCounter {
  readonly periodStartMs: number;
  readonly count: number;
}

export interface PromotionUsage {
  readonly points: number;
  readonly uses: number;
}

export interface ChallengeProgress {
  /** Times of the qualifying purchases still inside the challenge window. */
  readonly timesMs: readonly number[];
  readonly completions: number;
}

export interface TierGrace {
  readonly untilMs: number;
  /** Where the member lands if they do not requalify in time. */
  readonly targetTierId: string;
}

export interface MemberState {
  readonly memberId: string;
  readonly status: MemberStatus;
  readonly enrolledAtMs: number;
  /** Personal data: erase clears it. */
  readonly attributes: Readonly<Record<string, string>>;
  readonly segments: readonly string[];
  readonly tierId: string;
  readonly tierSinceMs: number;
  /** Next period end at which the tier is reviewed; null for a lifetime window. */
  readonly tierReviewAtMs: number | null;
  readonly tierGrace: TierGrace | null;
  readonly tierBuckets: readonly TierBucket[];
  readonly currencies: Readonly<Record<string, CurrencyState>>;
  /** Sequence number of the member's last ledger entry (0 = none). */
  readonly ledgerSeq: number;
  /** Last member activity (purchase, activity, redemption, voucher, enrollment): inactivity expiry runs from it. */
  readonly lastActivityMs: number;
  /** Number of events applied, for audits and reports. */
  readonly eventCount: number;
  readonly orders: readonly OrderRecord[];
  readonly redemptions: readonly RedemptionRecord[];
  readonly vouchers: readonly VoucherRecord[];
  /** Per activity rule id. */
  readonly activityCounts: Readonly<Record<string, CapCounter>>;
  /** Per promotion id, for per-member budgets; dropped when the promotion ends. */
  readonly promotionUsage: Readonly<Record<string, PromotionUsage>>;
  readonly challenges: Readonly<Record<string, ChallengeProgress>>;
  /** How many times each benefit rule was issued to this member. */
  readonly benefitsIssued: Readonly<Record<string, number>>;
}

export type LedgerKind =
  | 'earn'
  | 'activity'
  | 'adjustment'
  | 'release'
  | 'clawback'
  | 'redeem'
  | 'redeem_cancel'
  | 'expire'
  | 'forfeit'
  | 'qualifying_lapse'
  | 'debt'
  | 'debt_repayment';

export type LedgerBalance = 'spendable' | 'pending' | 'qualifying' | 'debt';

/** One change to one balance. Invariant: a balance equals the sum of its entries' points. */
export interface LedgerEntry {
  readonly seq: number;
  readonly memberId: string;
  /** The cause: the event id, or sweep:<memberId>:<nowMs> for a sweep. */
  readonly eventId: string;
  readonly kind: LedgerKind;
  readonly balance: LedgerBalance;
  readonly currency: string;
  /** Signed point change. */
  readonly points: number;
  /** The rule that produced it: an earn rule, promotion, activity or benefit id, or a built-in such as earn:base. */
  readonly ruleId: string;
  readonly promotionId?: string;
  /** The lot touched: spendable and pending entries. */
  readonly lotExpiresAtMs?: number | null;
  readonly releaseAtMs?: number;
  /** The order (returns, earn) or redemption (cancel) referred to. */
  readonly reference?: string;
  readonly reason?: string;
  readonly operator?: string;
  readonly occurredAtMs: number;
}

interface OutcomeBase {
  readonly eventId: string;
  readonly memberId: string;
  readonly occurredAtMs: number;
}

export interface BalanceOutcome extends OutcomeBase {
  readonly kind: 'balance';
  readonly currency: string;
  /** Change of the spendable balance. */
  readonly delta: number;
  readonly pendingDelta: number;
  readonly qualifyingDelta: number;
  readonly spendable: number;
  readonly pending: number;
  readonly qualifying: number;
  readonly debt: number;
  readonly tierId: string;
}

export interface TierOutcome extends OutcomeBase {
  readonly kind: 'tier';
  readonly fromTierId: string;
  readonly toTierId: string;
  readonly direction: 'up' | 'down';
  readonly reason: string;
}

export interface RejectedOutcome extends OutcomeBase {
  readonly kind: 'rejected';
  readonly code: string;
  readonly reason: string;
}

export interface PendingReleasedOutcome extends OutcomeBase {
  readonly kind: 'pending_released';
  readonly currency: string;
  readonly points: number;
}

export interface PointsExpiredOutcome extends OutcomeBase {
  readonly kind: 'points_expired';
  readonly currency: string;
  readonly points: number;
  readonly reason: 'lot_expired' | 'inactivity';
}

export interface PointsExpiringOutcome extends OutcomeBase {
  readonly kind: 'points_expiring';
  readonly currency: string;
  readonly items: readonly { readonly expiresAtMs: number; readonly points: number }[];
}

export interface BenefitOutcome extends OutcomeBase {
  readonly kind: 'benefit';
  readonly benefitId: string;
  readonly benefitKind: BenefitKind;
  readonly code: string;
  readonly expiresAtMs: number;
  readonly reason: string;
}

export interface RedemptionOutcome extends OutcomeBase {
  readonly kind: 'redemption';
  readonly redemptionId: string;
  readonly status: 'redeemed' | 'cancelled';
  readonly rewardId: string;
  readonly currency: string;
  readonly points: number;
}

export interface VoucherRedeemedOutcome extends OutcomeBase {
  readonly kind: 'voucher_redeemed';
  readonly code: string;
  readonly benefitId: string;
}

export interface ReturnOutcome extends OutcomeBase {
  readonly kind: 'return';
  readonly orderId: string;
  /** Points taken back by currency (pending and spendable together). */
  readonly clawedBack: Readonly<Record<string, number>>;
  /** Points that could not be taken (shortfall floor) or became debt. */
  readonly shortfall: Readonly<Record<string, number>>;
}

export interface MembershipOutcome extends OutcomeBase {
  readonly kind: 'membership';
  readonly action: 'enrolled' | 'updated' | 'reenrolled' | 'unenrolled' | 'erased';
}

export type Outcome =
  | BalanceOutcome
  | TierOutcome
  | RejectedOutcome
  | PendingReleasedOutcome
  | PointsExpiredOutcome
  | PointsExpiringOutcome
  | BenefitOutcome
  | RedemptionOutcome
  | VoucherRedeemedOutcome
  | ReturnOutcome
  | MembershipOutcome;

export type OutcomeKind = Outcome['kind'];

/** What a promotion took from a global budget; the engine persists it and releases it if the decision is dropped. */
export interface BudgetUsage {
  readonly promotionId: string;
  readonly points: number;
  readonly uses: number;
}

export interface Decision {
  /**
   * The member's state after the event; the very same object when the event
   * was rejected (or, for a sweep, when nothing was due). undefined only when
   * there was no member and none was created (a rejected first event): persist nothing.
   */
  readonly state: MemberState | undefined;
  readonly ledger: readonly LedgerEntry[];
  readonly outcomes: readonly Outcome[];
  /** Global promotion budget taken by this decision (absent when none). */
  readonly budgetUsage?: readonly BudgetUsage[];
}

/** Decision of a sweep: a sweep always has a member. */
export interface SweepDecision extends Decision {
  readonly state: MemberState;
}
