/**
 * Live progress on stderr (the table and file path go to stdout, so
 * `npm run bench > result.txt` keeps a clean report). On a terminal one line
 * is rewritten in place; otherwise (CI logs) a line is printed at most every
 * `plainIntervalMs`.
 */
export class Progress {
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private readonly plainIntervalMs: number;
  private lastPlainAt = 0;
  private lineShown = false;

  constructor(stream: NodeJS.WriteStream = process.stderr, plainIntervalMs = 5_000) {
    this.stream = stream;
    this.tty = stream.isTTY === true;
    this.plainIntervalMs = plainIntervalMs;
  }

  /** A transient status line. */
  update(text: string): void {
    if (this.tty) {
      const width = this.stream.columns ?? 120;
      this.stream.write(`\r\x1b[K${text.length > width - 1 ? text.slice(0, width - 1) : text}`);
      this.lineShown = true;
      return;
    }
    const now = Date.now();
    if (now - this.lastPlainAt >= this.plainIntervalMs) {
      this.lastPlainAt = now;
      this.stream.write(`${text}\n`);
    }
  }

  /** A permanent line (phase started or finished). */
  log(text: string): void {
    this.clear();
    this.stream.write(`${text}\n`);
  }

  clear(): void {
    if (this.tty && this.lineShown) {
      this.stream.write('\r\x1b[K');
      this.lineShown = false;
    }
  }
}

export function formatCount(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '-';
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1_000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** A progress bar of `width` cells for a fraction in [0, 1]: [██████░░░░]. */
export function bar(fraction: number, width = 20): string {
  const clamped = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const full = Math.round(clamped * width);
  return `[${'█'.repeat(full)}${'░'.repeat(width - full)}]`;
}
