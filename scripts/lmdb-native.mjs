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
// The fix checks the return code first.
//
// Second fix (PATCH2): the first start after a disk-full stop could die of
// SIGABRT, "Freelist record not found … Assertion 'freelist_written_start >=
// mop_len' failed in mdb_freelist_save()". lmdb-js keeps its free list in
// memory between commits (me_pghead) and saves it into free-DB records whose
// ids are the range [me_freelist_start, me_freelist_end) of the records it
// merged; after the first save a commit rewrites only the entries it changed
// (me_freelist_written_start..end) and expects the others' records to be there
// from the last save. In mdb_page_alloc, looking for older records and finding
// none ("reached the very start, mark it as 1"), it moves me_freelist_start to
// 1 without merging anything and without widening that written range, so the
// save then lays the list out from id 1 (and in other entry sizes), reserves
// only the changed entries' records, deletes the old ones above, and the fill
// loop meets an id never written: NOTFOUND, assertion. The first start after a
// full disk sets it up: the last commits on the full disk used up the free
// list, so no record lies below the one the new process merges first, and the
// outbox re-published at start is removed in commits made while the range read
// over the outbox holds its snapshot (no newer record can be merged; the range
// stays put until an allocation finds no fit). The fix marks the whole list as
// written whenever the range moves without a merge, as lmdb-js already does
// after a merge: the next save rewrites all of it. Measured with
// scripts/lmdb-diskfull-loop.ts (--replay on a kept environment: every start
// aborted before, none after; page accounting clean).
//
// Both are patches on lmdb-js's release, so they are applied to exactly the
// version they were written for and refused otherwise (all or none).
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
/** Named in the marker so that the engine (src/store/lmdb-addon.ts) can tell a build with both fixes from an older one. */
const FIXES = ['freelist-rc-before-size', 'freelist-range-rewrite'];

/** The first source change: the return code is checked before the record's size. */
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

/**
 * The second change, in mdb_page_alloc: when the free-list record range moves without a record
 * merged (forward to the oldest snapshot, or back to id 1 once no older record is found), the
 * whole in-memory list is marked as written, so that mdb_freelist_save writes all of it again.
 */
const PATCH2 = {
  file: 'dependencies/lmdb/libraries/liblmdb/mdb.c',
  from: `			if (last >= oldest || rc == MDB_NOTFOUND) {
				env->me_freelist_end = oldest;
				// no more newer transactions, go to the beginning of the range and look for older txns
				// unless we are forbidden to use reverse iteration:
				if (env->me_freelist_no_reverse_iteration) break;
				op = MDB_SET_RANGE;
				if (env->me_freelist_start <= 1) break; // should be no zero entry, break out
				last = env->me_freelist_start - 1;
				key.mv_data = &last; // start at the start of the freelist and read older transactions free pages
				key.mv_size = sizeof(last);
				mdb_cursor_init(&m2, txn, FREE_DBI, NULL);
				rc = mdb_cursor_get(&m2, &key, NULL, op);
				op = MDB_PREV;
				if (rc) {
					if (rc == MDB_NOTFOUND) {
						rc = mdb_cursor_last(&m2, &key, NULL);
						if (rc) {
							if (rc == MDB_NOTFOUND) break;
							else goto fail;
						}
					} else goto fail;
				}
				mdb_cassert(&m2, key.mv_size > 0);
				last = *(txnid_t*)key.mv_data;
				if (!last) {
					fprintf(stderr, "Invalid null txn id\\n");
					rc = MDB_NOTFOUND;
					goto fail;
				}
			} else
				env->me_freelist_end = last + 1;
		} else {
			if (rc == MDB_NOTFOUND) {
				// reached the very start, mark it as 1
				env->me_freelist_start = 1;
				break;
			}
		}
		if (op == MDB_PREV) {
			// move to previous entry until we are before the last start time.
			// note that occasionally this might take multiple iterations if we are in the middle of a
			// rebalance and a node being moved
			while (last >= env->me_freelist_start) {
				// go to previous entry, through prev iteration
				rc = mdb_cursor_get(&m2, &key, NULL, MDB_PREV);
				if (rc) {
					if (rc == MDB_NOTFOUND) {
						// reached the very start, mark it as 1
						env->me_freelist_start = 1;
						break;
					}`,
  to: `			if (last >= oldest || rc == MDB_NOTFOUND) {
				/* loyalty-engine: the range of free-list record ids, [me_freelist_start, me_freelist_end),
				 * moves here (and below, at "reached the very start") without a record merged into
				 * me_pghead. The next mdb_freelist_save lays the list out from the range's start, in
				 * entries sized by its width: other record ids or sizes than the last save wrote. So all of
				 * the list must be written again, as after a merge, not only the entries changed since the
				 * last save: with only those reserved, the fill loop met a record id never written and
				 * aborted ("Freelist record not found", freelist_written_start >= mop_len). */
				if (env->me_freelist_end != oldest) {
					env->me_freelist_written_end = 0x7fffffff;
					env->me_freelist_written_start = 1;
				}
				env->me_freelist_end = oldest;
				// no more newer transactions, go to the beginning of the range and look for older txns
				// unless we are forbidden to use reverse iteration:
				if (env->me_freelist_no_reverse_iteration) break;
				op = MDB_SET_RANGE;
				if (env->me_freelist_start <= 1) break; // should be no zero entry, break out
				last = env->me_freelist_start - 1;
				key.mv_data = &last; // start at the start of the freelist and read older transactions free pages
				key.mv_size = sizeof(last);
				mdb_cursor_init(&m2, txn, FREE_DBI, NULL);
				rc = mdb_cursor_get(&m2, &key, NULL, op);
				op = MDB_PREV;
				if (rc) {
					if (rc == MDB_NOTFOUND) {
						rc = mdb_cursor_last(&m2, &key, NULL);
						if (rc) {
							if (rc == MDB_NOTFOUND) break;
							else goto fail;
						}
					} else goto fail;
				}
				mdb_cassert(&m2, key.mv_size > 0);
				last = *(txnid_t*)key.mv_data;
				if (!last) {
					fprintf(stderr, "Invalid null txn id\\n");
					rc = MDB_NOTFOUND;
					goto fail;
				}
			} else
				env->me_freelist_end = last + 1;
		} else {
			if (rc == MDB_NOTFOUND) {
				// reached the very start, mark it as 1
				if (env->me_freelist_start != 1) { /* loyalty-engine: the range moves, see above */
					env->me_freelist_written_end = 0x7fffffff;
					env->me_freelist_written_start = 1;
				}
				env->me_freelist_start = 1;
				break;
			}
		}
		if (op == MDB_PREV) {
			// move to previous entry until we are before the last start time.
			// note that occasionally this might take multiple iterations if we are in the middle of a
			// rebalance and a node being moved
			while (last >= env->me_freelist_start) {
				// go to previous entry, through prev iteration
				rc = mdb_cursor_get(&m2, &key, NULL, MDB_PREV);
				if (rc) {
					if (rc == MDB_NOTFOUND) {
						// reached the very start, mark it as 1
						if (env->me_freelist_start != 1) { /* loyalty-engine: the range moves, see above */
							env->me_freelist_written_end = 0x7fffffff;
							env->me_freelist_written_start = 1;
						}
						env->me_freelist_start = 1;
						break;
					}`,
};

const PATCHES = [PATCH, PATCH2];
const patchHash = createHash('sha256');
for (const patch of PATCHES) patchHash.update(patch.from).update(patch.to);
const patchId = patchHash.digest('hex').slice(0, 16);
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
  return m.version === lmdbVersion() && m.patch === patchId && m.node === process.versions.modules && FIXES.every((fix) => (m.fixes ?? []).includes(fix));
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
  for (const patch of PATCHES) {
    const file = join(work, patch.file);
    const source = readFileSync(file, 'utf8');
    // Exactly once, or refused (no patch at all is applied then: the work directory goes).
    if (source.split(patch.from).length !== 2) {
      rmSync(work, { recursive: true, force: true });
      return say(`the patched lines (patch ${PATCHES.indexOf(patch) + 1}) are not in lmdb ${version}'s ${patch.file} exactly once; using its prebuilt binary`);
    }
    writeFileSync(file, source.replace(patch.from, () => patch.to));
  }
  say(`building lmdb ${version} with the free-list fixes (about a minute on 2 cores)`);
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
  writeFileSync(join(target, MARKER), JSON.stringify({ version, patch: patchId, fixes: FIXES, node: process.versions.modules, builtAt: new Date().toISOString() }) + '\n');
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
