import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/**
 * A hash of every file under a directory (paths and contents). The bench
 * loads the domain for its replay when it starts, the engine loads its code
 * when it starts: if someone edits src/ in between (a shared working tree), the
 * two ran different rules and the comparison means nothing, so the run says so.
 */
export function sourceFingerprint(root: string): string {
  const hash = createHash('sha1');
  const visit = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (entry.isFile()) {
        hash.update(relative(root, path));
        hash.update('\0');
        hash.update(readFileSync(path));
        hash.update('\0');
      }
    }
  };
  visit(root);
  return hash.digest('hex');
}
