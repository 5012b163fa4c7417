import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The engine package's own folder (where its package.json is), found from this
 * module's location: src/config under tsx, dist/src/config when built, or
 * node_modules/loyalty-engine/... when installed. Files that ship with the
 * package (the sample programs) are resolved from here, so `loyalty start`
 * works from any directory.
 */
export function packageRoot(from: string = fileURLToPath(import.meta.url)): string {
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'loyalty-engine') return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json named loyalty-engine above ${from}`);
  }
}

/** The program `loyalty start` runs when LOYALTY_PROGRAM_FILE is not set: the package's retail sample. */
export const DEFAULT_PROGRAM_FILE = join(packageRoot(), 'config', 'programs', 'retail.yaml');
