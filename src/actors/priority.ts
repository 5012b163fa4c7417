import { readFileSync, readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/**
 * Lowers the scheduling priority of the calling thread (an actor) so that,
 * when the cores are all busy, the HTTP API thread, the main thread's acks and
 * nats-server run first.
 *
 * Why: accrual is a stream with a durable buffer in front of it (JetStream),
 * and interactive work is not. On the bench's 2 cores, with the engine
 * consuming 2,000 events/s, actors at nice 10 raised wallet reads from about
 * 5,100 to 7,800 req/s and event submissions from about 2,900 to 4,800 req/s
 * (p99 down by a third), while the actors still consumed 95 % of the
 * background rate; what they fall behind they catch up on from the stream once
 * the burst ends.
 *
 * The price: draining a backlog with nothing else to serve, the engine
 * consumed about 11 % less (4,120 against 4,650 events/s, mean of four A/B
 * pairs of `npm run bench -- --scenario max --events 150k --members 100k
 * --baseline off`). At nice 10 the main thread, nats-server and the outcome
 * subscribers preempt the actors at every message instead of running in
 * larger bites. Hence off by default: an operator who shares the cores between
 * wallets and accrual chooses it (LOYALTY_ACTOR_NICE).
 *
 * Linux only: the nice value of a thread is set with setpriority() on its
 * thread id (Linux keeps nice per thread, see setpriority(2), "BUGS"), found
 * through /proc/thread-self. Raising nice is always allowed; elsewhere this
 * reports why it did nothing and the engine runs on at normal priority.
 */

export type PriorityResult =
  /** nice: the thread's nice value now (the one it started with, plus the increment, at most 19). */
  | { readonly applied: true; readonly threadId: number; readonly nice: number }
  | { readonly applied: false; readonly reason: string };

/**
 * Adds `increment` to the calling thread's nice value (a new thread starts
 * with its creator's), so an engine started under `nice` keeps its actors
 * below itself, and an increment never raises a priority.
 */
export function lowerThreadPriority(increment: number): PriorityResult {
  if (!Number.isSafeInteger(increment) || increment < 0 || increment > 19) {
    return { applied: false, reason: `nice increment ${increment} is not an integer from 0 to 19` };
  }
  if (increment === 0) return { applied: false, reason: 'disabled (LOYALTY_ACTOR_NICE=0)' };
  let threadId: number;
  try {
    threadId = currentThreadId();
  } catch (error) {
    return { applied: false, reason: `cannot find this thread's id (/proc/thread-self): ${(error as Error).message}` };
  }
  let nice: number;
  try {
    nice = Math.min(19, getPriority(threadId) + increment);
    setPriority(threadId, nice);
  } catch (error) {
    return { applied: false, reason: `setpriority on thread ${threadId} failed: ${(error as Error).message}` };
  }
  return { applied: true, threadId, nice };
}

/** The kernel's id of the calling thread: /proc/thread-self links to "<pid>/task/<tid>". */
export function currentThreadId(): number {
  const link = readlinkSync('/proc/thread-self');
  const threadId = Number(link.slice(link.lastIndexOf('/') + 1));
  if (!Number.isSafeInteger(threadId) || threadId <= 0) throw new Error(`unexpected link ${link}`);
  return threadId;
}

/** A thread's nice value as the kernel reports it (/proc/<pid>/task/<tid>/stat, field 19); by default a thread of this process. */
export function threadNice(threadId: number, pid: number = process.pid): number {
  const stat = readFileSync(`/proc/${pid}/task/${threadId}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[19 - 3]);
}
