/**
 * What moving one partition's state costs (issue 17: a new owner restores
 * what the old one held): the store filled by the actor with the retail
 * program over generated events, then one partition exported in one read
 * snapshot (src/store/partition-transfer.ts) and imported into a fresh
 * store. Reports records, bytes, frames and milliseconds per partition, and
 * the figure for the partitions one instance of three takes over.
 *
 *   npx tsx bench/cluster/partition-transfer.ts [--events 200000] [--members 100000] [--partitions 64] [--moved 8]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Actor } from '../../src/actors/actor.js';
import { loadProgramFile } from '../../src/config/program-file.js';
import { unlimitedBudgets } from '../../src/domain/ports.js';
import { Encoding, type BatchRecord } from '../../src/routing/batch-buffer.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import { exportPartition, importPartition } from '../../src/store/partition-transfer.js';
import { subjectsFor } from '../../src/transport/subjects.js';
import { DEFAULT_GENERATOR_OPTIONS, EventGenerator } from '../generator/events.js';
import { programModelOf } from '../generator/program-model.js';
import { encodeEvent } from '../generator/spool.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    members: { type: 'string', default: '100000' },
    partitions: { type: 'string', default: '64' },
    moved: { type: 'string', default: '8' },
  },
});
const events = Number(values.events);
const partitions = Number(values.partitions);
const moved = Math.min(Number(values.moved), partitions);
const program = loadProgramFile('config/programs/retail.yaml');
const root = mkdtempSync(join(tmpdir(), 'loyalty-partition-bench-'));
try {
  const source = new LmdbStore({ dataDir: join(root, 'source'), mapSizeBytes: 8 * 1024 ** 3, partitions });
  await source.ensureMeta(partitions, 0);
  const actor = new Actor(source, program, {
    actorIndex: 0,
    actors: 1,
    partitions,
    memberCacheMax: 50_000,
    payloadBytesMax: 65_536,
    subjects: subjectsFor('loyalty'),
    bootId: 1,
    ports: { budgets: unlimitedBudgets },
  });
  const generator = new EventGenerator({ ...DEFAULT_GENERATOR_OPTIONS, runId: 'transfer', members: Number(values.members), count: events, program: programModelOf(program) });
  const filledAt = performance.now();
  let batch: BatchRecord[] = [];
  for (let sequence = 1; sequence <= events; sequence++) {
    const { event } = generator.next();
    batch.push({ streamSequence: sequence, publishedAtMs: 0, encoding: Encoding.Msgpack, memberId: event.memberId, payload: encodeEvent(event, 'msgpack') });
    if (batch.length === 512) {
      await actor.process(batch);
      batch = [];
    }
  }
  if (batch.length > 0) await actor.process(batch);
  const fillSeconds = (performance.now() - filledAt) / 1000;

  const rows: { partition: number; records: number; megabytes: number; frames: number; exportMs: number; importMs: number }[] = [];
  for (let partition = 0; partition < moved; partition++) {
    const target = new LmdbStore({ dataDir: join(root, `target-${partition}`), mapSizeBytes: 8 * 1024 ** 3, partitions });
    await target.ensureMeta(partitions, 0);
    const exportStart = performance.now();
    const frames = [...exportPartition(source.root, partition)];
    const exportMs = performance.now() - exportStart;
    const importStart = performance.now();
    const summary = await importPartition(target.root, partition, frames);
    const importMs = performance.now() - importStart;
    rows.push({ partition, records: summary.records, megabytes: Math.round(summary.valueBytes / 1e4) / 100, frames: summary.frames, exportMs: Math.round(exportMs), importMs: Math.round(importMs) });
    await target.close();
  }
  await source.close();
  const mean = (pick: (row: (typeof rows)[number]) => number) => rows.reduce((sum, row) => sum + pick(row), 0) / rows.length;
  // The median: the first partition also pays for the JIT warming up.
  const totals = rows.map((row) => row.exportMs + row.importMs).sort((a, b) => a - b);
  const perPartitionMs = totals[Math.floor(totals.length / 2)]!;
  const takeover = Math.ceil(partitions / 3);
  console.log(`filled: ${events} events over ${Number(values.members)} members in ${fillSeconds.toFixed(1)} s`);
  for (const row of rows) console.log(`partition ${row.partition}: ${row.records} records, ${row.megabytes} MB in ${row.frames} frames; export ${row.exportMs} ms, import ${row.importMs} ms`);
  console.log(
    `mean per partition: ${mean((row) => row.records).toFixed(0)} records, ${mean((row) => row.megabytes).toFixed(2)} MB, export + import ${perPartitionMs.toFixed(0)} ms (median); ` +
      `the ${takeover} partitions one instance of three takes over: ~${((perPartitionMs * takeover) / 1000).toFixed(1)} s on one core (without the transfer over NATS)`,
  );
  console.log(JSON.stringify({ events, members: Number(values.members), partitions, rows, perPartitionMs: Math.round(perPartitionMs), takeoverPartitions: takeover }));
} finally {
  rmSync(root, { recursive: true, force: true });
}
