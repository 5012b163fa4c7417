import { describe, expect, it } from 'vitest';
import type { RestoredPosition } from '../../../src/actors/protocol.js';
import { createLogger } from '../../../src/log.js';
import type { ActorRunner, Ingest } from '../../../src/routing/ingest.js';
import { actorOfPartition } from '../../../src/routing/partitioner.js';
import { PartitionConsumers } from '../../../src/runtime/partition-consumers.js';

/** Cluster mode's intake lifecycle with the actors, the consumer and the intake replaced by recorders. */
const ACTORS = 2;

function setup(options: { ownFails?: boolean; ownDelayMs?: number; consumerFails?: boolean } = {}) {
  const steps: string[] = [];
  const fatal: unknown[] = [];
  const failed: string[] = [];
  const pokes: number[] = [];
  const consumers = new PartitionConsumers({
    actors: ACTORS,
    own: async (actor, partition, epoch): Promise<RestoredPosition> => {
      steps.push(`own p${partition} e${epoch} a${actor}`);
      if (options.ownDelayMs !== undefined) await new Promise((resolve) => setTimeout(resolve, options.ownDelayMs));
      if (options.ownFails === true) throw new Error('restore failed');
      return { partition, changelogSeq: 7, watermark: 40, publishedWatermark: 35, snapshotSeq: undefined, commits: 3, bytes: 100, tookMs: 1 };
    },
    releaseActor: async (actor, partition) => void steps.push(`release p${partition} a${actor}`),
    resetConsumer: async (partition, after) => {
      steps.push(`consumer p${partition} after ${after}`);
      if (options.consumerFails === true) throw new Error('timeout');
    },
    createIngest: (partition) =>
      ({
        ackPending: 2,
        consumerPending: 5,
        pendingEvents: () => 1,
        poke: () => void pokes.push(partition),
        drain: async () => void steps.push(`drain p${partition}`),
        exclusive: async <T>(action: () => Promise<T>) => {
          steps.push(`pause p${partition}`);
          return action();
        },
      }) as unknown as Ingest,
    startIntake: (partition) => {
      steps.push(`intake p${partition}`);
      return { close: async () => void steps.push(`close p${partition}`) };
    },
    onFatal: (_partition, error) => void fatal.push(error),
    onAcquireFailed: (partition, step, error) => void failed.push(`p${partition} ${step}: ${(error as Error).message}`),
    logger: createLogger('silent'),
  });
  return { consumers, steps, fatal, failed, pokes };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('PartitionConsumers', () => {
  it('takes a partition: the actor restores it, the consumer resumes after its published watermark, intake starts', async () => {
    const { consumers, steps } = setup();
    consumers.acquire(5, 12);
    expect(consumers.restoring).toBe(1);
    await settle();
    expect(steps).toEqual(['own p5 e12 a1', 'consumer p5 after 35', 'intake p5']);
    expect(consumers.consuming()).toEqual([5]);
    expect(consumers.restoring).toBe(0);
    expect([consumers.ackPending, consumers.consumerPending, consumers.pendingEvents(1), consumers.pendingEvents(0)]).toEqual([2, 5, 1, 0]);
  });

  it('hands a partition over in order: intake closed, batches drained, then the actor lets go', async () => {
    const { consumers, steps } = setup();
    consumers.acquire(4, 1);
    await settle();
    await consumers.release(4);
    expect(steps).toEqual(['own p4 e1 a0', 'consumer p4 after 35', 'intake p4', 'close p4', 'drain p4', 'release p4 a0']);
    expect(consumers.consuming()).toEqual([]);
  });

  it('does not take a partition released or lost before its turn, and hands over one released mid-restore after it', async () => {
    const { consumers, steps } = setup({ ownDelayMs: 30 });
    consumers.acquire(1, 1);
    consumers.acquire(3, 2);
    consumers.lost(3, 'test'); // before its turn: never taken
    consumers.acquire(5, 3);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const released = consumers.release(5); // mid-restore: taken, then handed over
    await released;
    expect(steps.filter((step) => step.includes('p5'))).toEqual(['own p5 e3 a1', 'consumer p5 after 35', 'intake p5', 'close p5', 'drain p5', 'release p5 a1']);
    await settle();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(steps.filter((step) => step.includes('p3'))).toEqual([]);
    expect(consumers.consuming()).toEqual([1]);
  });

  it('stops taking a lost partition\'s messages at once, then drains and releases it', async () => {
    const { consumers, steps } = setup();
    consumers.acquire(2, 9);
    await settle();
    consumers.lost(2, 'lease not renewed');
    expect(steps.at(-1)).toBe('close p2'); // synchronously
    await settle();
    expect(steps.slice(3)).toEqual(['close p2', 'close p2', 'drain p2', 'release p2 a0']);
  });

  it('reports a partition it could not take, with the step, not as fatal: the lease is to be given up and won again later', async () => {
    const { consumers, fatal, failed, steps } = setup({ ownFails: true });
    consumers.acquire(6, 1);
    await settle();
    expect(failed).toEqual(['p6 restore: restore failed']);
    expect(fatal).toEqual([]);
    expect(steps).toEqual(['own p6 e1 a0']); // the actor never had it: nothing to release
    expect(consumers.consuming()).toEqual([]);
    expect(consumers.restoring).toBe(0);
  });

  it('lets the actor go when the consumer of a restored partition could not be made, and consumes nothing', async () => {
    const { consumers, fatal, failed, steps } = setup({ consumerFails: true });
    consumers.acquire(7, 2);
    await settle();
    expect(failed).toEqual(['p7 consumer: timeout']);
    expect(fatal).toEqual([]);
    expect(steps).toEqual(['own p7 e2 a1', 'consumer p7 after 35', 'release p7 a1']);
    expect(consumers.consuming()).toEqual([]);
  });

  it('consumes a partition lost mid-restore and won again before that restore finished, under the new epoch', async () => {
    const { consumers, steps } = setup({ ownDelayMs: 30 });
    consumers.acquire(2, 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    consumers.lost(2, 'test'); // mid-restore
    consumers.acquire(2, 9); // won again at once
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(steps.filter((step) => step.startsWith('own'))).toEqual(['own p2 e1 a0', 'own p2 e9 a0']);
    expect(consumers.consuming()).toEqual([2]);
    expect(consumers.restoring).toBe(0);
  });

  it('pauses every partition for an exclusive action, and closes all on close', async () => {
    const { consumers, steps } = setup();
    for (const partition of [0, 1, 2]) consumers.acquire(partition, 1);
    await settle();
    steps.length = 0;
    expect(await consumers.exclusive(async () => 'switched')).toBe('switched');
    expect(steps.sort()).toEqual(['pause p0', 'pause p1', 'pause p2']);
    await consumers.close();
    expect(consumers.consuming()).toEqual([]);
    expect(steps.filter((step) => step.startsWith('release')).sort()).toEqual(['release p0 a0', 'release p1 a1', 'release p2 a0']);
  });

  it('offers room an actor regains to every partition of that actor, not only the one whose batch finished', async () => {
    const { consumers, pokes } = setup();
    for (const partition of [0, 1, 2, 3, 4, 5]) consumers.acquire(partition, 1);
    await settle();
    let room = true;
    const actors: ActorRunner = { actors: ACTORS, hasRoom: () => room, batchesInFlight: () => 0, runBatch: async () => ({}) as never };
    const runner = consumers.runner(actors);
    await runner.runBatch(0, new ArrayBuffer(8));
    expect(pokes.sort()).toEqual([0, 2, 4]); // actor 0's partitions
    expect(pokes.every((partition) => actorOfPartition(partition, ACTORS) === 0)).toBe(true);
    // Room for one batch only: the first poked takes it, and the next time another partition is offered it first.
    pokes.length = 0;
    const takeRoom = () => (room = false);
    room = true;
    const once: ActorRunner = { ...actors, hasRoom: () => room };
    const fair = consumers.runner(once);
    const poked: number[] = [];
    for (let round = 0; round < 3; round++) {
      room = true;
      pokes.length = 0;
      // The first partition poked fills the actor.
      const originalPush = pokes.push.bind(pokes);
      pokes.push = (...items: number[]) => {
        takeRoom();
        return originalPush(...items);
      };
      await fair.runBatch(0, new ArrayBuffer(8));
      poked.push(pokes[0]!);
      pokes.push = originalPush;
    }
    expect(new Set(poked).size).toBe(3); // each round a different partition first
  });
});
