/**
 * Probe: consume + ack-all + outcome messages into a JetStream stream, with PubAcks awaited,
 * in several message shapes, to choose the outcome contract. Standalone:
 *   npx tsx bench/baselines/ceiling-probe.ts [events] [mode,...]
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { startBenchNatsServer } from '../harness/nats-server.js';
import { ProcessSampler } from '../measure/process-sampler.js';

const events = Number(process.argv[2] ?? 200_000);
const modes = (process.argv[3] ?? 'none,per-outcome,per-event,per-batch').split(',');
const server = await startBenchNatsServer();
const nc = await connect({ servers: server.url });
const jsm = await jetstreamManager(nc);
const js = jetstream(nc);
await jsm.streams.add({ name: 'TX', subjects: ['loyalty.tx.*'], storage: StorageType.File });
await jsm.streams.add({ name: 'OUT', subjects: ['loyalty.outcome.>'], storage: StorageType.File, duplicate_window: 120_000_000_000 });
const payload = new Uint8Array(300).fill(65);
for (let i = 0; i < events; i++) {
  nc.publish(`loyalty.tx.m${i % 36000}`, payload);
  if (i % 5000 === 0) await nc.flush();
}
await nc.flush();
while ((await jsm.streams.info('TX')).state.messages < events) await new Promise((r) => setTimeout(r, 100));
const outcome = new TextEncoder().encode(JSON.stringify({ kind: 'balance', eventId: 'ord-123456789', memberId: 'm12345', occurredAtMs: 1795398849443, currency: 'points', delta: 0, pendingDelta: 369, qualifyingDelta: 369, spendable: 0, pending: 369, qualifying: 369, debt: 0, tierId: 'member' }));
let passNo = 0;
// Pipelined PubAcks: publishes carry a reply subject on one wildcard inbox; the server's PubAck lands there.
let acked = 0;
let waiters: { upTo: number; resolve: () => void }[] = [];
const inbox = nc.subscribe('_OUT_ACK.>', {
  callback: (_error, msg) => {
    acked++;
    if (waiters.length > 0 && acked >= waiters[0]!.upTo) {
      while (waiters.length > 0 && acked >= waiters[0]!.upTo) waiters.shift()!.resolve();
    }
  },
});
let sent = 0;
const pipePublish = (subject: string, data: Uint8Array, msgId: string): void => {
  const h = headers();
  h.set('Nats-Msg-Id', msgId);
  sent++;
  nc.publish(subject, data, { headers: h, reply: `_OUT_ACK.${sent}` });
};
const pipeAll = (): Promise<void> => new Promise((resolve) => { if (acked >= sent) resolve(); else waiters.push({ upTo: sent, resolve }); });
for (const mode of modes) {
  passNo++;
  await jsm.consumers.add('TX', { durable_name: `c${passNo}`, ack_policy: AckPolicy.All, deliver_policy: DeliverPolicy.All, max_ack_pending: 50_000, ack_wait: 60_000_000_000 });
  const consumer = await js.consumers.get('TX', `c${passNo}`);
  const cpu0 = process.cpuUsage();
  const serverSampler = new ProcessSampler(server.pid);
  serverSampler.start();
  const started = performance.now();
  const messages = await consumer.consume({ max_messages: 10_000 });
  let consumed = 0;
  let pending: Promise<unknown>[] = [];
  let batchMembers: Uint8Array[] = [];
  let lastAck: Promise<unknown> = Promise.resolve();
  for await (const message of messages) {
    consumed++;
    const member = message.subject.slice(11);
    const id = `p${passNo}-${message.seq}`;
    if (mode === 'per-outcome') {
      for (let k = 0; k < 2; k++) {
        const h = headers();
        h.set('Nats-Msg-Id', `${member}:${id}:${k}`);
        pending.push(js.publish(`loyalty.outcome.balance.${member}`, outcome, { headers: h }));
      }
    } else if (mode === 'per-event') {
      const h = headers();
      h.set('Nats-Msg-Id', `${member}:${id}`);
      const both = new Uint8Array(outcome.length * 2 + 3);
      both.set(outcome, 1);
      both.set(outcome, outcome.length + 2);
      pending.push(js.publish(`loyalty.outcome.${member}`, both, { headers: h }));
    } else if (mode === 'per-outcome-pipe') {
      for (let k = 0; k < 2; k++) pipePublish(`loyalty.outcome.balance.${member}`, outcome, `${member}:${id}:${k}`);
    } else if (mode === 'per-event-pipe') {
      const both = new Uint8Array(outcome.length * 2 + 3);
      both.set(outcome, 1);
      both.set(outcome, outcome.length + 2);
      pipePublish(`loyalty.outcome.${member}`, both, `${member}:${id}`);
    } else if (mode === 'per-batch') {
      batchMembers.push(outcome, outcome);
    }
    if (consumed % 1000 === 0 || consumed === events) {
      if (mode === 'per-batch') {
        const size = batchMembers.reduce((n, b) => n + b.length + 1, 2);
        const body = new Uint8Array(size);
        let o = 1;
        for (const b of batchMembers) { body.set(b, o); o += b.length + 1; }
        const h = headers();
        h.set('Nats-Msg-Id', `batch:${passNo}:${consumed}`);
        pending.push(js.publish(`loyalty.outcome.batch.0`, body, { headers: h }));
        batchMembers = [];
      }
      if (mode.endsWith('-pipe')) pending.push(pipeAll());
      const acks = pending;
      pending = [];
      const m = message;
      lastAck = Promise.all(acks).then(() => { m.ack(); });
      if (consumed === events) break;
    }
  }
  await lastAck;
  await nc.flush();
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const serverMicros = Math.round(((serverSampler.stop().cpuSecondsTotal * 1e6) / events) * 10) / 10;
  await messages.close();
  const out = (await jsm.streams.info('OUT')).state.messages;
  console.log(`${mode.padEnd(12)} ${Math.round(events / seconds).toString().padStart(7)} events/s  client CPU ${Math.round((cpu.user + cpu.system) / events * 10) / 10} µs/event  nats-server CPU ${serverMicros} µs/event  outcome stream now ${out}`);
}
inbox.unsubscribe();
await nc.close();
await server.stop();
