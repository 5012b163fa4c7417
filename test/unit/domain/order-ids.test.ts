import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileProgram } from '../../../src/domain/compiled.js';
import { newMember } from '../../../src/domain/membership.js';
import type { MemberState, OrderRecord } from '../../../src/domain/state.js';
import { appendToList, dropListHead, hasOrderId, startWork, writeList } from '../../../src/domain/work.js';
import { makeProgram } from './helpers.js';

/**
 * The order-id sets behind hasOrderId move from a list to the list derived
 * from it: after any sequence of appends, head drops, inserts and
 * replacements, over chained works (each one's state the next one's input),
 * a lookup on any list still alive answers as a walk over it does.
 */

const program = compileProgram(makeProgram());

function order(orderId: string): OrderRecord {
  return { orderId } as unknown as OrderRecord;
}

function walk(orders: readonly OrderRecord[], orderId: string): boolean {
  return orders.some((entry) => entry.orderId === orderId);
}

type Step =
  | { kind: 'append'; id: number }
  | { kind: 'drop'; count: number }
  | { kind: 'insert'; at: number; id: number }
  | { kind: 'replace'; at: number }
  | { kind: 'probe' }
  | { kind: 'nextWork' };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('append' as const), id: fc.nat(200) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), count: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('insert' as const), at: fc.nat(100), id: fc.nat(200) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('replace' as const), at: fc.nat(100) }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'probe' as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'nextWork' as const }) },
);

describe('hasOrderId', () => {
  it('answers as a walk over the list, for every list alive, through any sequence of list changes', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 150, maxLength: 400 }), (steps) => {
        let state: MemberState = newMember('m-1', 0, program);
        let work = startWork(program, state, 'e-0', 0, null);
        const alive: (readonly OrderRecord[])[] = [];
        let next = 0;
        // Plain comparisons, thrown as one error (fast-check shrinks it): an expect per probe made this test 20 s.
        const check = (): void => {
          for (const orders of [...alive.slice(-2), work.original.orders, work.state.orders]) {
            for (const entry of orders) if (!hasOrderId(orders, entry.orderId)) throw new Error(`hasOrderId misses ${entry.orderId}, which the list holds`);
            for (let probe = 0; probe < 220; probe += 7) {
              const id = `o-${probe}`;
              if (hasOrderId(orders, id) !== walk(orders, id)) throw new Error(`hasOrderId(${id}) is ${hasOrderId(orders, id)}, a walk says ${walk(orders, id)}`);
            }
          }
        };
        for (const current of steps) {
          const orders = work.state.orders;
          // Ids stay unique in a list, as the domain keeps them (a known order id is refused).
          const fresh = (id: number): string => (walk(orders, `o-${id}`) ? `n-${next++}` : `o-${id}`);
          switch (current.kind) {
            case 'append':
              appendToList(work, 'orders', order(fresh(current.id)));
              break;
            case 'drop':
              if (orders.length > 0) dropListHead(work, 'orders', Math.min(current.count, orders.length));
              break;
            case 'insert':
              writeList(work, 'orders').splice(Math.min(current.at, orders.length), 0, order(fresh(current.id)));
              break;
            case 'replace':
              if (orders.length > 0) {
                const at = current.at % orders.length;
                writeList(work, 'orders')[at] = order(orders[at]!.orderId);
              }
              break;
            case 'probe':
              check();
              break;
            case 'nextWork':
              alive.push(work.original.orders);
              state = work.state;
              work = startWork(program, state, `e-${next++}`, 0, null);
              break;
          }
        }
        check();
      }),
      { numRuns: 40 },
    );
  });
});
