import type { KV } from '@nats-io/kv';
import { checkProgramText } from '../runtime/program-manager.js';

/**
 * One active program for every instance of a cluster (issue 17): the program
 * activated through any instance's API is validated there, then written to
 * one KV key; every instance watches that key and activates what it reads
 * (src/runtime/program-manager.ts, which pauses intake and swaps the program
 * in its actors). An instance that starts later reads the key first, so a
 * restart never runs an older program than its peers. The KV revision orders
 * activations: an instance ignores a revision it already applied.
 */

export interface ActiveProgram {
  readonly text: string;
  readonly activatedAtMs: number;
  /** The instance whose API activated it. */
  readonly by: string;
  readonly revision: number;
}

const KEY = 'active';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class ClusterProgram {
  constructor(private readonly kv: KV) {}

  /** Validates, then publishes; a program with bad fields never reaches the key (the check lists them). */
  async publish(text: string, by: string, atMs: number): Promise<ReturnType<typeof checkProgramText> & { revision?: number }> {
    const check = checkProgramText(text);
    if (!check.ok) return check;
    const revision = await this.kv.put(KEY, encoder.encode(JSON.stringify({ text, activatedAtMs: atMs, by })));
    return { ...check, revision };
  }

  /** The program active in the cluster now, if one was ever activated through the API. */
  async current(): Promise<ActiveProgram | undefined> {
    const entry = await this.kv.get(KEY);
    if (entry === null || entry.operation !== 'PUT') return undefined;
    return { ...(JSON.parse(decoder.decode(entry.value)) as Omit<ActiveProgram, 'revision'>), revision: entry.revision };
  }

  /**
   * Calls `apply` with every program published from now on (and the current
   * one first), in revision order, one at a time. `afterRevision`: one
   * already applied (read with `current` at start), not applied again.
   * Returns a stop function.
   */
  async watch(apply: (program: ActiveProgram) => Promise<void>, onError: (error: unknown) => void = () => undefined, afterRevision = 0): Promise<() => Promise<void>> {
    const watcher = await this.kv.watch({ key: KEY });
    let applied = afterRevision;
    const done = (async () => {
      for await (const entry of watcher) {
        if (entry.operation !== 'PUT' || entry.revision <= applied) continue;
        applied = entry.revision;
        try {
          await apply({ ...(JSON.parse(decoder.decode(entry.value)) as Omit<ActiveProgram, 'revision'>), revision: entry.revision });
        } catch (error) {
          onError(error);
        }
      }
    })();
    return async () => {
      watcher.stop();
      await done;
    };
  }
}
