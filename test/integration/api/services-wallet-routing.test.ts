import type { Msg, NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PartitionMemberRouting, type RoutedOutcome, type RoutedRead } from '../../../src/api/member-routing.js';
import { WalletCache } from '../../../src/api/wallet-cache.js';
import { PartitionWalletServer, WalletRouter, walletSubject, type WalletRouterOptions } from '../../../src/cluster/wallet-routing.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { startLoyaltyServices, type LoyaltyServices } from '../../../src/transport/services.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';
import { fakeContext, FakeEngine, purchase, testSettings } from '../../unit/api/fake-context.js';

/**
 * The unpartitioned `<prefix>.svc.wallet` service in cluster mode (issue 17):
 * two instances, each its own NATS connection, its own in-memory "store" of
 * the partitions it holds, a PartitionWalletServer for its owned partitions
 * and PartitionMemberRouting over a WalletRouter, wired as src/api/worker.ts
 * wires the API thread, and each running startLoyaltyServices over that
 * context. In production the services share one queue group and a request
 * lands on either instance; here each instance's services listen on a prefix
 * of their own, so a test can ask each one in turn. Whichever is asked, every
 * member's answer is the owner's (asOf aside: the instant of the read), never
 * the stale copy the non-owner still holds; routing failures come back as the
 * HTTP route's codes, as service errors.
 */

const PARTITIONS = 64;
const WALLET_PREFIX = 'svcroute';
const members = Array.from({ length: 40 }, (_, index) => `member-${String(index).padStart(3, '0')}`);

/** Every member's full history: what a restored partition holds. */
const source = new FakeEngine();

let server: TestNatsServer;
const connections: NatsConnection[] = [];
const walletServers: PartitionWalletServer[] = [];
const services: LoyaltyServices[] = [];
let client: NatsConnection;
let run = 0;

beforeAll(async () => {
  server = await startTestNatsServer();
  client = await connectTest(server.url, { name: 'client' });
  connections.push(client);
  for (const [index, memberId] of members.entries()) {
    for (let order = 0; order <= index % 3; order++) source.apply(purchase(memberId, `o${order}`, 1_000 + 211 * index + order, `2026-11-0${order + 1}T10:00:00Z`));
  }
});

afterAll(async () => {
  for (const one of services) await one.stop().catch(() => undefined);
  for (const one of walletServers) await one.close().catch(() => undefined);
  for (const connection of connections) await connection.close();
  await server?.stop();
});

interface Instance {
  readonly engine: FakeEngine;
  readonly wallets: WalletCache;
  readonly server: PartitionWalletServer;
  readonly routing: PartitionMemberRouting;
  readonly owned: Set<number>;
  /** The subject of this instance's own svc.wallet endpoint. */
  readonly subject: string;
  readonly routed: [RoutedRead, RoutedOutcome][];
}

async function instance(id: string, walletPrefix: string, router: Partial<WalletRouterOptions> = {}, inFlightMax?: number): Promise<Instance> {
  const nc = await connectTest(server.url, { name: id });
  connections.push(nc);
  const engine = new FakeEngine();
  const wallets = new WalletCache(engine);
  const routed: [RoutedRead, RoutedOutcome][] = [];
  const walletServer = new PartitionWalletServer(nc, {
    instanceId: id,
    partitions: PARTITIONS,
    subjectPrefix: walletPrefix,
    read: (memberId) => wallets.json(memberId, engine.program, Date.now()),
  });
  walletServers.push(walletServer);
  const routing = new PartitionMemberRouting(new WalletRouter(nc, { partitions: PARTITIONS, subjectPrefix: walletPrefix, ...router }), {
    partitions: PARTITIONS,
    onRead: (read, outcome) => routed.push([read, outcome]),
    ...(inFlightMax === undefined ? {} : { inFlightMax }),
  });
  const settings = testSettings();
  expect(settings.partitions).toBe(PARTITIONS);
  const servicePrefix = `${walletPrefix}-${id}`;
  services.push(await startLoyaltyServices(nc, { ...fakeContext(engine, settings), wallets, memberRouting: routing }, { subjectPrefix: servicePrefix, queue: id }));
  return { engine, wallets, server: walletServer, routing, owned: new Set(), subject: `${servicePrefix}.svc.wallet`, routed };
}

function membersOf(partition: number): string[] {
  return members.filter((memberId) => partitionOf(memberId, PARTITIONS) === partition);
}

/** As the engine: the partition's state restored, then its wallet subject answered and its reads local. */
async function take(one: Instance, partition: number): Promise<void> {
  for (const memberId of membersOf(partition)) {
    one.engine.states.set(memberId, source.states.get(memberId)!);
    one.engine.ledgers.set(memberId, [...source.ledgers.get(memberId)!]);
  }
  await one.server.own(partition);
  one.owned.add(partition);
  one.routing.setOwned(one.owned);
}

/** As the engine: reads routed from now on, the subject released; the stale state stays in the store. */
async function give(one: Instance, partition: number): Promise<void> {
  one.owned.delete(partition);
  one.routing.setOwned(one.owned);
  await one.server.release(partition);
}

const withoutAsOf = (body: string) => body.replace(/"asOf":"[^"]+"/, '"asOf":"-"');
const ask = (one: Instance, memberId: string): Promise<Msg> => client.request(one.subject, JSON.stringify({ memberId }), { timeout: 10_000 });
const codeOf = (reply: Msg) => ({ status: reply.headers?.get('Nats-Service-Error-Code'), code: reply.headers?.get('Loyalty-Error-Code'), body: reply.json<{ error?: { code: string } }>() });

describe('the svc.wallet service in cluster mode', () => {
  it('answers every member with the owner\'s wallet, whichever instance is asked, never the stale copy', async () => {
    const prefix = `${WALLET_PREFIX}${++run}`;
    const [a, b] = await Promise.all([instance('engine-a', prefix), instance('engine-b', prefix)]);
    for (let partition = 0; partition < PARTITIONS; partition++) await take(partition % 2 === 0 ? a! : b!, partition);
    const ownerOf = (memberId: string) => (partitionOf(memberId, PARTITIONS) % 2 === 0 ? a! : b!);
    expect(members.filter((memberId) => ownerOf(memberId) === a).length).toBeGreaterThan(8);
    expect(members.filter((memberId) => ownerOf(memberId) === b).length).toBeGreaterThan(8);
    // A stale copy on each non-owner (partitions it held before): one purchase, where the owner has all of them.
    for (const memberId of members.filter((id) => source.states.get(id)!.eventCount > 1)) {
      const stale = new FakeEngine();
      stale.apply(purchase(memberId, 'o0', 1, '2026-11-01T10:00:00Z'));
      const other = ownerOf(memberId) === a ? b! : a!;
      other.engine.states.set(memberId, stale.states.get(memberId)!);
      other.engine.ledgers.set(memberId, stale.ledgers.get(memberId)!);
    }

    let staleChecked = 0;
    for (const memberId of members) {
      const owner = ownerOf(memberId);
      const ownersText = withoutAsOf(owner.wallets.json(memberId, owner.engine.program, Date.now())!);
      for (const asked of [a!, b!]) {
        const reply = await ask(asked, memberId);
        expect(reply.headers?.get('Nats-Service-Error-Code') ?? null, `${memberId}: ${reply.string().slice(0, 200)}`).toBeNull();
        expect(withoutAsOf(reply.string()), `${memberId} asked of ${asked === a ? 'a' : 'b'}`).toBe(ownersText);
      }
      if (source.states.get(memberId)!.eventCount > 1) staleChecked += 1;
    }
    expect(staleChecked).toBeGreaterThan(10);
    // Each instance routed exactly the members it does not own, every one answered.
    for (const one of [a!, b!]) {
      expect(one.routed.filter(([, outcome]) => outcome !== 'ok')).toEqual([]);
      expect(one.routed).toHaveLength(members.filter((memberId) => ownerOf(memberId) !== one).length);
    }

    // Unknown at the owner: the same 404 and body as a local miss.
    const unknown = 'nobody-at-all';
    const [fromA, fromB] = [codeOf(await ask(a!, unknown)), codeOf(await ask(b!, unknown))];
    expect(fromA).toEqual(fromB);
    expect(fromA).toMatchObject({ status: '404', code: 'MEMBER_NOT_FOUND', body: { error: { code: 'MEMBER_NOT_FOUND', message: `member ${unknown} is not known` } } });
  }, 60_000);

  it('a partition nobody owns, a silent owner and too many reads in flight are the HTTP route\'s codes, as service errors', async () => {
    const prefix = `${WALLET_PREFIX}${++run}`;
    const a = await instance('engine-a', prefix, { handoverWaitMs: 300, requestTimeoutMs: 300 }, 2);
    const b = await instance('engine-b', prefix);
    for (let partition = 0; partition < PARTITIONS; partition++) await take(b, partition);
    const [unowned, silent] = [members[0]!, members.find((memberId) => partitionOf(memberId, PARTITIONS) !== partitionOf(members[0]!, PARTITIONS))!];

    // Handed over and not taken: a asks for handoverWaitMs, then PARTITION_UNAVAILABLE (503).
    await give(b, partitionOf(unowned, PARTITIONS));
    const startedAt = performance.now();
    const unavailable = codeOf(await ask(a, unowned));
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(250);
    expect(unavailable).toMatchObject({ status: '503', code: 'PARTITION_UNAVAILABLE', body: { error: { code: 'PARTITION_UNAVAILABLE', details: { partition: partitionOf(unowned, PARTITIONS), routingCode: 'PARTITION_UNAVAILABLE' } } } });

    // An owner subscribed that never answers (paused): PARTITION_TIMEOUT (504), not retried.
    await give(b, partitionOf(silent, PARTITIONS));
    const paused = client.subscribe(walletSubject(prefix, partitionOf(silent, PARTITIONS)));
    await client.flush();
    expect(codeOf(await ask(a, silent))).toMatchObject({ status: '504', code: 'PARTITION_TIMEOUT', body: { error: { code: 'PARTITION_TIMEOUT' } } });

    // a bounds its routed reads at 2 in flight: two held by the silent owner, the third is refused at once.
    const held = [ask(a, silent), ask(a, silent)];
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(codeOf(await ask(a, silent))).toMatchObject({ status: '503', code: 'OVERLOADED', body: { error: { code: 'OVERLOADED' } } });
    for (const reply of await Promise.all(held)) expect(codeOf(reply).code).toBe('PARTITION_TIMEOUT');
    paused.unsubscribe();

    // The partitions still owned are answered as ever.
    const fine = members.find((memberId) => ![unowned, silent].map((id) => partitionOf(id, PARTITIONS)).includes(partitionOf(memberId, PARTITIONS)))!;
    expect(withoutAsOf((await ask(a, fine)).string())).toBe(withoutAsOf(b.wallets.json(fine, b.engine.program, Date.now())!));
    expect(a.routed.map(([, outcome]) => outcome)).toEqual(['unavailable', 'timeout', 'overloaded', 'timeout', 'timeout', 'ok']);
  }, 30_000);
});
