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
  /** The order the points paid for (a redemption at checkout); absent in older records. */
  readonly orderId?: string;
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

/**
 * Lifetime counters of what the member did, for the reports (differences of
 * these between the state before and after an event are the event's share of
 * a KPI) and for badges. Absent until the member's first event under a
 * version of the engine that keeps it.
 */
export interface Engagement {
  /** Purchases applied. */
  readonly orders: number;
  readonly revenueMinor: number;
  /** Purchases whose order a redemption named (orderId): orders with redeemed points. */
  readonly redeemedOrders: number;
  readonly redeemedRevenueMinor: number;
  /** Return events applied, and the money they gave back (line values or refunded amounts). */
  readonly returns: number;
  readonly returnedMinor: number;
  readonly donations: number;
  /** Event time of the latest purchase (0: none). */
  readonly lastOrderMs: number;
  /**
   * When the member passes the program's inactivity horizon (reports.inactiveAfterDays)
   * unless active again; null when the program has none or the member is not active.
   */
  readonly inactiveAtMs: number | null;
}

export type PaidMembershipStatus = 'active' | 'lapsed' | 'cancelled';

/** The member's paid membership (one plan at a time); kept after it ends, for the wallet and the reports. */
export interface PaidMembership {
  readonly planId: string;
  readonly status: PaidMembershipStatus;
  /** Start of the continuous membership of this plan (renewals keep it). */
  readonly sinceMs: number;
  readonly termStartMs: number;
  /** End of the paid term. */
  readonly termEndsAtMs: number;
  /** termEndsAtMs plus the plan's grace: the plan lapses then unless renewed. */
  readonly graceEndsAtMs: number;
  /** When it lapsed or was cancelled (null while active). */
  readonly endedAtMs: number | null;
  /** The tier the plan holds the member at (null: none), and the tier they held before the plan lifted them. */
  readonly floorTierId: string | null;
  readonly baseTierId: string | null;
  /** Fees paid, lifetime and across plans (their differences are the reports' fees). */
  readonly fees: number;
  readonly feesMinor: number;
  /** The term end a renewal notice was sent for (0: none). */
  readonly noticeForEndsAtMs: number;
}

/** Progress toward a badge not yet earned; dropped once it is earned. */
export interface BadgeProgress {
  readonly count: number;
  /** Streaks: the period key (week start day, or month index) of the last counted period. */
  readonly periodKey?: number;
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
  /** Lifetime counters for reports and badges (absent in records written before them). */
  readonly engagement?: Engagement;
  /** The paid membership, if the member ever had one. */
  readonly paid?: PaidMembership;
  /** Badges earned: badge id → when. */
  readonly badges?: Readonly<Record<string, number>>;
  /** Progress toward badges not yet earned, by badge id. */
  readonly badgeProgress?: Readonly<Record<string, BadgeProgress>>;
  /** When the next balance digest is due (communications.digest); absent: none scheduled. */
  readonly digestAtMs?: number;
}

/**
 * Every ledger entry kind. Append only: the store keeps a kind as its index
 * in this list (src/store/ledger-codec.ts), so an index must keep its meaning.
 */
export const LEDGER_KINDS = [
  'earn',
  'activity',
  'adjustment',
  'release',
  'clawback',
  'redeem',
  'redeem_cancel',
  'expire',
  'forfeit',
  'qualifying_lapse',
  'debt',
  'debt_repayment',
  'donate',
] as const;

export type LedgerKind = (typeof LEDGER_KINDS)[number];

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

export interface PaidMembershipOutcome extends OutcomeBase {
  readonly kind: 'paid_membership';
  readonly planId: string;
  /** joined, renewed, switched (from fromPlanId), renewal_due (a notice from the sweep), lapsed (not renewed in time), cancelled. */
  readonly action: 'joined' | 'renewed' | 'switched' | 'renewal_due' | 'lapsed' | 'cancelled';
  readonly termEndsAtMs: number;
  readonly graceEndsAtMs: number;
  readonly fromPlanId?: string;
}

export interface DonationOutcome extends OutcomeBase {
  readonly kind: 'donation';
  readonly causeId: string;
  readonly currency: string;
  readonly points: number;
}

export interface BadgeOutcome extends OutcomeBase {
  readonly kind: 'badge';
  readonly badgeId: string;
  readonly name: string;
  readonly reason: string;
}

/** A periodic statement for the member (communications.digest), from the sweep. */
export interface BalanceDigestOutcome extends OutcomeBase {
  readonly kind: 'balance_digest';
  readonly period: 'week' | 'month';
  readonly currencies: readonly {
    readonly currency: string;
    readonly spendable: number;
    readonly pending: number;
    readonly debt: number;
    /** Points expiring before the next digest. */
    readonly expiringPoints: number;
  }[];
  readonly tierId: string;
  /** The next tier and what is missing to reach it (null at the top). */
  readonly nextTier: { readonly tierId: string; readonly remaining: number } | null;
  /** What is missing to keep the current tier at its next review (0: kept), and when that is (null: never reviewed). */
  readonly keepTier: { readonly remaining: number; readonly byMs: number | null };
  readonly paidPlanId: string | null;
  readonly badges: number;
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
  | MembershipOutcome
  | PaidMembershipOutcome
  | DonationOutcome
  | BadgeOutcome
  | BalanceDigestOutcome;

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
