import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

/**
 * Where a V8 CPU profile (node --cpu-prof, one .cpuprofile per thread) spent
 * its time: self time per function, self time per area (a package under
 * node_modules, a src/ folder, node's internals, GC), and inclusive time of
 * the project's own functions (what a call costs with everything it calls).
 * Percentages are of the thread's busy time (idle excluded).
 *
 *   npx tsx bench/api/profile.ts <file.cpuprofile>...   prints the summary
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ThreadSummary {
  file: string;
  /** Wall time the profile covers, and the part not idle. */
  sampledMs: number;
  busyMs: number;
  top: { name: string; selfMs: number; percent: number }[];
  byArea: { area: string; selfMs: number; percent: number }[];
  inclusiveSrc: { name: string; totalMs: number; percent: number }[];
}

export function areaOf(frame: CallFrame): string {
  const url = frame.url;
  if (url === '') return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules !== null) return modules[1]!;
  const source = /\/(src|bench|test)\/(.+?)(?:\.[tj]s)?$/.exec(url);
  if (source !== null) return `${source[1]}/${source[2]}`;
  if (url.startsWith('node:')) return url.startsWith('node:internal') ? 'node:internal' : url;
  return url;
}

function nameOf(frame: CallFrame): string {
  const where = frame.url === '' ? '' : ` (${areaOf(frame)}:${frame.lineNumber + 1})`;
  return `${frame.functionName || '(anonymous)'}${where}`;
}

const round = (value: number) => Math.round(value * 10) / 10;

/**
 * A time window in microseconds of the monotonic clock (process.hrtime.bigint() / 1000n), which is the clock
 * of V8's profile timestamps on Linux, so a bench can summarize just the samples of one phase.
 */
export interface ProfileWindow {
  readonly name: string;
  readonly fromUs: number;
  readonly toUs: number;
}

export function summarizeProfile(path: string, window?: ProfileWindow, topCount = 25): ThreadSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  let atUs = profile.startTime;
  for (let index = 0; index < profile.samples.length; index++) {
    atUs += profile.timeDeltas[index] ?? 0;
    if (window !== undefined && (atUs < window.fromUs || atUs > window.toUs)) continue;
    const id = profile.samples[index]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0));
  }
  const idle = [...byId.values()].filter((node) => node.callFrame.functionName === '(idle)').reduce((sum, node) => sum + (selfUs.get(node.id) ?? 0), 0);
  const sampledUs = window === undefined ? profile.endTime - profile.startTime : Math.min(profile.endTime, window.toUs) - Math.max(profile.startTime, window.fromUs);
  const busyUs = Math.max(1, [...selfUs.values()].reduce((sum, value) => sum + value, 0) - idle);
  const percent = (us: number) => round((us / busyUs) * 100);

  const selfByName = new Map<string, number>();
  const selfByArea = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') continue;
    selfByName.set(nameOf(frame), (selfByName.get(nameOf(frame)) ?? 0) + us);
    selfByArea.set(areaOf(frame), (selfByArea.get(areaOf(frame)) ?? 0) + us);
  }

  // Inclusive time of src/ functions: each node's subtree, counted once per function per stack.
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      const frame = byId.get(current)!.callFrame;
      if (!/\/src\//.test(frame.url) || frame.functionName === '') continue;
      const name = nameOf(frame);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }

  const sorted = <K>(map: Map<K, number>) => [...map.entries()].sort((left, right) => right[1] - left[1]);
  return {
    file: basename(path),
    sampledMs: Math.round(sampledUs / 1000),
    busyMs: Math.round(busyUs / 1000),
    top: sorted(selfByName).slice(0, topCount).map(([name, us]) => ({ name, selfMs: Math.round(us / 1000), percent: percent(us) })),
    byArea: sorted(selfByArea).slice(0, topCount).map(([area, us]) => ({ area, selfMs: Math.round(us / 1000), percent: percent(us) })),
    inclusiveSrc: sorted(inclusive).slice(0, topCount).map(([name, us]) => ({ name, totalMs: Math.round(us / 1000), percent: percent(us) })),
  };
}

/** Every thread's summary, busiest first; threads busy less than busyMsMin in the window are left out. */
export function summarizeProfiles(paths: readonly string[], window?: ProfileWindow, busyMsMin = 50): { window: string; threads: ThreadSummary[] } {
  return {
    window: window?.name ?? 'whole run',
    threads: paths
      .map((path) => summarizeProfile(path, window))
      .filter((thread) => thread.busyMs >= busyMsMin)
      .sort((left, right) => right.busyMs - left.busyMs),
  };
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(basename(process.argv[1]))) {
  const paths = process.argv.slice(2);
  if (paths.length === 0) {
    process.stderr.write('usage: profile.ts <file.cpuprofile>...\n');
    process.exit(2);
  }
  for (const thread of summarizeProfiles(paths, undefined, 0).threads) {
    process.stdout.write(`\n${thread.file}: ${thread.busyMs} ms busy of ${thread.sampledMs} ms\n  self time:\n`);
    for (const item of thread.top) process.stdout.write(`  ${String(item.percent).padStart(5)} %  ${item.name}\n`);
    process.stdout.write('  by area:\n');
    for (const item of thread.byArea) process.stdout.write(`  ${String(item.percent).padStart(5)} %  ${item.area}\n`);
    process.stdout.write('  inclusive, src/:\n');
    for (const item of thread.inclusiveSrc) process.stdout.write(`  ${String(item.percent).padStart(5)} %  ${item.name}\n`);
  }
}
