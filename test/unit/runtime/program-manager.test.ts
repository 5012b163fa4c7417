import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Program } from '../../../src/domain/program.js';
import { checkProgramText, EngineProgramManager, type PublishedProgram } from '../../../src/runtime/program-manager.js';
import { PROJECT_ROOT } from '../../helpers/engine-process.js';

/**
 * Cluster mode's activation (src/runtime/cluster-globals.ts wires it to the
 * KV key): an activation only publishes, and the program is applied here when
 * the watch delivers it, in revision order, once.
 */
const simple = readFileSync(join(PROJECT_ROOT, 'config/programs/simple.yaml'), 'utf8');
const retail = readFileSync(join(PROJECT_ROOT, 'config/programs/retail.yaml'), 'utf8');

function manager() {
  const initial = (checkProgramText(simple) as { ok: true; program: Program }).program;
  const applied: string[] = [];
  const persisted: number[] = [];
  const programs = new EngineProgramManager({
    initial,
    initialSource: 'file',
    initialAtMs: 0,
    persist: async (_text, atMs) => void persisted.push(atMs),
    apply: async () => {
      throw new Error('one-instance apply used in cluster mode');
    },
    now: () => 5_000,
  });
  const published: PublishedProgram[] = [];
  programs.distribute({
    publish: async (text, atMs) => {
      const check = checkProgramText(text);
      if (!check.ok) return check;
      published.push({ text, activatedAtMs: atMs, revision: published.length + 1 });
      return { ...check, revision: published.length };
    },
    apply: async (program) => void applied.push(program.id),
    appliedWaitMs: 200,
  });
  return { programs, applied, persisted, published };
}

describe('EngineProgramManager in cluster mode', () => {
  it('publishes an activation and answers once the watch applied it here', async () => {
    const { programs, applied, persisted, published } = manager();
    const activation = programs.activate(retail);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(published).toHaveLength(1);
    expect(applied).toEqual([]); // not applied by the activation itself
    let answered = false;
    void activation.then(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(answered).toBe(false);
    await programs.applyPublished(published[0]!);
    const check = await activation;
    expect(check.ok).toBe(true);
    expect(applied).toEqual(['retail']);
    expect(persisted).toEqual([5_000]);
    expect(programs.active().id).toBe('retail');
    expect(programs.activeSince()).toEqual({ atMs: 5_000, source: 'api' });
    expect(programs.revision).toBe(1);
    // Delivered again (a watch that restarted): not applied twice.
    await programs.applyPublished(published[0]!);
    expect(applied).toEqual(['retail']);
  });

  it('refuses a bad program before it is published, and answers anyway when the watch is late (it is published)', async () => {
    const { programs, published } = manager();
    const bad = await programs.activate('id: broken\nrewards: 12\n');
    expect(bad.ok).toBe(false);
    expect(published).toHaveLength(0);
    const late = await programs.activate(retail);
    expect(late.ok).toBe(true);
    expect(programs.active().id).toBe('simple'); // not applied here yet
  });

  it('does not switch for the text it already runs, and throws for a text that does not parse here', async () => {
    const initial = (checkProgramText(simple) as { ok: true; program: Program }).program;
    const applied: string[] = [];
    const programs = new EngineProgramManager({ initial, initialSource: 'api', initialAtMs: 0, persist: async () => undefined, apply: async () => undefined });
    programs.distribute({ publish: async () => ({ ok: false, errors: [] }), apply: async (program) => void applied.push(program.id), runningText: simple });
    await programs.applyPublished({ text: simple, activatedAtMs: 1, revision: 3 });
    expect(applied).toEqual([]);
    expect(programs.revision).toBe(3);
    await expect(programs.applyPublished({ text: 'id: broken\nrewards: 12\n', activatedAtMs: 2, revision: 4 })).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' });
    expect(programs.revision).toBe(3);
  });
});
