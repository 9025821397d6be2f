/**
 * `npm run bench:micro`: tinybench micro-benchmarks of the parts under the bench's figures.
 * - tokenizer: 32 MS MARCO-like pairs into one packed batch (encodePairs);
 * - scheduler overhead: 32 pairs through the Scheduler with an engine that returns at once, so only
 *   queueing, batch forming, packing and result scattering are timed (pairs pre-tokenized);
 * - CrossEncoder.predict end to end on the tiny synthetic shape (tokenizer + scheduler + engine call);
 * - engine forward on the MiniLM-L6 shape (synthetic weights) at a few packed shapes, per backend.
 * Options: --time MS (per task, default 1000), --quick (fewer shapes).
 */
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { syntheticModel } from '../src/bench/model';
import { CrossEncoder } from '../src/cross-encoder';
import { resolveModel } from '../src/hub';
import { loadModelSpec } from '../src/model';
import { native } from '../src/native';
import { Scheduler, type Segment } from '../src/scheduler';
import { Tokenizer } from '../src/tokenizer';
import { msMarcoPairs } from '../src/workload';

const { values } = parseArgs({ options: { time: { type: 'string' }, quick: { type: 'boolean' } } });
const time = Number(values.time ?? 1000);
const shapes: Array<[number, number]> = values.quick
  ? [[32, 96]]
  : [
      [1, 64],
      [8, 128],
      [32, 96],
      [32, 256],
    ];

const pairs = msMarcoPairs(32, 42);
const tinyDir = await syntheticModel('tiny', 'float32');
const miniDir = await syntheticModel('minilm-l6', 'float32');
const miniFiles = await resolveModel(miniDir, { offline: true });
const tokenizer = await Tokenizer.fromFiles(miniFiles);
const spec = await loadModelSpec(miniFiles);

/** Extra columns: what one iteration means in pairs and tokens. */
const perIter = new Map<string, { pairs: number; tokens: number }>();
// Few iterations: an engine forward at 32 x 256 tokens takes about a second on 2 busy cores.
const bench = new Bench({ time, iterations: 3, warmupTime: 100, warmupIterations: 1 });
bench.addEventListener('cycle', (e) => {
  const task = (e as unknown as { task?: { name: string } }).task;
  if (task) console.error(`done: ${task.name}`);
});

const packed = tokenizer.encodePairs(pairs, { maxLength: 512 });
perIter.set('tokenizer: encodePairs x32', { pairs: 32, tokens: packed.tokens.length });
bench.add('tokenizer: encodePairs x32', () => {
  tokenizer.encodePairs(pairs, { maxLength: 512 });
});

// Pre-tokenized segments and an engine that answers at once: what is left is the scheduler.
const segments = new Map<string, Segment[]>();
for (const [q, d] of pairs) {
  const e = tokenizer.encodePair(q, d, { maxLength: 512 });
  segments.set(`${q}\u0000${d}`, [{ ids: e.ids, typeIds: e.typeIds, truncated: e.truncated }]);
}
const scheduler = new Scheduler({
  engine: {
    forward: async (tokens, _typeIds, offsets) => ({
      logits: new Float32Array(offsets.length - 1),
      inferenceMs: 0,
      computedSlots: tokens.length,
    }),
    memory: () => ({ activeBytes: 0, peakBytes: 0, cacheBytes: 0 }),
    dispose: async () => {},
  },
  encode: (q, d) => segments.get(`${q}\u0000${d}`) as Segment[],
  numLabels: 1,
});
perIter.set('scheduler: 32 pairs, instant engine', { pairs: 32, tokens: packed.tokens.length });
bench.add('scheduler: 32 pairs, instant engine', async () => {
  await scheduler.submit(pairs);
});

const tiny = await CrossEncoder.load(tinyDir, { backend: 'cpu', offline: true });
perIter.set('CrossEncoder.predict x32 (tiny model, cpu)', { pairs: 32, tokens: packed.tokens.length });
bench.add('CrossEncoder.predict x32 (tiny model, cpu)', async () => {
  await tiny.predict(pairs);
});

const backends = native().backends();
const engines = [];
for (const backend of ['cpu', 'mlx'] as const) {
  if (!backends[backend].available) {
    console.error(`(${backend} engine not available: ${backends[backend].reason ?? 'no reason given'})`);
    continue;
  }
  const engine = await native().loadEngine({ backend, device: 'auto', weights: miniFiles.weights, spec });
  engines.push(engine);
  await engine.warmup();
  for (const [b, len] of shapes) {
    // b pairs of `len` tokens each, cut from real tokenized pairs (padded by repetition when short).
    const tokens = new Int32Array(b * len);
    const typeIds = new Int32Array(b * len);
    const offsets = Int32Array.from({ length: b + 1 }, (_, i) => i * len);
    for (let i = 0; i < b; i++) {
      const src = packed.tokens.subarray(packed.offsets[i % 32], packed.offsets[(i % 32) + 1]);
      for (let k = 0; k < len; k++) tokens[i * len + k] = src[k % src.length] as number;
      typeIds.fill(1, i * len + Math.floor(len / 5), (i + 1) * len);
    }
    const name = `engine ${engine.info().backend}/${engine.info().device}: forward ${b} x ${len} tokens (MiniLM-L6)`;
    perIter.set(name, { pairs: b, tokens: b * len });
    bench.add(name, async () => {
      await engine.forward(tokens, typeIds, offsets);
    });
  }
}

await bench.run();
const rows = bench.tasks.map((t) => {
  const r = t.result as {
    state: string;
    latency?: { mean: number; p99: number };
    throughput?: { mean: number };
  };
  const per = perIter.get(t.name);
  if (r.state !== 'completed' || !r.latency) return { task: t.name, state: r.state };
  const hz = 1000 / r.latency.mean;
  return {
    task: t.name,
    'mean (ms)': r.latency.mean.toFixed(3),
    'p99 (ms)': r.latency.p99.toFixed(3),
    'ops/s': hz.toFixed(1),
    'pairs/s': per ? (hz * per.pairs).toFixed(0) : '',
    'tokens/s': per ? (hz * per.tokens).toFixed(0) : '',
  };
});
console.table(rows);
await scheduler.dispose();
await tiny.dispose();
for (const e of engines) await e.dispose();
