/**
 * Small SVG charts drawn by hand for the self-contained HTML report: no
 * library, no network. Line charts over time (with gaps where a value is
 * missing, optional log scale) and horizontal bars.
 */

export interface Series {
  name: string;
  color: string;
  /** [x, y]; y null leaves a gap. */
  points: readonly (readonly [number, number | null])[];
  dashed?: boolean;
  /** An SVG stroke-dasharray ("2 3" dotted, "8 3 2 3" dash-dot): tells lines apart without colour. */
  dash?: string;
  /** Line width (default 1.8). */
  strokeWidth?: number;
  /** 'right': drawn against a second y axis on the right (a quantity with other units). */
  axis?: 'left' | 'right';
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  log?: boolean;
  width?: number;
  height?: number;
  /** Formats a y tick. */
  formatY?: (value: number) => string;
  /** The label of the right axis, for series with axis 'right' (linear, from 0). */
  y2Label?: string;
}

const LEGEND_ROW_PX = 18;
const LEGEND_CHAR_PX = 7;

/** Where each legend entry goes: rows that stay inside the chart's width. */
function legendLayout(names: readonly string[], left: number, right: number): { x: number; row: number }[] {
  const places: { x: number; row: number }[] = [];
  let x = left;
  let row = 0;
  for (const name of names) {
    const entryWidth = 30 + name.length * LEGEND_CHAR_PX;
    if (x > left && x + entryWidth > right) {
      row += 1;
      x = left;
    }
    places.push({ x, row });
    x += entryWidth;
  }
  return places;
}

function dashOf(series: Series): string | undefined {
  return series.dash ?? (series.dashed === true ? '6 4' : undefined);
}

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Round tick values from at or below min to at or above max (about `count` steps). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (max <= min) max = min + 1;
  const rawStep = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rawStep));
  const residual = rawStep / magnitude;
  const step = (residual > 5 ? 10 : residual > 2 ? 5 : residual > 1 ? 2 : 1) * magnitude;
  const ticks: number[] = [];
  const first = Math.floor(min / step + 1e-9);
  const last = Math.ceil(max / step - 1e-9);
  for (let tick = first; tick <= last; tick++) ticks.push(tick * step);
  return ticks;
}

export function compactNumber(value: number): string {
  const absolute = Math.abs(value);
  if (absolute >= 1e9) return `${trim(value / 1e9)}G`;
  if (absolute >= 1e6) return `${trim(value / 1e6)}M`;
  if (absolute >= 1e3) return `${trim(value / 1e3)}k`;
  if (absolute > 0 && absolute < 1) return value.toPrecision(2);
  return trim(value);
}

function trim(value: number): string {
  return Number(value.toFixed(value >= 100 || value <= -100 ? 0 : value >= 10 || value <= -10 ? 1 : 2)).toString();
}

export function lineChart(options: LineChartOptions): string {
  const width = options.width ?? 900;
  const hasRight = options.series.some((series) => series.axis === 'right');
  const legendNames = options.series.map((series) => series.name + (series.axis === 'right' ? ' (right axis)' : ''));
  const legend = legendLayout(legendNames, 70, width - 20);
  const legendRows = 1 + Math.max(0, ...legend.map((place) => place.row));
  const margin = { left: 70, right: hasRight ? 70 : 20, top: 34, bottom: 46 + legendRows * LEGEND_ROW_PX };
  const height = (options.height ?? 280) + (legendRows - 1) * LEGEND_ROW_PX;
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const log = options.log === true;
  const formatY = options.formatY ?? compactNumber;
  let xMin = Infinity;
  let xMax = -Infinity;
  let yMin = log ? Infinity : 0;
  let yMax = -Infinity;
  let y2Max = -Infinity;
  for (const series of options.series) {
    const right = series.axis === 'right';
    for (const [x, y] of series.points) {
      xMin = Math.min(xMin, x);
      xMax = Math.max(xMax, x);
      if (y === null || !Number.isFinite(y)) continue;
      if (right) {
        y2Max = Math.max(y2Max, y);
        continue;
      }
      if (log && y <= 0) continue;
      yMin = Math.min(yMin, y);
      yMax = Math.max(yMax, y);
    }
  }
  const title = `<text x="${width / 2}" y="20" text-anchor="middle" class="title">${escapeHtml(options.title)}</text>`;
  if (!Number.isFinite(xMin) || (!Number.isFinite(yMax) && !Number.isFinite(y2Max))) {
    return `<svg viewBox="0 0 ${width} ${height}" width="100%" role="img">${title}<text x="${width / 2}" y="${height / 2}" text-anchor="middle" class="axis">no data</text></svg>`;
  }
  if (!Number.isFinite(yMax)) {
    yMin = log ? 1 : 0;
    yMax = log ? 10 : 1;
  }
  if (xMax === xMin) xMax = xMin + 1;
  let yTicks: number[];
  let yScale: (y: number) => number;
  if (log) {
    const low = Math.floor(Math.log10(yMin));
    const high = Math.max(low + 1, Math.ceil(Math.log10(yMax)));
    yTicks = [];
    for (let exponent = low; exponent <= high; exponent++) yTicks.push(10 ** exponent);
    yScale = (y) => margin.top + plotHeight - ((Math.log10(y) - low) / (high - low)) * plotHeight;
  } else {
    yTicks = niceTicks(yMin, yMax);
    const bottom = yTicks[0] ?? yMin;
    const top = yTicks[yTicks.length - 1] ?? yMax;
    yScale = (y) => margin.top + plotHeight - ((y - bottom) / (top - bottom || 1)) * plotHeight;
  }
  const y2Ticks = hasRight && Number.isFinite(y2Max) ? niceTicks(0, Math.max(y2Max, 1)) : [];
  const y2Top = y2Ticks[y2Ticks.length - 1] ?? 1;
  const y2Scale = (y: number): number => margin.top + plotHeight - (y / (y2Top || 1)) * plotHeight;
  const xScale = (x: number): number => margin.left + ((x - xMin) / (xMax - xMin)) * plotWidth;
  const parts: string[] = [title];
  for (const tick of yTicks) {
    const y = yScale(tick);
    parts.push(`<line x1="${margin.left}" x2="${margin.left + plotWidth}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${margin.left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end" class="axis">${escapeHtml(formatY(tick))}</text>`);
  }
  for (const tick of y2Ticks) {
    parts.push(`<text x="${margin.left + plotWidth + 6}" y="${(y2Scale(tick) + 4).toFixed(1)}" class="axis">${escapeHtml(compactNumber(tick))}</text>`);
  }
  for (const tick of niceTicks(xMin, xMax, 8)) {
    if (tick < xMin || tick > xMax) continue;
    const x = xScale(tick);
    parts.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${margin.top}" y2="${margin.top + plotHeight}" class="grid"/>`);
    parts.push(`<text x="${x.toFixed(1)}" y="${margin.top + plotHeight + 16}" text-anchor="middle" class="axis">${escapeHtml(compactNumber(tick))}</text>`);
  }
  parts.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotWidth}" height="${plotHeight}" class="frame"/>`);
  parts.push(`<text x="${margin.left + plotWidth / 2}" y="${margin.top + plotHeight + 34}" text-anchor="middle" class="label">${escapeHtml(options.xLabel)}</text>`);
  parts.push(
    `<text transform="translate(16 ${margin.top + plotHeight / 2}) rotate(-90)" text-anchor="middle" class="label">${escapeHtml(options.yLabel)}${log ? ' (log)' : ''}</text>`,
  );
  if (y2Ticks.length > 0) {
    parts.push(
      `<text transform="translate(${width - 12} ${margin.top + plotHeight / 2}) rotate(90)" text-anchor="middle" class="label">${escapeHtml(options.y2Label ?? '')}</text>`,
    );
  }
  for (const series of options.series) {
    const right = series.axis === 'right';
    const scale = right ? y2Scale : yScale;
    let path = '';
    let pen = false;
    for (const [x, y] of series.points) {
      if (y === null || !Number.isFinite(y) || (!right && log && y <= 0)) {
        pen = false;
        continue;
      }
      path += `${pen ? 'L' : 'M'}${xScale(x).toFixed(1)} ${scale(y).toFixed(1)}`;
      pen = true;
    }
    if (path.length > 0) {
      const dash = dashOf(series);
      parts.push(`<path d="${path}" fill="none" stroke="${series.color}" stroke-width="${series.strokeWidth ?? 1.8}"${dash === undefined ? '' : ` stroke-dasharray="${dash}"`}/>`);
    }
  }
  options.series.forEach((series, index) => {
    const place = legend[index]!;
    const legendY = margin.top + plotHeight + 52 + place.row * LEGEND_ROW_PX;
    const dash = dashOf(series);
    parts.push(
      `<line x1="${place.x}" x2="${place.x + 18}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="${series.color}" stroke-width="3"${dash === undefined ? '' : ` stroke-dasharray="${dash}"`}/>`,
    );
    parts.push(`<text x="${place.x + 22}" y="${legendY}" class="legend">${escapeHtml(legendNames[index]!)}</text>`);
  });
  return `<svg viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="${escapeHtml(options.title)}">${parts.join('')}</svg>`;
}

export interface Bar {
  label: string;
  value: number | null;
  color: string;
  note?: string;
}

export function barChart(title: string, unit: string, bars: readonly Bar[], width = 900): string {
  const rowHeight = 30;
  const labelWidth = 250;
  const height = 40 + bars.length * rowHeight + 10;
  const max = Math.max(1, ...bars.map((bar) => bar.value ?? 0));
  const plotWidth = width - labelWidth - 220;
  const parts: string[] = [`<text x="${width / 2}" y="20" text-anchor="middle" class="title">${escapeHtml(title)}</text>`];
  bars.forEach((bar, index) => {
    const y = 36 + index * rowHeight;
    parts.push(`<text x="${labelWidth - 8}" y="${y + 15}" text-anchor="end" class="label">${escapeHtml(bar.label)}</text>`);
    if (bar.value === null) {
      parts.push(`<text x="${labelWidth}" y="${y + 15}" class="axis">not measured${bar.note ? `: ${escapeHtml(bar.note)}` : ''}</text>`);
      return;
    }
    const barWidth = Math.max(1, (bar.value / max) * plotWidth);
    parts.push(`<rect x="${labelWidth}" y="${y}" width="${barWidth.toFixed(1)}" height="${rowHeight - 8}" fill="${bar.color}"/>`);
    parts.push(
      `<text x="${(labelWidth + barWidth + 6).toFixed(1)}" y="${y + 15}" class="legend">${escapeHtml(`${Math.round(bar.value).toLocaleString('en-US')} ${unit}${bar.note ? `  ${bar.note}` : ''}`)}</text>`,
    );
  });
  return `<svg viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="${escapeHtml(title)}">${parts.join('')}</svg>`;
}
