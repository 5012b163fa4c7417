import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KPI_AGGREGATION_CODES } from '../../../src/cluster/kpi-aggregation.js';
import { WALLET_ROUTING_CODES } from '../../../src/cluster/wallet-routing.js';

const root = join(import.meta.dirname, '..', '..', '..');

describe('the cluster service codes', () => {
  it('docs/cluster.md ("Service codes") lists exactly the registries, with the same statuses', () => {
    const docs = readFileSync(join(root, 'docs', 'cluster.md'), 'utf8');
    const section = docs.slice(docs.indexOf('## Service codes'), docs.indexOf('## Measured on this machine'));
    const rows = [...section.matchAll(/^\| (wallet|kpis) \| `([A-Z_]+)` \| (\d{3}) \| .+ \|$/gm)];
    const listed = (service: string): Record<string, number> =>
      Object.fromEntries(rows.filter((row) => row[1] === service).map((row) => [row[2]!, Number(row[3])]));
    expect(listed('wallet')).toEqual(WALLET_ROUTING_CODES);
    expect(listed('kpis')).toEqual(KPI_AGGREGATION_CODES);
  });

  it('every code the cluster services send is in their registry, and every registry code is sent', () => {
    for (const [file, registry] of [
      ['wallet-routing.ts', WALLET_ROUTING_CODES],
      ['kpi-aggregation.ts', KPI_AGGREGATION_CODES],
    ] as const) {
      const text = readFileSync(join(root, 'src', 'cluster', file), 'utf8');
      // Codes passed to the module's error helpers and error class: quoted upper-case words.
      const used = new Set([...text.matchAll(/'([A-Z][A-Z_]{3,})'/g)].map((match) => match[1]!));
      expect([...used].filter((code) => !(code in registry)), file).toEqual([]);
      expect(Object.keys(registry).filter((code) => !used.has(code)), file).toEqual([]);
    }
  });
});
