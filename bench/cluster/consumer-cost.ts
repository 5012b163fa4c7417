/**
 * Probe for issue 17: what one JetStream consumer per partition costs on this
 * nats-server (2.9.10 here), so cluster mode is designed around it. A stream
 * of N stored messages on `loyalty.txp.<partition>.<member>` (the subject the
 * partition() mapping produces), then for P partitions: create a filtered
 * durable pull consumer, read its info, bind to it (consumers.get), and the
 * takeover path (delete + create again at an ack floor). Standalone:
 *   npx tsx bench/cluster/consumer-cost.ts [messages=200000] [partitions=64]
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { performance } from 'node:perf_hooks';
import { startBenchNatsServer } from '../harness/nats-server.js';
import { partitionOf } from '../../src/routing/partitioner.js';

const messages = Number(process.argv[2] ?? 200_000);
const partitions = Number(process.argv[3] ?? 64);
const server = await startBenchNatsServer();
const nc = await connect({ servers: server.url });
const jsm = await jetstreamManager(nc, { timeout: 60_000 });
const js = jetstream(nc);
await jsm.streams.add({ name: 'TXP', subjects: ['loyalty.txp.*.*'], storage: StorageType.File });
const payload = new Uint8Array(300).fill(65);
for (let index = 0; index < messages; index++) {
  const member = `m${index % 100_000}`;
  nc.publish(`loyalty.txp.${partitionOf(member, partitions)}.${member}`, payload);
  if (index % 5_000 === 0) await nc.flush();
}
await nc.flush();
while ((await jsm.streams.info('TXP')).state.messages < messages) await new Promise((resolve) => setTimeout(resolve, 100));

const timings: Record<string, number[]> = { create: [], info: [], bind: [], recreate: [] };
const timed = async (what: string, action: () => Promise<unknown>): Promise<void> => {
  const started = performance.now();
  await action();
  timings[what]!.push(performance.now() - started);
};
const config = (partition: number, startSeq?: number) => ({
  durable_name: `p${partition}`,
  filter_subject: `loyalty.txp.${partition}.*`,
  ack_policy: AckPolicy.All,
  max_ack_pending: 8_192,
  ...(startSeq === undefined ? { deliver_policy: DeliverPolicy.All } : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq }),
});
for (let partition = 0; partition < partitions; partition++) await timed('create', () => jsm.consumers.add('TXP', config(partition)));
for (let partition = 0; partition < partitions; partition++) await timed('info', () => jsm.consumers.info('TXP', `p${partition}`));
for (let partition = 0; partition < partitions; partition++) await timed('bind', () => js.consumers.get('TXP', `p${partition}`));
for (let partition = 0; partition < partitions; partition++) {
  await timed('recreate', async () => {
    await jsm.consumers.delete('TXP', `p${partition}`);
    await jsm.consumers.add('TXP', config(partition, Math.floor(messages / 2)));
  });
}
const version = server.version;
await nc.close();
await server.stop();

const summary = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const total = values.reduce((sum, value) => sum + value, 0);
  return `median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms, all ${partitions}: ${(total / 1000).toFixed(2)} s`;
};
console.log(`${version}; ${messages.toLocaleString('en-US')} stored messages, ${partitions} partitions`);
for (const [what, values] of Object.entries(timings)) console.log(`${what.padEnd(9)} ${summary(values)}`);
console.log(`a takeover of ${Math.ceil(partitions / 3)} partitions (1 of 3 instances) by delete + create at the ack floor: ~${((timings.recreate!.reduce((a, b) => a + b, 0) / partitions) * Math.ceil(partitions / 3) / 1000).toFixed(2)} s`);
