import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * Which native LMDB addon this process loads: lmdb-js's prebuilt binary, or the
 * build of scripts/lmdb-native.mjs with the free-list fix (issue 14,
 * docs/operations.md "Crash recovery"). Read from the marker the build writes
 * beside the addon, so the engine can say at start which one it runs on.
 */
export interface LmdbAddonStatus {
  readonly path: string;
  readonly patched: boolean;
  readonly version: string;
}

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
  if (path === join(built, 'lmdb.node') && existsSync(markerFile)) {
    const marker = JSON.parse(readFileSync(markerFile, 'utf8')) as { version?: string; node?: string };
    patched = marker.version === version && marker.node === process.versions.modules;
  }
  return { path, patched, version };
}
