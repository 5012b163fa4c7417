// Publishes one order with the standard NATS client and prints the outcome the
// engine sends back. Usage:
//   node examples/publish-order.mjs [memberId] [amountMinor]
//   node examples/publish-order.mjs '<event JSON>'    any event of docs/contract.md, as given
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';

const given = process.argv[2]?.trimStart().startsWith('{') ? JSON.parse(process.argv[2]) : undefined;
const memberId = given?.memberId ?? process.argv[2] ?? 'alice';
const amountMinor = Number(process.argv[3] ?? 12_345);
const nc = await connect({ servers: process.env.LOYALTY_NATS_URL || 'nats://127.0.0.1:4222' });
// Every outcome of this member; we print those of our event (a first purchase
// gives `membership`, then `balance`, maybe `tier` or `benefit`).
const outcomes = nc.subscribe(`loyalty.outcome.*.${memberId}`);
const event = given ?? {
  id: `order-${Date.now()}`,
  memberId,
  type: 'purchase',
  occurredAt: new Date().toISOString(),
  amountMinor,
  currency: 'EUR',
  items: [{ sku: 'SKU-1', category: 'shoes', quantity: 1, unitPriceMinor: amountMinor }],
  channel: 'web',
};
const ack = await jetstream(nc).publish(`loyalty.tx.${memberId}`, JSON.stringify(event));
console.log(`published ${event.id} as stream sequence ${ack.seq}`);
const timer = setTimeout(() => outcomes.unsubscribe(), 2_000);
for await (const message of outcomes) {
  if (message.json().eventId === event.id) console.log(`${message.subject}: ${message.string()}`);
}
clearTimeout(timer);
await nc.close();
