/**
 * Runs scenarios end to end: picks the model, loads each engine (skipping an unavailable one with
 * its reason), times the warm-up apart from the figures, runs every batch x concurrency config,
 * then writes the reports.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { arch, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CrossEncoder } from '../cross-encoder';
import { native, packageRoot } from '../native';
import type { EngineTuning } from '../types';
import { measureJitter } from './jitter';
import { type BenchModel, pickModel, storedWeightsDtype } from './model';
import { nvmlSampler } from './nvml';
import { renderIndex, writeScenario } from './report-files';
import { analyzeRun, type EngineRun, methodNotes, paddingOf, SCHEMA, type ScenarioResult } from './results';
import { BatchSink, type Progress, requestPairs, runConfig } from './runner';
import type { EngineSpec, ScenarioSpec } from './scenarios';
import { loadWorkload, type Workload } from './workload';

export interface BenchOptions {
  model?: string;
  pairs: number;
  seed: number;
  pairsFile?: string;
  out: string;
  sampleMs: number;
  /** Per-config time budget in seconds (0: none); a config that hits it says so in the report. */
  maxSeconds: number;
  /**
   * Requests sent before each configuration and left out of its figures (default 20; fewer when they
   * take over 2 s, as on a CPU where a request takes 0.4 s): the JS side (tokenizer, scheduler)
   * reaches its optimised code and the engine its steady state, as the PyTorch baseline's warm-up does.
   */
  warmupRequests?: number;
  offline: boolean;
  /** Extra short run with length sorting off, to show the padding a plain padded batcher has. */
  paddingAblation: boolean;
  maxBatchTokens?: number;
  maxBatchSize?: number;
  maxWaitMs?: number;
  /** LoadOptions.earlyBatchTokens (default: the library's). */
  earlyBatchTokens?: number;
  threads?: number;
  /** LoadOptions.tokenizerThreads (default: the library's); the report says how many ran. */
  tokenizerThreads?: number;
  /** LoadOptions.engine: the engine tuning options given (src/engine-options.ts). */
  engine?: EngineTuning;
  /** 'auto': a bar on a TTY, plain lines otherwise. */
  progress: 'auto' | 'plain' | 'none';
  log: (line: string) => void;
}

/** Reasons go into Markdown lines and table cells: one line, no pipes. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '/');
}

function engineLabel(e: EngineSpec, info?: EngineRun['info']): string {
  if (info) return `${info.backend}/${info.device}/${info.dtype}`;
  return `${e.backend}/${e.device}${e.dtype ? `/${e.dtype}` : ''}`;
}

export function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return 'unknown';
  }
}

/** A GPU name when one is visible without extra tools; the engines add theirs when they use one. */
function gpuName(): string {
  if (platform() === 'darwin' && arch() === 'arm64') return 'Apple Silicon GPU (Metal)';
  const dir = '/proc/driver/nvidia/gpus';
  try {
    if (existsSync(dir)) {
      const names = readdirSync(dir).map((d) => {
        const text = readFileSync(join(dir, d, 'information'), 'utf8');
        return /Model:\s*(.+)/.exec(text)?.[1]?.trim() ?? 'NVIDIA GPU';
      });
      if (names.length) return names.join(', ');
    }
  } catch {
    // not readable: fall through
  }
  return 'none detected';
}

export function machine(): ScenarioResult['machine'] {
  const c = cpus();
  return {
    cpu: c[0]?.model.trim() ?? 'unknown CPU',
    cores: c.length,
    memoryGiB: totalmem() / 2 ** 30,
    os: `${platform()} ${release()} ${arch()}`,
    gpu: gpuName(),
  };
}

function progressPrinter(mode: BenchOptions['progress'], label: string, log: (l: string) => void): Progress {
  if (mode === 'none') return () => {};
  const tty = mode === 'auto' && process.stderr.isTTY === true;
  let lastDecile = -1;
  let lastDraw = 0;
  return (done, total) => {
    if (tty) {
      const now = performance.now();
      if (done < total && now - lastDraw < 100) return; // redraw at most 10 times a second
      lastDraw = now;
      const width = 30;
      const filled = Math.round((done / total) * width);
      process.stderr.write(
        `\r  ${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} requests`,
      );
      if (done === total) process.stderr.write('\n');
      return;
    }
    const decile = Math.floor((done / total) * 10);
    if (decile !== lastDecile) {
      lastDecile = decile;
      log(`  ${label}: ${done}/${total} requests`);
    }
  };
}

async function runEngine(
  spec: ScenarioSpec,
  e: EngineSpec,
  model: BenchModel,
  workload: Workload,
  opts: BenchOptions,
  withAblation: boolean,
): Promise<EngineRun> {
  const requested = { backend: e.backend, device: e.device, ...(e.dtype ? { dtype: e.dtype } : {}) };
  let availability: { available: boolean; reason?: string };
  try {
    availability = e.backend === 'auto' ? { available: true } : native().backends()[e.backend];
  } catch (err) {
    availability = { available: false, reason: (err as Error).message };
  }
  if (!availability.available) {
    const reason = oneLine(
      `the ${e.backend} engine is not available here: ${availability.reason ?? 'no reason given'}`,
    );
    opts.log(`Skipping ${engineLabel(e)}: ${reason}`);
    return { label: engineLabel(e), requested, status: 'skipped', reason, configs: [] };
  }
  const sink = new BatchSink();
  const loadOpts = {
    backend: e.backend,
    device: e.device,
    ...(e.dtype ? { dtype: e.dtype } : {}),
    ...(opts.maxBatchTokens ? { maxBatchTokens: opts.maxBatchTokens } : {}),
    ...(opts.maxBatchSize ? { maxBatchSize: opts.maxBatchSize } : {}),
    ...(opts.maxWaitMs !== undefined ? { maxWaitMs: opts.maxWaitMs } : {}),
    ...(opts.earlyBatchTokens !== undefined ? { earlyBatchTokens: opts.earlyBatchTokens } : {}),
    ...(opts.threads ? { threads: opts.threads } : {}),
    ...(opts.tokenizerThreads !== undefined ? { tokenizerThreads: opts.tokenizerThreads } : {}),
    ...(opts.engine ? { engine: opts.engine } : {}),
    offline: opts.offline || model.synthetic,
    warmup: false,
  };
  let ce: CrossEncoder;
  const t0 = performance.now();
  try {
    ce = await CrossEncoder.load(model.source, { ...loadOpts, onBatch: sink.onBatch });
  } catch (err) {
    const reason = oneLine(`loading failed: ${(err as Error).message}`);
    opts.log(`Skipping ${engineLabel(e)}: ${reason}`);
    return { label: engineLabel(e), requested, status: 'failed', reason, configs: [] };
  }
  const run: EngineRun = { label: engineLabel(e), requested, status: 'ok', configs: [] };
  try {
    const loadMs = performance.now() - t0;
    const i = ce.info;
    run.info = {
      backend: i.backend,
      device: i.device,
      deviceName: i.deviceName,
      dtype: i.dtype,
      version: i.version,
      tokenizerThreads: i.tokenizerThreads,
      ...(opts.engine ? { tuning: opts.engine } : {}),
    };
    run.label = engineLabel(e, run.info);
    // NVML only for an engine that really runs on a GPU ('auto' may have picked the CPU).
    const gpu = i.device === 'gpu' ? nvmlSampler() : undefined;
    if (gpu) {
      const st = gpu.status;
      run.nvml = st.available ? st : { available: false, reason: oneLine(st.reason) };
      opts.log(
        `${run.label}: GPU utilisation (NVML): ${st.available ? st.name : `unavailable, ${st.reason}`}`,
      );
    }
    model.stored ??= await storedWeightsDtype(i.modelDir);
    if (i.synthetic && !model.synthetic) {
      model.synthetic = true;
      model.note ??= 'the model folder is marked synthetic (random weights)';
    }
    const warmupMs = await ce.warmup();
    const firstBatch = spec.batches[0] ?? 32;
    const t1 = performance.now();
    await ce.predict(
      requestPairs(workload.pairs, 0, firstBatch, Math.max(firstBatch, workload.pairs.length)),
    );
    const warmupRequests = opts.warmupRequests ?? 20;
    run.warmup = { loadMs, warmupMs, firstCallMs: performance.now() - t1, requestsPerConfig: warmupRequests };
    opts.log(
      `${run.label}: loaded in ${loadMs.toFixed(0)} ms, warmup() ${warmupMs.toFixed(0)} ms, first request ${run.warmup.firstCallMs.toFixed(0)} ms`,
    );
    for (const batch of spec.batches) {
      for (const concurrency of spec.concurrencies) {
        const label = `${run.label} batch=${batch} conc=${concurrency}`;
        const warmUntil = performance.now() + 2000;
        for (let r = 0; r < warmupRequests && performance.now() < warmUntil; r++) {
          await ce.predict(requestPairs(workload.pairs, r, batch, (r + 1) * batch));
        }
        const raw = await runConfig(
          ce,
          sink,
          workload.pairs,
          { batch, concurrency, pairs: opts.pairs, sampleMs: opts.sampleMs, maxSeconds: opts.maxSeconds },
          progressPrinter(opts.progress, label, opts.log),
          gpu?.sample,
        );
        const cfg = analyzeRun(raw);
        run.configs.push(cfg);
        opts.log(
          `  ${label}: ${cfg.pairs} pairs in ${cfg.wallS.toFixed(2)} s = ${cfg.overallPairsPerSec.toFixed(1)} pairs/s, latency avg ${cfg.latency.avg.toFixed(1)} ms p95 ${cfg.latency.p95.toFixed(1)} ms, padding ${cfg.padding.measuredPct.toFixed(1)}%`,
        );
      }
    }
    const { activeBytes, peakBytes, cacheBytes } = ce.stats().memory;
    run.memory = { activeBytes, peakBytes, cacheBytes };
  } finally {
    await ce.dispose();
  }
  if (withAblation) run.unsortedPadding = await unsortedPadding(e, model, workload, opts, loadOpts, spec);
  return run;
}

/** A short run with the scheduler's length sorting off (arrival-order batches). */
async function unsortedPadding(
  e: EngineSpec,
  model: BenchModel,
  workload: Workload,
  opts: BenchOptions,
  loadOpts: Record<string, unknown>,
  spec: ScenarioSpec,
): Promise<EngineRun['unsortedPadding']> {
  const batch = Math.max(...spec.batches);
  const pairs = Math.min(opts.pairs, batch * 4);
  const sink = new BatchSink();
  try {
    const ce = await CrossEncoder.load(model.source, { ...loadOpts, sortWindow: 0, onBatch: sink.onBatch });
    try {
      const raw = await runConfig(ce, sink, workload.pairs, {
        batch,
        concurrency: 1,
        pairs,
        sampleMs: 60_000,
        maxSeconds: 30,
      });
      return { ...paddingOf(raw.batches), pairs, batch };
    } finally {
      await ce.dispose();
    }
  } catch (err) {
    opts.log(`Unsorted padding run of ${engineLabel(e)} failed: ${(err as Error).message}`);
    return undefined;
  }
}

/** Models picked so far in this process, by stored dtype: scenarios share one pick (one Hub probe). */
const picked = new Map<string, Promise<BenchModel>>();

function modelFor(spec: ScenarioSpec, opts: BenchOptions): Promise<BenchModel> {
  const weights = spec.weights ?? 'float32';
  const key = `${opts.model ?? ''}|${weights}|${opts.offline}`;
  let p = picked.get(key);
  if (!p) {
    p = pickModel({
      ...(opts.model ? { model: opts.model } : {}),
      offline: opts.offline,
      weights,
      log: opts.log,
    });
    picked.set(key, p);
  }
  // Each scenario gets its own copy: runEngine may learn the folder is synthetic.
  return p.then((m) => ({ ...m }));
}

export async function runScenario(spec: ScenarioSpec, opts: BenchOptions): Promise<ScenarioResult> {
  opts.log(`== ${spec.number}_${spec.name}: ${spec.description}`);
  const loadAtStart = loadavg()[0] ?? 0;
  // Before any engine exists and after all are gone: the machine's own steadiness (see jitter.ts).
  const jitterAtStart = measureJitter();
  const workload = loadWorkload({
    pairs: opts.pairs,
    seed: opts.seed,
    ...(opts.pairsFile ? { pairsFile: opts.pairsFile } : {}),
  });
  const model = await modelFor(spec, opts);
  if (model.synthetic) opts.log(`Model: synthetic (${model.note})`);
  let backends: ReturnType<ReturnType<typeof native>['backends']> | undefined;
  try {
    backends = native().backends();
  } catch {
    backends = undefined;
  }
  const runs: EngineRun[] = [];
  for (const [k, e] of spec.engines.entries()) {
    runs.push(await runEngine(spec, e, model, workload, opts, opts.paddingAblation && k === 0));
  }
  const engines: Record<string, string> = {};
  for (const r of runs) if (r.info) engines[r.info.backend] = r.info.version;
  const notes: string[] = [];
  for (const r of runs) if (r.status !== 'ok') notes.push(`${r.label} ${r.status}: ${r.reason}`);
  const onGpu = runs.some((r) => r.nvml !== undefined);
  const jitterAtEnd = measureJitter();
  return {
    schema: SCHEMA,
    number: spec.number,
    name: spec.name,
    description: spec.description,
    timestamp: new Date()
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, ' UTC'),
    model: {
      id: model.id,
      path: model.source,
      synthetic: model.synthetic,
      // What the files hold (a folder written in float16 says so), else what the scenario asked for.
      weights: model.stored ?? (await storedWeightsDtype(model.source)) ?? spec.weights ?? 'float32',
      ...(model.note ? { note: model.note } : {}),
    },
    workload: { description: workload.description, seed: opts.seed, pairsPerConfig: opts.pairs },
    machine: {
      ...machine(),
      loadAvg: [loadAtStart, loadavg()[0] ?? 0],
      jitter: [jitterAtStart, jitterAtEnd],
    },
    versions: {
      package: packageVersion(),
      node: process.version,
      mlx: backends?.mlx.available ? (backends.mlx.version ?? 'unknown') : 'not available',
      engines,
    },
    method: methodNotes(opts.sampleMs, onGpu),
    sampleMs: opts.sampleMs,
    runs,
    notes,
  };
}

/** Runs the scenarios in order, writing each report as soon as it is done; then the index if several. */
export async function runScenarios(
  specs: ScenarioSpec[],
  opts: BenchOptions,
): Promise<{ written: string[]; results: ScenarioResult[] }> {
  const written: string[] = [];
  const results: ScenarioResult[] = [];
  for (const spec of specs) {
    const result = await runScenario(spec, opts);
    results.push(result);
    written.push(...writeScenario(opts.out, result));
  }
  if (specs.length > 1) {
    const path = join(opts.out, 'index.md');
    writeFileSync(path, renderIndex(results));
    written.push(path);
  }
  return { written, results };
}
