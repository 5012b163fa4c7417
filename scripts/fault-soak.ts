/**
 * Issue 14, item 1, the long run: the engine SIGKILLed `--kills` times (each
 * at a random moment after the run's first ack) while it consumes `--events`
 * purchases, with a CPU hog on one of the two cores beside it; then every
 * member's balance and ledger is compared with the load's own sums.
 *
 *   npx tsx scripts/fault-soak.ts [--events 1000000] [--kills 20] [--members 100000] [--seed 14] [--hog 1]
 *
 * Prints one summary line (events, kills, starts, crashes, LMDB errors, lost,
 * doubled, wrong balances, slowest start, wall time) and exits 1 on any
 * failure. The CI version is test/integration/faults/kill-9.test.ts.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { loadSettings } from '../src/config/settings.js';
import { ensureTopology } from '../src/transport/topology.js';
import { startCpuHog } from '../test/helpers/cpu-hog.js';
import { tempDataDir } from '../test/helpers/engine-process.js';
import { checkLedgers, killLoop, prng, publishPurchases, type PurchaseLoadOptions } from '../test/helpers/kill-loop.js';
import { connectTest, startTestNatsServer } from '../test/helpers/nats-server.js';

const args = new Map<string, string>();
for (let index = 2; index < process.argv.length; index += 2) args.set(process.argv[index]!.replace(/^--/, ''), process.argv[index + 1] ?? '');
const number = (name: string, fallback: number) => Number(args.get(name) ?? fallback);

const events = number('events', 1_000_000);
const kills = number('kills', 20);
const members = number('members', 100_000);
const seed = number('seed', 14);
const hogs = number('hog', 1);
const runMsMax = number('run-ms-max', 4_000);
const PARTITIONS = 64;

const startedAt = Date.now();
const server = await startTestNatsServer();
const nc = await connectTest(server.url);
const data = tempDataDir('loyalty-soak-');
let failed = true;
try {
  const settings = loadSettings({}, { natsUrl: server.url, partitions: PARTITIONS });
  await ensureTopology(await jetstreamManager(nc), settings);
  const load: PurchaseLoadOptions = { seed, events, members, duplicateEvery: 25 };
  console.log(`fault soak: ${events} events over ${members} members (every 25th sent twice), ${kills} kills, seed ${seed}, ${hogs} CPU hog(s), data ${data.path}`);
  const { lastSequence, published } = await publishPurchases(nc, load);
  console.log(`published ${published} messages in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
  const hog = startCpuHog(hogs);
  const report = await killLoop({
    natsUrl: server.url,
    dataDir: data.path,
    env: { LOYALTY_PARTITIONS: String(PARTITIONS) },
    kills,
    random: prng(seed),
    lastSequence,
    nc,
    runMsMin: 0,
    runMsMax,
    finishTimeoutMs: 1_800_000,
    log: (line) => console.log(`${((Date.now() - startedAt) / 1000).toFixed(0)} s  ${line}`),
  }).finally(() => hog.stop());
  const check = await checkLedgers(data.path, load, PARTITIONS, settings.lmdbMapSizeBytes);
  const wallSeconds = Math.round((Date.now() - startedAt) / 1000);
  console.log(
    JSON.stringify({
      events,
      published,
      members: check.members,
      kills: report.kills,
      starts: report.starts,
      crashes: report.crashes,
      lmdbErrors: report.lmdbErrors.length,
      lost: check.lost,
      doubled: check.doubled,
      wrongBalances: check.wrongBalances,
      startMsMax: report.startMsMax,
      finalExitCode: report.finalExitCode,
      wallSeconds,
      seed,
    }),
  );
  for (const line of [...report.lmdbErrors, ...check.mismatches]) console.log(`  ${line}`);
  failed =
    report.kills < kills || report.crashes > 0 || report.lmdbErrors.length > 0 || report.finalExitCode !== 0 || check.lost > 0 || check.doubled > 0 || check.wrongBalances > 0 || check.events !== events;
  console.log(failed ? 'FAIL' : 'PASS');
} finally {
  await nc.close();
  await server.stop();
  data.remove();
}
process.exit(failed ? 1 : 0);
