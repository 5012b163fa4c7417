import { z } from 'zod';

/**
 * The loyalty program: what a loyalty team configures. Pure schema, no file
 * access (src/config/program-file.ts reads files and calls parseProgram).
 */

const idSchema = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'ids are lower-case letters, digits, "_" and "-"');

export const roundingSchema = z.enum(['floor', 'half_up', 'ceil']);

export const tierSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(64),
    /** Qualifying points needed to hold this tier. The first tier must be 0. */
    qualifyingPointsMin: z.number().int().min(0),
  })
  .strict();

export const programSchema = z
  .object({
    id: idSchema,
    name: z.string().min(1).max(128),
    /** The currency in which purchase amounts are accepted (ISO 4217). */
    currency: z.string().regex(/^[A-Z]{3}$/),
    /** The points currency this program issues. */
    pointsCurrency: idSchema.default('points'),
    earn: z
      .object({
        /** Points for every `perAmountMinor` minor units spent: 1 point per 100 cents = 1 per euro. */
        points: z.number().int().min(0).max(1_000_000),
        perAmountMinor: z.number().int().min(1).max(1_000_000_000),
        rounding: roundingSchema,
      })
      .strict(),
    tiers: z.array(tierSchema).min(1).max(32),
  })
  .strict()
  .superRefine((program, context) => {
    const first = program.tiers[0];
    if (first !== undefined && first.qualifyingPointsMin !== 0) {
      context.addIssue({ code: 'custom', path: ['tiers', 0, 'qualifyingPointsMin'], message: 'the first tier must start at 0' });
    }
    for (let index = 1; index < program.tiers.length; index++) {
      const previous = program.tiers[index - 1]!;
      const tier = program.tiers[index]!;
      if (tier.qualifyingPointsMin <= previous.qualifyingPointsMin) {
        context.addIssue({
          code: 'custom',
          path: ['tiers', index, 'qualifyingPointsMin'],
          message: 'tiers must be ordered by strictly increasing qualifyingPointsMin',
        });
      }
    }
    const ids = new Set<string>();
    program.tiers.forEach((tier, index) => {
      if (ids.has(tier.id)) context.addIssue({ code: 'custom', path: ['tiers', index, 'id'], message: `duplicate tier id ${tier.id}` });
      ids.add(tier.id);
    });
  });

export type Program = Readonly<z.infer<typeof programSchema>>;
export type Tier = z.infer<typeof tierSchema>;
