/**
 * The report writers on a recorded sample (test/fixtures/bench/stats-golden.json, numpy's figures):
 * the Markdown keeps the seed report's sections and columns (test/fixtures/bench/seed-03_backend_mlx.md)
 * and prints the numbers numpy computed; the JSON holds the same data; the SVGs are well formed.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { histogram, niceTicks } from '../src/bench/charts';
import { renderCharts, renderIndex, renderJson, renderMarkdown, writeScenario } from '../src/bench/report';
import { analyzeRun, type EngineRun, methodNotes, SCHEMA, type ScenarioResult } from '../src/bench/results';
import type { BatchRecord, RawRun, RequestRecord, Tick } from '../src/bench/runner';

interface Golden {
  latencyMs: number[];
  pairs: number[];
  latency: Record<string, number>;
  throughput: Record<string, number>;
  correlation: number;
  buckets: Array<{ count: number; avg: number; min: number; max: number }>;
}
const fixtures = new URL('./fixtures/bench/', import.meta.url);
const golden = JSON.parse(readFileSync(new URL('stats-golden.json', fixtures), 'utf8')) as Golden;
const seed = readFileSync(new URL('seed-03_backend_mlx.md', fixtures), 'utf8');

/** One client sending the recorded requests back to back, one engine batch per request. */
function recordedRun(scale = 1, concurrency = 1): RawRun {
  const requests: RequestRecord[] = [];
  const batches: BatchRecord[] = [];
  let t = 0;
  golden.latencyMs.forEach((l0, index) => {
    const l = l0 * scale;
    const pairs = golden.pairs[index] as number;
    requests.push({
      index,
      client: 0,
      pairs,
      startMs: t,
      endMs: t + l,
      latencyMs: l,
      throughput: (pairs * 1000) / l,
    });
    batches.push({
      atMs: t + l,
      pairs,
      tokens: pairs * 90,
      computedSlots: pairs * 90 + 40,
      paddingPct: (40 / (pairs * 90 + 40)) * 100,
      paddingIfPaddedPct: 35,
      tokenizeMs: 5,
      queueWaitMs: 0.5,
      inferenceMs: l * 0.8,
      activeBytes: 100 * 2 ** 20,
      peakBytes: 120 * 2 ** 20,
    });
    t += l;
  });
  const ticks: Tick[] = [];
  for (let s = 100; s < t; s += 100) ticks.push({ tMs: s, cpuMicros: s * 1500 });
  ticks.push({ tMs: t, cpuMicros: t * 1500 });
  return {
    config: { batch: 32, concurrency, pairs: 3185, sampleMs: 500 },
    wallMs: t,
    requests,
    batches,
    ticks,
    baselineBytes: 0,
  };
}

function engineRun(label: string, raws: RawRun[]): EngineRun {
  return {
    label,
    requested: { backend: 'cpu', device: 'cpu' },
    status: 'ok',
    info: { backend: 'cpu', device: 'cpu', deviceName: 'Test CPU', dtype: 'float32', version: 'cpu-test' },
    warmup: { loadMs: 812, warmupMs: 120, firstCallMs: 95.5 },
    configs: raws.map(analyzeRun),
  };
}

function scenario(runs: EngineRun[], number = '01', name = 'backend_cpu'): ScenarioResult {
  return {
    schema: SCHEMA,
    number,
    name,
    description: 'CPU engine, float32 weights',
    timestamp: '2026-11-27 23:59:00 UTC',
    model: {
      id: 'cross-encoder/ms-marco-MiniLM-L-6-v2',
      synthetic: true,
      note: 'offline',
      weights: 'float32',
    },
    workload: { description: 'MS MARCO-like', seed: 42, pairsPerConfig: 3185 },
    machine: { cpu: 'Test CPU', cores: 2, memoryGiB: 24, os: 'linux', gpu: 'none detected' },
    versions: { package: '0.1.0', node: 'v20.20.0', mlx: 'not available', engines: { cpu: 'cpu-test' } },
    method: methodNotes(500),
    sampleMs: 500,
    runs,
    notes: [],
  };
}

/** Rows of the first Markdown table after the line `heading` (cells trimmed), header excluded. */
function tableAfter(md: string, heading: string, from = 0): string[][] {
  const lines = md.split('\n');
  let i = lines.indexOf(heading, from);
  expect(i, `heading ${heading}`).toBeGreaterThanOrEqual(0);
  while (!(lines[i] as string).startsWith('|')) i++;
  const rows: string[][] = [];
  for (i += 2; i < lines.length && (lines[i] as string).startsWith('|'); i++) {
    rows.push(
      (lines[i] as string)
        .slice(1, -1)
        .split('|')
        .map((c) => c.trim()),
    );
  }
  return rows;
}

function headerAfter(md: string, heading: string): string {
  const lines = md.split('\n');
  let i = lines.indexOf(heading);
  while (!(lines[i] as string).startsWith('|')) i++;
  return lines[i] as string;
}

const single = scenario([engineRun('cpu/cpu/float32', [recordedRun()])]);
const md = renderMarkdown(single);

describe('Markdown report', () => {
  it("keeps the seed's sections in the seed's order and its column headers", () => {
    const h2 = (text: string): string[] => text.split('\n').filter((l) => l.startsWith('## '));
    const ours = h2(md);
    let at = -1;
    for (const h of h2(seed)) {
      const k = ours.indexOf(h);
      expect(k, h).toBeGreaterThan(at);
      at = k;
    }
    for (const h of [
      '## Results Summary',
      '#### Latency (ms)',
      '#### Latency vs Throughput Analysis',
      '## Overall Summary',
      '## Dashboard Metrics Summary',
    ]) {
      expect(headerAfter(md, h)).toBe(headerAfter(seed, h));
    }
    expect(md.split('\n')[0]).toBe('# 01_backend_cpu');
    expect(md).toContain('_CPU engine, float32 weights_');
    expect(md).toContain('**synthetic**');
  });

  it("prints numpy's figures for the recorded sample", () => {
    const [row] = tableAfter(md, '## Results Summary');
    const g = golden;
    const wall = g.latencyMs.reduce((a, b) => a + b, 0) / 1000;
    expect(row).toEqual([
      '32',
      '1',
      String(g.pairs.reduce((a, b) => a + b, 0)),
      wall.toFixed(2),
      `${(g.latency.avg as number).toFixed(1)}ms`,
      `${(g.latency.p95 as number).toFixed(1)}ms`,
      `${(g.latency.p99 as number).toFixed(1)}ms`,
      (g.throughput.avg as number).toFixed(1),
      (g.throughput.p95 as number).toFixed(1),
    ]);
    const lat = Object.fromEntries(tableAfter(md, '#### Latency (ms)').map(([k, v]) => [k, Number(v)]));
    expect(lat).toEqual({
      Average: round2(g.latency.avg),
      Min: round2(g.latency.min),
      Max: round2(g.latency.max),
      'Std Dev': round2(g.latency.std),
      P50: round2(g.latency.p50),
      P90: round2(g.latency.p90),
      P95: round2(g.latency.p95),
      P99: round2(g.latency.p99),
    });
    const tp = Object.fromEntries(
      tableAfter(md, '#### Throughput (pairs/s)').map(([k, v]) => [k, Number(v)]),
    );
    expect(tp.Average).toBe(round2(g.throughput.avg));
    expect(tp['Std Dev']).toBe(round2(g.throughput.std));
    expect(tp.P99).toBe(round2(g.throughput.p99));
    const buckets = tableAfter(md, '#### Latency vs Throughput Analysis');
    expect(buckets.map((r) => Number(r[4]))).toEqual(g.buckets.map((b) => b.count));
    expect(buckets.map((r) => Number(r[1]))).toEqual(g.buckets.map((b) => round2(b.avg)));
    expect(buckets[0]?.[0]).toBe(`< ${(g.latency.p50 as number).toFixed(1)}ms (P50)`);
    expect(buckets[3]?.[0]).toBe(`>= ${(g.latency.p90 as number).toFixed(1)}ms (P90+)`);
    expect(md).toContain(`**Correlation:** ${g.correlation.toFixed(3)} `);
  });

  it('reports warm-up apart, the dashboard and a time series row per sample', () => {
    expect(md).toContain('load 812 ms, warmup() 120 ms, first request 95.5 ms');
    const dash = Object.fromEntries(
      tableAfter(md, '## Dashboard Metrics Summary').map((r) => [r[0], r.slice(1)]),
    );
    expect(dash['Device Memory (MB)']).toEqual(['100.0', '100.0', '100.0', '100.0', '100.0']);
    expect(dash['Process CPU (%)']?.[0]).toBe('150.0'); // 1.5 ms CPU per ms of wall
    expect(dash['Queue Wait (ms)']?.[0]).toBe('0.5');
    const series = tableAfter(md, '## Dashboard Time-Series Data');
    const samples = single.runs[0]?.configs[0]?.samples ?? [];
    expect(samples.length).toBeGreaterThan(10);
    expect(series.length).toBeLessThanOrEqual(41);
    expect(series[0]?.[0]).toBe('0');
    // Each shown throughput is the pairs that finished in its interval over its length.
    const reqs = single.runs[0]?.configs[0]?.requestLog ?? [];
    for (const k of [1, 7, 30]) {
      const a = (samples[k - 1]?.tS ?? 0) * 1000;
      const b = (samples[k]?.tS ?? 0) * 1000;
      const done = reqs.filter((r) => r.endMs > a && r.endMs <= b).reduce((x, r) => x + r.pairs, 0);
      expect(samples[k]?.throughput).toBeCloseTo((done * 1000) / (b - a), 6);
    }
    // Fine and merged intervals both account for every pair exactly once.
    const cfg = single.runs[0]?.configs[0];
    const pairsIn = (xs: Array<{ tS: number; throughput: number }>): number => {
      let prev = 0;
      let total = 0;
      for (const x of xs) {
        total += x.throughput * (x.tS - prev);
        prev = x.tS;
      }
      return total;
    };
    expect(cfg?.tableSamples.length).toBeLessThanOrEqual(40);
    expect(cfg?.tableSamples.length).toBeLessThan(samples.length);
    expect(pairsIn(samples)).toBeCloseTo(cfg?.pairs ?? 0, 6);
    expect(pairsIn(cfg?.tableSamples ?? [])).toBeCloseTo(cfg?.pairs ?? 0, 6);
    expect(series.length).toBe(cfg?.tableSamples.length);
  });

  it('compares engines side by side with ratios, and indexes scenarios', () => {
    const two = scenario([
      engineRun('cpu/cpu/float32', [recordedRun()]),
      engineRun('slow/cpu/float32', [recordedRun(2, 4)]),
    ]);
    const text = renderMarkdown(two);
    const rows = tableAfter(text, '## Comparison');
    expect(rows).toHaveLength(2);
    expect(rows[0]?.[4]).toBe('1.00x');
    expect(rows[1]?.[4]).toBe('0.50x'); // twice the wall time: half the pairs/s
    expect(rows[1]?.[6]).toBe('2.00x'); // twice the latency
    expect(tableAfter(text, '## Results Summary')[1]?.[0]).toBe('slow/cpu/float32');
    const skipped: EngineRun = {
      label: 'mlx/auto',
      requested: { backend: 'mlx', device: 'auto' },
      status: 'skipped',
      reason: 'not compiled in',
      configs: [],
    };
    const index = renderIndex([single, scenario([skipped], '03', 'backend_mlx')]);
    const idx = tableAfter(index, '# mlx-rerank bench: scenario index');
    expect(idx[0]?.[0]).toBe('[01_backend_cpu](01_backend_cpu.md)');
    expect(idx[1]?.[2]).toBe('float32');
    expect(idx[1]?.[10]).toContain('not compiled in');
    const none = renderMarkdown(scenario([skipped], '03', 'backend_mlx'));
    expect(none).toContain('**SKIPPED:** not compiled in');
    expect(none).toContain('No configuration ran');
    expect(none).not.toContain('## Detailed Metrics');
  });
});

describe('JSON and SVG', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-report-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the same data as JSON, NaN as null', () => {
    const back = JSON.parse(renderJson(single)) as ScenarioResult;
    const cfg = back.runs[0]?.configs[0];
    expect(cfg?.latency.p95).toBeCloseTo(golden.latency.p95 as number, 9);
    expect(cfg?.correlation).toBeCloseTo(golden.correlation, 9);
    expect(cfg?.requestLog).toHaveLength(100);
    expect(back.method.percentile).toContain('linear interpolation');
    const skipped = JSON.parse(renderJson(scenario([]))) as ScenarioResult;
    expect(skipped.runs).toEqual([]);
  });

  it('writes NN_name.md, .json and one .svg per chart', () => {
    const files = writeScenario(dir, single).map((p) => p.slice(dir.length + 1));
    expect(files.sort()).toEqual(
      [
        '01_backend_cpu.md',
        '01_backend_cpu.json',
        '01_backend_cpu.latency.svg',
        '01_backend_cpu.histogram.svg',
        '01_backend_cpu.throughput.svg',
      ].sort(),
    );
    expect(readdirSync(dir).sort()).toEqual(files.sort());
    expect(md).toContain('![Request latency over time](01_backend_cpu.latency.svg)');
  });

  it('draws well-formed SVG with one mark per request', () => {
    const svgs = renderCharts(single);
    for (const text of Object.values(svgs)) {
      expect(text.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(balanced(text)).toBe(true);
      expect(text).not.toMatch(/NaN|Infinity|undefined/);
    }
    expect(svgs.latency.match(/<circle /g)).toHaveLength(100);
    expect(svgs.throughput.match(/<circle /g)).toHaveLength(1);
  });

  it('bins a histogram so that every value in range is counted once', () => {
    expect(histogram([0, 1, 2, 3, 4, 10], 5, 0, 10)).toEqual([2, 2, 1, 0, 1]);
    const counts = histogram(golden.latencyMs, 30, 0, 200);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(100);
    const ticks = niceTicks(42.2, 139.7);
    expect(ticks[0]).toBeLessThanOrEqual(42.2);
    expect(ticks[ticks.length - 1]).toBeGreaterThanOrEqual(139.7);
    expect(ticks).toEqual([40, 60, 80, 100, 120, 140]);
  });
});

function round2(v: number | undefined): number {
  return Number((v as number).toFixed(2));
}

/** Every opened tag is closed in order (self-closing tags aside). */
function balanced(xml: string): boolean {
  const stack: string[] = [];
  for (const m of xml.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (m[3] === '/') continue;
    if (m[1] === '/') {
      if (stack.pop() !== m[2]) return false;
    } else stack.push(m[2] as string);
  }
  return stack.length === 0;
}
