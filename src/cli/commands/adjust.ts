import { extname } from 'node:path';
import { parseArgs } from 'node:util';
import { ApiClient, CommandError, CONNECTION_HELP, CONNECTION_OPTIONS, fail, formatNumber, processIo, type CommandIo } from './client.js';

export const ADJUST_HELP = `usage: loyalty adjust <memberId> <credit|debit> <points> --reason <text> [options]
       loyalty adjust --file <file.csv|file.ndjson> [options]

Credits or debits points through the engine's HTTP API (write role); the
operator recorded is the token's name.

One member:
  --reason <text>      why (required; kept in the ledger)
  --currency <id>      points currency (default: the program's first)
  --qualifying         a credit that also counts toward tiers
  --id <key>           idempotency key: re-running with the same key changes nothing
  --no-wait            do not wait for the outcome (exit 0 once the stream has the event)

A file (bulk):
  --file <path>        CSV with header memberId,direction,points,reason[,currency,id,qualifying,occurredAt]
                       or NDJSON (one JSON object per line, same fields); format from the extension
  --format csv|ndjson  override the format
  --job-id <key>       job id / idempotency key (re-posting the same key returns the same job)
  --report <path>      write the per-line report (CSV) there when the job ends
  Progress goes to stderr; the summary to stdout.
${CONNECTION_HELP}

exit codes: 0 applied (every line, for a file), 1 rejected / failed / API error,
2 bad usage, 3 a file finished with invalid, rejected or failed lines`;

const POLL_MS = 500;
const PROGRESS_EVERY_MS = 5_000;

export async function adjustCommand(args: readonly string[], io: CommandIo = processIo()): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        ...CONNECTION_OPTIONS,
        reason: { type: 'string' },
        currency: { type: 'string' },
        qualifying: { type: 'boolean' },
        id: { type: 'string' },
        'no-wait': { type: 'boolean' },
        file: { type: 'string' },
        format: { type: 'string' },
        'job-id': { type: 'string' },
        report: { type: 'string' },
      },
    });
    if (values.help) {
      io.stdout(`${ADJUST_HELP}\n`);
      return 0;
    }
    const client = ApiClient.from(values, io);
    if (values.file !== undefined) {
      if (positionals.length > 0) throw new CommandError('give either --file or <memberId> <credit|debit> <points>, not both', 2);
      return await bulk(client, io, values.file, values.format, values['job-id'], values.report);
    }
    const [memberId, direction, pointsText, ...extra] = positionals;
    if (memberId === undefined || direction === undefined || pointsText === undefined || extra.length > 0) {
      throw new CommandError(`expected <memberId> <credit|debit> <points>\n\n${ADJUST_HELP}`, 2);
    }
    if (direction !== 'credit' && direction !== 'debit') throw new CommandError(`direction must be credit or debit, got "${direction}"`, 2);
    if (!/^\d{1,10}$/.test(pointsText) || Number(pointsText) < 1) throw new CommandError(`points must be a whole number above 0, got "${pointsText}"`, 2);
    if (values.reason === undefined || values.reason.trim() === '') throw new CommandError('--reason is required', 2);
    const wait = values['no-wait'] !== true;
    const response = await client.call('POST', `/v1/members/${encodeURIComponent(memberId)}/adjustments${wait ? '?wait=true' : ''}`, {
      contentType: 'application/json',
      headers: values.id !== undefined ? { 'idempotency-key': values.id } : {},
      body: JSON.stringify({
        direction,
        points: Number(pointsText),
        reason: values.reason,
        ...(values.currency !== undefined ? { currency: values.currency } : {}),
        ...(values.qualifying === true ? { qualifying: true } : {}),
      }),
    });
    const body = response.json<{ eventId: string; sequence: number; duplicate: boolean; result?: string; rejection?: { code: string; reason: string }; outcomes?: Record<string, unknown>[] }>();
    const duplicate = body.duplicate ? ' (a repeat of an earlier request: nothing changed)' : '';
    if (!wait) {
      io.stdout(`accepted: event ${body.eventId} at stream sequence ${body.sequence}${duplicate}\n`);
      return 0;
    }
    if (body.result === 'rejected') {
      io.stdout(`rejected: ${body.rejection?.code}: ${body.rejection?.reason} (event ${body.eventId})\n`);
      return 1;
    }
    const balance = body.outcomes?.find((outcome) => outcome.kind === 'balance');
    io.stdout(
      `applied: ${direction} ${formatNumber(Number(pointsText))} ${String(balance?.currency ?? values.currency ?? 'points')} for ${memberId}` +
        `${balance !== undefined ? `, spendable now ${formatNumber(Number(balance.spendable))}` : ''} (event ${body.eventId})${duplicate}\n`,
    );
    return 0;
  } catch (error) {
    return fail(error, io);
  }
}

interface BulkStatus {
  jobId: string;
  state: string;
  counts: { total: number; invalid: number; queued: number; submitted: number; applied: number; rejected: number; pending: number; failed: number; duplicates: number };
  publishedPerSecond: number | null;
  error?: string;
}

function formatOf(path: string, override: string | undefined): 'csv' | 'ndjson' {
  const format = override ?? ({ '.csv': 'csv', '.ndjson': 'ndjson', '.jsonl': 'ndjson' } as Record<string, string>)[extname(path).toLowerCase()];
  if (format !== 'csv' && format !== 'ndjson') throw new CommandError(`cannot tell the format of ${path}: use --format csv|ndjson`, 2);
  return format;
}

async function bulk(client: ApiClient, io: CommandIo, path: string, formatOption: string | undefined, jobId: string | undefined, reportPath: string | undefined): Promise<number> {
  const format = formatOf(path, formatOption);
  let text: string;
  try {
    text = io.readFile(path);
  } catch (error) {
    throw new CommandError(`cannot read ${path}: ${(error as Error).message}`, 2);
  }
  const upload = await client.call('POST', '/v1/bulk/adjustments', {
    contentType: format === 'csv' ? 'text/csv' : 'application/x-ndjson',
    headers: jobId !== undefined ? { 'idempotency-key': jobId } : {},
    body: text,
  });
  let status = upload.json<BulkStatus>();
  io.stderr(`job ${status.jobId}: ${upload.status === 200 ? 'already known, following it' : 'started'}\n`);
  let lastPrinted = 0;
  for (;;) {
    const finished = !['running', 'awaiting_outcomes'].includes(status.state);
    const now = Date.now();
    if (io.interactive) io.stderr(`\r${progressLine(status)}\u001b[K`);
    else if (finished || now - lastPrinted >= PROGRESS_EVERY_MS) {
      io.stderr(`${progressLine(status)}\n`);
      lastPrinted = now;
    }
    if (finished) break;
    await io.sleep(POLL_MS);
    status = (await client.call('GET', `/v1/bulk/${status.jobId}`)).json<BulkStatus>();
  }
  if (io.interactive) io.stderr('\n');
  const { counts } = status;
  io.stdout(
    `job ${status.jobId} ${status.state}: ${formatNumber(counts.total)} lines, ${formatNumber(counts.applied)} applied, ${formatNumber(counts.rejected)} rejected, ` +
      `${formatNumber(counts.invalid)} invalid, ${formatNumber(counts.failed)} failed, ${formatNumber(counts.pending)} without outcome` +
      `${counts.duplicates > 0 ? `, ${formatNumber(counts.duplicates)} duplicates` : ''}${status.error !== undefined ? ` (${status.error})` : ''}\n`,
  );
  if (reportPath !== undefined) {
    const report = await client.call('GET', `/v1/bulk/${status.jobId}/report?format=csv`, { accept: 'text/csv' });
    io.writeFile(reportPath, report.text);
    io.stdout(`report: ${reportPath}\n`);
  }
  const bad = counts.invalid + counts.rejected + counts.failed + counts.pending;
  if (bad > 0) {
    const problems = await client.call('GET', `/v1/bulk/${status.jobId}/report?format=ndjson&status=invalid,rejected,failed,submitted`, { accept: 'application/x-ndjson' });
    const lines = problems.text.split('\n').filter((line) => line !== '');
    for (const line of lines.slice(0, 20)) {
      const result = JSON.parse(line) as { line: number; status: string; reason?: string; memberId?: string | null };
      io.stderr(`  line ${result.line}: ${result.status}${result.memberId ? ` (${result.memberId})` : ''}: ${result.reason ?? ''}\n`);
    }
    if (lines.length > 20) io.stderr(`  ... and ${formatNumber(lines.length - 20)} more${reportPath === undefined ? ' (--report <path> writes them all)' : ''}\n`);
  }
  if (status.state === 'completed' && bad === 0) return 0;
  return status.state === 'failed' || status.state === 'stopped' ? 1 : 3;
}

function progressLine(status: BulkStatus): string {
  const { counts } = status;
  const valid = counts.total - counts.invalid;
  const rate = status.publishedPerSecond !== null ? `, ${formatNumber(status.publishedPerSecond)}/s` : '';
  return `${status.state}: ${formatNumber(counts.submitted)}/${formatNumber(valid)} submitted${rate}, ${formatNumber(counts.applied)} applied, ${formatNumber(counts.rejected)} rejected, ${formatNumber(counts.invalid)} invalid`;
}
