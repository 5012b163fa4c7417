import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const pkg = JSON.parse(readFileSync(root + 'package.json', 'utf8')) as Record<string, Record<string, string>>;
const lock = JSON.parse(readFileSync(root + 'package-lock.json', 'utf8')) as {
  packages: Record<string, { version?: string; dev?: boolean; optional?: boolean; engines?: { node?: string }; dependencies?: Record<string, string> }>;
};

type Version = [number, number, number];
const parseVersion = (text: string): Version => {
  const [major = 0, minor = 0, patch = 0] = text.replace(/(\.x)+$/, '').split('.').map(Number);
  return [major, minor, patch];
};
const compare = (a: Version, b: Version) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/** Whether a node engines range admits a version: the forms npm packages use (>=, ^, ~, ||, bare majors). */
export function admits(range: string, version: Version): boolean {
  return range.split('||').some((alternative) => {
    const comparators = alternative.trim().replace(/(>=|<=|>|<|\^|~)\s+/g, '$1').split(/\s+/).filter(Boolean);
    return comparators.every((comparator) => {
      if (comparator === '*' || comparator === 'x') return true;
      const match = /^(>=|<=|>|<|\^|~|=)?v?([\d.x]+)$/.exec(comparator.replace(/\.\*/g, '.x'));
      if (match === null) throw new Error(`unreadable engines range ${range}`);
      const [, op = '=', text] = match as unknown as [string, string | undefined, string];
      const bound = parseVersion(text);
      const order = compare(version, bound);
      switch (op) {
        case '>=': return order >= 0;
        case '>': return order > 0;
        case '<=': return order <= 0;
        case '<': return order < 0;
        case '^': return order >= 0 && version[0] === bound[0];
        case '~': return order >= 0 && version[0] === bound[0] && version[1] === bound[1];
        default: return text.replace(/(\.x)+$/, '').split('.').length === 1 ? version[0] === bound[0] : order === 0;
      }
    });
  });
}

describe('package.json engines', () => {
  const engines = pkg.engines!.node!;
  // The lowest Node each alternative of our range allows.
  const lowest = engines.split('||').map((alternative) => parseVersion(alternative.trim().replace(/^(>=|\^|~)/, '')));

  it('reads the ranges npm packages use', () => {
    expect(admits('>= 22.x', [20, 20, 2])).toBe(false);
    expect(admits('>=22', [22, 0, 0])).toBe(true);
    expect(admits('^20.19.0 || >=22.12.0', [20, 19, 0])).toBe(true);
    expect(admits('^20.19.0 || >=22.12.0', [22, 11, 0])).toBe(false);
    expect(admits('^16 || ^18 || >=20', [20, 0, 0])).toBe(true);
    expect(admits('^8.16.0 || ^10.6.0 || >=11.0.0', [20, 0, 0])).toBe(true);
  });

  it('every locked dependency supports the lowest Node each alternative of engines allows', () => {
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === '' || entry.engines?.node === undefined) continue;
      for (const version of lowest) expect(admits(entry.engines.node, version), `${path} wants node ${entry.engines.node}`).toBe(true);
    }
  });

  it('the lock records package.json as it is (npm install changes nothing)', () => {
    const top = lock.packages['']! as Record<string, unknown>;
    expect(top.dependencies).toEqual(pkg.dependencies);
    expect(top.devDependencies).toEqual(pkg.devDependencies);
    expect(top.engines).toEqual(pkg.engines);
    // Optional native builds of every platform are in the lock, not only this machine's.
    expect(Object.keys(lock.packages).some((path) => path.includes('msgpackr-extract-win32-x64'))).toBe(true);
  });
});
