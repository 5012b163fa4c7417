/**
 * Member state and what the domain produces. Plain data only: it is encoded
 * with msgpack into LMDB and carried between threads.
 */

export interface MemberState {
  readonly memberId: string;
  readonly enrolledAtMs: number;
  /** Spendable points by points currency. */
  readonly balances: Readonly<Record<string, number>>;
  /** Tier-qualifying points by points currency; redemptions never lower them. */
  readonly qualifying: Readonly<Record<string, number>>;
  readonly tierId: string;
  /** Sequence number of the member's last ledger entry (0 = none). */
  readonly ledgerSeq: number;
  readonly lastActivityMs: number;
  /** Number of events applied, for audits and reports. */
  readonly eventCount: number;
}

export type LedgerKind = 'earn';

/** One change to one balance. Invariant: a balance equals the sum of its entries' points. */
export interface LedgerEntry {
  readonly seq: number;
  readonly memberId: string;
  readonly eventId: string;
  readonly kind: LedgerKind;
  /** Which balance: 'spendable' or 'qualifying'. */
  readonly balance: 'spendable' | 'qualifying';
  readonly currency: string;
  /** Signed point change. */
  readonly points: number;
  /** The rule (or promotion) that produced the entry. */
  readonly ruleId: string;
  readonly occurredAtMs: number;
}

export type Outcome =
  | {
      readonly kind: 'balance';
      readonly eventId: string;
      readonly memberId: string;
      readonly currency: string;
      readonly delta: number;
      readonly balance: number;
      readonly qualifying: number;
      readonly tierId: string;
      readonly occurredAtMs: number;
    }
  | {
      readonly kind: 'tier';
      readonly eventId: string;
      readonly memberId: string;
      readonly fromTierId: string;
      readonly toTierId: string;
      readonly reason: string;
      readonly occurredAtMs: number;
    }
  | {
      readonly kind: 'rejected';
      readonly eventId: string;
      readonly memberId: string;
      readonly code: string;
      readonly reason: string;
      readonly occurredAtMs: number;
    };

export interface Decision {
  /** The member's state after the event; unchanged when rejected. */
  readonly state: MemberState;
  readonly ledger: readonly LedgerEntry[];
  readonly outcomes: readonly Outcome[];
}
