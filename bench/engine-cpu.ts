/**
 * The cpu engine on a MiniLM-L6-shaped model (hidden 384, 6 layers, 12 heads, FFN 1536, vocab 30522;
 * seeded random float32 weights) with MS MARCO-like pairs (query 3-12 words, passage 30-110 words,
 * the workload of src/workload.ts, about 92 tokens a pair). A benchmark, not a test.
 *
 *   node --import tsx bench/engine-cpu.ts [--batch 32] [--seconds 15] [--threads N] [--isa all|avx512|avx2|scalar]
 *                                          [--memory] [--pairs 100000] [--transformersjs]
 *
 * Reports pairs/s at the batch size, useful GFLOP/s (the FLOPs a full BERT forward of the real tokens
 * needs) against this machine's float32 GEMM ceiling measured in the same run (the engine's own GEMM on
 * a 1536^3 problem), and memory: RSS after load vs the weight file, RSS growth over --pairs pairs
 * (--memory). --transformersjs then runs bench/transformersjs.ts (ONNX Runtime float32, same model
 * shape) in the same run for the side-by-side number.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { native, packageRoot } from '../src/native';
import { shapeDims } from '../src/synth';
import { Tokenizer } from '../src/tokenizer';
import { bertUncasedVocab, msMarcoPairs } from '../src/workload';
import { type CpuSpec, randomBert, writeModel } from '../test/helpers/cpu-model';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '32' },
    seconds: { type: 'string', default: '15' },
    threads: { type: 'string', default: '0' },
    isa: { type: 'string', default: 'default' },
    seed: { type: 'string', default: '42' },
    memory: { type: 'boolean', default: false },
    pairs: { type: 'string', default: '100000' },
    transformersjs: { type: 'boolean', default: false },
  },
});

// The MiniLM-L6 shape of the synthetic models (src/synth.ts) with BERT's vocabulary and settings.
const spec: CpuSpec = {
  ...shapeDims('minilm-l6'),
  vocabSize: bertUncasedVocab().length,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
  hiddenAct: 'gelu',
};
const seed = Number(values.seed);
const batchSize = Number(values.batch);
const threads = Number(values.threads);

const dir = join(tmpdir(), 'mlx-rerank-bench-cpu', `minilm-l6-seed${seed}`);
const file = join(dir, 'model.safetensors');
if (!existsSync(file)) writeModel(dir, spec, randomBert(spec, seed), 'F32');
const fileBytes = statSync(file).size;

// The MS MARCO-like workload every bench here uses (src/workload.ts, seed 42 by default), tokenized by our
// BERT tokenizer with the real uncased vocabulary: the same pairs transformers.js scores below.
const tokenizer = Tokenizer.fromVocab(bertUncasedVocab(), { do_lower_case: true });
const workload = msMarcoPairs(4096, seed);
let next = 0;
function makeBatch(n: number) {
  const pairs = Array.from({ length: n }, () => workload[next++ % workload.length] as [string, string]);
  const b = tokenizer.encodePairs(pairs, { maxLength: 512 });
  const lengths = Array.from(
    { length: n },
    (_, i) => (b.offsets[i + 1] as number) - (b.offsets[i] as number),
  );
  return { tokens: b.tokens, typeIds: b.typeIds, offsets: b.offsets, lengths };
}

/** FLOPs of a full BERT forward on these pair lengths (what the model needs), and what we execute. */
function flops(lengths: number[]) {
  const H = spec.hiddenSize;
  const I = spec.intermediateSize;
  const perTokenLayer = 2 * (4 * H * H + 2 * H * I);
  let full = 0;
  let executed = 0;
  for (const T of lengths) {
    const attn = 4 * T * T * H;
    full += spec.numLayers * (T * perTokenLayer + attn) + 2 * H * H;
    // last layer: keys/values for all tokens, the rest for [CLS] only
    executed +=
      (spec.numLayers - 1) * (T * perTokenLayer + attn) +
      T * 2 * 2 * H * H +
      perTokenLayer -
      4 * H * H +
      4 * T * H +
      2 * H * H;
  }
  return { full, executed };
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const addon = native() as ReturnType<typeof native> & {
  _gemmGflops(n: number, threads: number, s: number): number;
};

console.log(`machine: ${cpus()[0]?.model ?? '?'} x ${cpus().length}, node ${process.version}`);
console.log(`cpu backend: ${JSON.stringify(addon.backends().cpu)}`);
console.log(`model: MiniLM-L6 shape, seeded random float32 weights, ${mib(fileBytes)} (${file})`);

const isas =
  values.isa === 'all' ? ['avx512', 'avx2'] : values.isa === 'default' ? [undefined] : [values.isa];
for (const isa of isas) {
  if (isa) process.env.MLX_RERANK_CPU_ISA = isa;
  // The ceiling is the best of three 1 s runs: a busy neighbour only ever lowers a run.
  const gemm = Math.max(...[0, 1, 2].map(() => addon._gemmGflops(1536, threads, 1)));
  const rss0 = process.memoryUsage().rss;
  const engine = await addon.loadEngine({ backend: 'cpu', device: 'cpu', weights: [file], spec, threads });
  const rssLoaded = process.memoryUsage().rss;
  console.log(`\n== ${engine.info().deviceName}`);
  console.log(`GEMM ceiling (1536^3, float32, same threads, best of 3): ${gemm.toFixed(1)} GFLOP/s`);
  console.log(
    `RSS: ${mib(rss0)} before load, ${mib(rssLoaded)} after (+${mib(rssLoaded - rss0)}; weight file ${mib(fileBytes)}; ` +
      `limit file + 64 MiB = ${mib(fileBytes + 64 * 2 ** 20)} for the load) ${rssLoaded - rss0 <= fileBytes + 64 * 2 ** 20 ? 'OK' : 'OVER'}`,
  );
  for (let i = 0; i < 2; i++) {
    const b = makeBatch(batchSize);
    await engine.forward(b.tokens, b.typeIds, b.offsets);
  }
  const seconds = Number(values.seconds);
  let pairs = 0;
  let tokens = 0;
  let engineMs = 0;
  let work = { full: 0, executed: 0 };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    const b = makeBatch(batchSize);
    const res = await engine.forward(b.tokens, b.typeIds, b.offsets);
    pairs += batchSize;
    tokens += b.tokens.length;
    engineMs += res.inferenceMs;
    const f = flops(b.lengths);
    work = { full: work.full + f.full, executed: work.executed + f.executed };
  }
  const wall = (performance.now() - t0) / 1000;
  const cpuUsed = process.cpuUsage(cpu0);
  const cpuSeconds = (cpuUsed.user + cpuUsed.system) / 1e6;
  const useful = work.full / (engineMs / 1000) / 1e9;
  const executed = work.executed / (engineMs / 1000) / 1e9;
  console.log(
    `batch ${batchSize}: ${(pairs / wall).toFixed(1)} pairs/s (${pairs} pairs, ${(tokens / pairs).toFixed(1)} tokens a pair, ` +
      `${(engineMs / (pairs / batchSize)).toFixed(1)} ms a batch in the engine)`,
  );
  console.log(
    `useful ${useful.toFixed(1)} GFLOP/s (${(work.full / pairs / 1e9).toFixed(2)} GFLOP a pair) = ${((100 * useful) / gemm).toFixed(0)}% of the GEMM ceiling; ` +
      `executed ${executed.toFixed(1)} GFLOP/s (last layer on [CLS] only: ${(work.executed / pairs / 1e9).toFixed(2)} GFLOP a pair)`,
  );
  // On a shared machine wall-clock numbers depend on the neighbours; CPU time does much less.
  const perCore = pairs / cpuSeconds;
  const cores = threads > 0 ? threads : cpus().length;
  console.log(
    `CPU time: ${cpuSeconds.toFixed(1)} s for ${wall.toFixed(1)} s wall (${((100 * cpuSeconds) / wall / cores).toFixed(0)}% of ${cores} cores): ` +
      `${perCore.toFixed(1)} pairs per CPU-second -> ~${(perCore * cores).toFixed(0)} pairs/s on ${cores} idle cores (if it scales)`,
  );
  console.log(`engine memory(): ${JSON.stringify(engine.memory())}`);

  if (values.memory) {
    const total = Number(values.pairs);
    const warm = process.memoryUsage().rss;
    let done = 0;
    let maxRss = warm;
    const tm = performance.now();
    while (done < total) {
      const b = makeBatch(Math.min(batchSize, total - done));
      await engine.forward(b.tokens, b.typeIds, b.offsets);
      done += b.lengths.length;
      if (done % (batchSize * 50) === 0) maxRss = Math.max(maxRss, process.memoryUsage().rss);
    }
    const end = process.memoryUsage().rss;
    maxRss = Math.max(maxRss, end);
    const growth = (100 * (maxRss - warm)) / warm;
    console.log(
      `memory over ${done} pairs (${((performance.now() - tm) / 1000).toFixed(0)} s): RSS ${mib(warm)} -> ${mib(end)} ` +
        `(max ${mib(maxRss)}, growth ${growth.toFixed(2)}%, limit 5%) ${growth <= 5 ? 'OK' : 'OVER'}`,
    );
  }
  await engine.dispose();
}

if (values.transformersjs) {
  console.log('\n== transformers.js (ONNX Runtime, float32, padding to the longest pair), same model shape');
  const res = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      join(packageRoot(), 'bench', 'transformersjs.ts'),
      '--batch',
      String(batchSize),
      '--pairs',
      '320',
    ],
    { stdio: 'inherit', cwd: packageRoot() },
  );
  if (res.status !== 0)
    console.log(`(transformers.js bench exited with ${res.status}; see its output above)`);
}
