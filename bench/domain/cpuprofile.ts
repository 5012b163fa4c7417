import { readFileSync } from 'node:fs';

/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function
 * (name, file and line), the top N, with each one's share of the non-idle time.
 *
 *   npx tsx bench/domain/cpuprofile.ts PROFILE.cpuprofile [--top N] [--inclusive]
 *
 * --inclusive adds the total time spent in each function and what it called
 * (a function counted once per sample even when it recurses).
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const file = args.find((arg) => !arg.startsWith('--'));
if (file === undefined) {
  console.error('usage: npx tsx bench/domain/cpuprofile.ts PROFILE.cpuprofile [--top N] [--inclusive]');
  process.exit(2);
}
const topIndex = args.indexOf('--top');
const top = topIndex >= 0 ? Number(args[topIndex + 1]) : 30;
const inclusive = args.includes('--inclusive');

const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

const keyOf = (node: ProfileNode): string => {
  const frame = node.callFrame;
  const where = frame.url === '' ? '' : ` ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber + 1}:${frame.columnNumber + 1}`;
  return `${frame.functionName || '(anonymous)'}${where}`;
};

const selfByNode = new Map<number, number>();
let total = 0;
profile.samples.forEach((id, index) => {
  const delta = profile.timeDeltas[index] ?? 0;
  selfByNode.set(id, (selfByNode.get(id) ?? 0) + delta);
  total += delta;
});

const self = new Map<string, number>();
const within = new Map<string, number>();
let idle = 0;
for (const [id, time] of selfByNode) {
  const node = byId.get(id)!;
  const key = keyOf(node);
  if (node.callFrame.functionName === '(idle)') idle += time;
  self.set(key, (self.get(key) ?? 0) + time);
  if (!inclusive) continue;
  const seen = new Set<string>();
  for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
    const ancestor = keyOf(byId.get(current)!);
    if (seen.has(ancestor)) continue;
    seen.add(ancestor);
    within.set(ancestor, (within.get(ancestor) ?? 0) + time);
  }
}

const busy = total - idle;
const row = (time: number) => `${(time / 1000).toFixed(0).padStart(7)} ms ${((100 * time) / busy).toFixed(1).padStart(5)} %`;
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(idle / 1e6).toFixed(2)} s idle`);
console.log('\nself time:');
for (const [key, time] of [...self].sort((left, right) => right[1] - left[1]).slice(0, top)) console.log(`${row(time)}  ${key}`);
if (inclusive) {
  console.log('\ninclusive time:');
  for (const [key, time] of [...within].sort((left, right) => right[1] - left[1]).slice(0, top)) console.log(`${row(time)}  ${key}`);
}
