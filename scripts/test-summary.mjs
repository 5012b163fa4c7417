// Prints "N passed, N failed" from vitest's JSON report as the last line (skipped tests on the line before); exits 1
// when the report is missing, any test failed, or no test ran.
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? '.vitest/results.json';
let report;
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
} catch (error) {
  console.log(`0 passed, 1 failed`);
  console.error(`no test report at ${file}: ${error.message}`);
  process.exit(1);
}
const passed = report.numPassedTests ?? 0;
// A test file that failed outside its tests (a hook such as beforeAll, or at load) counts as one failure: its
// tests show as skipped, not failed.
const failedSuites = (report.testResults ?? []).filter((suite) => suite.status === 'failed' && !(suite.assertionResults ?? []).some((test) => test.status === 'failed')).length;
const failed = (report.numFailedTests ?? 0) + failedSuites;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
if (skipped > 0) console.log(`${skipped} skipped`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
