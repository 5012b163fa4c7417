import type { Program } from '../../src/domain/program.js';

/**
 * What the load generator needs to know about the loyalty program to produce
 * events the program accepts: the purchase currency, the rewards one can
 * redeem, the activities it rewards and their caps, the return window and how
 * long earned points stay pending. It is read from the same program file the
 * engine loads (through the engine's own schema, so defaults are the same).
 */

export interface RewardOption {
  id: string;
  points: number;
  /** Points currency id the reward is priced in. */
  currency: string;
  weight: number;
}

export interface ActivityOption {
  activity: 'review' | 'referral' | 'profile_completed' | 'newsletter_signup' | 'custom';
  customType?: string;
  points: number;
  /** Spendable at once in this points currency (the generator's redemption estimate counts them). */
  currency: string;
  /** Times one member is rewarded at most (per period, counted conservatively as "ever"); null: no cap. */
  capCount: number | null;
  weight: number;
}

export interface ProgramModel {
  /** ISO 4217 code purchases are paid in. */
  currency: string;
  /** Points currency base earn credits. */
  pointsCurrency: string;
  earnPoints: number;
  earnPerAmountMinor: number;
  /** Days purchase points stay pending (0: spendable at once). */
  pendingDays: number;
  /** Return window in days; null when the program takes no returns. */
  returnWindowDays: number | null;
  /** Orders a member's state keeps; older ones can no longer be returned. */
  ordersMax: number;
  /** Rewards any tier may redeem (tier-restricted rewards would be refused for most members). */
  rewards: RewardOption[];
  activities: ActivityOption[];
}

/** Relative frequency of each activity type in generated traffic. */
const ACTIVITY_WEIGHTS: Record<ActivityOption['activity'], number> = {
  review: 50,
  referral: 10,
  profile_completed: 10,
  newsletter_signup: 15,
  custom: 15,
};

/** Used when the program has no reward catalog (any reward id is accepted at the price sent). */
export const GENERIC_REWARD = { id: 'gift-card-5', points: 500 } as const;

export function programModelOf(program: Program): ProgramModel {
  const pointsCurrency = program.earn.currency ?? program.currencies[0]!.id;
  const catalog = program.redemption.rewards;
  const rewards: RewardOption[] =
    catalog === undefined
      ? [{ id: GENERIC_REWARD.id, points: GENERIC_REWARD.points, currency: pointsCurrency, weight: 1 }]
      : catalog
          .filter((reward) => reward.tiers === undefined)
          // Cheaper rewards are redeemed more often.
          .map((reward) => ({ id: reward.id, points: reward.points, currency: reward.currency ?? pointsCurrency, weight: 1_000 / reward.points }));
  return {
    currency: program.currency,
    pointsCurrency,
    earnPoints: program.earn.points,
    earnPerAmountMinor: program.earn.perAmountMinor,
    pendingDays: program.earn.pendingDays,
    returnWindowDays: program.returns?.windowDays ?? null,
    ordersMax: program.returns?.ordersMax ?? 0,
    rewards,
    activities: program.activities.map((rule) => ({
      activity: rule.activity,
      ...(rule.customType === undefined ? {} : { customType: rule.customType }),
      points: rule.points,
      currency: rule.currency ?? pointsCurrency,
      capCount: rule.cap?.count ?? null,
      weight: ACTIVITY_WEIGHTS[rule.activity],
    })),
  };
}

/** A model for tests and for programs without returns, rewards or activities. */
export function purchasesOnlyModel(currency = 'EUR'): ProgramModel {
  return {
    currency,
    pointsCurrency: 'points',
    earnPoints: 1,
    earnPerAmountMinor: 100,
    pendingDays: 0,
    returnWindowDays: null,
    ordersMax: 0,
    rewards: [],
    activities: [],
  };
}
