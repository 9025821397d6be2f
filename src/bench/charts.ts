/**
 * Hand-written SVG charts (no dependencies) that GitHub and browsers show inline: latency over time,
 * latency histogram, throughput vs concurrency. Each takes plain series so tests can feed them data.
 */

export interface Series {
  name: string;
  points: Array<[number, number]>;
}

/** Plot area width; the SVG grows to the right to fit the legend's longest name. */
const PW = 480;
const H = 360;
const M = { left: 64, top: 40, bottom: 48 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** About `count` round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0];
  if (hi <= lo) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const out: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  if ((out[out.length - 1] as number) < hi)
    out.push(Number(((out[out.length - 1] as number) + step).toPrecision(12)));
  return out;
}

function fmtTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 1000) return `${Number((v / 1000).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

interface Frame {
  x: (v: number) => number;
  y: (v: number) => number;
  parts: string[];
}

function frame(
  title: string,
  xLabel: string,
  yLabel: string,
  xTicks: number[],
  yTicks: number[],
  xTickLabel: (v: number) => string = fmtTick,
): Frame {
  const x0 = xTicks[0] as number;
  const x1 = xTicks[xTicks.length - 1] as number;
  const y0 = yTicks[0] as number;
  const y1 = yTicks[yTicks.length - 1] as number;
  const pw = PW;
  const ph = H - M.top - M.bottom;
  const x = (v: number): number => M.left + ((v - x0) / (x1 - x0 || 1)) * pw;
  const y = (v: number): number => M.top + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  const parts = [`<text x="${M.left}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`];
  for (const t of yTicks) {
    parts.push(
      `<line x1="${M.left}" x2="${M.left + pw}" y1="${r(y(t))}" y2="${r(y(t))}" stroke="#e5e5e5"/>`,
      `<text x="${M.left - 6}" y="${r(y(t)) + 4}" font-size="11" text-anchor="end">${fmtTick(t)}</text>`,
    );
  }
  for (const t of xTicks) {
    parts.push(
      `<line x1="${r(x(t))}" x2="${r(x(t))}" y1="${M.top + ph}" y2="${M.top + ph + 4}" stroke="#333"/>`,
      `<text x="${r(x(t))}" y="${M.top + ph + 17}" font-size="11" text-anchor="middle">${esc(xTickLabel(t))}</text>`,
    );
  }
  parts.push(
    `<line x1="${M.left}" x2="${M.left + pw}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="#333"/>`,
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + ph}" stroke="#333"/>`,
    `<text x="${M.left + pw / 2}" y="${H - 10}" font-size="12" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="16" y="${M.top + ph / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 16 ${M.top + ph / 2})">${esc(yLabel)}</text>`,
  );
  return { x, y, parts };
}

function legend(names: string[]): string[] {
  return names.map((n, i) => {
    const yy = M.top + 8 + i * 18;
    const c = COLORS[i % COLORS.length];
    const x = M.left + PW + 16;
    return `<rect x="${x}" y="${yy - 9}" width="12" height="12" fill="${c}"/><text x="${x + 18}" y="${yy + 1}" font-size="11">${esc(n)}</text>`;
  });
}

function svg(parts: string[], names: string[]): string {
  // About 6.5 px per character of 11 px sans-serif: wide enough for the legend, never narrower than 720.
  const w = Math.max(
    720,
    Math.ceil(M.left + PW + 16 + 18 + Math.max(0, ...names.map((n) => n.length)) * 6.5 + 12),
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${H}" viewBox="0 0 ${w} ${H}" font-family="sans-serif">\n<rect width="${w}" height="${H}" fill="#ffffff"/>\n${parts.join('\n')}\n</svg>\n`;
}

function r(v: number): number {
  return Math.round(v * 10) / 10;
}

function extent(vals: number[]): [number, number] {
  const f = vals.filter(Number.isFinite);
  if (f.length === 0) return [0, 1];
  return [Math.min(...f), Math.max(...f)];
}

/** Scatter of each request's latency against the time it finished. */
export function latencyOverTimeChart(title: string, series: Series[]): string {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const [, xmax] = extent(xs);
  const [, ymax] = extent(ys);
  const f = frame(
    title,
    'time since start (s)',
    'request latency (ms)',
    niceTicks(0, xmax),
    niceTicks(0, ymax),
  );
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    for (const [px, py] of s.points) {
      if (Number.isFinite(px) && Number.isFinite(py))
        f.parts.push(`<circle cx="${r(f.x(px))}" cy="${r(f.y(py))}" r="2" fill="${c}" fill-opacity="0.7"/>`);
    }
  });
  return svg(
    [...f.parts, ...legend(series.map((s) => s.name))],
    series.map((s) => s.name),
  );
}

/** Equal-width bins over [lo, hi]; the last bin includes hi. */
export function histogram(values: number[], bins: number, lo: number, hi: number): number[] {
  const counts = new Array<number>(bins).fill(0);
  const w = (hi - lo) / bins || 1;
  for (const v of values) {
    if (!Number.isFinite(v) || v < lo || v > hi) continue;
    const k = Math.min(bins - 1, Math.floor((v - lo) / w));
    counts[k] = (counts[k] as number) + 1;
  }
  return counts;
}

/** Latency histogram: one step outline per series (shared bins), so several configs overlay. */
export function latencyHistogramChart(
  title: string,
  series: Array<{ name: string; values: number[] }>,
  bins = 30,
): string {
  const [lo0, hi0] = extent(series.flatMap((s) => s.values));
  const xt = niceTicks(Math.max(0, lo0), hi0);
  const lo = xt[0] as number;
  const hi = xt[xt.length - 1] as number;
  const counts = series.map((s) => histogram(s.values, bins, lo, hi));
  const ymax = Math.max(1, ...counts.flat());
  const f = frame(title, 'request latency (ms)', 'requests', xt, niceTicks(0, ymax));
  const w = (hi - lo) / bins;
  counts.forEach((cs, i) => {
    const c = COLORS[i % COLORS.length];
    const pts: string[] = [`${r(f.x(lo))},${r(f.y(0))}`];
    cs.forEach((n, k) => {
      pts.push(`${r(f.x(lo + k * w))},${r(f.y(n))}`, `${r(f.x(lo + (k + 1) * w))},${r(f.y(n))}`);
    });
    pts.push(`${r(f.x(hi))},${r(f.y(0))}`);
    f.parts.push(
      `<polygon points="${pts.join(' ')}" fill="${c}" fill-opacity="${series.length > 1 ? 0.25 : 0.6}" stroke="${c}"/>`,
    );
  });
  return svg(
    [...f.parts, ...legend(series.map((s) => s.name))],
    series.map((s) => s.name),
  );
}

/** Overall pairs/s against concurrency, one line per engine and batch size (x on a log2 scale). */
export function throughputChart(title: string, series: Series[]): string {
  const cs = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const lx = cs.map((c) => Math.log2(c));
  const lo = Math.min(...lx);
  const hi = Math.max(...lx);
  const xt = hi > lo ? lx : [lo - 1, lo, lo + 1];
  const [, ymax] = extent(series.flatMap((s) => s.points.map((p) => p[1])));
  const f = frame(title, 'concurrent clients', 'pairs/s (pairs / wall time)', xt, niceTicks(0, ymax), (v) =>
    lx.includes(v) ? String(Math.round(2 ** v)) : '',
  );
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = [...s.points]
      .sort((a, b) => a[0] - b[0])
      .map(([x, y]) => [f.x(Math.log2(x)), f.y(y)] as const);
    if (pts.length > 1)
      f.parts.push(
        `<polyline points="${pts.map(([x, y]) => `${r(x)},${r(y)}`).join(' ')}" fill="none" stroke="${c}" stroke-width="2"/>`,
      );
    for (const [x, y] of pts) f.parts.push(`<circle cx="${r(x)}" cy="${r(y)}" r="4" fill="${c}"/>`);
  });
  return svg(
    [...f.parts, ...legend(series.map((s) => s.name))],
    series.map((s) => s.name),
  );
}
