/**
 * The files a bench run writes: per scenario NN_<name>.md (src/bench/report.ts), .json and one SVG per
 * chart (src/bench/charts.ts), and results/index.md comparing the scenarios.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { latencyHistogramChart, latencyOverTimeChart, type Series, throughputChart } from './charts';
import { baseName, cfgLabel, f, type Row, ratio, rowsOf, table } from './format';
import { renderMarkdown } from './report';
import type { ScenarioResult } from './results';

export const CHARTS = ['latency', 'histogram', 'throughput'] as const;

/** JSON: everything, NaN written as null (JSON has no NaN). */
export function renderJson(s: ScenarioResult): string {
  return `${JSON.stringify(s, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`;
}

export function renderCharts(s: ScenarioResult): Record<(typeof CHARTS)[number], string> {
  const rows = rowsOf(s);
  const label = (r: Row): string => cfgLabel(s, r, true);
  const title = baseName(s);
  const tpSeries = new Map<string, Series>();
  for (const { run, cfg } of rows) {
    const key = `${run.label}, batch=${cfg.batch}`;
    const series = tpSeries.get(key) ?? { name: key, points: [] };
    series.points.push([cfg.concurrency, cfg.overallPairsPerSec]);
    tpSeries.set(key, series);
  }
  return {
    latency: latencyOverTimeChart(
      `${title}: request latency over time`,
      rows.map((r) => ({
        name: label(r),
        points: r.cfg.requestLog.map((q) => [q.endMs / 1000, q.latencyMs]),
      })),
    ),
    histogram: latencyHistogramChart(
      `${title}: latency histogram`,
      rows.map((r) => ({ name: label(r), values: r.cfg.requestLog.map((q) => q.latencyMs) })),
    ),
    throughput: throughputChart(`${title}: throughput vs concurrency`, [...tpSeries.values()]),
  };
}

/** Writes NN_name.md, .json and the .svg charts; returns the paths written. */
export function writeScenario(outDir: string, s: ScenarioResult): string[] {
  mkdirSync(outDir, { recursive: true });
  const b = join(outDir, baseName(s));
  const written: string[] = [];
  const put = (path: string, text: string): void => {
    writeFileSync(path, text);
    written.push(path);
  };
  put(`${b}.md`, renderMarkdown(s));
  put(`${b}.json`, renderJson(s));
  if (rowsOf(s).length > 0) {
    const svgs = renderCharts(s);
    for (const c of CHARTS) put(`${b}.${c}.svg`, svgs[c]);
  }
  return written;
}

/** results/index.md: one row per scenario and engine configuration. */
export function renderIndex(scenarios: ScenarioResult[]): string {
  const rows: string[][] = [];
  let base: number | undefined;
  for (const s of scenarios) {
    for (const run of s.runs) {
      if (run.status !== 'ok') {
        rows.push([
          `[${baseName(s)}](${baseName(s)}.md)`,
          run.label,
          s.model.weights,
          '-',
          '-',
          '-',
          '-',
          '-',
          '-',
          '-',
          `${run.status}: ${run.reason ?? ''}`,
        ]);
        continue;
      }
      for (const cfg of run.configs) {
        base ??= cfg.overallPairsPerSec;
        rows.push([
          `[${baseName(s)}](${baseName(s)}.md)`,
          run.label,
          s.model.weights,
          String(cfg.batch),
          String(cfg.concurrency),
          f(cfg.overallPairsPerSec, 1),
          ratio(cfg.overallPairsPerSec, base),
          f(cfg.latency.avg, 1),
          f(cfg.latency.p95, 1),
          f(cfg.padding.measuredPct, 1),
          s.description,
        ]);
      }
    }
  }
  const first = scenarios[0];
  const lines = ['# mlx-rerank bench: scenario index', ''];
  if (first) {
    lines.push(
      `**Timestamp:** ${first.timestamp} | **Machine:** ${first.machine.cpu}, ${first.machine.cores} cores | **GPU:** ${first.machine.gpu} | **Node** ${first.versions.node}`,
      '',
      `**Model:** \`${first.model.id}\`${first.model.synthetic ? ` (**synthetic**: ${first.model.note ?? 'random weights'})` : ''}`,
      '',
    );
  }
  lines.push(
    'Pairs/s is pairs scored / wall time; "vs first" is that ratio against the first row. Latencies are per request.',
    '',
    table(
      [
        'Scenario',
        'Engine',
        'Weights',
        'Batch',
        'Conc',
        'Pairs/s',
        'vs first',
        'Lat Avg (ms)',
        'Lat P95 (ms)',
        'Padding (%)',
        'Description',
      ],
      rows,
    ),
    '',
  );
  return lines.join('\n');
}
