/**
 * A domain rejection: a value, not an exception. The code is stable for
 * machines (dashboards, producers' retry logic); the reason is for people.
 */
export interface Rejection {
  readonly code: RejectionCode;
  readonly reason: string;
}

export type RejectionCode =
  | 'UNKNOWN_MEMBER'
  | 'MEMBER_NOT_ACTIVE'
  | 'MEMBER_ERASED'
  | 'CURRENCY_NOT_ACCEPTED'
  | 'UNKNOWN_CURRENCY'
  | 'DUPLICATE_ORDER'
  | 'RETURNS_DISABLED'
  | 'ORDER_NOT_FOUND'
  | 'RETURN_EXCEEDS_ORDER'
  | 'REFUND_EXCEEDS_ORDER'
  | 'REWARD_UNKNOWN'
  | 'REWARD_PRICE_MISMATCH'
  | 'REWARD_NOT_ALLOWED'
  | 'INSUFFICIENT_POINTS'
  | 'REDEMPTION_NOT_FOUND'
  | 'UNKNOWN_ACTIVITY'
  | 'ACTIVITY_CAP_REACHED'
  | 'QUALIFYING_NOT_SUPPORTED'
  | 'VOUCHER_UNKNOWN'
  | 'VOUCHER_NOT_REDEEMABLE'
  | 'VOUCHER_ALREADY_REDEEMED'
  | 'VOUCHER_EXPIRED'
  | 'PLAN_UNKNOWN'
  | 'FEE_MISMATCH'
  | 'RENEWAL_TOO_EARLY'
  | 'PAID_MEMBERSHIP_NOT_ACTIVE'
  | 'CAUSE_UNKNOWN'
  | 'CAUSE_CURRENCY_MISMATCH'
  | 'DONATION_BELOW_MINIMUM';

export function rejection(code: RejectionCode, reason: string): Rejection {
  return { code, reason };
}
