import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { describe, expect, it } from 'vitest';
import { lmdbAddonStatus } from '../../../src/store/lmdb-addon.js';

/**
 * Issue 14: `npm install` builds lmdb-js's addon with the free-list fix
 * (scripts/lmdb-native.mjs, postinstall). This checks that the process really
 * maps that build, not lmdb-js's prebuilt binary. LOYALTY_LMDB_PATCH=off (or a
 * machine without a C++ toolchain) runs on the prebuilt one and skips this.
 */
describe.skipIf(process.env.LOYALTY_LMDB_PATCH === 'off')('the LMDB addon', () => {
  it('is the patched build, and it is the file this process loads', () => {
    const status = lmdbAddonStatus();
    expect(status.version).toBe('3.5.6');
    expect(status.patched, `loaded ${status.path}; run: node scripts/lmdb-native.mjs`).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'loyalty-addon-'));
    try {
      const db = open({ path: dir });
      db.putSync('k', 1);
      expect(db.get('k')).toBe(1);
      const maps = readFileSync('/proc/self/maps', 'utf8');
      expect(maps).toContain(status.path);
      expect(maps).not.toMatch(/@lmdb\/lmdb-linux-x64\//);
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
