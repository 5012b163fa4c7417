import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * Which native LMDB addon this process loads: lmdb-js's prebuilt binary, or the
 * build of scripts/lmdb-native.mjs with the two free-list fixes (issue 14,
 * docs/operations.md "Crash recovery"). Read from the marker the build writes
 * beside the addon, so the engine can say at start which one it runs on.
 */
export interface LmdbAddonStatus {
  readonly path: string;
  readonly patched: boolean;
  readonly version: string;
}

/** The fixes scripts/lmdb-native.mjs names in its marker (its FIXES): both free-list defects of lmdb-js 3.5.6. */
export const LMDB_FIXES: readonly string[] = ['freelist-rc-before-size', 'freelist-range-rewrite'];

export function lmdbAddonStatus(): LmdbAddonStatus {
  const require = createRequire(import.meta.url);
  // lmdb's exports map does not export its package.json: walk up from its entry point.
  let lmdbDir = dirname(require.resolve('lmdb'));
  while (!existsSync(join(lmdbDir, 'package.json')) && dirname(lmdbDir) !== lmdbDir) lmdbDir = dirname(lmdbDir);
  const version = (JSON.parse(readFileSync(join(lmdbDir, 'package.json'), 'utf8')) as { version: string }).version;
  const lmdbRequire = createRequire(join(lmdbDir, 'package.json'));
  const loader = lmdbRequire('node-gyp-build-optional-packages') as { path(dir: string): string };
  const path = loader.path(lmdbDir);
  const built = join(lmdbDir, 'build', 'Release');
  const markerFile = join(built, 'loyalty-patch.json');
  let patched = false;
  // A build of an older scripts/lmdb-native.mjs (one fix only) does not name both: reported as not patched.
  if (path === join(built, 'lmdb.node') && existsSync(markerFile)) {
    const marker = JSON.parse(readFileSync(markerFile, 'utf8')) as { version?: string; node?: string; fixes?: unknown };
    const fixes = Array.isArray(marker.fixes) ? marker.fixes : [];
    patched = marker.version === version && marker.node === process.versions.modules && LMDB_FIXES.every((fix) => fixes.includes(fix));
  }
  return { path, patched, version };
}
