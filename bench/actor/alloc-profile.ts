/**
 * Allocation profile of the actor bench: V8's sampling heap profiler with
 * collected objects included (what the GC has to clean up, not what stays),
 * summarised as bytes allocated per event by function (self).
 *
 *   npx tsx bench/actor/alloc-profile.ts [--live] [run.ts options]   (e.g. --events 50000)
 *
 * --live: only what is still alive at the end (what the run keeps: cached
 * member states and the bench's own records), by where it was allocated.
 */
import { Session } from 'node:inspector/promises';

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}
const session = new Session();
session.connect();
const live = process.argv.includes('--live');
// run.ts parses the arguments left: --live is this script's own.
if (live) process.argv.splice(process.argv.indexOf('--live'), 1);
await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: !live, includeObjectsCollectedByMinorGC: !live } as never);
const eventsIndex = process.argv.indexOf('--events');
const events = eventsIndex > 0 ? Number(process.argv[eventsIndex + 1]) : 200_000;
await import('./run.js');
const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as { profile: { head: Node } };
const self = new Map<string, number>();
let total = 0;
const walk = (node: Node): void => {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|src|bench)\//, '$1/')}:${lineNumber + 1}`;
  self.set(name, (self.get(name) ?? 0) + node.selfSize);
  total += node.selfSize;
  for (const child of node.children) walk(child);
};
walk(profile.head);
console.log(`${live ? 'alive at the end' : 'allocated'} (sampled, incl. generator set-up): ${(total / events / 1024).toFixed(1)} KB per event`);
for (const [name, bytes] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
  console.log(`${(bytes / events).toFixed(0).padStart(7)} B/event  ${name}`);
}
