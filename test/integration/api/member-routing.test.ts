import type { NatsConnection } from '@nats-io/nats-core';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHttpServer } from '../../../src/api/http.js';
import { ledgerPageJson, PartitionMemberRouting, type RoutedOutcome, type RoutedRead } from '../../../src/api/member-routing.js';
import { WalletCache } from '../../../src/api/wallet-cache.js';
import { decodeCursor } from '../../../src/api/views.js';
import { PartitionWalletServer, WalletRouter, walletSubject, type WalletRouterOptions } from '../../../src/cluster/wallet-routing.js';
import type { LoyaltyEvent } from '../../../src/domain/index.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { sleep } from '../../helpers/engine-process.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';
import { auth, fakeContext, FakeEngine, purchase, testSettings } from '../../unit/api/fake-context.js';

/**
 * Issue 17 end to end, short of engine processes: instances, each its own NATS
 * connection, its own in-memory "store" of the partitions it holds and a
 * fastify app with the real routes, wired as src/api/worker.ts wires the API
 * thread in cluster mode (PartitionWalletServer answering the owned
 * partitions' subjects, PartitionMemberRouting over a WalletRouter deciding
 * local or routed). An HTTP read on an instance that does not own the
 * member's partition answers what the owner's own HTTP read answers: wallet
 * and ledger, byte for byte (asOf aside: it is the instant of the read). The
 * nats-server's max_payload is 64 KiB here, so a full ledger page does not fit
 * in one reply: it arrives cut short, and paging on gives every entry.
 */

const PARTITIONS = 64;
const MAX_PAYLOAD = 64 * 1024;
const members = Array.from({ length: 48 }, (_, index) => `member-${String(index).padStart(3, '0')}`);
const HEAVY = 'heavy-member';

/** Every member's full history: what a restored partition holds. */
const source = new FakeEngine();

let server: TestNatsServer;
const connections: NatsConnection[] = [];
const apps: FastifyInstance[] = [];
const servers: PartitionWalletServer[] = [];
let run = 0;

beforeAll(async () => {
  server = await startTestNatsServer({ extraConfig: `max_payload: ${MAX_PAYLOAD}` });
  for (const [index, memberId] of members.entries()) {
    for (let order = 0; order <= index % 4; order++) source.apply(purchase(memberId, `o${order}`, 1_000 + 137 * index + order, `2026-11-0${order + 1}T10:00:00Z`));
  }
  for (let index = 0; index < 700; index++) {
    source.apply({
      id: `goodwill-${String(index).padStart(4, '0')}`,
      memberId: HEAVY,
      type: 'adjustment',
      occurredAt: new Date(Date.parse('2026-11-01T00:00:00Z') + index * 60_000).toISOString(),
      direction: 'credit',
      points: 1 + (index % 9),
      currency: 'points',
      reason: `late delivery, ticket ${index}: ${'the parcel went round the depot twice '.repeat(6)}`.slice(0, 256),
      operator: 'support',
    } as LoyaltyEvent);
  }
});

afterAll(async () => {
  for (const one of servers) await one.close().catch(() => undefined);
  for (const app of apps) await app.close();
  for (const connection of connections) await connection.close();
  await server?.stop();
});

interface Instance {
  readonly id: string;
  readonly engine: FakeEngine;
  readonly app: FastifyInstance;
  readonly server: PartitionWalletServer;
  readonly routing: PartitionMemberRouting;
  readonly owned: Set<number>;
  /** Reads this instance's wallet server answered. */
  served: number;
  readonly routed: [RoutedRead, RoutedOutcome][];
}

async function instance(id: string, prefix: string, router: Partial<WalletRouterOptions> = {}): Promise<Instance> {
  const nc = await connectTest(server.url, { name: id });
  connections.push(nc);
  const engine = new FakeEngine();
  const wallets = new WalletCache(engine);
  const routed: [RoutedRead, RoutedOutcome][] = [];
  const self: { served: number } = { served: 0 };
  // As src/api/worker.ts: the owner answers from the same reads its own HTTP routes use.
  const walletServer = new PartitionWalletServer(nc, {
    instanceId: id,
    partitions: PARTITIONS,
    subjectPrefix: prefix,
    read: (memberId) => ((self.served += 1), wallets.json(memberId, engine.program, Date.now())),
    readLedger: (memberId, _partition, query, bytesMax) => ((self.served += 1), ledgerPageJson(engine, memberId, query, bytesMax)),
  });
  servers.push(walletServer);
  const routing = new PartitionMemberRouting(new WalletRouter(nc, { partitions: PARTITIONS, subjectPrefix: prefix, ...router }), {
    partitions: PARTITIONS,
    onRead: (read, outcome) => routed.push([read, outcome]),
  });
  const settings = testSettings();
  expect(settings.partitions).toBe(PARTITIONS);
  const app = await buildHttpServer({
    host: '127.0.0.1',
    port: 0,
    registry: new Registry(),
    health: () => ({ ok: true, detail: {} }),
    api: { ...fakeContext(engine, settings), wallets, memberRouting: routing },
  });
  apps.push(app);
  return Object.assign(self, { id, engine, app, server: walletServer, routing, owned: new Set<number>(), routed });
}

function membersOf(partition: number): string[] {
  return [...members, HEAVY].filter((memberId) => partitionOf(memberId, PARTITIONS) === partition);
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

const get = (one: Instance, url: string) => one.app.inject({ method: 'GET', url, headers: auth('read') });
const withoutAsOf = (body: string) => body.replace(/"asOf":"[^"]+"/, '"asOf":"-"');

async function pages(one: Instance, memberId: string, query: string): Promise<{ entries: { seq: number }[]; pages: number; bodies: string[] }> {
  const entries: { seq: number }[] = [];
  const bodies: string[] = [];
  let cursor: string | null = null;
  do {
    const response = await get(one, `/v1/members/${memberId}/ledger?${query}${cursor === null ? '' : `&cursor=${cursor}`}`);
    expect(response.statusCode, response.body.slice(0, 300)).toBe(200);
    bodies.push(response.body);
    const page = response.json() as { entries: { seq: number }[]; nextCursor: string | null };
    entries.push(...page.entries);
    cursor = page.nextCursor;
  } while (cursor !== null && bodies.length < 100);
  return { entries, pages: bodies.length, bodies };
}

describe('HTTP member reads routed to the partition owner', () => {
  it('a non-owner answers the owner\'s wallet and ledger, byte for byte, and never its own stale copy', async () => {
    const prefix = `mr${++run}`;
    const [a, b] = await Promise.all([instance('engine-a', prefix), instance('engine-b', prefix)]);
    for (let partition = 0; partition < PARTITIONS; partition++) await take(partition % 2 === 0 ? a! : b!, partition);
    const ownerOf = (memberId: string) => (partitionOf(memberId, PARTITIONS) % 2 === 0 ? a! : b!);
    const otherOf = (memberId: string) => (ownerOf(memberId) === a ? b! : a!);
    expect(members.filter((memberId) => ownerOf(memberId) === a).length).toBeGreaterThan(10);
    expect(members.filter((memberId) => ownerOf(memberId) === b).length).toBeGreaterThan(10);
    // A stale copy on the non-owner (a partition it held before): one purchase, where the owner has all of them.
    const stale = members.find((memberId) => ownerOf(memberId) === a && source.states.get(memberId)!.eventCount > 1)!;
    const staleCopy = new FakeEngine();
    staleCopy.apply(purchase(stale, 'o0', 1_000, '2026-11-01T10:00:00Z'));
    b!.engine.states.set(stale, staleCopy.states.get(stale)!);
    b!.engine.ledgers.set(stale, staleCopy.ledgers.get(stale)!);

    for (const memberId of members) {
      const owner = ownerOf(memberId);
      const other = otherOf(memberId);
      const before = Date.now();
      const local = await get(owner, `/v1/members/${memberId}/wallet`);
      const routed = await get(other, `/v1/members/${memberId}/wallet`);
      const after = Date.now();
      expect(local.statusCode).toBe(200);
      expect(routed.statusCode, routed.body).toBe(200);
      expect(routed.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(withoutAsOf(routed.body), memberId).toBe(withoutAsOf(local.body));
      const asOf = Date.parse(routed.json().asOf);
      expect(asOf).toBeGreaterThanOrEqual(before);
      expect(asOf).toBeLessThanOrEqual(after);
      for (const query of ['', '?limit=2', '?kind=earn&from=2026-11-02', '?limit=1&to=2026-11-03']) {
        const ownerPage = await get(owner, `/v1/members/${memberId}/ledger${query}`);
        const routedPage = await get(other, `/v1/members/${memberId}/ledger${query}`);
        expect(ownerPage.statusCode).toBe(200);
        expect(routedPage.body, `${memberId} ${query}`).toBe(ownerPage.body);
      }
    }
    expect(withoutAsOf((await get(b!, `/v1/members/${stale}/wallet`)).body)).toBe(withoutAsOf((await get(a!, `/v1/members/${stale}/wallet`)).body));
    expect((await get(b!, `/v1/members/${stale}/ledger`)).json().entries).toHaveLength(source.ledgers.get(stale)!.length);
    // Paging on through the non-owner with the cursors it answered: the owner's pages.
    const paged = members.find((memberId) => source.ledgers.get(memberId)!.length >= 4)!;
    expect((await pages(otherOf(paged), paged, 'limit=1')).bodies).toEqual((await pages(ownerOf(paged), paged, 'limit=1')).bodies);

    // Unknown at the owner: the same 404 as a local read.
    const unknown = 'nobody-at-all';
    const atOwner = await get(ownerOf(unknown), `/v1/members/${unknown}/wallet`);
    const atOther = await get(otherOf(unknown), `/v1/members/${unknown}/wallet`);
    expect(atOwner.statusCode).toBe(404);
    expect(atOther.body).toBe(atOwner.body);
    expect((await get(otherOf(unknown), `/v1/members/${unknown}/ledger`)).body).toBe((await get(ownerOf(unknown), `/v1/members/${unknown}/ledger`)).body);

    // What a hop costs over HTTP (fastify inject, one nats-server, both instances in this process).
    const timed = async (pick: (memberId: string) => Instance): Promise<number[]> => {
      const durations: number[] = [];
      for (let index = 0; index < 1_000; index++) {
        const memberId = members[index % members.length]!;
        const startedAt = performance.now();
        expect((await get(pick(memberId), `/v1/members/${memberId}/wallet`)).statusCode).toBe(200);
        durations.push(performance.now() - startedAt);
      }
      return durations.sort((x, y) => x - y);
    };
    await timed(otherOf); // warm up
    const localMs = await timed(ownerOf);
    const routedMs = await timed(otherOf);
    const at = (sorted: number[], fraction: number) => sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!.toFixed(2);
    process.stdout.write(
      `[member routing] 1,000 HTTP wallet reads one at a time: local median ${at(localMs, 0.5)} ms p99 ${at(localMs, 0.99)} ms; ` +
        `routed median ${at(routedMs, 0.5)} ms p99 ${at(routedMs, 0.99)} ms\n`,
    );
    for (const one of [a!, b!]) one.routed.length = 0;
    for (const memberId of members) await get(otherOf(memberId), `/v1/members/${memberId}/wallet`);
    await get(b!, `/v1/members/${stale}/wallet`);
    await get(otherOf(unknown), `/v1/members/${unknown}/wallet`);

    // Every routed read was answered by the other instance's server; none stayed local by mistake.
    for (const one of [a!, b!]) {
      expect(one.routed.filter(([, outcome]) => outcome !== 'ok' && outcome !== 'not_found')).toEqual([]);
      expect(one.routed.filter(([read]) => read === 'wallet').length).toBe(members.filter((memberId) => otherOf(memberId) === one).length + Number(one === b) + Number(otherOf(unknown) === one));
    }
  }, 60_000);

  it('a ledger page over max_payload arrives cut short, and paging on through the non-owner gives every entry once', async () => {
    const prefix = `mr${++run}`;
    const [a, b] = await Promise.all([instance('engine-a', prefix), instance('engine-b', prefix)]);
    const partition = partitionOf(HEAVY, PARTITIONS);
    await take(a!, partition);
    const all = source.ledgers.get(HEAVY)!;
    expect(all).toHaveLength(700);
    const local = await pages(a!, HEAVY, 'limit=500');
    const routed = await pages(b!, HEAVY, 'limit=500');
    expect(local.pages).toBe(2);
    expect(local.bodies.map((body) => Buffer.byteLength(body))[0]).toBeGreaterThan(MAX_PAYLOAD); // what a cut-less reply would have been
    expect(routed.pages).toBeGreaterThan(local.pages);
    for (const body of routed.bodies) expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_PAYLOAD);
    expect(routed.entries).toEqual(local.entries);
    expect(routed.entries.map((entry) => entry.seq)).toEqual(all.map((entry) => entry.seq));
    // A cut page's cursor is the last entry it holds.
    const first = JSON.parse(routed.bodies[0]!) as { entries: { seq: number }[]; nextCursor: string };
    expect(decodeCursor(first.nextCursor)).toBe(first.entries.at(-1)!.seq);
    expect(b!.routed.every(([read, outcome]) => read === 'ledger' && outcome === 'ok')).toBe(true);
  }, 60_000);

  it('between owners a read waits for the new one; nobody owning is 503 PARTITION_UNAVAILABLE, a silent owner 504 PARTITION_TIMEOUT', async () => {
    const prefix = `mr${++run}`;
    const routerOptions = { handoverWaitMs: 800, requestTimeoutMs: 300 };
    const [a, b] = await Promise.all([instance('engine-a', prefix, routerOptions), instance('engine-b', prefix, routerOptions)]);
    const byPartition = [...new Set(members.map((memberId) => partitionOf(memberId, PARTITIONS)))];
    const [moving, orphan, silent] = byPartition as [number, number, number];
    for (const partition of [moving, orphan]) await take(a!, partition);
    const movingMember = membersOf(moving)[0]!;
    const truth = withoutAsOf((await get(a!, `/v1/members/${movingMember}/wallet`)).body);

    // A handover: a lets go; a read on a (now routed) waits; b restores and answers it.
    await give(a!, moving);
    const pending = get(a!, `/v1/members/${movingMember}/wallet`);
    await sleep(250);
    const servedBefore = b!.served;
    await take(b!, moving);
    const answered = await pending;
    expect(answered.statusCode, answered.body).toBe(200);
    expect(withoutAsOf(answered.body)).toBe(truth);
    expect(b!.served).toBe(servedBefore + 1);

    // Nobody owns the partition: after the handover wait, 503 with Retry-After.
    await give(a!, orphan);
    const orphanMember = membersOf(orphan)[0]!;
    let startedAt = Date.now();
    for (const path of ['wallet', 'ledger']) {
      const response = await get(b!, `/v1/members/${orphanMember}/${path}`);
      expect(response.statusCode, response.body).toBe(503);
      expect(response.headers['retry-after']).toBe('1');
      expect(response.json().error).toMatchObject({ code: 'PARTITION_UNAVAILABLE', details: { partition: orphan, routingCode: 'PARTITION_UNAVAILABLE' } });
      expect(response.json().error.message).toContain(walletSubject(prefix, orphan));
    }
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(2 * 800);

    // An owner subscribed that never answers: 504 after the request timeout, not retried.
    const mute = connections[connections.length - 1]!.subscribe(walletSubject(prefix, silent), { callback: () => undefined });
    await connections[connections.length - 1]!.flush();
    const silentMember = membersOf(silent)[0]!;
    startedAt = Date.now();
    const timedOut = await get(a!, `/v1/members/${silentMember}/wallet`);
    expect(timedOut.statusCode, timedOut.body).toBe(504);
    expect(timedOut.json().error).toMatchObject({ code: 'PARTITION_TIMEOUT', details: { partition: silent, routingCode: 'PARTITION_TIMEOUT' } });
    expect(Date.now() - startedAt).toBeLessThan(800);
    mute.unsubscribe();

    expect(a!.routed).toEqual([
      ['wallet', 'ok'],
      ['wallet', 'timeout'],
    ]);
    expect(b!.routed).toEqual([
      ['wallet', 'unavailable'],
      ['ledger', 'unavailable'],
    ]);
  }, 60_000);
});
