#!/usr/bin/env node
// Times the mlx engine's forward pass on its own, the tokenizer on its own, and the two in turn, over
// the same batches, and prints p50 / p99 / max of each: where latency and its spikes come from, apart
// from the scheduler and the bench. Also the driver for a kernel profile:
//
//   node scripts/gpu/forward-timing.mjs MODEL_DIR PAIRS_JSONL [--batch 32] [--n 3000] [--device gpu]
//        [--dtype float16] [--no-warmup] [--fused-kernels 0|1] [--start-ahead 0|1] [--depth 2]
//        [--cache-limit-bytes N] [--cancel-rows N]
//   ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
//     node scripts/gpu/forward-timing.mjs MODEL_DIR PAIRS_JSONL --batch 32 --n 5 --no-warmup --forward-only
//
// MODEL_DIR is a model folder (e.g. from `mlx-rerank synth --shape minilm-l6 --dtype float16`), PAIRS_JSONL
// a JSONL of {"query", "document"}. Needs the built addon (with MLX) and dist/ (npm run prepare).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { loadModelSpec, resolveModel, Tokenizer } from '../../dist/index.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    batch: { type: 'string', default: '32' },
    n: { type: 'string', default: '3000' },
    device: { type: 'string', default: 'gpu' },
    dtype: { type: 'string', default: 'float16' },
    'no-warmup': { type: 'boolean', default: false },
    'forward-only': { type: 'boolean', default: false },
    'fused-kernels': { type: 'string' },
    'start-ahead': { type: 'string' },
    'cache-limit-bytes': { type: 'string' },
    'cancel-rows': { type: 'string' },
    depth: { type: 'string', default: '2' },
  },
});
const [modelDir, pairsFile] = positionals;
if (!modelDir || !pairsFile) {
  console.error('usage: node scripts/gpu/forward-timing.mjs MODEL_DIR PAIRS_JSONL [options]');
  process.exit(2);
}
const batch = Number(values.batch);
const n = Number(values.n);
const addon = createRequire(import.meta.url)('node-gyp-build')(new URL('../..', import.meta.url).pathname);
const files = await resolveModel(modelDir, { offline: true });
const spec = await loadModelSpec(files);
const tokenizer = await Tokenizer.fromFiles(files);
const pairs = readFileSync(pairsFile, 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => {
    const r = JSON.parse(l);
    return [r.query, r.document];
  });
const request = (i) => {
  const start = (i * batch) % Math.max(1, pairs.length - batch);
  return pairs.slice(start, start + batch);
};
const encode = (i) => {
  const e = tokenizer.encodePairs(request(i), { maxLength: 512 });
  return [Int32Array.from(e.tokens), Int32Array.from(e.typeIds), Int32Array.from(e.offsets)];
};
const report = (name, ms) => {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q) => s[Math.floor((s.length - 1) * q)];
  const spikes = s.filter((x) => x > 3 * at(0.5)).length;
  console.log(
    `${name.padEnd(22)} p50 ${at(0.5).toFixed(3)} ms  p99 ${at(0.99).toFixed(3)} ms  p99/p50 ${(at(0.99) / at(0.5)).toFixed(2)}  max ${s.at(-1).toFixed(2)} ms  over 3x p50: ${spikes} of ${s.length}`,
  );
};
const timed = async (f) => {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
};

const engine = await addon.loadEngine({
  backend: 'mlx',
  device: values.device,
  dtype: values.dtype,
  weights: files.weights,
  spec,
  ...(values['fused-kernels'] && { fusedKernels: values['fused-kernels'] === '1' }),
  ...(values['start-ahead'] && { startAhead: values['start-ahead'] === '1' }),
  ...(values['cache-limit-bytes'] && { cacheLimitBytes: Number(values['cache-limit-bytes']) }),
  ...(values['cancel-rows'] && { cancelRows: Number(values['cancel-rows']) }),
});
if (!values['no-warmup']) console.log(`warmup() ${(await engine.warmup()).toFixed(0)} ms`);
const batches = Array.from({ length: Math.min(n, 128) }, (_, i) => encode(i));
if (values['forward-only']) {
  const ms = [];
  for (let i = 0; i < n; i++) ms.push(await timed(() => engine.forward(...batches[i % batches.length])));
  console.log(
    `forward, batches of ${batch} pairs (the first ${batches[0][0].length} tokens): ${ms.map((x) => x.toFixed(2)).join(' ')} ms`,
  );
} else {
  for (let i = 0; i < Math.min(n, 200); i++) await engine.forward(...batches[i % batches.length]);
  const tok = [];
  for (let i = 0; i < n; i++) tok.push(await timed(() => encode(i)));
  report('tokenize only', tok);
  const fwd = [];
  for (let i = 0; i < n; i++) fwd.push(await timed(() => engine.forward(...batches[i % batches.length])));
  report('forward only', fwd);
  // One at a time, from the engine's own timeline (beganAt, begunAt, queuedAt, deviceDoneAt, endedAt): host
  // time to queue the first part and all of the work, then until the device was done and the result read.
  const spans = { begun: [], queued: [], device: [], ended: [] };
  for (let i = 0; i < Math.min(n, 200); i++) {
    const t = (await engine.forward(...batches[i % batches.length])).engineTimes;
    if (!t || !(t[1] > 0)) break;
    spans.begun.push(t[1] - t[0]);
    spans.queued.push(t[2] - t[0]);
    spans.device.push(t[3] - t[0]);
    spans.ended.push(t[4] - t[0]);
  }
  if (spans.begun.length) {
    const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1].toFixed(3);
    console.log(
      `engine timeline (medians, ms from its start): first part queued ${med(spans.begun)}, all queued ${med(spans.queued)}, device done ${med(spans.device)}, result ready ${med(spans.ended)}`,
    );
  }
  // --depth batches in the engine at once, as the scheduler keeps them (pipelineDepth): with startAhead the
  // engine thread builds batch k + 1 while the device computes batch k.
  const depth = Number(values.depth);
  const inFlight = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    inFlight.push(engine.forward(...batches[i % batches.length]));
    if (inFlight.length >= depth) await inFlight.shift();
  }
  await Promise.all(inFlight);
  const each = (performance.now() - t0) / n;
  console.log(
    `${`forward, ${depth} in flight`.padEnd(22)} ${each.toFixed(3)} ms a batch, ${((batch * 1000) / each).toFixed(0)} pairs/s (forward only one at a time: ${((batch * 1000) / (fwd.reduce((a, b) => a + b, 0) / n)).toFixed(0)} pairs/s)`,
  );
  const both = [];
  for (let i = 0; i < n; i++) both.push(await timed(() => engine.forward(...encode(i))));
  report('tokenize + forward', both);
  console.log(`memory (MLX, bytes): ${JSON.stringify(engine.memory())}`);
}
await engine.dispose();
