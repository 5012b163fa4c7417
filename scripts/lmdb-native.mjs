#!/usr/bin/env node
// Builds lmdb-js's native addon from its own sources with one fix applied, and
// installs it where lmdb-js loads it first (node_modules/lmdb/build/Release).
//
// Why (issue 14): lmdb-js bundles its own rewrite of LMDB's free-space code.
// In mdb_freelist_save the fill loop reads `data.mv_size` after
// mdb_cursor_get(MDB_SET_KEY) before it looks at the return code; `data` is
// uninitialised there, and when the reserved record is not found (a case the
// code accepts: "acceptable as long as there are no entries to write") the
// commit fails with MDB_BAD_TXN "reserved freelist had a data entry with
// zero-size" whenever that stack slot happens to hold 0. The first commit after
// an open (free-list start 0, so id 1) is where the engine met it after kill -9.
// The fix checks the return code first. It is a patch on lmdb-js's release, so
// it is applied to exactly the version it was written for and refused otherwise.
//
// Run on every `npm install` (postinstall) and idempotent: a build whose marker
// names this lmdb version and this patch is kept. Without a C++ toolchain or
// Node's headers it says so, exits 0, and lmdb-js falls back to its prebuilt
// binary (the defect then remains: see docs/operations.md, "Crash recovery").
// LOYALTY_LMDB_PATCH=off skips it; `--check` only reports what is loaded.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lmdbDir = join(root, 'node_modules', 'lmdb');
const PATCHED_VERSION = '3.5.6';
const MARKER = 'loyalty-patch.json';

/** The one source change: the return code is checked before the record's size. */
const PATCH = {
  file: 'dependencies/lmdb/libraries/liblmdb/mdb.c',
  from: `		rc = mdb_cursor_get(&mc, &key, &data, MDB_SET_KEY);
		if (data.mv_size == 0) {
			last_error = malloc(100);
			sprintf(last_error, "reserved freelist had a data entry with zero-size, last id %u\\n", id);`,
  to: `		data.mv_size = 0;
		data.mv_data = NULL;
		rc = mdb_cursor_get(&mc, &key, &data, MDB_SET_KEY);
		/* loyalty-engine: the return code first; 'data' is only set when the record was found. */
		if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
			break;
		if (rc == MDB_SUCCESS && data.mv_size == 0) {
			last_error = malloc(100);
			sprintf(last_error, "reserved freelist had a data entry with zero-size, last id %u\\n", id);`,
};

const patchId = createHash('sha256').update(PATCH.from).update(PATCH.to).digest('hex').slice(0, 16);
const say = (text) => process.stdout.write(`lmdb-native: ${text}\n`);

function lmdbVersion() {
  return JSON.parse(readFileSync(join(lmdbDir, 'package.json'), 'utf8')).version;
}

/** The addon lmdb-js will load, as its loader resolves it. */
function loadedAddon() {
  const require = createRequire(join(lmdbDir, 'package.json'));
  return require('node-gyp-build-optional-packages').path(lmdbDir);
}

function markerOk() {
  const marker = join(lmdbDir, 'build', 'Release', MARKER);
  if (!existsSync(marker) || !existsSync(join(lmdbDir, 'build', 'Release', 'lmdb.node'))) return false;
  const m = JSON.parse(readFileSync(marker, 'utf8'));
  return m.version === lmdbVersion() && m.patch === patchId && m.node === process.versions.modules;
}

function nodeDir() {
  for (const candidate of [process.env.npm_config_nodedir, '/usr', join(dirname(process.execPath), '..')]) {
    if (candidate && existsSync(join(candidate, 'include', 'node', 'common.gypi'))) return candidate;
  }
  return undefined;
}

function nodeGyp() {
  const candidates = [];
  if (process.env.npm_execpath) candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((c) => existsSync(c));
}

function build() {
  if (!existsSync(lmdbDir)) return say('node_modules/lmdb is missing; nothing to build');
  const version = lmdbVersion();
  if (version !== PATCHED_VERSION) return say(`lmdb ${version} is not ${PATCHED_VERSION}, the version the patch was written for; using its prebuilt binary`);
  if (markerOk()) return say(`patched addon already built (lmdb ${version}, patch ${patchId})`);
  const gyp = nodeGyp();
  const nodedir = nodeDir();
  if (gyp === undefined || nodedir === undefined) {
    return say(`cannot build the patched addon (${gyp === undefined ? 'node-gyp not found beside npm' : "Node's headers not found (include/node/common.gypi)"}); using lmdb-js's prebuilt binary. See docs/operations.md, "Crash recovery".`);
  }
  // Built inside node_modules so binding.gyp's require('node-addon-api') resolves.
  const work = join(root, 'node_modules', '.loyalty-lmdb-build');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  for (const part of ['binding.gyp', 'src', 'dependencies']) cpSync(join(lmdbDir, part), join(work, part), { recursive: true });
  const file = join(work, PATCH.file);
  const source = readFileSync(file, 'utf8');
  if (!source.includes(PATCH.from)) {
    rmSync(work, { recursive: true, force: true });
    return say(`the patched lines are not in lmdb ${version}'s ${PATCH.file}; using its prebuilt binary`);
  }
  writeFileSync(file, source.replace(PATCH.from, PATCH.to));
  say(`building lmdb ${version} with the free-list fix (about a minute on 2 cores)`);
  const started = Date.now();
  const run = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`, `--jobs=${Math.min(4, availableParallelism())}`], {
    cwd: work,
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    env: { ...process.env, npm_config_nodedir: nodedir },
  });
  const built = join(work, 'build', 'Release', 'lmdb.node');
  if (run.status !== 0 || !existsSync(built)) {
    process.stdout.write((run.stderr ?? '').split('\n').slice(-15).join('\n') + '\n');
    rmSync(work, { recursive: true, force: true });
    return say(`the build failed (exit ${run.status}); using lmdb-js's prebuilt binary`);
  }
  const target = join(lmdbDir, 'build', 'Release');
  mkdirSync(target, { recursive: true });
  cpSync(built, join(target, 'lmdb.node'));
  writeFileSync(join(target, MARKER), JSON.stringify({ version, patch: patchId, node: process.versions.modules, builtAt: new Date().toISOString() }) + '\n');
  rmSync(work, { recursive: true, force: true });
  say(`installed the patched addon in ${(Date.now() - started) / 1000} s: ${join('node_modules', 'lmdb', 'build', 'Release', 'lmdb.node')}`);
}

if (!existsSync(join(lmdbDir, 'package.json'))) {
  say(`lmdb is not installed under ${lmdbDir}: run npm ci (or npm install) first`);
  process.exit(process.argv.includes('--check') ? 1 : 0);
}
if (process.argv.includes('--check')) {
  const addon = loadedAddon();
  const patched = markerOk() && addon === join(lmdbDir, 'build', 'Release', 'lmdb.node');
  say(`${patched ? 'patched' : 'NOT patched'}: ${addon}`);
  process.exit(patched ? 0 : 1);
} else if (process.env.LOYALTY_LMDB_PATCH === 'off') {
  say('LOYALTY_LMDB_PATCH=off: using lmdb-js prebuilt binary');
} else {
  try {
    build();
  } catch (error) {
    say(`could not build the patched addon (${error instanceof Error ? error.message : String(error)}); using lmdb-js's prebuilt binary`);
  }
}
