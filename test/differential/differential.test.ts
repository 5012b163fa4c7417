import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { programSchema } from '../../src/domain/index.js';
import { loadProgramFile, Mismatch, runDifferential } from './run.js';

/**
 * Issue 13, item 4: the engine's domain against a second, simple model of
 * docs/program.md (test/differential/model.ts), over seeded events of the
 * retail and travel programs, compared after every event and sweep. A
 * mismatch names the step, the event and both members.
 */

const retail = loadProgramFile('retail');
const travel = loadProgramFile('travel');
/** Retail with instant points and the floor shortfall: returns then reach spendable points, and forgive what is gone. */
const retailInstant = programSchema.parse({ ...retail, earn: { ...retail.earn, pendingDays: 0 }, returns: { ...retail.returns, shortfall: 'floor' } });
const programs = { retail, travel, retailInstant };

function run(options: Parameters<typeof runDifferential>[0]) {
  try {
    return runDifferential(options);
  } catch (error) {
    if (error instanceof Mismatch) {
      // The diff of the two projections says what differs.
      expect(error.engine, error.message).toEqual(error.model);
    }
    throw error;
  }
}

/** DIFFERENTIAL_SCALE multiplies the two long runs' events and members (and divides their gaps): 2 is the first, longer version. */
const SCALE = Number(process.env.DIFFERENTIAL_SCALE ?? 1);

describe('differential: engine domain against the model', () => {
  // Half the events of the first version, twice as far apart: the same 2.5 years (expiry, tier reviews and their
  // downgrades need the time, not the count), in half the suite's time. DIFFERENTIAL_SCALE=2 runs the first version.
  it(`retail: ${(30_000 * SCALE).toLocaleString('en')} events and sweeps over ${200 * SCALE} members, about 2.5 years`, () => {
    const report = run({ program: retail, seed: 20_260_513, members: 200 * SCALE, events: 30_000 * SCALE, gapMs: 1_800_000 / SCALE });
    expect(report.events + report.sweeps).toBe(30_000 * SCALE);
    // The run must reach what it is meant to test, not just pass.
    for (const kind of ['purchase', 'return', 'redemption', 'redemption_cancel', 'activity', 'adjustment', 'voucher_redeem', 'unenroll']) {
      expect(report.accepted[kind] ?? 0, kind).toBeGreaterThan(50);
    }
    for (const code of ['INSUFFICIENT_POINTS', 'ORDER_NOT_FOUND', 'ACTIVITY_CAP_REACHED', 'MEMBER_NOT_ACTIVE', 'REWARD_NOT_ALLOWED']) {
      expect(report.rejected[code] ?? 0, code).toBeGreaterThan(0);
    }
    expect(report.tierChanges).toBeGreaterThan(100);
    expect(report.tierDowngrades).toBeGreaterThan(10);
    expect(report.vouchersIssued).toBeGreaterThan(100);
  });

  it(`travel: ${(25_000 * SCALE).toLocaleString('en')} events and sweeps over 300 members, about 2 years`, () => {
    const report = run({ program: travel, seed: 7_013, members: 300, events: 25_000 * SCALE, gapMs: 2_400_000 / SCALE });
    expect(report.events + report.sweeps).toBe(25_000 * SCALE);
    for (const kind of ['purchase', 'return', 'redemption', 'activity', 'adjustment', 'enroll']) {
      expect(report.accepted[kind] ?? 0, kind).toBeGreaterThan(50);
    }
    expect(report.rejected.UNKNOWN_MEMBER ?? 0).toBeGreaterThan(0);
    expect(report.tierChanges).toBeGreaterThan(20);
    expect(report.tierDowngrades).toBeGreaterThan(2); // a 12-month rolling window and 90 days of grace: few in 2.5 years
  });

  it('retail with instant points and the floor shortfall: 10,000 events', () => {
    const report = run({ program: retailInstant, seed: 404, members: 100, events: 10_000 });
    expect(report.accepted.return ?? 0).toBeGreaterThan(50);
  });

  it('property: any seed, a few members, any of the programs', () => {
    fc.assert(
      fc.property(fc.constantFrom('retail', 'travel', 'retailInstant'), fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 1, max: 6 }), (name, seed, members) => {
        run({ program: programs[name as keyof typeof programs], seed, members, events: 400, gapMs: 4 * 3_600_000 });
      }),
      { numRuns: 40, seed: 13 },
    );
  });
});
