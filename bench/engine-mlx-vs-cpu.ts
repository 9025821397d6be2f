/**
 * `npm run bench:mlx`: the mlx engine (float32 on this machine's CPU) against the cpu engine, side by
 * side in one run on the same batches, MiniLM-L6 shape (synthetic weights, the real vocabulary,
 * MS MARCO-like pairs through the real tokenizer). Rounds alternate between the engines so that load
 * from other processes hits both alike; the report gives the median pairs/s of each.
 *
 *   --batch N        pairs per batch (default 32)
 *   --rounds N       timed rounds per engine (default 8)
 *   --compile        also an mlx engine with mx::compile on the CPU (MLX_RERANK_CPU_COMPILE=1)
 *   --memory N       instead: N pairs of random lengths (2..512) in random batch sizes through the mlx
 *                    engine, printing MLX's active / cache / peak memory and the process RSS as it
 *                    goes, to show that memory stops growing (default shape tiny; --shape minilm-l6)
 *   --cache-limit B  mx::set_cache_limit for the mlx engine (bytes)
 */
import { parseArgs } from 'node:util';
import { syntheticModel } from '../src/bench/model';
import { median } from '../src/bench/stats';
import { resolveModel } from '../src/hub';
import { loadModelSpec } from '../src/model';
import { type NativeEngine, type NativeEngineOptions, native } from '../src/native';
import { Tokenizer } from '../src/tokenizer';
import { msMarcoPairs, seededRandom } from '../src/workload';

const { values } = parseArgs({
  options: {
    batch: { type: 'string' },
    rounds: { type: 'string' },
    compile: { type: 'boolean' },
    memory: { type: 'string' },
    shape: { type: 'string' },
    'cache-limit': { type: 'string' },
  },
});

type Batch = readonly [Int32Array, Int32Array, Int32Array];
const MB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

async function model(shape: 'minilm-l6' | 'tiny') {
  const dir = await syntheticModel(shape, 'float32');
  const files = await resolveModel(dir, { offline: true });
  return { files, spec: await loadModelSpec(files) };
}

async function speed(): Promise<void> {
  const batchSize = Number(values.batch ?? 32);
  const rounds = Number(values.rounds ?? 8);
  const { files, spec } = await model('minilm-l6');
  const tokenizer = await Tokenizer.fromFiles(files);
  const batches: Batch[] = [];
  for (let i = 0; i < rounds + 1; i++) {
    const enc = tokenizer.encodePairs(msMarcoPairs(batchSize, 1000 + i), { maxLength: 512 });
    batches.push([Int32Array.from(enc.tokens), Int32Array.from(enc.typeIds), Int32Array.from(enc.offsets)]);
  }
  const tokensPerBatch = median(batches.map((b) => b[0].length));

  const engines: Array<{ name: string; engine: NativeEngine; ms: number[]; slots: number; tokens: number }> =
    [];
  const add = async (name: string, opts: Partial<NativeEngineOptions>) => {
    const engine = await native().loadEngine({
      device: 'cpu',
      weights: files.weights,
      spec,
      backend: 'cpu',
      ...opts,
    });
    const warmMs = await engine.warmup();
    console.log(`loaded ${name}: ${JSON.stringify(engine.info())} warmup ${warmMs.toFixed(0)} ms`);
    engines.push({ name, engine, ms: [], slots: 0, tokens: 0 });
  };
  await add('cpu', { backend: 'cpu' });
  await add('mlx float32', { backend: 'mlx', dtype: 'float32' });
  if (values.compile) {
    process.env.MLX_RERANK_CPU_COMPILE = '1'; // read by the mlx engine when it is constructed
    await add('mlx float32 +compile', { backend: 'mlx', dtype: 'float32' });
    delete process.env.MLX_RERANK_CPU_COMPILE;
  }
  // One untimed round (first-shape effects), then alternate engines round by round.
  for (const e of engines) await e.engine.forward(...(batches[0] as Batch));
  for (let r = 1; r <= rounds; r++) {
    for (const e of r % 2 ? engines : [...engines].reverse()) {
      const b = batches[r] as Batch;
      const t0 = performance.now();
      const res = await e.engine.forward(...b);
      e.ms.push(performance.now() - t0);
      e.slots += res.computedSlots;
      e.tokens += b[0].length;
    }
  }
  console.log(
    `\nMiniLM-L6 shape (synthetic), ${batchSize} MS MARCO-like pairs per batch, median ${tokensPerBatch} tokens, ${rounds} rounds`,
  );
  console.log(
    'engine                 | device | dtype   | median ms/batch | pairs/s | padding | memory (engine report)',
  );
  for (const e of engines) {
    const info = e.engine.info();
    const mem = e.engine.memory();
    const ms = median(e.ms);
    const padding = (1 - e.tokens / e.slots) * 100;
    console.log(
      `${e.name.padEnd(22)} | ${info.device.padEnd(6)} | ${info.dtype.padEnd(7)} | ${ms.toFixed(1).padStart(15)} | ${((batchSize * 1000) / ms).toFixed(1).padStart(7)} | ${padding.toFixed(1).padStart(6)}% | active ${MB(mem.activeBytes)}, peak ${MB(mem.peakBytes)}, cache ${MB(mem.cacheBytes)}`,
    );
  }
  const m = native().backends().mlx;
  console.log(`\nMLX ${m.version}, devices ${m.devices?.join(',')}; ${engines[1]?.engine.info().deviceName}`);
  await Promise.all(engines.map((e) => e.engine.dispose()));
}

async function memory(total: number): Promise<void> {
  const shape = values.shape === 'minilm-l6' ? 'minilm-l6' : 'tiny';
  const { files, spec } = await model(shape);
  const cacheLimit = values['cache-limit'] ? Number(values['cache-limit']) : undefined;
  const engine = await native().loadEngine({
    backend: 'mlx',
    device: 'cpu',
    weights: files.weights,
    spec,
    ...(cacheLimit === undefined ? {} : { cacheLimitBytes: cacheLimit }),
  });
  console.log(`${shape}: ${JSON.stringify(engine.info())}, warmup ${(await engine.warmup()).toFixed(0)} ms`);
  const r = seededRandom(7);
  let done = 0;
  let next = 0;
  const t0 = performance.now();
  const samples: Array<{ pairs: number; active: number; cache: number; rss: number }> = [];
  while (done < total) {
    const n = 1 + Math.floor(r() * 64);
    const offsets = new Int32Array(n + 1);
    // Every length 2..512 occurs, short ones most (as in search traffic): (1 - sqrt(u)) skews low.
    const lengths = Array.from({ length: n }, () => 2 + Math.floor((1 - Math.sqrt(r())) * 511));
    lengths.forEach((l, i) => {
      offsets[i + 1] = (offsets[i] as number) + l;
    });
    const T = offsets[n] as number;
    const tokens = new Int32Array(T);
    for (let i = 0; i < T; i++) tokens[i] = Math.floor(r() * spec.vocabSize);
    const typeIds = new Int32Array(T).map((_, i) => i & 1);
    await engine.forward(tokens, typeIds, offsets);
    done += n;
    if (done >= next || done >= total) {
      const m = engine.memory();
      const rss = process.memoryUsage().rss;
      samples.push({ pairs: done, active: m.activeBytes, cache: m.cacheBytes, rss });
      console.log(
        `${String(done).padStart(7)} pairs  ${((done * 1000) / (performance.now() - t0)).toFixed(0).padStart(5)} pairs/s  active ${MB(m.activeBytes)}  cache ${MB(m.cacheBytes)}  peak ${MB(m.peakBytes)}  rss ${MB(rss)}`,
      );
      next += Math.max(500, Math.floor(total / 20));
    }
  }
  // Growth over the second half of the run: a leak keeps growing, a warm cache does not.
  const half = samples.slice(Math.floor(samples.length / 2));
  const first = half[0];
  const last = half.at(-1);
  if (first && last) {
    console.log(
      `\nsecond half (${first.pairs}..${last.pairs} pairs): active ${MB(last.active - first.active)}, cache ${MB(last.cache - first.cache)}, rss ${MB(last.rss - first.rss)}`,
    );
  }
  await engine.dispose();
}

if (!native().backends().mlx.available) {
  console.error(`mlx backend unavailable: ${native().backends().mlx.reason}`);
  process.exit(1);
}
if (values.memory !== undefined) await memory(Number(values.memory || 100000));
else await speed();
