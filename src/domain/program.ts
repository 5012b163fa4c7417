import { z } from 'zod';

/**
 * The loyalty program: what a loyalty team configures. Pure schema, no file
 * access (src/config/program-file.ts reads files and calls programSchema).
 * docs/program.md explains every field with an example; keep them together.
 *
 * Everything optional has a default that switches the feature off, so the
 * smallest program (config/programs/simple.yaml) is base earn plus tiers.
 */

/** Ids become object keys in member state, so the one lower-case Object.prototype name is refused. */
const RESERVED_IDS: ReadonlySet<string> = new Set(['constructor']);

export const idSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'ids are lower-case letters, digits, "_" and "-"')
  .refine((id) => !RESERVED_IDS.has(id), 'this id is reserved');

/** A SKU, category, channel, partner or segment name as producers send it. */
const labelSchema = z.string().min(1).max(64);
const labelListSchema = z.array(labelSchema).min(1).max(10_000);
const attributeKeySchema = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, 'attribute names are letters, digits, "_" and "-", starting with a letter')
  .refine((key) => !RESERVED_IDS.has(key), 'this attribute name is reserved');

export const roundingSchema = z.enum(['floor', 'half_up', 'ceil']);
const isoDateTimeSchema = z.iso.datetime({ offset: true });
const pointsSchema = z.number().int().min(1).max(100_000_000);
const percentSchema = z.number().int().min(100).max(10_000);

/** When a lot of points expires. */
export const expirySchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('none') }).strict(),
  /** N months after earning, at the end of that day. */
  z.object({ kind: z.literal('rolling'), months: z.number().int().min(1).max(120) }).strict(),
  /** At the end of the period of earning, plus `periodsAfter` whole periods. */
  z
    .object({
      kind: z.literal('calendar'),
      period: z.enum(['month', 'quarter', 'year']),
      periodsAfter: z.number().int().min(0).max(10).default(0),
    })
    .strict(),
  /** Every point of the currency expires after N months without member activity. */
  z.object({ kind: z.literal('inactivity'), months: z.number().int().min(1).max(120) }).strict(),
]);

export const pointsCurrencySchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(64).optional(),
    /** Whether earning this currency also credits a tier-qualifying balance. */
    qualifying: z.boolean().default(true),
    expiry: expirySchema.default({ kind: 'none' }),
    /** The sweep tells members about points expiring within this many days. */
    expiringSoonDays: z.number().int().min(1).max(366).optional(),
    /**
     * What points are worth, for the liability report: `minor` units of the
     * program's money per `perPoints` points (1 cent per point = { minor: 1, perPoints: 1 }).
     */
    value: z
      .object({ minor: z.number().int().min(0).max(1_000_000), perPoints: z.number().int().min(1).max(1_000_000) })
      .strict()
      .optional(),
    /**
     * Share of issued points expected never to be redeemed (expire or are
     * forfeited), for the liability net of breakage in reports; absent: the
     * breakage observed so far (expired ÷ issued) is used.
     */
    expectedBreakagePercent: z.number().int().min(0).max(100).optional(),
  })
  .strict();

/**
 * Which purchases (and which lines of them) a rule or promotion applies to.
 * skus and categories select lines (a line matches when either lists it);
 * channels, partners and minBasketMinor are conditions on the whole order.
 * Every condition given must hold.
 */
export const scopeSchema = z
  .object({
    skus: labelListSchema.optional(),
    categories: labelListSchema.optional(),
    channels: labelListSchema.optional(),
    partners: labelListSchema.optional(),
    minBasketMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  })
  .strict();

/**
 * multiplier: the rule's points are base × (percent − 100) / 100 on top of the
 * base (200 = double points); several multipliers add up.
 * bonus: fixed points once per order, or per unit of the matching lines.
 */
export const awardSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('multiplier'), percent: percentSchema }).strict(),
  z.object({ kind: z.literal('bonus'), points: pointsSchema, per: z.enum(['order', 'unit']).default('order') }).strict(),
]);

export const earnRuleSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(128).optional(),
    when: scopeSchema.prefault({}),
    award: awardSchema,
    /** Points currency credited; default: earn.currency. */
    currency: idSchema.optional(),
    qualifying: z.boolean().default(true),
  })
  .strict();

const budgetSchema = z
  .object({
    points: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
    uses: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  })
  .strict();

export const promotionSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(128),
    /** Inclusive start and exclusive end, ISO 8601 with offset, compared with the event time. */
    startsAt: isoDateTimeSchema,
    endsAt: isoDateTimeSchema,
    /** Who may benefit: every condition given must hold. */
    eligibility: z
      .object({
        tiers: z.array(idSchema).min(1).max(32).optional(),
        segments: labelListSchema.optional(),
        attributes: z.record(attributeKeySchema, z.string().max(256)).optional(),
      })
      .strict()
      .prefault({}),
    when: scopeSchema.prefault({}),
    award: awardSchema,
    currency: idSchema.optional(),
    qualifying: z.boolean().default(true),
    budget: z
      .object({
        /** Per member: kept in member state. */
        perMember: budgetSchema.optional(),
        /** Across all members: enforced through the BudgetPort, shared by every actor. */
        global: budgetSchema.optional(),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export const tierSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(64),
    /** Qualifying points needed (basis `points`). The first tier must be 0. */
    qualifyingPointsMin: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    /** Spend in minor units needed (basis `spend`). The first tier must be 0. */
    qualifyingSpendMinorMin: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    /** Tier earn multiplier on base points: 150 = +50 %. */
    earnMultiplierPercent: percentSchema.default(100),
  })
  .strict();

export const tierQualificationSchema = z
  .object({
    /** What tiers are measured on: qualifying points of `currency`, or purchase spend. */
    basis: z.enum(['points', 'spend']).default('points'),
    currency: idSchema.optional(),
    window: z
      .discriminatedUnion('kind', [
        z.object({ kind: z.literal('lifetime') }).strict(),
        z.object({ kind: z.literal('calendar_year') }).strict(),
        z.object({ kind: z.literal('rolling_months'), months: z.number().int().min(1).max(36) }).strict(),
      ])
      .default({ kind: 'lifetime' }),
    /** At the end of a period below the tier's threshold: one tier down, or to the tier the balance supports. */
    downgrade: z.enum(['one_step', 'to_supported']).default('one_step'),
    /** Days after the period end during which the member can requalify before the downgrade lands. */
    graceDays: z.number().int().min(0).max(366).default(0),
  })
  .strict();

export const returnsSchema = z
  .object({
    /** Days after the purchase day in which a return can reference the order. */
    windowDays: z.number().int().min(1).max(366),
    /** When a clawback exceeds the spendable balance: go negative, forgive the rest, or record a debt repaid from future earns. */
    shortfall: z.enum(['negative', 'floor', 'debt']).default('floor'),
    /**
     * Orders kept per member; beyond this the oldest can no longer be returned.
     * Why 100: every event re-encodes the member's state, so its cost grows with
     * the orders kept; few members place 100 orders inside one return window.
     */
    ordersMax: z.number().int().min(1).max(10_000).default(100),
  })
  .strict();

export const rewardSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(128),
    points: pointsSchema,
    currency: idSchema.optional(),
    /** Tiers allowed to redeem it; default: all. */
    tiers: z.array(idSchema).min(1).max(32).optional(),
  })
  .strict();

export const activityTypeSchema = z.enum(['review', 'referral', 'profile_completed', 'newsletter_signup', 'custom']);

export const activityRuleSchema = z
  .object({
    id: idSchema,
    activity: activityTypeSchema,
    /** Required for `custom`: the producer's activity name. */
    customType: labelSchema.optional(),
    points: pointsSchema,
    currency: idSchema.optional(),
    qualifying: z.boolean().default(false),
    /** At most `count` rewarded per member per period. */
    cap: z
      .object({
        count: z.number().int().min(1).max(1_000_000),
        period: z.enum(['day', 'week', 'month', 'year', 'lifetime']),
      })
      .strict()
      .optional(),
  })
  .strict();

export const challengeSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(128),
    kind: z.literal('purchase_count'),
    /** `count` purchases of at least `minAmountMinor` within `withinDays`. */
    count: z.number().int().min(1).max(100),
    withinDays: z.number().int().min(1).max(366),
    minAmountMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
    repeatable: z.boolean().default(false),
  })
  .strict();

export const benefitSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(128),
    trigger: z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('tier_reached'), tierId: idSchema }).strict(),
      /** Lifetime earned points (net of returns) of `currency` reach `points`. */
      z.object({ kind: z.literal('points_milestone'), points: pointsSchema, currency: idSchema.optional() }).strict(),
      z.object({ kind: z.literal('challenge_completed'), challengeId: idSchema }).strict(),
      /** Each term of a paid membership plan (a join or a renewal): once per term. */
      z.object({ kind: z.literal('paid_term_started'), planId: idSchema }).strict(),
      /** A badge earned (once per member, as the badge itself). */
      z.object({ kind: z.literal('badge_earned'), badgeId: idSchema }).strict(),
    ]),
    issue: z
      .object({
        /** voucher: redeemable once; free_shipping and custom: entitlements valid until they expire. */
        kind: z.enum(['voucher', 'free_shipping', 'custom']),
        validDays: z.number().int().min(1).max(3_660),
        codePrefix: z.string().regex(/^[A-Z0-9]{1,12}$/, 'code prefixes are 1-12 upper-case letters or digits').default('V'),
        description: z.string().max(256).optional(),
      })
      .strict(),
  })
  .strict();


/**
 * A paid membership plan (a hybrid program: a fee buys a term of benefits on
 * top of the free program). A `membership_fee` event of exactly `feeMinor`
 * starts or renews a term of `termMonths`; without a renewal the plan lapses
 * `graceDays` after the term ends.
 */
export const paidPlanSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(128),
    /** The price of one term, in minor units of the program's currency. */
    feeMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    /** 1 = monthly, 12 = yearly. */
    termMonths: z.number().int().min(1).max(36),
    /** Days after the term end in which a renewal continues the membership without a gap. */
    graceDays: z.number().int().min(0).max(90).default(0),
    /** The plan's earn multiplier on base points (ledger rule `earn:paid:<id>`): 200 = +100 %. */
    earnMultiplierPercent: percentSchema.default(100),
    /** Whether the plan's extra points count toward tiers (bought points do not buy status unless this says so). */
    qualifying: z.boolean().default(false),
    /** While the plan is active the member holds at least this tier. */
    tierId: idSchema.optional(),
    /** The sweep sends a `paid_membership` outcome (action `renewal_due`) this many days before the term ends. */
    renewalNoticeDays: z.number().int().min(1).max(90).optional(),
  })
  .strict();

/** A cause members can donate points to. */
export const causeSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(128),
    /** Points currency donated; default: the earn currency. */
    currency: idSchema.optional(),
    /** Smallest donation accepted. */
    minPoints: pointsSchema.default(1),
  })
  .strict();

const countSchema = z.number().int().min(1).max(1_000_000);

/** What earns a badge: counts over the member's lifetime, or a streak of consecutive periods. */
export const badgeRuleSchema = z.discriminatedUnion('kind', [
  /** `count` purchases of at least `minAmountMinor`. */
  z.object({ kind: z.literal('purchase_count'), count: countSchema, minAmountMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0) }).strict(),
  /** `count` purchases with at least one line in one of `categories`. */
  z.object({ kind: z.literal('category_purchases'), categories: labelListSchema, count: countSchema }).strict(),
  /** Lifetime spend (purchase amounts) of at least `amountMinor`. */
  z.object({ kind: z.literal('spend'), amountMinor: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER) }).strict(),
  /** A purchase in each of `count` consecutive weeks (Monday start) or months. */
  z.object({ kind: z.literal('streak'), period: z.enum(['week', 'month']), count: z.number().int().min(2).max(520) }).strict(),
  /** `count` rewarded activities of one type (custom activities name their customType). */
  z.object({ kind: z.literal('activity_count'), activity: activityTypeSchema, customType: labelSchema.optional(), count: countSchema }).strict(),
  /** `count` donations. */
  z.object({ kind: z.literal('donation_count'), count: countSchema }).strict(),
]);

export const badgeSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(128),
    description: z.string().max(256).optional(),
    rule: badgeRuleSchema,
    /** Points credited (spendable at once, ledger kind `activity`, rule = the badge id) when the badge is earned. */
    points: pointsSchema.optional(),
    currency: idSchema.optional(),
  })
  .strict();

export const programSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(128),
    /** The currency in which purchase amounts are accepted (ISO 4217). */
    currency: z.string().regex(/^[A-Z]{3}$/, 'currency must be an ISO 4217 code such as EUR'),
    /** Fixed offset for calendar periods (days, months, years); 60 = UTC+01:00. */
    utcOffsetMinutes: z.number().int().min(-840).max(840).default(0),
    /** Points currencies the program issues; the first is the default everywhere. */
    currencies: z.array(pointsCurrencySchema).min(1).max(8).default([{ id: 'points', qualifying: true, expiry: { kind: 'none' } }]),
    earn: z
      .object({
        /** Points for every `perAmountMinor` minor units spent: 1 point per 100 cents = 1 per euro. */
        points: z.number().int().min(0).max(1_000_000),
        perAmountMinor: z.number().int().min(1).max(1_000_000_000),
        rounding: roundingSchema,
        currency: idSchema.optional(),
        /** Days purchase points stay pending before they become spendable (0 = at once). */
        pendingDays: z.number().int().min(0).max(366).default(0),
        rules: z.array(earnRuleSchema).max(500).default([]),
      })
      .strict(),
    tiers: z.array(tierSchema).min(1).max(32),
    tierQualification: tierQualificationSchema.prefault({}),
    /** Absent: returns are refused and orders are not kept. */
    returns: returnsSchema.optional(),
    redemption: z
      .object({
        /** Days a redemption can be cancelled (and is kept in member state). */
        cancelWindowDays: z.number().int().min(0).max(366).default(30),
        /** A catalog restricts rewards, prices and tiers; absent: any reward id at the price sent. */
        rewards: z.array(rewardSchema).max(10_000).optional(),
      })
      .strict()
      .prefault({}),
    activities: z.array(activityRuleSchema).max(100).default([]),
    promotions: z.array(promotionSchema).max(500).default([]),
    challenges: z.array(challengeSchema).max(50).default([]),
    benefits: z.array(benefitSchema).max(200).default([]),
    membership: z
      .object({
        /** The first event of an unknown member enrolls them; off: such events are refused. */
        autoEnroll: z.boolean().default(true),
        /** On unenroll: forfeit all points (ledgered) or keep them for a later re-enrollment. */
        unenrollPolicy: z.enum(['forfeit', 'keep']).default('forfeit'),
      })
      .strict()
      .prefault({}),
    /** Paid membership plans (absent: none). */
    paidMemberships: z.array(paidPlanSchema).max(20).default([]),
    /** Causes members can donate points to (absent: donations are refused). */
    donations: z.object({ causes: z.array(causeSchema).min(1).max(1_000) }).strict().optional(),
    badges: z.array(badgeSchema).max(100).default([]),
    /** Member communication outcomes beyond those every program has. */
    communications: z
      .object({
        /** The sweep sends each active member a `balance_digest` at the start of every week or month. */
        digest: z.object({ period: z.enum(['week', 'month']) }).strict().optional(),
      })
      .strict()
      .optional(),
    reports: z
      .object({
        /** A member without activity for this many days counts as churned (inactive) in the reports. */
        inactiveAfterDays: z.number().int().min(1).max(3_660).optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine(
    (program, context) => {
      // Cross-field rules run even when a field has a type error, so one
      // validation names every bad field; a shape the rules cannot read
      // (already reported as a type error) is skipped.
      try {
        const issue = (path: (string | number)[], message: string) => context.addIssue({ code: 'custom', path, message });
        const currencyIds = uniqueIds(program.currencies, ['currencies'], issue);
        const checkCurrency = (id: string | undefined, path: (string | number)[]) => {
          if (id !== undefined && !currencyIds.has(id)) issue(path, `unknown points currency ${id}`);
        };
        program.currencies.forEach((currency, index) => {
          if (currency.expiringSoonDays !== undefined && currency.expiry.kind === 'none') {
            issue(['currencies', index, 'expiringSoonDays'], 'a currency without expiry has nothing expiring soon');
          }
        });
        checkCurrency(program.earn.currency, ['earn', 'currency']);
        refineTiers(program, issue);
        const tierIds = new Set(program.tiers.map((tier) => tier.id));
        const checkTier = (id: string, path: (string | number)[]) => {
          if (!tierIds.has(id)) issue(path, `unknown tier ${id}`);
        };
        const qualification = program.tierQualification;
        checkCurrency(qualification.currency, ['tierQualification', 'currency']);
        if (qualification.basis === 'points') {
          const tierCurrency = program.currencies.find((currency) => currency.id === (qualification.currency ?? program.currencies[0]?.id));
          if (tierCurrency !== undefined && !tierCurrency.qualifying) {
            issue(['tierQualification', 'currency'], `tiers are measured on ${tierCurrency.id}, which has qualifying: false`);
          }
        }
        if (qualification.window.kind === 'lifetime' && qualification.graceDays > 0) {
          issue(['tierQualification', 'graceDays'], 'a lifetime window never downgrades, so a grace period has no effect');
        }
        // Rules, promotions, activities and benefits all name ledger entries: one namespace.
        const ruleIds = new Set<string>();
        const claimRuleId = (id: string, path: (string | number)[]) => {
          if (ruleIds.has(id)) issue(path, `duplicate rule id ${id} (rules, promotions, activities and benefits share ids)`);
          ruleIds.add(id);
        };
        program.earn.rules.forEach((rule, index) => {
          claimRuleId(rule.id, ['earn', 'rules', index, 'id']);
          checkCurrency(rule.currency, ['earn', 'rules', index, 'currency']);
          refineAward(rule.award, rule.when, ['earn', 'rules', index], issue);
        });
        program.promotions.forEach((promotion, index) => {
          const path = ['promotions', index];
          claimRuleId(promotion.id, [...path, 'id']);
          checkCurrency(promotion.currency, [...path, 'currency']);
          refineAward(promotion.award, promotion.when, path, issue);
          if (Date.parse(promotion.endsAt) <= Date.parse(promotion.startsAt)) issue([...path, 'endsAt'], 'endsAt must be after startsAt');
          promotion.eligibility.tiers?.forEach((tierId, tierIndex) => checkTier(tierId, [...path, 'eligibility', 'tiers', tierIndex]));
          for (const which of ['perMember', 'global'] as const) {
            const budget = promotion.budget[which];
            if (budget !== undefined && budget.points === undefined && budget.uses === undefined) {
              issue([...path, 'budget', which], 'a budget needs points, uses or both');
            }
          }
        });
        const activityKeys = new Set<string>();
        program.activities.forEach((activity, index) => {
          const path = ['activities', index];
          claimRuleId(activity.id, [...path, 'id']);
          checkCurrency(activity.currency, [...path, 'currency']);
          if (activity.activity === 'custom' && activity.customType === undefined) issue([...path, 'customType'], 'custom activities need a customType');
          if (activity.activity !== 'custom' && activity.customType !== undefined) issue([...path, 'customType'], 'only custom activities have a customType');
          const key = activityKey(activity.activity, activity.customType);
          if (activityKeys.has(key)) issue([...path, 'activity'], `two rules reward the same activity ${key}`);
          activityKeys.add(key);
        });
        const challengeIds = uniqueIds(program.challenges, ['challenges'], issue);
        const planIds = uniqueIds(program.paidMemberships, ['paidMemberships'], issue);
        program.paidMemberships.forEach((plan, index) => {
          if (plan.tierId !== undefined) checkTier(plan.tierId, ['paidMemberships', index, 'tierId']);
        });
        const causes = program.donations?.causes ?? [];
        uniqueIds(causes, ['donations', 'causes'], issue);
        causes.forEach((cause, index) => {
          claimRuleId(cause.id, ['donations', 'causes', index, 'id']);
          checkCurrency(cause.currency, ['donations', 'causes', index, 'currency']);
        });
        const badgeIds = new Set<string>();
        program.badges.forEach((badge, index) => {
          const path = ['badges', index];
          if (badgeIds.has(badge.id)) issue([...path, 'id'], `duplicate id ${badge.id}`);
          badgeIds.add(badge.id);
          claimRuleId(badge.id, [...path, 'id']);
          checkCurrency(badge.currency, [...path, 'currency']);
          if (badge.currency !== undefined && badge.points === undefined) issue([...path, 'currency'], 'a badge currency needs points to credit');
          const rule = badge.rule;
          if (rule.kind === 'activity_count') {
            if (rule.activity === 'custom' && rule.customType === undefined) issue([...path, 'rule', 'customType'], 'custom activities need a customType');
            if (rule.activity !== 'custom' && rule.customType !== undefined) issue([...path, 'rule', 'customType'], 'only custom activities have a customType');
            const key = activityKey(rule.activity, rule.customType);
            if (!activityKeys.has(key)) issue([...path, 'rule', 'activity'], `no activity rule rewards ${key}, so the badge could never be earned`);
          }
          if (rule.kind === 'donation_count' && causes.length === 0) issue([...path, 'rule'], 'the program takes no donations (donations.causes)');
        });
        program.benefits.forEach((benefit, index) => {
          const path = ['benefits', index];
          claimRuleId(benefit.id, [...path, 'id']);
          const trigger = benefit.trigger;
          if (trigger.kind === 'tier_reached') checkTier(trigger.tierId, [...path, 'trigger', 'tierId']);
          if (trigger.kind === 'points_milestone') checkCurrency(trigger.currency, [...path, 'trigger', 'currency']);
          if (trigger.kind === 'challenge_completed' && !challengeIds.has(trigger.challengeId)) {
            issue([...path, 'trigger', 'challengeId'], `unknown challenge ${trigger.challengeId}`);
          }
          if (trigger.kind === 'paid_term_started' && !planIds.has(trigger.planId)) issue([...path, 'trigger', 'planId'], `unknown paid membership plan ${trigger.planId}`);
          if (trigger.kind === 'badge_earned' && !badgeIds.has(trigger.badgeId)) issue([...path, 'trigger', 'badgeId'], `unknown badge ${trigger.badgeId}`);
        });
        const rewards = program.redemption.rewards ?? [];
        uniqueIds(rewards, ['redemption', 'rewards'], issue);
        rewards.forEach((reward, index) => {
          checkCurrency(reward.currency, ['redemption', 'rewards', index, 'currency']);
          reward.tiers?.forEach((tierId, tierIndex) => checkTier(tierId, ['redemption', 'rewards', index, 'tiers', tierIndex]));
        });
      } catch (error) {
        if (!(error instanceof TypeError)) throw error;
      }
    },
    { when: () => true },
  );

type IssueFn = (path: (string | number)[], message: string) => void;

function uniqueIds(items: readonly { id: string }[], path: (string | number)[], issue: IssueFn): Set<string> {
  const ids = new Set<string>();
  items.forEach((item, index) => {
    if (ids.has(item.id)) issue([...path, index, 'id'], `duplicate id ${item.id}`);
    ids.add(item.id);
  });
  return ids;
}

function refineTiers(
  program: { readonly tiers: readonly Tier[]; readonly tierQualification: { readonly basis: 'points' | 'spend' } },
  issue: IssueFn,
): void {
  uniqueIds(program.tiers, ['tiers'], issue);
  const field = program.tierQualification.basis === 'points' ? 'qualifyingPointsMin' : 'qualifyingSpendMinorMin';
  const other = field === 'qualifyingPointsMin' ? 'qualifyingSpendMinorMin' : 'qualifyingPointsMin';
  let previous: number | undefined;
  program.tiers.forEach((tier, index) => {
    const threshold = tier[field];
    if (tier[other] !== undefined) issue(['tiers', index, other], `tiers are measured on ${program.tierQualification.basis}; use ${field}`);
    if (threshold === undefined) {
      issue(['tiers', index, field], `every tier needs ${field} (tierQualification.basis is ${program.tierQualification.basis})`);
      return;
    }
    if (index === 0 && threshold !== 0) issue(['tiers', 0, field], 'the first tier must start at 0');
    if (previous !== undefined && threshold <= previous) issue(['tiers', index, field], `tiers must be ordered by strictly increasing ${field}`);
    previous = threshold;
  });
}

function refineAward(
  award: z.infer<typeof awardSchema>,
  when: z.infer<typeof scopeSchema>,
  path: (string | number)[],
  issue: IssueFn,
): void {
  if (award.kind === 'bonus' && award.per === 'unit' && when.skus === undefined && when.categories === undefined) {
    issue([...path, 'award', 'per'], 'a per-unit bonus needs when.skus or when.categories to say which units');
  }
}

/** The key an activity rule is found by: the activity type, or custom:<customType>. */
export function activityKey(activity: string, customType: string | undefined): string {
  return activity === 'custom' ? `custom:${customType ?? ''}` : activity;
}

export type Program = Readonly<z.infer<typeof programSchema>>;
export type Tier = z.infer<typeof tierSchema>;
export type PointsCurrency = z.infer<typeof pointsCurrencySchema>;
export type Expiry = z.infer<typeof expirySchema>;
export type Scope = z.infer<typeof scopeSchema>;
export type Award = z.infer<typeof awardSchema>;
export type EarnRule = z.infer<typeof earnRuleSchema>;
export type Promotion = z.infer<typeof promotionSchema>;
export type ActivityRule = z.infer<typeof activityRuleSchema>;
export type ActivityType = z.infer<typeof activityTypeSchema>;
export type Challenge = z.infer<typeof challengeSchema>;
export type Benefit = z.infer<typeof benefitSchema>;
export type Reward = z.infer<typeof rewardSchema>;
export type PaidPlan = z.infer<typeof paidPlanSchema>;
export type Cause = z.infer<typeof causeSchema>;
export type Badge = z.infer<typeof badgeSchema>;
export type BadgeRule = z.infer<typeof badgeRuleSchema>;
