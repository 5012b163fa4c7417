import { connect } from '@nats-io/transport-node';

/**
 * The background load of the API bench, in its own process (so its CPU is
 * measured apart from autocannon's and it never waits behind autocannon's
 * event loop): purchases published straight to JetStream subjects
 * loyalty.tx.<memberId> with core NATS, paced by a token bucket every 10 ms,
 * to the seeded members m0..m<members-1>, until SIGTERM. Prints one JSON line
 * with what it published when it stops.
 *
 *   node --import tsx bench/api/publisher.ts <natsUrl> <eventsPerSecond> <members> <runId>
 */

const [url, rateText, membersText, runId] = process.argv.slice(2);
if (url === undefined || rateText === undefined || membersText === undefined || runId === undefined) {
  process.stderr.write('usage: publisher.ts <natsUrl> <eventsPerSecond> <members> <runId>\n');
  process.exit(2);
}
const rate = Number(rateText);
const members = Number(membersText);
const TICK_MS = 10;
/** After a stall, catch up at most this much (a burst would not be the rate we claim). */
const CATCH_UP_MS_MAX = 50;

const nc = await connect({ servers: url, name: 'api-bench-publisher' });
const encoder = new TextEncoder();
let published = 0;
let seed = 0x9e3779b9;
const random = (limit: number) => {
  // xorshift32: cheap, deterministic, good enough to spread members.
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % limit;
};

const startedAt = performance.now();
let credit = 0;
let last = startedAt;
const timer = setInterval(() => {
  const now = performance.now();
  credit += (Math.min(now - last, CATCH_UP_MS_MAX) * rate) / 1000;
  last = now;
  const count = Math.floor(credit);
  credit -= count;
  const occurredAt = new Date().toISOString();
  for (let index = 0; index < count; index++) {
    const memberId = `m${random(members)}`;
    const event = { id: `bg-${runId}-${published}`, memberId, type: 'purchase', occurredAt, amountMinor: 500 + random(20_000), currency: 'EUR' };
    nc.publish(`loyalty.tx.${memberId}`, encoder.encode(JSON.stringify(event)));
    published += 1;
  }
}, TICK_MS);

process.stdout.write(`${JSON.stringify({ ready: true })}\n`);

process.once('SIGTERM', async () => {
  clearInterval(timer);
  await nc.flush().catch(() => undefined);
  const seconds = (performance.now() - startedAt) / 1000;
  process.stdout.write(`${JSON.stringify({ published, seconds, ratePerSecond: published / seconds })}\n`);
  await nc.close().catch(() => undefined);
  process.exit(0);
});
