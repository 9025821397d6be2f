/**
 * A scenario's results as the seed report's Markdown (same sections, same columns, then the new ones).
 * One concern, the Markdown of one scenario: the arithmetic is in stats.ts, the charts in charts.ts,
 * the files and the index in report-files.ts; long because the report has many sections.
 */
import { baseName, cfgLabel, f, multiEngine, type Row, ratio, rowsOf, table } from './format';
import { NOISY_SLOW_PCT } from './jitter';
import {
  type ConfigResult,
  DASHBOARD_METRICS,
  type EngineRun,
  GPU_UTIL_LABEL,
  type ScenarioResult,
} from './results';
import type { Sample } from './runner';
import type { Bucket, Summary } from './stats';

function bucketLabel(b: Bucket): string {
  switch (b.label) {
    case 'P0-P50':
      return `< ${f(b.hi, 1)}ms (P50)`;
    case 'P90+':
      return `>= ${f(b.lo, 1)}ms (P90+)`;
    default:
      return `${f(b.lo, 1)}-${f(b.hi, 1)}ms (${b.label})`;
  }
}

/** Which GPU NVML sampled for an engine on a GPU, or why it could not. */
function memoryLine(run: EngineRun, backend: string): string {
  const m = run.memory as NonNullable<EngineRun['memory']>;
  const mib = (b: number) => `${f(b / 2 ** 20, 1)} MiB`;
  const source = backend === 'mlx' ? "MLX's counters, process-wide" : 'engine allocations';
  return `**Engine memory after the last configuration (${source}):** active ${mib(m.activeBytes)}, peak ${mib(m.peakBytes)}, cache ${mib(m.cacheBytes)}`;
}

function nvmlLine(s: ScenarioResult, run: EngineRun, nvml: NonNullable<EngineRun['nvml']>): string {
  const what = `**GPU utilisation (NVML${multiEngine(s) ? `, ${run.label}` : ''}):**`;
  return nvml.available
    ? `${what} ${nvml.name} (NVML device ${nvml.index}), read every ${s.sampleMs} ms`
    : `${what} unavailable: ${nvml.reason}`;
}

function header(s: ScenarioResult): string[] {
  const out = [`# ${baseName(s)}`, '', `_${s.description}_`, '', `**Timestamp:** ${s.timestamp}`, ''];
  const model = `**Model:** \`${s.model.id}\` | **Weights stored:** \`${s.model.weights}\``;
  const note = s.model.synthetic
    ? ` (**synthetic**: ${s.model.note ?? 'random weights'})`
    : s.model.note
      ? ` (${s.model.note})`
      : '';
  out.push(model + note, '');
  for (const run of s.runs) {
    if (run.status === 'ok' && run.info) {
      const i = run.info;
      out.push(
        `**Backend:** \`${i.backend}\` | **Device:** \`${i.device}\` (${i.deviceName}) | **Dtype:** \`${i.dtype}\` | **Engine:** ${i.version}` +
          (i.tokenizerThreads !== undefined ? ` | **Tokenizer threads:** ${i.tokenizerThreads}` : '') +
          (i.tuning
            ? ` | **Engine options:** ${Object.entries(i.tuning)
                .map(([k, val]) => `\`${k}=${val}\``)
                .join(' ')}`
            : ''),
        '',
      );
      if (run.nvml) out.push(nvmlLine(s, run, run.nvml), '');
      if (run.memory) out.push(memoryLine(run, i.backend), '');
    } else {
      out.push(
        `**Backend:** \`${run.requested.backend}\` | **${run.status.toUpperCase()}:** ${run.reason ?? ''}`,
        '',
      );
    }
  }
  const m = s.machine;
  out.push(
    `**Machine:** ${m.cpu}, ${m.cores} cores, ${f(m.memoryGiB, 0)} GiB RAM, ${m.os} | **GPU:** ${m.gpu}` +
      (m.loadAvg ? ` | **Load avg (1 min), start/end:** ${f(m.loadAvg[0])} / ${f(m.loadAvg[1])}` : '') +
      (m.jitter
        ? ` | **CPU steadiness, start/end:** ${f(m.jitter[0].slowPct, 1)}% / ${f(m.jitter[1].slowPct, 1)}% of 0.1 ms work units over 1.5x the fastest`
        : ''),
    '',
    `**Versions:** mlx-rerank ${s.versions.package} | MLX ${s.versions.mlx} | Node ${s.versions.node}`,
    '',
    `**Workload:** ${s.workload.description}; ${s.workload.pairsPerConfig} pairs per config, sent as requests of \`batch\` pairs by \`concurrency\` concurrent clients`,
    '',
  );
  for (const run of s.runs) {
    if (!run.warmup) continue;
    const w = run.warmup;
    out.push(
      `**Warm-up${multiEngine(s) ? ` (${run.label})` : ''}, excluded from the figures:** load ${f(w.loadMs, 0)} ms, warmup() ${f(w.warmupMs, 0)} ms, first request ${f(w.firstCallMs, 1)} ms${w.requestsPerConfig ? `; up to ${w.requestsPerConfig} requests (2 s at most) before each configuration` : ''}`,
      '',
    );
  }
  if (m.loadAvg && Math.max(...m.loadAvg) > m.cores) {
    out.push(
      `> The 1-minute load average (${f(Math.max(...m.loadAvg), 1)}) exceeded the ${m.cores} cores during this run: other processes competed for the CPU, so these figures understate what the machine gives when idle (see Process CPU % below).`,
      '',
    );
  }
  const unsteady = m.jitter ? Math.max(m.jitter[0].slowPct, m.jitter[1].slowPct) : 0;
  if (m.jitter && unsteady > NOISY_SLOW_PCT) {
    const steal = m.jitter.map((j) => j.stealPct).filter((v): v is number => v !== undefined);
    out.push(
      `> The machine itself ran unsteadily: with no engine loaded, ${f(unsteady, 1)}% of short work units (0.1 ms after a 0.5 ms sleep) took over 1.5x as long as the fastest (a quiet machine: under 1%)${steal.length ? `; the hypervisor's steal time was ${steal.map((v) => `${f(v, 2)}%`).join(' / ')}` : ''}. Requests are mostly CPU work, so their latency tail (p99) here shows the host's as much as the engine's: compare tails only between engines measured in the same run.`,
      '',
    );
  }
  for (const n of s.notes) out.push(`> ${n}`, '');
  return out;
}

function resultsSummary(s: ScenarioResult): string[] {
  const multi = multiEngine(s);
  const head = ['Batch', 'Conc', 'Pairs', 'Time(s)', 'Lat Avg', 'Lat P95', 'Lat P99', 'TP Avg', 'TP P95'];
  const rows = rowsOf(s).map(({ run, cfg }) => {
    const r = [
      String(cfg.batch),
      String(cfg.concurrency),
      String(cfg.pairs),
      f(cfg.wallS),
      `${f(cfg.latency.avg, 1)}ms`,
      `${f(cfg.latency.p95, 1)}ms`,
      `${f(cfg.latency.p99, 1)}ms`,
      f(cfg.throughput.avg, 1),
      f(cfg.throughput.p95, 1),
    ];
    return multi ? [run.label, ...r] : r;
  });
  if (rows.length === 0)
    return ['## Results Summary', '', 'No configuration ran: see the engine lines above for why.', ''];
  return ['## Results Summary', '', table(multi ? ['Engine', ...head] : head, rows), ''];
}

function statsTable(sum: ConfigResult['latency']): string {
  return table(
    ['Metric', 'Value'],
    [
      ['Average', f(sum.avg)],
      ['Min', f(sum.min)],
      ['Max', f(sum.max)],
      ['Std Dev', f(sum.std)],
      ['P50', f(sum.p50)],
      ['P90', f(sum.p90)],
      ['P95', f(sum.p95)],
      ['P99', f(sum.p99)],
    ],
  );
}

function detailed(s: ScenarioResult): string[] {
  const out = ['## Detailed Metrics', ''];
  rowsOf(s).forEach((row, i) => {
    const { cfg } = row;
    out.push(
      `### Config ${i + 1}: ${cfgLabel(s, row)}`,
      '',
      `**Total:** ${cfg.pairs} pairs in ${f(cfg.wallS)}s (${cfg.requests} requests; overall ${f(cfg.overallPairsPerSec, 1)} pairs/s)`,
      '',
      ...(cfg.gpuUtil
        ? [
            `**GPU util (NVML):** avg ${f(cfg.gpuUtil.avg, 1)}%, min ${f(cfg.gpuUtil.min, 1)}%, max ${f(cfg.gpuUtil.max, 1)}% over ${cfg.gpuUtil.count} samples`,
            '',
          ]
        : []),
      ...(cfg.stoppedAtBudget
        ? [
            `> Stopped at the time budget of ${cfg.stoppedAtBudget.budgetS} s (--max-seconds) after ${cfg.pairs} of ${cfg.stoppedAtBudget.plannedPairs} planned pairs.`,
            '',
          ]
        : []),
      '#### Latency (ms)',
      statsTable(cfg.latency),
      '',
      '#### Throughput (pairs/s)',
      statsTable(cfg.throughput),
      '',
      '#### Latency vs Throughput Analysis',
      '',
      table(
        ['Latency Range', 'Avg Throughput', 'Min Throughput', 'Max Throughput', 'Count'],
        cfg.buckets.map((b) => [
          bucketLabel(b),
          f(b.avgThroughput),
          f(b.minThroughput),
          f(b.maxThroughput),
          String(b.count),
        ]),
      ),
      '',
      `**Correlation:** ${f(cfg.correlation, 3)} (negative correlation expected: lower latency = higher throughput)`,
      '',
    );
  });
  return out;
}

function overall(s: ScenarioResult): string[] {
  const rows = rowsOf(s);
  if (rows.length === 0) return ['## Overall Summary', '', 'No configuration ran.', ''];
  const by = (key: (r: Row) => number, best: 'max' | 'min'): Row =>
    rows.reduce((a, b) => ((best === 'max' ? key(b) > key(a) : key(b) < key(a)) ? b : a));
  const bestTp = by((r) => r.cfg.throughput.avg, 'max');
  const bestLat = by((r) => r.cfg.latency.avg, 'min');
  const bestWall = by((r) => r.cfg.overallPairsPerSec, 'max');
  const avg = (k: (r: Row) => number): number => rows.reduce((a, r) => a + k(r), 0) / rows.length;
  return [
    '## Overall Summary',
    '',
    table(
      ['Metric', 'Value', 'Config'],
      [
        ['Best Throughput', `${f(bestTp.cfg.throughput.avg)} p/s`, cfgLabel(s, bestTp, true)],
        ['Best Latency', `${f(bestLat.cfg.latency.avg)}ms`, cfgLabel(s, bestLat, true)],
        ['Avg Throughput', `${f(avg((r) => r.cfg.throughput.avg))} p/s`, 'all configs'],
        ['Avg Latency', `${f(avg((r) => r.cfg.latency.avg))}ms`, 'all configs'],
        [
          'Best Overall Pairs/s (pairs / wall time)',
          `${f(bestWall.cfg.overallPairsPerSec)} p/s`,
          cfgLabel(s, bestWall, true),
        ],
      ],
    ),
    '',
  ];
}

function comparison(s: ScenarioResult): string[] {
  const rows = rowsOf(s);
  if (rows.length < 2) return [];
  const base = rows[0] as Row;
  return [
    '## Comparison',
    '',
    `Ratios against the first row (${cfgLabel(s, base, true)}${multiEngine(s) ? '' : `, ${base.run.label}`}): pairs/s higher is better, latency lower is better.`,
    '',
    table(
      [
        'Engine',
        'Batch',
        'Conc',
        'Pairs/s',
        'vs base',
        'Lat Avg (ms)',
        'vs base',
        'Lat P95 (ms)',
        'vs base',
        'Padding (%)',
      ],
      rows.map(({ run, cfg }) => [
        run.label,
        String(cfg.batch),
        String(cfg.concurrency),
        f(cfg.overallPairsPerSec, 1),
        ratio(cfg.overallPairsPerSec, base.cfg.overallPairsPerSec),
        f(cfg.latency.avg, 1),
        ratio(cfg.latency.avg, base.cfg.latency.avg),
        f(cfg.latency.p95, 1),
        ratio(cfg.latency.p95, base.cfg.latency.p95),
        f(cfg.padding.measuredPct, 1),
      ]),
    ),
    '',
  ];
}

function padding(s: ScenarioResult): string[] {
  const rows = rowsOf(s);
  if (rows.length === 0) return [];
  const out = [
    '## Padding Waste',
    '',
    'Padding waste = 1 - real tokens / token slots computed, over all batches. **Measured** is what the engine computed ' +
      '(packed batches: the dense layers on the real tokens, on a GPU rounded up to a row bucket of at most 1/32 more; ' +
      'attention per pair, padded only where pairs are grouped by length). **If padded** is what the same ' +
      'length-sorted batches would waste padded to their longest pair. **Unsorted, padded** is a short extra run with ' +
      "the scheduler's length sorting off, padded to the longest pair: what a plain padded batcher (e.g. sentence-transformers) computes.",
    '',
  ];
  const body = rows.map(({ run, cfg }) => [
    run.label,
    String(cfg.batch),
    String(cfg.concurrency),
    String(cfg.padding.batches),
    f(cfg.padding.measuredPct, 1),
    f(cfg.padding.ifPaddedPct, 1),
    run.unsortedPadding ? f(run.unsortedPadding.ifPaddedPct, 1) : '-',
  ]);
  out.push(
    table(
      ['Engine', 'Batch', 'Conc', 'Batches', 'Measured (%)', 'If padded (%)', 'Unsorted, padded (%)'],
      body,
    ),
    '',
  );
  for (const run of s.runs) {
    const u = run.unsortedPadding;
    if (u)
      out.push(
        `Unsorted run (${run.label}): ${u.pairs} pairs, batch=${u.batch}, ${u.batches} engine batches; measured ${f(u.measuredPct, 1)}%, padded to longest ${f(u.ifPaddedPct, 1)}%.`,
        '',
      );
  }
  return out;
}

function charts(s: ScenarioResult): string[] {
  if (rowsOf(s).length === 0) return [];
  const b = baseName(s);
  return [
    '## Charts',
    '',
    `![Request latency over time](${b}.latency.svg)`,
    '',
    `![Latency histogram](${b}.histogram.svg)`,
    '',
    `![Throughput vs concurrency](${b}.throughput.svg)`,
    '',
  ];
}

function dashboard(s: ScenarioResult): string[] {
  const rows = rowsOf(s);
  const out = ['## Dashboard Metrics Summary', ''];
  for (const row of rows) {
    if (rows.length > 1) out.push(`### ${cfgLabel(s, row)}`, '');
    out.push(table(['Metric', 'Avg', 'Min', 'Max', 'P50', 'P95'], dashboardRows(row.cfg)), '');
  }
  const nvml = rows.some((r) => r.cfg.gpuUtil)
    ? ` GPU util (NVML) is the driver's counter for the whole GPU (any process's kernels), read at each sample.`
    : '';
  out.push(
    `_Device memory, busy % and CPU % are summarised over the time-series samples; tokenization, inference, queue wait and padding over engine batches. Busy % is engine compute time / wall time, not a hardware utilisation counter.${nvml}_`,
    '',
  );
  return out;
}

/** The dashboard metrics, with NVML's GPU utilisation after Device Busy when the run sampled it. */
function dashboardRows(cfg: ConfigResult): string[][] {
  const row = (name: string, d: Summary): string[] => [
    name,
    f(d.avg, 1),
    f(d.min, 1),
    f(d.max, 1),
    f(d.p50, 1),
    f(d.p95, 1),
  ];
  return DASHBOARD_METRICS.flatMap(([key, name]) => {
    const r = row(name, cfg.dashboard[key]);
    return key === 'busyPct' && cfg.gpuUtil ? [r, row(GPU_UTIL_LABEL, cfg.gpuUtil)] : [r];
  });
}

type Column = [string, (x: Sample) => string];

const SERIES_COLUMNS: Column[] = [
  ['Index', (x) => String(x.index)],
  ['t (s)', (x) => f(x.tS, 1)],
  ['Dev Mem (MB)', (x) => f(x.memoryMB, 1)],
  ['Dev Busy (%)', (x) => f(x.busyPct, 1)],
  ['CPU (%)', (x) => f(x.cpuPct, 1)],
  ['Latency (ms)', (x) => f(x.latencyMs, 1)],
  ['Throughput', (x) => f(x.throughput, 0)],
  ['Tokenize (ms)', (x) => f(x.tokenizeMs, 1)],
  ['Inference (ms)', (x) => f(x.inferenceMs, 1)],
  ['Queue (ms)', (x) => f(x.queueWaitMs, 1)],
  ['Padding (%)', (x) => f(x.paddingPct, 1)],
];

/** The time-series columns, with NVML's GPU utilisation after Dev Busy when the run sampled it. */
function seriesColumns(cfg: ConfigResult): Column[] {
  if (!cfg.gpuUtil) return SERIES_COLUMNS;
  const at = SERIES_COLUMNS.findIndex(([h]) => h === 'Dev Busy (%)') + 1;
  const gpu: Column = [GPU_UTIL_LABEL, (x) => f(x.gpuUtilPct, 1)];
  return [...SERIES_COLUMNS.slice(0, at), gpu, ...SERIES_COLUMNS.slice(at)];
}

function timeSeriesSection(s: ScenarioResult): string[] {
  const rows = rowsOf(s);
  const out = ['## Dashboard Time-Series Data', '', `_${s.method.samples}._`, ''];
  for (const row of rows) {
    if (rows.length > 1) out.push(`### ${cfgLabel(s, row)}`, '');
    const all = row.cfg.samples;
    const shown = row.cfg.tableSamples;
    if (shown.length < all.length) {
      const k = Math.round(all.length / Math.max(1, shown.length));
      out.push(
        `_${all.length} samples merged into ${shown.length} intervals of about ${k} samples each; every sample is in the JSON._`,
        '',
      );
    }
    const columns = seriesColumns(row.cfg);
    out.push(
      table(
        columns.map(([head]) => head),
        shown.map((x) => columns.map(([, cell]) => cell(x))),
      ),
      '',
    );
  }
  return out;
}

function method(s: ScenarioResult): string[] {
  return [
    '## Method',
    '',
    ...Object.entries(s.method).map(([k, v]) => `- **${k}:** ${v}`),
    '- **Throughput column (time series):** pairs of the requests that finished in the interval / interval length.',
    '- **Latency vs Throughput buckets:** requests grouped by latency at its P50, P75 and P90 (lower bound inclusive).',
    '',
  ];
}

export function renderMarkdown(s: ScenarioResult): string {
  if (rowsOf(s).length === 0) return [...header(s), ...resultsSummary(s), ...method(s)].join('\n');
  return [
    ...header(s),
    ...resultsSummary(s),
    ...detailed(s),
    ...overall(s),
    ...comparison(s),
    ...padding(s),
    ...charts(s),
    ...dashboard(s),
    ...timeSeriesSection(s),
    ...method(s),
  ].join('\n');
}
