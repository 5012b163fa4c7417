import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/**
 * CPU and memory of a process, read from /proc every interval (Linux only).
 * process.cpuUsage() only sees the calling process, so children are read
 * from /proc/<pid>/stat (utime + stime, all threads included) and
 * /proc/<pid>/status (VmRSS; RssAnon = private memory, without mapped files
 * such as LMDB's page cache).
 */

export interface ProcessSample {
  /** Milliseconds since the sampler started. */
  tMs: number;
  /** CPU used since the previous sample, in % of one core (200 = two cores busy). */
  cpuPercent: number;
  rssBytes: number;
  rssAnonBytes: number;
}

export interface ProcessUsageSummary {
  samples: number;
  cpuPercentMean: number;
  cpuPercentMax: number;
  cpuSecondsTotal: number;
  rssBytesMax: number;
  rssAnonBytesMax: number;
  rssBytesLast: number;
}

let clockTicksPerSecond: number | undefined;

function ticksPerSecond(): number {
  if (clockTicksPerSecond === undefined) {
    try {
      clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicksPerSecond = 100;
    }
  }
  return clockTicksPerSecond;
}

/** Fields of /proc/<pid>/stat after the command name, or undefined once the process has gone. */
function statFields(pid: number): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/**
 * utime + stime of a process in seconds, or undefined once it has gone. With
 * `withChildren`, also its children's (live ones, and cutime + cstime for
 * those it has waited for): a PostgreSQL server is a postmaster and its backends.
 */
export function readCpuSeconds(pid: number, withChildren = false): number | undefined {
  const fields = statFields(pid);
  if (fields === undefined) return undefined;
  // After the name, field 3 (state) is index 0, so utime (14) is index 11, stime (15) 12, cutime 13, cstime 14.
  const userTicks = Number(fields[11]);
  const systemTicks = Number(fields[12]);
  if (!Number.isFinite(userTicks) || !Number.isFinite(systemTicks)) return undefined;
  let ticks = userTicks + systemTicks;
  if (withChildren) {
    ticks += Number(fields[13]) + Number(fields[14]);
    for (const child of childrenOf(pid)) {
      const childFields = statFields(child);
      if (childFields !== undefined) ticks += Number(childFields[11]) + Number(childFields[12]);
    }
  }
  return ticks / ticksPerSecond();
}

/** Direct children of a process (from /proc/<pid>/task/<pid>/children when the kernel has it, else a scan). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((text) => text.length > 0)
      .map(Number);
  } catch {
    const found: number[] = [];
    let entries: string[] = [];
    try {
      entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
    } catch {
      return found;
    }
    for (const name of entries) {
      const fields = statFields(Number(name));
      if (fields !== undefined && Number(fields[1]) === pid) found.push(Number(name));
    }
    return found;
  }
}

/** Resident memory in bytes: { rss: VmRSS, rssAnon: RssAnon }, or undefined once the process has gone. */
export function readMemoryBytes(pid: number): { rss: number; rssAnon: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return match === null ? 0 : Number(match[1]) * 1024;
  };
  return { rss: kib('VmRSS'), rssAnon: kib('RssAnon') };
}

export class ProcessSampler {
  readonly pid: number;
  /** Sum the process's children too (CPU and memory). */
  readonly withChildren: boolean;
  readonly samples: ProcessSample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private firstCpuSeconds: number | undefined;
  private lastCpuSeconds: number | undefined;
  private lastAt = 0;

  constructor(pid: number, withChildren = false) {
    this.pid = pid;
    this.withChildren = withChildren;
  }

  start(intervalMs = 1_000): void {
    this.startedAt = performance.now();
    this.lastAt = this.startedAt;
    this.firstCpuSeconds = readCpuSeconds(this.pid, this.withChildren);
    this.lastCpuSeconds = this.firstCpuSeconds;
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  /** Takes one sample now (also called by the interval). */
  sample(): ProcessSample | undefined {
    const now = performance.now();
    const cpuSeconds = readCpuSeconds(this.pid, this.withChildren);
    const memory = readMemoryBytes(this.pid);
    if (memory !== undefined && this.withChildren) {
      for (const child of childrenOf(this.pid)) {
        const childMemory = readMemoryBytes(child);
        if (childMemory === undefined) continue;
        memory.rss += childMemory.rss;
        memory.rssAnon += childMemory.rssAnon;
      }
    }
    if (cpuSeconds === undefined || memory === undefined) return undefined;
    const elapsedSeconds = (now - this.lastAt) / 1000;
    const cpuPercent =
      this.lastCpuSeconds === undefined || elapsedSeconds <= 0 ? 0 : ((cpuSeconds - this.lastCpuSeconds) / elapsedSeconds) * 100;
    this.lastCpuSeconds = cpuSeconds;
    this.lastAt = now;
    const sample: ProcessSample = {
      tMs: Math.round(now - this.startedAt),
      cpuPercent: Math.round(cpuPercent * 10) / 10,
      rssBytes: memory.rss,
      rssAnonBytes: memory.rssAnon,
    };
    this.samples.push(sample);
    return sample;
  }

  latest(): ProcessSample | undefined {
    return this.samples[this.samples.length - 1];
  }

  stop(): ProcessUsageSummary {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
    return this.summary();
  }

  summary(): ProcessUsageSummary {
    const samples = this.samples;
    const wallSeconds = (this.lastAt - this.startedAt) / 1000;
    const cpuSecondsTotal =
      this.firstCpuSeconds === undefined || this.lastCpuSeconds === undefined ? 0 : this.lastCpuSeconds - this.firstCpuSeconds;
    return {
      samples: samples.length,
      cpuPercentMean: wallSeconds > 0 ? Math.round((cpuSecondsTotal / wallSeconds) * 1000) / 10 : 0,
      cpuPercentMax: samples.reduce((max, sample) => Math.max(max, sample.cpuPercent), 0),
      cpuSecondsTotal: Math.round(cpuSecondsTotal * 100) / 100,
      rssBytesMax: samples.reduce((max, sample) => Math.max(max, sample.rssBytes), 0),
      rssAnonBytesMax: samples.reduce((max, sample) => Math.max(max, sample.rssAnonBytes), 0),
      rssBytesLast: samples[samples.length - 1]?.rssBytes ?? 0,
    };
  }
}

/** CPU ticks of the whole machine (all CPUs) from /proc/stat: busy = not idle and not iowait. Null off Linux. */
export function readMachineTicks(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    // Guest time is already counted in user time: only the first eight fields add up.
    const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = ticks.reduce((sum, value) => sum + value, 0);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/** CPU-seconds the whole machine was busy between two readings. */
export function machineBusySeconds(before: { busy: number } | null, after: { busy: number } | null): number | null {
  return before === null || after === null ? null : (after.busy - before.busy) / ticksPerSecond();
}

/** Busy share of all CPUs (not idle, not iowait) over `windowMs`; null off Linux. */
export async function machineCpuBusyPercent(windowMs = 1_000): Promise<number | null> {
  const read = readMachineTicks;
  const before = read();
  await new Promise((resolve) => setTimeout(resolve, windowMs));
  const after = read();
  if (before === null || after === null || after.total === before.total) return null;
  return Math.round(((after.busy - before.busy) / (after.total - before.total)) * 1000) / 10;
}
