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
import { type Jitter, measureJitter, NOISY_SLOW_PCT, summarizeUnits } from '../src/bench/jitter';
import { renderMarkdown } from '../src/bench/report';
import { renderCharts, renderIndex, renderJson, writeScenario } from '../src/bench/report-files';
import { analyzeRun, type EngineRun, methodNotes, SCHEMA, type ScenarioResult } from '../src/bench/results';
import type { BatchRecord, RawRun, RequestRecord, Tick } from '../src/bench/runner';
import { BENCH_FIXTURES, benchGolden } from './helpers/bench-golden';

const golden = benchGolden('stats-golden.json');
const seed = readFileSync(new URL('seed-03_backend_mlx.md', BENCH_FIXTURES), 'utf8');

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

/** An mlx engine on a GPU; `gpu` gives the NVML reading at tick i (none: NVML was unavailable). */
function gpuEngineRun(raw: RawRun, gpu?: (i: number) => number): EngineRun {
  const ticks = gpu ? raw.ticks.map((t, i) => ({ ...t, gpuUtilPct: gpu(i) })) : raw.ticks;
  return {
    ...engineRun('mlx/gpu/float16', [{ ...raw, ticks }]),
    requested: { backend: 'mlx', device: 'auto' },
    info: { backend: 'mlx', device: 'gpu', deviceName: 'Test GPU', dtype: 'float16', version: '0.32.2' },
    nvml: gpu
      ? { available: true, index: 0, name: 'NVIDIA Test GPU 80GB' }
      : { available: false, reason: 'NVML could not be loaded (no NVIDIA driver?): test' },
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

describe('NVML GPU utilisation', () => {
  const cells = (md: string, heading: string, column: string): string[] => {
    const lines = md.split('\n');
    let i = lines.indexOf(heading);
    while (!(lines[i] as string).startsWith('|')) i++;
    const k = (lines[i] as string)
      .slice(1, -1)
      .split('|')
      .map((c) => c.trim())
      .indexOf(column);
    expect(k, column).toBeGreaterThanOrEqual(0);
    return tableAfter(md, heading).map((r) => r[k] as string);
  };

  it('is absent from a cpu report: no column, row, header line or method note', () => {
    expect(md).not.toMatch(/NVML/);
    expect(headerAfter(md, '## Dashboard Time-Series Data')).not.toContain('GPU util');
    expect(single.method.nvml).toBeUndefined();
  });

  it('shows the device, a column next to Dev Busy, the dashboard row and the mean per config', () => {
    // Readings cycle 0, 25, 50, 75, 100 with a failed read every 7th tick.
    const reading = (i: number): number => (i % 7 === 6 ? Number.NaN : (i % 5) * 25);
    const s = { ...scenario([gpuEngineRun(recordedRun(), reading)]), method: methodNotes(500, true) };
    const text = renderMarkdown(s);
    expect(text).toContain(
      '**GPU utilisation (NVML):** NVIDIA Test GPU 80GB (NVML device 0), read every 500 ms',
    );
    const head = headerAfter(text, '## Dashboard Time-Series Data');
    expect(head).toContain('| Dev Busy (%) | GPU util (NVML, %) | CPU (%) |');
    const cfg = s.runs[0]?.configs[0];
    const fine = (cfg?.samples ?? []).map((x) => x.gpuUtilPct as number);
    const finite = fine.filter(Number.isFinite);
    const mean = finite.reduce((a, b) => a + b, 0) / finite.length;
    expect(cfg?.gpuUtil?.count).toBe(finite.length);
    expect(cfg?.gpuUtil?.avg).toBeCloseTo(mean, 9);
    // The merged table: each row the mean of the finite readings of its ticks.
    const shown = cells(text, '## Dashboard Time-Series Data', 'GPU util (NVML, %)');
    expect(shown).toHaveLength(cfg?.tableSamples.length ?? -1);
    expect(shown.map(Number)).toEqual(cfg?.tableSamples.map((x) => Number(x.gpuUtilPct?.toFixed(1))));
    const dash = tableAfter(text, '## Dashboard Metrics Summary').map((r) => r[0]);
    expect(dash.slice(1, 4)).toEqual(['Device Busy (%)', 'GPU util (NVML, %)', 'Process CPU (%)']);
    expect(cells(text, '## Dashboard Metrics Summary', 'Avg')[2]).toBe(mean.toFixed(1));
    expect(text).toContain(`**GPU util (NVML):** avg ${mean.toFixed(1)}%, min 0.0%, max 100.0% over `);
    expect(text).toContain("- **nvml:** GPU util % = NVML's utilisation.gpu");
    const back = JSON.parse(renderJson(s)) as ScenarioResult;
    expect(back.runs[0]?.nvml).toEqual({ available: true, index: 0, name: 'NVIDIA Test GPU 80GB' });
    expect(back.runs[0]?.configs[0]?.samples[6]?.gpuUtilPct).toBeNull(); // NaN in JSON
  });

  it('says in one header line why NVML is unavailable, and adds no empty column', () => {
    const s = scenario([gpuEngineRun(recordedRun())]);
    const text = renderMarkdown(s);
    const lines = text.split('\n').filter((l) => l.includes('NVML'));
    expect(lines).toEqual([
      '**GPU utilisation (NVML):** unavailable: NVML could not be loaded (no NVIDIA driver?): test',
    ]);
  });

  it('names the engine on each NVML line when engines are compared', () => {
    const text = renderMarkdown(
      scenario([engineRun('cpu/cpu/float32', [recordedRun()]), gpuEngineRun(recordedRun(), () => 50)]),
    );
    expect(text).toContain('**GPU utilisation (NVML, mlx/gpu/float16):** NVIDIA Test GPU 80GB');
    // Only the GPU config's time series has the column.
    const heads = text.split('\n').filter((l) => l.startsWith('| Index |'));
    expect(heads.map((h) => h.includes('GPU util (NVML, %)'))).toEqual([false, true]);
  });
});

describe('CPU steadiness (the background of latency tails)', () => {
  it('counts the units over 1.5x the fastest and interpolates p99 as the bench does', () => {
    // 100 units: fastest 0.1; 0.15 is exactly 1.5x (not slow); three are slower.
    const times = [...Array.from({ length: 96 }, (_, i) => 0.1 + i * 1e-4), 0.15, 0.16, 0.3, 1.0];
    const j = summarizeUnits(times);
    expect(j.units).toBe(100);
    expect(j.slowPct).toBeCloseTo(3, 10);
    // The bench's percentile: rank 99 * 0.99 = 98.01, between sorted[98] = 0.3 and sorted[99] = 1.0.
    expect(j.p99Ratio).toBeCloseTo((0.3 + 0.01 * (1.0 - 0.3)) / 0.1, 10);
    expect(summarizeUnits([])).toEqual({ units: 0, slowPct: 0, p99Ratio: 1 });
  });

  it('times units on this machine for about the time asked, and reads steal time on Linux', () => {
    const t0 = performance.now();
    const j = measureJitter(200);
    const took = performance.now() - t0;
    // Stops when the time is up (calibration and one last unit on top; generous for a loaded machine).
    expect(took).toBeLessThan(200 + 2000);
    // 0.5 ms sleeps + 0.1 ms units: a few hundred units, not one and not thousands.
    expect(j.units).toBeGreaterThan(20);
    expect(j.units).toBeLessThan(400);
    // /proc/stat was read before and after: a share of all CPU time, present on Linux.
    if (process.platform === 'linux') {
      expect(j.stealPct).toBeDefined();
      expect(j.stealPct).toBeLessThanOrEqual(100);
    }
  });

  const withJitter = (start: number, end: number): ScenarioResult => {
    const j: Jitter = { units: 1400, slowPct: start, p99Ratio: 2, stealPct: 0.25 };
    const s = scenario([engineRun('cpu/cpu/float32', [recordedRun()])]);
    s.machine.jitter = [j, { ...j, slowPct: end }];
    return s;
  };

  it('prints start/end steadiness on the machine line, and warns only when the machine was unsteady', () => {
    const quiet = renderMarkdown(withJitter(0.7, 0.2));
    expect(quiet).toMatch(/\*\*CPU steadiness, start\/end:\*\* 0\.7% \/ 0\.2% of 0\.1 ms work units/);
    expect(quiet).not.toMatch(/ran unsteadily/);
    const noisy = renderMarkdown(withJitter(1, 2 * NOISY_SLOW_PCT + 4));
    expect(noisy).toMatch(
      /> The machine itself ran unsteadily: with no engine loaded, 14\.0% of short work units/,
    );
    expect(noisy).toMatch(/steal time was 0\.25% \/ 0\.25%/);
    expect(md).not.toMatch(/CPU steadiness/); // older results without the field
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
