import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

export interface ThreadCpu {
  readonly tid: number;
  /** The kernel's thread name (/proc/<pid>/task/<tid>/comm): node names V8's helpers "V8 DefaultWorke", libuv's pool "libuv-worker". */
  readonly name: string;
  readonly seconds: number;
  /** Of which in the kernel (system time): page writes and fsync for lmdb-js's writer. */
  readonly systemSeconds: number;
}

/** CPU seconds (user + system) of every thread of a process; the main thread's tid is the pid. [] once the process is gone. */
export function threadCpu(pid: number): ThreadCpu[] {
  const threads: ThreadCpu[] = [];
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return threads;
  }
  for (const tid of tids) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      threads.push({ tid: Number(tid), name, seconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND, systemSeconds: Number(fields[12]) / TICKS_PER_SECOND });
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return threads;
}

/**
 * A thread's role for reports: V8's GC helpers, libuv's pool (where lmdb-js
 * commits and fsyncs), the main thread, or its own name (worker threads).
 */
export function threadRole(thread: ThreadCpu, pid: number): string {
  if (thread.tid === pid) return 'main';
  if (thread.name.startsWith('V8 ')) return 'v8-gc-helpers';
  if (thread.name.startsWith('libuv-worker')) return 'libuv-pool (lmdb writes)';
  // Node 20 names no thread ("node" for all): its V8 platform pool (4 threads,
  // the GC's concurrent and parallel helpers) starts right after the main thread.
  if (thread.name === 'node' && thread.tid > pid && thread.tid <= pid + V8_POOL_THREADS) return 'v8-gc-helpers';
  return thread.name === 'node' ? 'other (libuv pool: lmdb writes)' : thread.name;
}

/** node's default --v8-pool-size. */
const V8_POOL_THREADS = 4;

/** CPU seconds by role between two readings of the same process. */
export function cpuByRole(pid: number, before: readonly ThreadCpu[], after: readonly ThreadCpu[]): Record<string, number> {
  const start = new Map(before.map((thread) => [thread.tid, thread]));
  const roles: Record<string, number> = {};
  for (const thread of after) {
    const role = threadRole(thread, pid);
    roles[role] = (roles[role] ?? 0) + thread.seconds - (start.get(thread.tid)?.seconds ?? 0);
    roles[`${role} (system)`] = (roles[`${role} (system)`] ?? 0) + thread.systemSeconds - (start.get(thread.tid)?.systemSeconds ?? 0);
  }
  return roles;
}

export interface ThreadShare {
  /** main, v8-gc-helpers (V8's platform pool: concurrent marking, parallel scavenges), or `thread +N` (tid − pid: actors, the API thread, libuv's pool). */
  readonly role: string;
  readonly seconds: number;
  readonly systemSeconds: number;
}

/**
 * Where a process's CPU went between two readings, per thread, busiest first;
 * V8's platform threads are summed into one row. Node 20 names no thread, so
 * the others are told apart by their id's offset from the pid (the order they
 * were started in: libuv's pool, then the worker threads).
 */
export function threadBreakdown(pid: number, before: readonly ThreadCpu[], after: readonly ThreadCpu[]): ThreadShare[] {
  const start = new Map(before.map((thread) => [thread.tid, thread]));
  const rows = new Map<string, { seconds: number; systemSeconds: number }>();
  for (const thread of after) {
    let role = threadRole(thread, pid);
    if (role.startsWith('other')) role = `thread +${thread.tid - pid}`;
    const row = rows.get(role) ?? { seconds: 0, systemSeconds: 0 };
    row.seconds += thread.seconds - (start.get(thread.tid)?.seconds ?? 0);
    row.systemSeconds += thread.systemSeconds - (start.get(thread.tid)?.systemSeconds ?? 0);
    rows.set(role, row);
  }
  return [...rows]
    .map(([role, row]) => ({ role, seconds: Math.round(row.seconds * 100) / 100, systemSeconds: Math.round(row.systemSeconds * 100) / 100 }))
    .filter((row) => row.seconds > 0)
    .sort((a, b) => b.seconds - a.seconds);
}
