/**
 * `npm run bench:service`: the service benchmark (issue 15), one concern: its scenarios share one engine and
 * one set of policies, so they stay in one file. What a service embedding the package sees:
 * requests of `--docs` documents (MS MARCO-like pairs) arriving on their own schedule (open loop), the
 * latency of each request from its arrival to its last score. The previous scheduler policy and the
 * current defaults run side by side in the same run, on the same engine, alternating at every step so
 * a change in the machine's load hits both alike.
 *
 * 1. Cost curve (`--curve`, or alone with `--curve-only`): pairs/s of the bare engine against batch
 *    tokens, batches cut in arrival order and from length-sorted pairs (what sorting still buys).
 * 2. Unloaded latency: requests one at a time.
 * 3. Capacity: a closed burst of requests; pairs/s.
 * 4. Burst: `--burst` requests of `--burst-docs` documents at t=0: mean, p50, p99, max latency.
 * 5. Open-loop sweep: Poisson arrivals at `--rates` x capacity for `--seconds` each: achieved pairs/s,
 *    latency p50/p90/p99/max (from each request's scheduled arrival, so a late timer does not hide
 *    queueing), queue wait, batch sizes; the knee (highest rate whose p99 < 5 x unloaded latency).
 * 6. Abort (`--abort`, or alone with `--abort-only`): a `--abort-pairs` (2,000) pair call aborted while
 *    its first batch runs, a 1-pair call sent right after; that call's latency against its unloaded
 *    latency and one layer's time, with and without mid-batch cancellation, under both policies.
 * Writes service.md and service-latency.svg to `--out` (default bench-results/service).
 * `--backend mlx` runs the mlx engine (on the GPU unless `--device cpu`; `--dtype float16` etc.), with the
 * previous policy's GPU batch limits and the current GPU defaults.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { esc, niceTicks } from '../src/bench/charts';
import { syntheticModel } from '../src/bench/model';
import { resolveModel } from '../src/hub';
import type { BatchMetrics } from '../src/metrics';
import { loadModelSpec } from '../src/model';
import { type NativeEngine, type NativeEngineOptions, native } from '../src/native';
import {
  DEFAULT_LIMITS,
  engineDefaults,
  GPU_BATCH_LIMITS,
  Scheduler,
  type SchedulerEngine,
  type SchedulerLimits,
  type Segment,
} from '../src/scheduler';
import { synthesizeModel } from '../src/synth';
import { Tokenizer } from '../src/tokenizer';
import { msMarcoPairs, seededRandom } from '../src/workload';

type Pair = readonly [string, string];

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    shape: { type: 'string', default: 'minilm-l6' },
    docs: { type: 'string', default: '10-50' },
    rates: { type: 'string', default: '0.1,0.25,0.5,0.75,0.9,1' },
    seconds: { type: 'string', default: '15' },
    burst: { type: 'string', default: '200' },
    'burst-docs': { type: 'string', default: '10' },
    threads: { type: 'string' },
    backend: { type: 'string', default: 'cpu' },
    device: { type: 'string' },
    dtype: { type: 'string' },
    curve: { type: 'boolean', default: false },
    'curve-only': { type: 'boolean', default: false },
    'curve-tokens': { type: 'string', default: '512,1024,2048,4096,8192,16384' },
    'curve-rounds': { type: 'string', default: '3' },
    'curve-min-tokens': { type: 'string', default: '8192' },
    'curve-sorted': { type: 'string', default: '4096' },
    out: { type: 'string', default: 'bench-results/service' },
    seed: { type: 'string', default: '15' },
    abort: { type: 'boolean', default: false },
    'abort-only': { type: 'boolean', default: false },
    'abort-pairs': { type: 'string', default: '2000' },
    'abort-rounds': { type: 'string', default: '3' },
  },
});

const [docsLo, docsHi] = (
  values.docs.includes('-') ? values.docs.split('-') : [values.docs, values.docs]
).map(Number) as [number, number];
const rates = values.rates.split(',').map(Number);
const seconds = Number(values.seconds);
const burstN = Number(values.burst);
const burstDocs = Number(values['burst-docs']);
const seed = Number(values.seed);
for (const [name, v] of Object.entries({ docsLo, docsHi, seconds, burstN, burstDocs, seed })) {
  if (!Number.isFinite(v) || v < 0) throw new Error(`bad --${name}: ${v}`);
}
if (docsLo < 1 || docsHi < docsLo) throw new Error(`--docs must be N or LO-HI with 1 <= LO <= HI`);
if (rates.some((r) => !(r > 0 && r <= 4))) throw new Error('--rates: fractions of capacity in (0, 4]');

if (values.backend !== 'cpu' && values.backend !== 'mlx') throw new Error('--backend must be cpu or mlx');
/** `--backend mlx` runs on the GPU unless `--device cpu` (MLX's CPU) is asked for. */
const device = values.device ?? (values.backend === 'mlx' ? 'gpu' : 'cpu');
if (device !== 'cpu' && device !== 'gpu') throw new Error('--device must be cpu or gpu');

/**
 * The two policies compared: the scheduler before issue 15 (on a GPU with its GPU batch limits), and
 * the current defaults for the engine's device.
 */
const POLICIES: Array<{ name: string; limits: Partial<SchedulerLimits> }> = [
  {
    name: 'previous',
    limits: {
      sortWindow: 1024,
      ...(device === 'gpu' ? GPU_BATCH_LIMITS : { maxBatchTokens: 16384, maxBatchSize: 256 }),
      pipelineDepth: 2,
    },
  },
  { name: 'new', limits: {} }, // the engine's own defaults, set once it is loaded
];

// --- model, tokenizer, engine --------------------------------------------------------------------------
/**
 * `--shape small` (hidden 128, 2 layers): ~27x less compute per token than MiniLM-L6, for a machine
 * too loaded to push thousands of MiniLM pairs through in minutes; the scheduler sees the same thing,
 * batches whose time grows with their tokens.
 */
async function modelDir(): Promise<string> {
  if (values.model !== undefined) return values.model;
  if (values.shape === 'minilm-l6') return syntheticModel('minilm-l6', 'float32');
  if (values.shape !== 'small') throw new Error('--shape must be minilm-l6 or small');
  const out = join(tmpdir(), `service-bench-small-${process.pid}`);
  const shape = {
    hiddenSize: 128,
    numLayers: 2,
    numHeads: 2,
    intermediateSize: 512,
    vocab: 'bert-uncased' as const,
  };
  await synthesizeModel({ shape, seed: 15, outDir: out });
  return out;
}
const dir = await modelDir();
const files = await resolveModel(dir, { offline: true });
const tokenizer = await Tokenizer.fromFiles(files);
const spec = await loadModelSpec(files);
const engine: NativeEngine = await native().loadEngine({
  backend: values.backend,
  device,
  ...(values.dtype !== undefined && { dtype: values.dtype as NativeEngineOptions['dtype'] }),
  weights: files.weights,
  spec,
  ...(values.threads !== undefined && { threads: Number(values.threads) }),
});
await engine.warmup();
const info = engine.info();
(POLICIES[1] as (typeof POLICIES)[number]).limits = { ...DEFAULT_LIMITS, ...engineDefaults(info, {}) };
const maxLength = Math.min(512, spec.maxPositions);
const encode = (q: string, d: string): Segment[] => {
  const e = tokenizer.encodePair(q, d, { maxLength });
  return [{ ids: e.ids, typeIds: e.typeIds, truncated: e.truncated }];
};
/** The engine shared by every scheduler of the run (each scheduler's dispose must not free it). */
const shared: SchedulerEngine = {
  forward: (t, ty, o) => engine.forward(t, ty, o),
  memory: () => engine.memory(),
  dispose: async () => {},
};

const pool = msMarcoPairs(4096, seed);
const rnd = seededRandom(seed + 1);
let poolAt = 0;
/** A request: one query and `n` documents from the MS MARCO-like pool. */
function request(n: number): Pair[] {
  const q = (pool[poolAt % pool.length] as Pair)[0];
  const out: Pair[] = [];
  for (let i = 0; i < n; i++) out.push([q, (pool[(poolAt + i) % pool.length] as Pair)[1]]);
  poolAt += n;
  return out;
}
const docsOf = () => docsLo + Math.floor(rnd() * (docsHi - docsLo + 1));

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = (sorted.length - 1) * p;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (i - lo);
}

interface RunResult {
  requests: number;
  pairs: number;
  pairsPerS: number;
  latency: number[];
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  queueWaitP50: number;
  queueWaitP99: number;
  batchPairsMean: number;
  batchTokensMean: number;
  batches: number;
}

/**
 * Submits `requests[i]` at `arrivals[i]` ms after the start (open loop: arrivals never wait for
 * completions) through a fresh scheduler with `limits`; latency counts from the scheduled arrival.
 */
async function run(
  limits: Partial<SchedulerLimits>,
  requests: Pair[][],
  arrivals: number[],
): Promise<RunResult> {
  const batches: BatchMetrics[] = [];
  const s = new Scheduler({
    ...limits,
    engine: shared,
    encode,
    numLabels: spec.numLabels,
    onBatch: (b) => batches.push(b),
  });
  const latency: number[] = [];
  const waits: number[] = [];
  const t0 = performance.now();
  let last = t0;
  const pending: Promise<void>[] = [];
  for (let i = 0; i < requests.length; i++) {
    const due = t0 + (arrivals[i] as number);
    if (due > performance.now()) await sleep(due - performance.now());
    pending.push(
      s.submit(requests[i] as Pair[]).then((r) => {
        const now = performance.now();
        last = Math.max(last, now);
        latency.push(now - due);
        waits.push(r.metrics.queueWaitMs);
      }),
    );
  }
  await Promise.all(pending);
  await s.dispose();
  const pairs = requests.reduce((a, r) => a + r.length, 0);
  const sorted = [...latency].sort((a, b) => a - b);
  const w = [...waits].sort((a, b) => a - b);
  return {
    requests: requests.length,
    pairs,
    pairsPerS: (pairs / (last - t0)) * 1000,
    latency,
    mean: latency.reduce((a, b) => a + b, 0) / latency.length,
    p50: pct(sorted, 0.5),
    p90: pct(sorted, 0.9),
    p99: pct(sorted, 0.99),
    max: sorted[sorted.length - 1] as number,
    queueWaitP50: pct(w, 0.5),
    queueWaitP99: pct(w, 0.99),
    batchPairsMean: batches.reduce((a, b) => a + b.pairs, 0) / batches.length,
    batchTokensMean: batches.reduce((a, b) => a + b.tokens, 0) / batches.length,
    batches: batches.length,
  };
}

const md: string[] = [];
const log = (line = '') => {
  md.push(line);
  console.log(line);
};
const f0 = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-');

log('# Service benchmark (open loop)');
log();
log(
  `Engine ${info.backend}/${info.device} (${info.deviceName}), shape ${values.model ?? values.shape} (${spec.numLayers} layers, hidden ${spec.hiddenSize}), ${values.threads ?? 'default'} engine threads; ` +
    `requests of ${docsLo}-${docsHi} MS MARCO-like documents; \`npm run bench:service\` (bench/service.ts), ${new Date().toISOString()}.`,
);
log();
log('| Policy | Limits |');
log('| --- | --- |');
for (const p of POLICIES) log(`| ${p.name} | ${JSON.stringify(p.limits)} |`);
log();

// --- 1. cost curve -------------------------------------------------------------------------------------
if (values.curve || values['curve-only']) {
  const tokenized = pool.slice(0, 1024).map(([q, d]) => encode(q, d)[0] as Segment);
  const bySize = [...tokenized].sort((a, b) => a.ids.length - b.ids.length);
  const meanLen = tokenized.reduce((a, s) => a + s.ids.length, 0) / tokenized.length;
  /**
   * Pairs/s (tokens/s over the mean pair length, so the two orders compare on the same pairs) over
   * batches of about `budget` tokens, at least `atLeast` tokens in all. Arrival order: consecutive
   * pairs of the pool. Length-sorted: a run of similar lengths from a random place in the sorted pool.
   */
  const measure = async (sorted: boolean, budget: number, atLeast: number): Promise<number> => {
    const seqs = sorted ? bySize : tokenized;
    let at = 0;
    let done = 0;
    const t0 = performance.now();
    while (done < atLeast) {
      if (sorted) at = Math.floor(rnd() * seqs.length);
      const batch: Segment[] = [];
      let tokens = 0;
      while (batch.length === 0 || tokens + (seqs[at % seqs.length] as Segment).ids.length <= budget) {
        const s = seqs[at++ % seqs.length] as Segment;
        batch.push(s);
        tokens += s.ids.length;
      }
      const ids = new Int32Array(tokens);
      const types = new Int32Array(tokens);
      const offsets = new Int32Array(batch.length + 1);
      let off = 0;
      batch.forEach((s, i) => {
        ids.set(s.ids, off);
        types.set(s.typeIds, off);
        off += s.ids.length;
        offsets[i + 1] = off;
      });
      await engine.forward(ids, types, offsets);
      done += tokens;
    }
    return (done / meanLen / (performance.now() - t0)) * 1000;
  };
  const budgets = values['curve-tokens'].split(',').map(Number);
  const atLeast = Number(values['curve-min-tokens']);
  const sortedAt = new Set(values['curve-sorted'].split(',').map(Number));
  // Rounds visit every size in turn and each size keeps its best round: on a shared machine, load that
  // comes and goes hits every size alike, and the best round is the one least disturbed.
  const best = new Map<number, [number, number]>(budgets.map((b) => [b, [0, Number.NaN]]));
  for (let round = 0; round < Number(values['curve-rounds']); round++) {
    for (const b of budgets) {
      const cur = best.get(b) as [number, number];
      cur[0] = Math.max(cur[0], await measure(false, b, atLeast));
      if (sortedAt.has(b))
        cur[1] = Math.max(Number.isNaN(cur[1]) ? 0 : cur[1], await measure(true, b, atLeast));
      console.error(`round ${round} ${b} tokens: ${cur[0].toFixed(1)} / sorted ${cur[1].toFixed(1)} pairs/s`);
    }
  }
  const rows = budgets.map((b) => [b, ...(best.get(b) as [number, number])] as [number, number, number]);
  const peak = Math.max(...rows.map((r) => r[1]));
  const pick = rows.find((r) => r[1] >= 0.95 * peak);
  log('## Engine cost curve');
  log();
  log(`Mean pair ${f1(meanLen)} tokens; best of ${values['curve-rounds']} interleaved rounds per cell.`);
  log();
  log('| Batch tokens | pairs/s (arrival order) | % of peak | pairs/s (length-sorted) | ms per batch |');
  log('| ---: | ---: | ---: | ---: | ---: |');
  for (const [b, fifo, sorted] of rows) {
    log(
      `| ${b} | ${f1(fifo)} | ${f0((fifo / peak) * 100)} | ${f1(sorted)} | ${f0((b / meanLen / fifo) * 1000)} |`,
    );
  }
  log();
  log(`Smallest batch within 5% of peak: ${pick?.[0]} tokens.`);
  log();
  if (values['curve-only']) {
    await engine.dispose();
    process.exit(0);
  }
}

if (values['abort-only']) {
  await abortScenario();
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, 'service.md'), `${md.join('\n')}\n`);
  console.error(`wrote ${join(values.out, 'service.md')}`);
  await engine.dispose();
  process.exit(0);
}

// --- 2. unloaded latency, 3. capacity --------------------------------------------------------------------
const meanDocs = Math.round((docsLo + docsHi) / 2);
const single = Array.from({ length: 5 }, () => request(meanDocs));
const unloaded = new Map<string, number>();
for (const p of POLICIES) {
  const lat: number[] = [];
  for (const r of single) lat.push((await run(p.limits, [r], [0])).p50);
  unloaded.set(
    p.name,
    pct(
      [...lat].sort((a, b) => a - b),
      0.5,
    ),
  );
}
const capReqs = Array.from({ length: 40 }, () => request(docsOf()));
const capacity = new Map<string, number>();
for (const p of POLICIES) {
  capacity.set(p.name, (await run(p.limits, capReqs, new Array(capReqs.length).fill(0))).pairsPerS);
}
const capPairs = Math.max(...capacity.values());
const capRps = capPairs / ((docsLo + docsHi) / 2);
log('## Unloaded latency and capacity');
log();
log(
  '| Policy | unloaded latency, one request of ' +
    meanDocs +
    ' docs (ms, median of 5) | capacity (pairs/s, 40 requests at once) |',
);
log('| --- | ---: | ---: |');
for (const p of POLICIES)
  log(`| ${p.name} | ${f0(unloaded.get(p.name) as number)} | ${f1(capacity.get(p.name) as number)} |`);
log();
log(`Offered loads below are fractions of ${f1(capPairs)} pairs/s = ${capRps.toFixed(2)} requests/s.`);
log();

// --- 4. burst ----------------------------------------------------------------------------------------------
const burstReqs = Array.from({ length: burstN }, () => request(burstDocs));
const burst = new Map<string, RunResult>();
for (const p of POLICIES) burst.set(p.name, await run(p.limits, burstReqs, new Array(burstN).fill(0)));
log(`## Burst: ${burstN} requests x ${burstDocs} documents at t = 0`);
log();
log('| Policy | mean (ms) | p50 | p99 | max | mean / max | pairs/s | batches | pairs per batch |');
log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const p of POLICIES) {
  const r = burst.get(p.name) as RunResult;
  log(
    `| ${p.name} | ${f0(r.mean)} | ${f0(r.p50)} | ${f0(r.p99)} | ${f0(r.max)} | ${(r.mean / r.max).toFixed(2)} | ${f1(r.pairsPerS)} | ${r.batches} | ${f1(r.batchPairsMean)} |`,
  );
}
const bOld = burst.get('previous') as RunResult;
const bNew = burst.get('new') as RunResult;
log();
log(
  `New vs previous: max latency ${(bNew.max / bOld.max).toFixed(2)}x, mean latency ${(bNew.mean / bOld.mean).toFixed(2)}x, pairs/s ${(bNew.pairsPerS / bOld.pairsPerS).toFixed(2)}x.`,
);
log();

// --- 5. open-loop sweep --------------------------------------------------------------------------------------
const sweep = new Map<string, Array<{ rate: number; r: RunResult }>>(POLICIES.map((p) => [p.name, []]));
for (const rate of rates) {
  // The same arrivals and requests for both policies.
  const rps = rate * capRps;
  const arrivals: number[] = [];
  for (
    let t = -Math.log(1 - rnd()) * (1000 / rps);
    t < seconds * 1000;
    t += -Math.log(1 - rnd()) * (1000 / rps)
  )
    arrivals.push(t);
  if (arrivals.length === 0) arrivals.push(0);
  const reqs = arrivals.map(() => request(docsOf()));
  for (const p of POLICIES) {
    const r = await run(p.limits, reqs, arrivals);
    (sweep.get(p.name) as Array<{ rate: number; r: RunResult }>).push({ rate, r });
    console.error(`rate ${rate} ${p.name}: p50 ${f0(r.p50)} p99 ${f0(r.p99)} (${r.requests} requests)`);
  }
}
log(`## Open-loop sweep (Poisson arrivals, ${seconds} s per rate)`);
log();
log(
  '| Offered (x capacity) | Policy | requests | achieved pairs/s | p50 (ms) | p90 | p99 | max | queue wait p50 | p99 | pairs per batch | tokens per batch |',
);
log('| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (let i = 0; i < rates.length; i++) {
  for (const p of POLICIES) {
    const { rate, r } = (sweep.get(p.name) as Array<{ rate: number; r: RunResult }>)[i] as {
      rate: number;
      r: RunResult;
    };
    log(
      `| ${rate} | ${p.name} | ${r.requests} | ${f1(r.pairsPerS)} | ${f0(r.p50)} | ${f0(r.p90)} | ${f0(r.p99)} | ${f0(r.max)} | ${f0(r.queueWaitP50)} | ${f0(r.queueWaitP99)} | ${f1(r.batchPairsMean)} | ${f0(r.batchTokensMean)} |`,
    );
  }
}
log();
log("Knee: the highest offered load whose p99 stays under 5x the policy's unloaded latency.");
log();
for (const p of POLICIES) {
  const limit = 5 * (unloaded.get(p.name) as number);
  const ok = (sweep.get(p.name) as Array<{ rate: number; r: RunResult }>).filter((x) => x.r.p99 < limit);
  const knee = ok.length ? Math.max(...ok.map((x) => x.rate)) : Number.NaN;
  log(
    `- ${p.name}: knee at ${Number.isFinite(knee) ? `${knee} x capacity (${(knee * capRps).toFixed(2)} requests/s)` : 'none of the rates'} (p99 limit ${f0(limit)} ms)`,
  );
}
log();

// --- chart ---------------------------------------------------------------------------------------------------
const series = POLICIES.flatMap((p) =>
  (['p50', 'p99'] as const).map((k) => ({
    name: `${p.name} ${k}`,
    points: (sweep.get(p.name) as Array<{ rate: number; r: RunResult }>).map(
      (x) => [x.rate * 100, x.r[k]] as [number, number],
    ),
  })),
);
if (values.abort) await abortScenario();
mkdirSync(values.out, { recursive: true });
writeFileSync(join(values.out, 'service-latency.svg'), lineChart('Request latency vs offered load', series));
log('![latency vs offered load](service-latency.svg)');
writeFileSync(join(values.out, 'service.md'), `${md.join('\n')}\n`);
console.error(`wrote ${join(values.out, 'service.md')} and service-latency.svg`);
await engine.dispose();

/**
 * 6. Issue 15's abort must-show: a call of `--abort-pairs` pairs is aborted halfway through its first
 * batch and a 1-pair call is sent right after; its latency is compared with its unloaded latency and
 * with one layer's time of the batch that was running (that batch's engine time / layers). Each policy
 * runs without mid-batch cancellation (the engine as the scheduler sees it has no cancel(): the running
 * batches finish) and with it, interleaved, `--abort-rounds` rounds; medians reported.
 */
async function abortScenario(): Promise<void> {
  const bigN = Number(values['abort-pairs']);
  const rounds = Number(values['abort-rounds']);
  const one = [request(1)[0] as Pair];
  /** The shared engine, with or without cancel(); `started` resolves at the first forward. */
  const engineFor = (cancel: boolean, results: Array<{ cancelled: boolean; layersRun: number }>) => {
    let started = () => {};
    const first = new Promise<void>((r) => {
      started = r;
    });
    const e: SchedulerEngine = {
      forward: (t, ty, o, id) => {
        started();
        return engine.forward(t, ty, o, id).then((r) => {
          results.push({ cancelled: r.cancelled === true, layersRun: r.layersRun ?? spec.numLayers });
          return r;
        });
      },
      memory: () => engine.memory(),
      dispose: async () => {},
      ...(cancel && { cancel: (id: number) => engine.cancel(id) }),
    };
    return { e, first };
  };
  const big = request(bigN);
  /** The running batch's engine time under `limits`: the big call's first batch, then aborted. */
  const batchMs = async (limits: Partial<SchedulerLimits>): Promise<number> => {
    let ms = 0;
    const ac = new AbortController();
    const s = new Scheduler({
      ...limits,
      engine: engineFor(true, []).e,
      encode,
      numLabels: spec.numLabels,
      onBatch: (b) => {
        ms ||= b.inferenceMs;
        ac.abort();
      },
    });
    await s.submit(big, { signal: ac.signal }).catch(() => {});
    await s.dispose();
    return ms;
  };
  const aborted = async (limits: Partial<SchedulerLimits>, cancel: boolean, afterMs: number) => {
    const results: Array<{ cancelled: boolean; layersRun: number }> = [];
    const { e, first } = engineFor(cancel, results);
    const s = new Scheduler({ ...limits, engine: e, encode, numLabels: spec.numLabels });
    const ac = new AbortController();
    const call = s.submit(big, { signal: ac.signal }).catch(() => {});
    await first;
    await sleep(afterMs);
    ac.abort();
    const t0 = performance.now();
    await s.submit(one);
    const ms = performance.now() - t0;
    await call;
    await s.dispose();
    return { ms, stopped: results.filter((r) => r.cancelled) };
  };
  const unloadedOne = async (limits: Partial<SchedulerLimits>) => {
    const s = new Scheduler({ ...limits, engine: shared, encode, numLabels: spec.numLabels });
    const t0 = performance.now();
    await s.submit(one);
    const ms = performance.now() - t0;
    await s.dispose();
    return ms;
  };
  const median = (v: number[]) =>
    pct(
      [...v].sort((a, b) => a - b),
      0.5,
    );
  const rows: Array<{ policy: string; cancel: boolean; one: number[]; stopped: string[] }> = [];
  const calib = new Map<string, { batch: number; unloaded: number[] }>();
  for (const p of POLICIES) calib.set(p.name, { batch: await batchMs(p.limits), unloaded: [] });
  for (const p of POLICIES)
    for (const cancel of [false, true]) rows.push({ policy: p.name, cancel, one: [], stopped: [] });
  for (let round = 0; round < rounds; round++) {
    for (const row of rows) {
      const p = POLICIES.find((x) => x.name === row.policy) as (typeof POLICIES)[number];
      const c = calib.get(p.name) as { batch: number; unloaded: number[] };
      c.unloaded.push(await unloadedOne(p.limits));
      const r = await aborted(p.limits, row.cancel, c.batch / 2);
      row.one.push(r.ms);
      row.stopped.push(r.stopped.map((x) => x.layersRun).join('+') || '-');
      console.error(
        `abort round ${round} ${row.policy} cancel=${row.cancel}: 1-pair call ${f0(r.ms)} ms, stopped ${row.stopped.at(-1)}`,
      );
    }
  }
  log(`## Abort: a ${bigN}-pair call aborted while it runs, a 1-pair call sent right after`);
  log();
  log(
    `Aborted halfway through its first batch; median of ${rounds} interleaved rounds. One layer = the running batch's engine time / ${spec.numLayers} layers. Target (issue 15): the 1-pair call within 2 x its unloaded latency + one layer.`,
  );
  log();
  log(
    '| Policy | mid-batch cancel | running batch (ms) | one layer (ms) | 1-pair unloaded (ms) | 1-pair after the abort (ms) | target (ms) | met | layers run by the stopped batches |',
  );
  log('| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |');
  for (const row of rows) {
    const c = calib.get(row.policy) as { batch: number; unloaded: number[] };
    const layer = c.batch / spec.numLayers;
    const unl = median(c.unloaded);
    const got = median(row.one);
    const target = 2 * unl + layer;
    log(
      `| ${row.policy} | ${row.cancel ? 'yes' : 'no'} | ${f0(c.batch)} | ${f0(layer)} | ${f0(unl)} | ${f0(got)} | ${f0(target)} | ${got <= target ? 'yes' : 'no'} | ${row.cancel ? row.stopped.join(', ') : '-'} |`,
    );
  }
  log();
}

/** Lines of latency (ms, y) against offered load (% of capacity, x); the charts in src/bench do not plot this. */
function lineChart(title: string, s: Array<{ name: string; points: Array<[number, number]> }>): string {
  const W = 720;
  const H = 380;
  const L = 70;
  const T = 40;
  const PW = 440;
  const PH = H - T - 50;
  const colors = ['#1f77b4', '#aec7e8', '#d62728', '#ff9896'];
  const xs = niceTicks(0, Math.max(100, ...s.flatMap((x) => x.points.map((p) => p[0]))));
  const ys = niceTicks(
    0,
    Math.max(1, ...s.flatMap((x) => x.points.map((p) => p[1])).filter(Number.isFinite)),
  );
  const X = (v: number) => L + (v / (xs[xs.length - 1] as number)) * PW;
  const Y = (v: number) => T + PH - (v / (ys[ys.length - 1] as number)) * PH;
  const parts = [`<text x="${L}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`];
  for (const t of ys) {
    parts.push(
      `<line x1="${L}" x2="${L + PW}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}" stroke="#e5e5e5"/>`,
      `<text x="${L - 6}" y="${(Y(t) + 4).toFixed(1)}" font-size="11" text-anchor="end">${t}</text>`,
    );
  }
  for (const t of xs) {
    parts.push(
      `<text x="${X(t).toFixed(1)}" y="${T + PH + 17}" font-size="11" text-anchor="middle">${t}%</text>`,
    );
  }
  parts.push(
    `<line x1="${L}" x2="${L + PW}" y1="${T + PH}" y2="${T + PH}" stroke="#333"/>`,
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${T + PH}" stroke="#333"/>`,
    `<text x="${L + PW / 2}" y="${H - 10}" font-size="12" text-anchor="middle">offered load (% of measured capacity)</text>`,
    `<text x="16" y="${T + PH / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 16 ${T + PH / 2})">request latency (ms)</text>`,
  );
  s.forEach((line, i) => {
    const c = colors[i % colors.length];
    const pts = line.points
      .filter((p) => Number.isFinite(p[1]))
      .map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`);
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${c}" stroke-width="2"/>`);
    const ly = T + 8 + i * 18;
    parts.push(
      `<rect x="${L + PW + 16}" y="${ly - 9}" width="12" height="12" fill="${c}"/><text x="${L + PW + 34}" y="${ly + 1}" font-size="11">${esc(line.name)}</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n<title>${esc(title)}</title>\n<rect width="${W}" height="${H}" fill="#ffffff"/>\n${parts.join('\n')}\n</svg>\n`;
}
