#!/usr/bin/env node
// Runs the golden fixtures (Python transformers, float64 logits) through one engine of the built addon and
// prints the error, with no test runner: for machines that have only node and the addon (a GPU box), and
// for people. The fixtures: BERT's (test/fixtures/models) and the other families' (XLM-RoBERTa, ELECTRA,
// ModernBERT: test/fixtures/families/models, pairs of 2..8,192 tokens), each from its float32, float16 and
// bfloat16 weights. Then the batching invariant: every pair of every fixture (float16 weights) scores the
// same alone as in the batches of the golden run and in the batches of the reversed order.
//
//   node scripts/check-fixtures.mjs --backend mlx --device gpu --dtype float16 [--tol 3e-2] [--json FILE]
//        [--attention varlen|coarse|fine]   (the mlx engine's layout; docs/engine-options.md)
//        [--fused-kernels 0|1]              (the mlx engine's fusedKernels; default: the engine's)
//        [--only SUBSTRING]                 (fixtures whose name contains it)
//        [--batch-tokens 16384]             (long pairs go a few at a time, as the scheduler sends them)
//
// Tolerances (issues 2, 5 and 16): float32 arithmetic 1e-4 max abs error; 16-bit arithmetic 3e-2 and the
// same ranking of every fixture's pairs (Spearman >= 0.999); alone against batched: the same tolerance.
// Exits 1 when a fixture misses them.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadModelSpec } from '../dist/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'cpu' },
    device: { type: 'string', default: 'auto' },
    dtype: { type: 'string' },
    tol: { type: 'string' },
    json: { type: 'string' },
    attention: { type: 'string' },
    'fused-kernels': { type: 'string' },
    only: { type: 'string' },
    'batch-tokens': { type: 'string', default: '16384' },
  },
});
const addon = createRequire(import.meta.url)('node-gyp-build')(root);
const batchTokens = Number(args['batch-tokens']);

/** Spearman's rank correlation (ties get their mean rank). */
function spearman(a, b) {
  const rank = (v) => {
    const idx = v.map((x, i) => [x, i]).sort((p, q) => p[0] - q[0]);
    const r = new Array(v.length);
    for (let i = 0; i < idx.length; ) {
      let j = i;
      while (j + 1 < idx.length && idx[j + 1][0] === idx[i][0]) j++;
      for (let k = i; k <= j; k++) r[idx[k][1]] = (i + j) / 2;
      i = j + 1;
    }
    return r;
  };
  const ra = rank(a);
  const rb = rank(b);
  const mean = (ra.length - 1) / 2;
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i] - mean) * (rb[i] - mean);
    da += (ra[i] - mean) ** 2;
    db += (rb[i] - mean) ** 2;
  }
  return num / Math.sqrt(da * db);
}

function loadEngine(dir, storage, spec) {
  return addon.loadEngine({
    backend: args.backend,
    device: args.device,
    dtype: args.dtype,
    ...(args.attention && { attention: args.attention }),
    ...(args['fused-kernels'] && { fusedKernels: args['fused-kernels'] === '1' }),
    weights: [join(dir, storage, 'model.safetensors')],
    spec,
  });
}

/** Logits [pairs * numLabels] of `order` (indices into pairs), in batches of at most batchTokens tokens. */
async function forwardAll(engine, pairs, order) {
  const logits = [];
  let ms = 0;
  let slots = 0;
  for (let i = 0; i < order.length; ) {
    const batch = [];
    let tokens = 0;
    while (i < order.length && (batch.length === 0 || tokens + pairs[order[i]].ids.length <= batchTokens)) {
      batch.push(pairs[order[i]]);
      tokens += pairs[order[i++]].ids.length;
    }
    const offsets = new Int32Array(batch.length + 1);
    batch.forEach((p, j) => {
      offsets[j + 1] = offsets[j] + p.ids.length;
    });
    const t0 = performance.now();
    const out = await engine.forward(
      new Int32Array(batch.flatMap((p) => p.ids)),
      new Int32Array(batch.flatMap((p) => p.typeIds)),
      offsets,
    );
    ms += performance.now() - t0;
    slots += out.computedSlots;
    logits.push(...out.logits);
  }
  return { logits, ms, slots };
}

async function checkOne(dir, storage) {
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
  // config.json -> ModelSpec as the package reads it (dist/, built by npm install).
  const spec = await loadModelSpec({ config: join(dir, 'config.json') });
  const engine = await loadEngine(dir, storage, spec);
  try {
    const pairs = expected.pairs;
    const { logits, ms } = await forwardAll(
      engine,
      pairs,
      pairs.map((_, i) => i),
    );
    const want = expected.logits[storage];
    let maxErr = 0;
    let minRho = 1;
    for (let l = 0; l < spec.numLabels; l++) {
      const got = pairs.map((_, i) => logits[i * spec.numLabels + l]);
      const ref = want.map((row) => row[l]);
      got.forEach((g, i) => {
        maxErr = Math.max(maxErr, Number.isFinite(g) ? Math.abs(g - ref[i]) : Number.POSITIVE_INFINITY);
      });
      minRho = Math.min(minRho, spearman(got, ref));
    }
    const tokens = pairs.reduce((a, p) => a + p.ids.length, 0);
    const longest = Math.max(...pairs.map((p) => p.ids.length));
    return {
      model: dir.split('/').pop(),
      storage,
      pairs: pairs.length,
      tokens,
      longest,
      ...engine.info(),
      maxErr,
      spearman: minRho,
      ms,
    };
  } finally {
    await engine.dispose();
  }
}

/** Each pair alone against the golden run's batches and the reversed order's: max abs difference. */
async function checkAlone(dir) {
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
  const spec = await loadModelSpec({ config: join(dir, 'config.json') });
  const engine = await loadEngine(dir, 'float16', spec);
  try {
    const pairs = expected.pairs;
    const L = spec.numLabels;
    const forward = pairs.map((_, i) => i);
    const batched = (await forwardAll(engine, pairs, forward)).logits;
    const reversed = (await forwardAll(engine, pairs, [...forward].reverse())).logits;
    let maxDiff = 0;
    for (let i = 0; i < pairs.length; i++) {
      const alone = (await forwardAll(engine, pairs, [i])).logits;
      const r = pairs.length - 1 - i;
      for (let j = 0; j < L; j++) {
        for (const other of [batched[i * L + j], reversed[r * L + j]]) {
          const d = Math.abs(alone[j] - other);
          maxDiff = Math.max(maxDiff, Number.isFinite(d) ? d : Number.POSITIVE_INFINITY);
        }
      }
    }
    return { model: dir.split('/').pop(), pairs: pairs.length, ...engine.info(), maxDiff };
  } finally {
    await engine.dispose();
  }
}

const fixtureDirs = [
  join(root, 'test', 'fixtures', 'models'),
  join(root, 'test', 'fixtures', 'families', 'models'),
]
  .flatMap((d) =>
    readdirSync(d)
      .sort()
      .map((name) => join(d, name)),
  )
  .filter((d) => !args.only || d.split('/').pop().includes(args.only));
const tolOf = (dtype) => Number(args.tol ?? (dtype !== 'float32' ? 3e-2 : 1e-4));
const results = [];
const alone = [];
let failed = 0;
for (const dir of fixtureDirs) {
  for (const storage of ['float32', 'float16', 'bfloat16']) {
    const r = await checkOne(dir, storage);
    results.push(r);
    const sixteen = r.dtype !== 'float32';
    const tol = tolOf(r.dtype);
    const ok = r.maxErr <= tol && (!sixteen || r.spearman >= 0.999);
    r.ok = ok;
    if (!ok) failed++;
    console.log(
      `${ok ? 'ok  ' : 'FAIL'} ${r.model.padEnd(22)} weights ${r.storage.padEnd(8)} ${r.backend}/${r.device} ` +
        `${r.dtype.padEnd(8)} ${String(r.pairs).padStart(3)} pairs (<= ${String(r.longest).padStart(4)} tokens) ` +
        `max abs err ${r.maxErr.toExponential(2)} (tol ${tol.toExponential(0)}) ` +
        `spearman ${r.spearman.toFixed(5)} ${r.ms.toFixed(1)} ms  [${r.deviceName}]`,
    );
  }
}
for (const dir of fixtureDirs) {
  const r = await checkAlone(dir);
  alone.push(r);
  const tol = tolOf(r.dtype);
  r.ok = r.maxDiff <= tol;
  if (!r.ok) failed++;
  console.log(
    `${r.ok ? 'ok  ' : 'FAIL'} ${r.model.padEnd(22)} alone vs batched, ${r.pairs} pairs, ${r.backend}/${r.device} ` +
      `${r.dtype.padEnd(8)} max abs diff ${r.maxDiff.toExponential(2)} (tol ${tol.toExponential(0)})`,
  );
}
if (args.json) writeFileSync(args.json, JSON.stringify({ golden: results, alone }, null, 1));
console.log(`${results.length + alone.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
