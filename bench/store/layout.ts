/**
 * LMDB write-pattern bench: what one actor batch's writes cost LMDB's writer
 * under two record layouts, with the bench's key distribution (Zipf(1) over
 * the members, 512 events per transaction) and record sizes like the engine's.
 * No domain, no NATS: only the store's writes, so the layouts compare alone.
 *
 *   npx tsx bench/store/layout.ts [--events 200000] [--members 100000] [--batch 512] [--layout member|log] [--core-bytes 900]
 *
 * member: the store format 4 layout (per member: core [p,m,0]; per event a
 *         ledger record [p,m,1,seq], a processed record with the outcomes
 *         [p,m,2,eventId]; per purchase an order record [p,m,3,'o',orderId]).
 * log:    per member: core [p,m,0] and a small processed-id index [p,m,1,eventId] → seq
 *         next to it; per event one record [p,m,2,seq] holding ledger rows,
 *         outcomes and the new order (written in order, at the member's tail).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { open } from 'lmdb';
import { ZipfSampler } from '../generator/zipf.js';
import { Prng } from '../generator/prng.js';
import { cpuByRole, threadCpu } from '../measure/threads.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    members: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '512' },
    layout: { type: 'string', default: 'member' },
    /** async: plain puts, committed by lmdb-js's write thread; sync: one transactionSync per batch on this thread. */
    write: { type: 'string', default: 'async' },
    /** Bytes of each core record (the engine's mean under this mix: ~3,400, most of it item keys; above ~2,000 LMDB puts a value on overflow pages). */
    'core-bytes': { type: 'string', default: '900' },
  },
});
const events = Number(values.events);
const members = Number(values.members);
const batch = Number(values.batch);
const layout = values.layout === 'log' ? 'log' : 'member';
const sync = values.write === 'sync';
const prng = new Prng(1);
const random = (): number => prng.nextFloat();
const zipf = new ZipfSampler(members, 1);
const bytes = (size: number) => new Uint8Array(size).fill(7);
const CORE = bytes(Number(values['core-bytes']));
const LEDGER = bytes(320);
const OUTCOMES = bytes(640);
const ORDER = bytes(420);
const INDEX = bytes(4);

const dir = mkdtempSync(join(tmpdir(), 'loyalty-layout-'));
const root = open({ path: dir, maxDbs: 4, mapSize: 16 * 1024 ** 3, compression: false });
const db = root.openDB({ name: 'members', encoding: 'binary' });
const seqOf = new Map<number, number>();
const put = (key: (string | number)[], value: Uint8Array): void => {
  if (sync) db.putSync(key, value);
  else void db.put(key, value);
};
const cpuStart = process.cpuUsage();
const threadsStart = threadCpu(process.pid);
const started = performance.now();
let eventNo = 0;
const inFlight: Promise<unknown>[] = [];
while (eventNo < events) {
  const touched = new Set<number>();
  let last: Promise<unknown> = Promise.resolve();
  const writeBatch = (): void => {
  for (let index = 0; index < batch && eventNo < events; index++, eventNo++) {
    const rank = zipf.sample(prng);
    const partition = rank % 64;
    const memberId = `m${rank}`;
    const seq = (seqOf.get(rank) ?? 0) + 1;
    seqOf.set(rank, seq);
    const eventId = `e${(random() * 1e12).toFixed(0)}`;
    touched.add(rank);
    const purchase = random() < 0.9;
    if (layout === 'member') {
      put([partition, memberId, 1, seq], LEDGER);
      put([partition, memberId, 2, eventId], OUTCOMES);
      if (purchase) put([partition, memberId, 3, 'o', `o${eventId}`], ORDER);
    } else {
      put([partition, memberId, 1, eventId], INDEX);
      put([partition, memberId, 2, seq], purchase ? bytes(LEDGER.length + OUTCOMES.length + ORDER.length) : bytes(LEDGER.length + OUTCOMES.length));
    }
  }
  for (const rank of touched) {
    if (sync) db.putSync([rank % 64, `m${rank}`, 0], CORE);
    else last = db.put([rank % 64, `m${rank}`, 0], CORE);
  }
  };
  if (sync) {
    root.transactionSync(writeBatch);
    last = root.flushed;
  } else writeBatch();
  inFlight.push(last);
  if (inFlight.length >= 4) await inFlight.shift();
}
await Promise.all(inFlight);
await root.flushed;
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuStart);
const roles = cpuByRole(process.pid, threadsStart, threadCpu(process.pid));
console.log(
  `${layout}: ${Math.round(events / seconds)} events/s, ${((cpu.user + cpu.system) / events).toFixed(1)} µs CPU per event; ` +
    Object.entries(roles)
      .map(([role, s]) => `${role} ${((s * 1e6) / events).toFixed(1)}`)
      .join(', '),
);
await root.close();
rmSync(dir, { recursive: true, force: true });
