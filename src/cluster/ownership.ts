import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { assert } from '../domain/assert.js';
import { assignPartitions } from './rendezvous.js';

/**
 * Partition ownership for several engine instances on one NATS (issue 17):
 * leases in a JetStream KV bucket, no home-made consensus.
 *
 * - Every instance heartbeats its id into the `instances` bucket, whose TTL
 *   drops an instance that stopped. The live set is that bucket's keys.
 * - Each instance computes the same partition → owner map from the live set
 *   (rendezvous hashing, src/cluster/rendezvous.ts) and acts on its own share:
 * - a partition it should own and no one holds: `create` the lease key (fails
 *   if any lease exists), whose KV revision is the lease's **epoch**;
 * - a partition it holds and should keep: renew by CAS `update` on the
 *   revision it last wrote. The bucket's TTL (max_age) expires a lease that is
 *   not renewed, so a dead owner's partitions are free after at most the TTL;
 * - a partition it holds but should hand over (an instance joined): drain and
 *   commit it (onReleasing), then delete the lease on its revision;
 * - a renewal refused, or not confirmed before the lease could have expired,
 *   means the partition may be someone else's: onLost, stop at once. Leases
 *   alone do not fence a paused owner that resumes (SIGSTOP past the TTL): the
 *   per-partition changelog appended with an expected last sequence does,
 *   and the owner also stops itself when its lease's validity ran out unrenewed.
 */

export interface LeaseValue {
  readonly owner: string;
  /** The revision of the create that won the lease: one number per ownership term, growing. */
  readonly epoch: number;
  readonly renewedAtMs: number;
}

export interface OwnershipHandlers {
  /** The lease is won: restore the partition's state and start consuming it. */
  onAcquired(partition: number, epoch: number): Promise<void> | void;
  /** The partition must go (a new instance takes it): stop consuming, commit what is in flight. The lease is deleted after. */
  onReleasing(partition: number, epoch: number): Promise<void> | void;
  /** The lease is or may be someone else's: stop processing the partition now, commit nothing more for it. */
  onLost(partition: number, epoch: number, reason: string): void;
}

export interface OwnershipOptions {
  readonly instanceId: string;
  readonly partitions: number;
  /** The leases bucket (TTL = leaseTtlMs) and the instances bucket (TTL = leaseTtlMs). */
  readonly leases: KV;
  readonly instances: KV;
  /** The keys of the live heartbeats in `instances` (openOwnershipBuckets: listed without a consumer, see listLiveKeys). */
  readonly listInstances: () => Promise<string[]>;
  readonly leaseTtlMs: number;
  /** How often to heartbeat, renew and rebalance; at most a third of the TTL. */
  readonly tickMs: number;
  readonly handlers: OwnershipHandlers;
  readonly now?: () => number;
  /** Called with an error a tick could not handle (NATS unreachable): the next tick tries again. */
  readonly onError?: (error: unknown) => void;
  /**
   * A round that ran late (its timer fired `lateMs` after it was due) or
   * took long (`tookMs`): past a third of the TTL either way. A late timer
   * means this thread's event loop was busy; renewals wait for it.
   */
  readonly onSlowRound?: (lateMs: number, tookMs: number) => void;
  /** Each confirmed renewal, with how long its compare-and-set took (a histogram for SREs). */
  readonly onRenewed?: (tookMs: number) => void;
}

interface Held {
  epoch: number;
  revision: number;
  /** Until when the lease is surely ours: the last confirmed renewal's send time + TTL − one tick. */
  validUntilMs: number;
  /** Being handed over (draining): renewed meanwhile, its lease deleted when the drain is done. */
  releasing?: Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** JetStream's "wrong last sequence" (10071): a compare-and-set that lost. */
function isWrongLastSequence(error: unknown): boolean {
  const code = (error as { code?: unknown; api_error?: { err_code?: unknown } } | undefined)?.code;
  return code === 10071 || /wrong last sequence/i.test((error as Error | undefined)?.message ?? '');
}

export interface OwnershipBucketsOptions {
  readonly leasesBucket: string;
  readonly instancesBucket: string;
  readonly leaseTtlMs: number;
  readonly tickMs: number;
  readonly replicas: number;
  /** Creates the buckets when missing (asked again while the cluster is busy: see withCreateRetries). */
  readonly create: <T>(create: () => Promise<T>, what: string) => Promise<T>;
}

/** The request timeout of lease and heartbeat operations: one tick, within 0.5-5 s. */
export function ownershipRequestTimeoutMs(tickMs: number): number {
  return Math.min(5_000, Math.max(500, tickMs));
}

/**
 * The two buckets (both with the lease TTL), created with the JetStream API's
 * default timeout and then used with a short one, a tick's
 * (ownershipRequestTimeoutMs). Why: while an R3 bucket elects a new leader
 * after a server's death, its requests go unanswered; a 5 s timeout makes a
 * round last 5 s, and with a 10 s TTL two such rounds outlast a lease's
 * validity (measured: 20 of 64 leases lost, against none when a failed round
 * is over at once and the next tick tries again).
 */
export async function openOwnershipBuckets(
  nc: NatsConnection,
  options: OwnershipBucketsOptions,
): Promise<{ leases: KV; instances: KV; listInstances: () => Promise<string[]> }> {
  const config = { ttl: options.leaseTtlMs, history: 1, replicas: options.replicas };
  const creator = new Kvm(nc);
  await options.create(() => creator.create(options.leasesBucket, config), `bucket ${options.leasesBucket}`);
  await options.create(() => creator.create(options.instancesBucket, config), `bucket ${options.instancesBucket}`);
  const timeout = ownershipRequestTimeoutMs(options.tickMs);
  const kvm = new Kvm(jetstream(nc, { timeout }));
  const instances = await options.create(() => kvm.open(options.instancesBucket), `bucket ${options.instancesBucket}`);
  const jsm = await options.create(() => jetstreamManager(nc, { timeout }), 'the JetStream API');
  return {
    leases: await options.create(() => kvm.open(options.leasesBucket), `bucket ${options.leasesBucket}`),
    instances,
    listInstances: () => listLiveKeys(jsm, instances, options.instancesBucket),
  };
}

/**
 * The keys of a KV bucket whose last value is a put, without a consumer:
 * the stream's subjects (stream info with a subject filter, answered by the
 * stream's leader), then each key's last message. `kv.keys()` creates an
 * ephemeral consumer at every call: one per tick per instance, piling up on
 * the meta leader (23-104 at a time seen), and with a server down about one
 * in four was placed on the dead peer and timed out (a failed round).
 */
async function listLiveKeys(jsm: JetStreamManager, bucket: KV, name: string): Promise<string[]> {
  const prefix = `$KV.${name}.`;
  const info = await jsm.streams.info(`KV_${name}`, { subjects_filter: `${prefix}>` });
  const keys = Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
  const entries = await Promise.all(keys.map((key) => bucket.get(key)));
  return keys.filter((_, index) => entries[index]?.operation === 'PUT');
}

export function leaseKey(partition: number): string {
  return `p${partition}`;
}

export function decodeLease(value: Uint8Array): LeaseValue {
  return JSON.parse(decoder.decode(value)) as LeaseValue;
}

export class PartitionOwnership {
  private readonly held = new Map<number, Held>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: OwnershipOptions) {
    assert(options.tickMs * 3 <= options.leaseTtlMs, 'the tick must be at most a third of the lease TTL (a renewal may be late by one tick)');
    assert(Number.isInteger(options.partitions) && options.partitions >= 1, 'partitions must be a positive integer');
    assert(/^[A-Za-z0-9_-]{1,64}$/.test(options.instanceId), 'an instance id is 1-64 of A-Z a-z 0-9 _ - (it is a KV key)');
    this.now = options.now ?? Date.now;
  }

  /** The partitions this instance holds now, with their epochs. */
  owned(): ReadonlyMap<number, number> {
    return new Map([...this.held].map(([partition, held]) => [partition, held.epoch]));
  }

  /** Whether this instance may still act for `partition` (held and within its validity). */
  holds(partition: number): boolean {
    const held = this.held.get(partition);
    return held !== undefined && this.now() < held.validUntilMs;
  }

  /**
   * Runs the first round and schedules the next. A first round that fails
   * (a bucket just created on a cluster has no stream leader for a moment:
   * "no responders" on $KV.<bucket>) is reported and tried again at the next
   * tick, like any other round, not thrown: an instance must not die of it.
   */
  async start(): Promise<void> {
    await this.tick().catch((error: unknown) => this.options.onError?.(error));
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    const dueAtMs = Date.now() + this.options.tickMs;
    this.timer = setTimeout(() => {
      const startedAtMs = Date.now();
      this.ticking = this.tick()
        .catch((error: unknown) => this.options.onError?.(error))
        .finally(() => {
          const lateMs = startedAtMs - dueAtMs;
          const tookMs = Date.now() - startedAtMs;
          if (Math.max(lateMs, tookMs) > this.options.leaseTtlMs / 3) this.options.onSlowRound?.(lateMs, tookMs);
          this.ticking = undefined;
          this.schedule();
        });
    }, this.options.tickMs);
  }

  /**
   * One round: heartbeat, read the live set, give up what self-fenced, renew
   * or release what is held, take what is ours.
   *
   * The leases are renewed side by side, and the renewals do not wait on the
   * heartbeat: when a nats-server dies, each R3 bucket elects a new leader on
   * its own (~6 s on 2.9.10), and its requests time out meanwhile (5 s each).
   * One at a time, 21 renewals behind a timed-out heartbeat took longer than
   * the lease TTL, and every instance let all its partitions go at once. A
   * round whose live set could not be read renews what it holds and takes
   * nothing and releases nothing (the assignment is unknown); its error is
   * thrown after the renewals.
   */
  async tick(): Promise<void> {
    const { instanceId, partitions, handlers } = this.options;
    const sentAtMs = this.now();
    let live: string[] | undefined;
    let failure: unknown;
    try {
      live = await this.heartbeat(sentAtMs);
    } catch (error) {
      failure = error;
    }
    const desired = live === undefined ? undefined : assignPartitions(partitions, live);

    const renewals: Promise<void>[] = [];
    const releases: [number, Held][] = [];
    for (const [partition, held] of [...this.held]) {
      if (this.now() >= held.validUntilMs) {
        this.lose(partition, held, 'the lease was not renewed in time (paused, or NATS unreachable): it may have expired and moved');
        continue;
      }
      // A partition being handed over is renewed until its drain is done: the drain may take longer than a tick.
      if (held.releasing === undefined && desired !== undefined && desired.get(partition) !== instanceId) releases.push([partition, held]);
      else renewals.push(this.renew(partition, held, sentAtMs));
    }
    await Promise.all(renewals);
    if (this.stopped) return;
    // Handed over in the background, side by side: a drain must not hold up the next rounds' renewals of what is
    // kept (measured under a backlog with a 3 s TTL: a round awaiting the drains outlasted the kept leases' validity).
    for (const [partition, held] of releases) {
      held.releasing = this.release(partition, held).catch((error: unknown) => this.options.onError?.(error));
    }
    if (failure !== undefined) throw failure;
    if (desired === undefined || this.stopped) return;
    const wanted = [...desired].filter(([partition, owner]) => owner === instanceId && !this.held.has(partition)).map(([partition]) => partition);
    const won = await Promise.all(wanted.map((partition) => this.tryAcquire(partition, sentAtMs)));
    for (let index = 0; index < wanted.length; index++) {
      if (this.stopped) return;
      const held = won[index];
      if (held !== undefined) await handlers.onAcquired(wanted[index]!, held.epoch);
    }
  }

  /** Puts this instance's heartbeat and lists the live ones (this one included: its own heartbeat may not be listed yet). */
  private async heartbeat(sentAtMs: number): Promise<string[]> {
    const { instanceId, instances } = this.options;
    await instances.put(instanceId, encoder.encode(JSON.stringify({ instanceId, heartbeatAtMs: sentAtMs, partitions: this.held.size })));
    const live = await this.options.listInstances();
    if (!live.includes(instanceId)) live.push(instanceId);
    return live.sort();
  }

  private async tryAcquire(partition: number, sentAtMs: number): Promise<Held | undefined> {
    const { leases, instanceId, leaseTtlMs, tickMs } = this.options;
    // The epoch is the create's revision; the value is written first with epoch 0 and rewritten at the next renewal.
    let revision: number;
    try {
      revision = await leases.create(leaseKey(partition), encoder.encode(JSON.stringify({ owner: instanceId, epoch: 0, renewedAtMs: sentAtMs })));
    } catch {
      return undefined; // held by another (a previous owner draining, or one that died and whose lease has not expired yet)
    }
    const held: Held = { epoch: revision, revision, validUntilMs: sentAtMs + leaseTtlMs - tickMs };
    this.held.set(partition, held);
    return held;
  }

  private async renew(partition: number, held: Held, sentAtMs: number): Promise<void> {
    const { leases, instanceId, leaseTtlMs, tickMs } = this.options;
    const value: LeaseValue = { owner: instanceId, epoch: held.epoch, renewedAtMs: sentAtMs };
    const started = performance.now();
    try {
      held.revision = await leases.update(leaseKey(partition), encoder.encode(JSON.stringify(value)), held.revision);
      held.validUntilMs = sentAtMs + leaseTtlMs - tickMs;
      this.options.onRenewed?.(performance.now() - started);
    } catch (error) {
      // Only the CAS refusal (the lease moved on) means lost. Anything else (a timeout, JetStream
      // unavailable during a leader election) leaves the lease as it was: the owner keeps it until
      // its validity runs out, and the next tick checks that before acting.
      if (!isWrongLastSequence(error)) {
        this.options.onError?.(error);
        return;
      }
      // A renewal that timed out may have been stored all the same (its answer lost in a leader
      // election): then the lease is still ours, at a revision we were not told. Only another
      // owner's value, or none, is a loss.
      const current = await leases.get(leaseKey(partition)).catch(() => null);
      const lease = current === null || current.operation !== 'PUT' ? undefined : decodeLease(current.value);
      if (current !== null && lease?.owner === instanceId && lease.epoch === held.epoch) {
        held.revision = current.revision;
        held.validUntilMs = Math.min(held.validUntilMs, lease.renewedAtMs + leaseTtlMs - tickMs);
        return;
      }
      this.lose(partition, held, `the lease renewal was refused: ${(error as Error).message}`);
    }
  }

  private async release(partition: number, held: Held): Promise<void> {
    await this.options.handlers.onReleasing(partition, held.epoch);
    // Lost meanwhile (its validity ran out during the drain): not ours to delete any more.
    if (this.held.get(partition) !== held) return;
    this.held.delete(partition);
    // On our revision only: a lease that moved meanwhile is not ours to delete.
    await this.options.leases.delete(leaseKey(partition), { previousSeq: held.revision }).catch(() => undefined);
  }

  private lose(partition: number, held: Held, reason: string): void {
    this.held.delete(partition);
    this.options.handlers.onLost(partition, held.epoch, reason);
  }

  /**
   * Gives a partition up without handing anything over (its acquisition
   * failed, nothing was consumed): forgotten, and its lease deleted on our
   * revision, so that it is won again (a new epoch) at a later tick.
   */
  async giveUp(partition: number): Promise<void> {
    const held = this.held.get(partition);
    if (held === undefined) return;
    this.held.delete(partition);
    await this.options.leases.delete(leaseKey(partition), { previousSeq: held.revision }).catch(() => undefined);
  }

  /**
   * Graceful stop: every held partition is drained (onReleasing) and its lease
   * deleted, so the others take it at their next tick instead of after the TTL;
   * the heartbeat goes too.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.ticking;
    await Promise.all([...this.held].map(([partition, held]) => held.releasing ?? this.release(partition, held)));
    await this.options.instances.delete(this.options.instanceId).catch(() => undefined);
  }

  /** A crash, for tests: stop ticking, keep the leases (they expire by TTL), tell no one. */
  abandon(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
  }
}
