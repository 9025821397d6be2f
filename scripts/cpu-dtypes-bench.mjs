#!/usr/bin/env node
// The cpu engine's dtypes x GEMM kernel sets, end to end, side by side in one run (plain node over
// dist/: runs where only the package build and the addon are present, as on the lent GPU machine's host).
//
//   node scripts/cpu-dtypes-bench.mjs [--threads N] [--pairs N] [--rounds N] [--contenders LIST]
//       [--model DIR] [--pairs-file FILE.jsonl] [--torch-manifest q17-manifest.json]
//
// Pin it to the cores it may use (`taskset -c 0-1 ... --threads 2`). Contenders are dtype@cpuIsa (the
// engine option capping the instruction sets; empty = the best here, AMX where it runs): bfloat16@amx,
// bfloat16@avx512 (vdpbf16ps), bfloat16@avx512f (widened + FMA), int8@amx, int8@avx512 (512-bit
// VNNI), int8@avxvnni (256-bit VNNI; its float32 parts on AVX2). Each loaded engine's kernel is
// printed (info.deviceName); a contender whose kernel another contender already has is skipped. The MiniLM-L6 shape with seeded random weights (synthesizeModel), query-grouped
// MS MARCO-like pairs (~90 tokens: a 6-9 word query, a 55-75 word passage), batches of 32 through
// CrossEncoder.predict, every contender once a round in rotating order; medians over the rounds, and
// each contender's max |logit - float32|, per-query Spearman (mean, min) and top-3 set against float32 on the same pairs.
//
// --model DIR scores a model folder instead (the trained one of scripts/gpu/train_bench_reranker.py);
// --pairs-file reads graded pairs (scripts/gpu/graded-pairs.ts: {"qid","query","passage","label"} a line,
// a query's passages consecutive) instead of generating them: the first --pairs of them (whole queries),
// and each contender's Spearman / NDCG@10 against the labels besides. --torch-manifest: the
// q17-manifest.json of that training, whose float64 logits of the same pairs (transformers, read back
// from the saved folder) every contender's are compared with.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CrossEncoder, synthesizeModel } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    pairs: { type: 'string', default: '320' },
    rounds: { type: 'string', default: '3' },
    model: { type: 'string' },
    'pairs-file': { type: 'string' },
    'torch-manifest': { type: 'string' },
    contenders: {
      type: 'string',
      default: 'float32@,bfloat16@,int8@,bfloat16@avx512,bfloat16@avx512f,int8@avx512,int8@avxvnni',
    },
  },
});
const threads = Number(values.threads);
const rounds = Number(values.rounds);
let perQuery = 10;
let nPairs = Math.ceil(Number(values.pairs) / perQuery) * perQuery;

// Seeded words that are whole tokens of the uncased BERT vocabulary.
const WORDS = (
  'the of and to in is was for on as with by at from that this which be are or an it not have has ' +
  'had were can all one two first new time year people city state world water system school music ' +
  'film game team house family group life area number part day work night river church power body ' +
  'history war death court law health food market police party music light field army book air ' +
  'land money paper story fire heart road science energy disease blood plant animal cell human ' +
  'college street island village mountain ocean forest coast station bridge hospital museum'
).split(' ');
let seed = 1234567;
const rand = () => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
};
const sentence = (lo, hi) =>
  Array.from(
    { length: lo + Math.floor(rand() * (hi - lo + 1)) },
    () => WORDS[Math.floor(rand() * WORDS.length)],
  ).join(' ');
let pairs = [];
let labels = null;
if (values['pairs-file']) {
  const rows = readFileSync(values['pairs-file'], 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
  perQuery = rows.filter((r) => r.qid === rows[0].qid).length;
  nPairs = Math.min(Math.ceil(Number(values.pairs) / perQuery) * perQuery, rows.length);
  const used = rows.slice(0, nPairs);
  used.forEach((r, i) => {
    if (
      r.qid !== used[i - (i % perQuery)].qid ||
      typeof r.query !== 'string' ||
      typeof r.passage !== 'string'
    )
      throw new Error(
        `${values['pairs-file']}: line ${i + 1}: not ${perQuery} passages a query with query and passage strings`,
      );
  });
  pairs = used.map((r) => [r.query, r.passage]);
  labels = used.map((r) => Number(r.label));
} else {
  for (let q = 0; q < nPairs / perQuery; q++) {
    const query = sentence(6, 9);
    for (let p = 0; p < perQuery; p++) pairs.push([query, sentence(55, 75)]);
  }
}
// (null where the manifest has no float64 logits: its read-back failed on the device.)
const torchLogits = values['torch-manifest']
  ? (JSON.parse(readFileSync(values['torch-manifest'], 'utf8')).bench_logits_float64?.slice(0, nPairs) ??
    null)
  : null;

const dir = mkdtempSync(join(tmpdir(), 'cpu-dtypes-bench-'));
const files = values.model ?? (await synthesizeModel({ shape: 'minilm-l6', outDir: dir, seed: 1 }));
console.log(
  `machine: ${cpus()[0]?.model.trim()} x ${cpus().length} logical, node ${process.version}, load ${loadavg()[0].toFixed(1)}`,
);
console.log(
  `model: ${values.model ?? 'synthetic minilm-l6 (seed 1)'}; workload: ${nPairs} pairs (${nPairs / perQuery} queries x ${perQuery}) ` +
    `${values['pairs-file'] ? `from ${values['pairs-file']}` : 'generated'}, batch 32, ${threads} threads`,
);

const loaded = [];
const seen = new Set();
for (const c of values.contenders.split(',')) {
  const [dtype, isa] = c.split('@');
  try {
    const ce = await CrossEncoder.load(files, {
      backend: 'cpu',
      dtype,
      threads,
      maxBatchSize: 32,
      warmup: false,
      ...(isa ? { engine: { cpuIsa: isa } } : {}),
    });
    const kernels = `${dtype} ${ce.info.deviceName.replace(/ \(load check.*$/, '')}`;
    if (seen.has(kernels)) {
      console.log(`skip ${c}: the same kernels as another contender (${kernels})`);
      await ce.dispose();
      continue;
    }
    seen.add(kernels);
    const gemm = /GEMMs on ([^ ]+)/.exec(ce.info.deviceName)?.[1] ?? ce.info.deviceName.split(' ')[0];
    console.log(`load ${c}: ${ce.info.deviceName}`);
    loaded.push({ name: `${dtype}@${gemm}`, ce, rates: [], logits: null });
  } catch (e) {
    console.log(`skip ${c}: ${e.message}`);
  }
}

// Raw logits (activation 'none'): predict's default for a one-label model is the sigmoid, which would
// squash the differences compared below (and made float32 look 4 away from torch's logits).
async function scoreAll(ce) {
  const out = new Float32Array(pairs.length);
  for (let i = 0; i < pairs.length; i += 32)
    out.set(await ce.predict(pairs.slice(i, i + 32), { activation: 'none' }), i);
  return out;
}
for (const c of loaded) c.logits = await scoreAll(c.ce); // warm-up round, and the logits compared
for (let r = 0; r < rounds; r++) {
  const line = [];
  for (let j = 0; j < loaded.length; j++) {
    const c = loaded[(j + r) % loaded.length];
    const t0 = process.hrtime.bigint();
    await scoreAll(c.ce);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    c.rates.push(nPairs / s);
    line.push(`${c.name} ${(nPairs / s).toFixed(1)}`);
  }
  console.log(`round ${r + 1}: ${line.join(', ')} pairs/s (load ${loadavg()[0].toFixed(1)})`);
}

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
// Average ranks (ties share their mean position; the labels have ties), Spearman = Pearson of the ranks.
const ranks = (v) => {
  const idx = [...v.keys()].sort((a, b) => v[a] - v[b]);
  const r = new Array(v.length);
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && v[idx[j + 1]] === v[idx[i]]) j++;
    for (let k = i; k <= j; k++) r[idx[k]] = (i + j) / 2;
    i = j + 1;
  }
  return r;
};
const spearman = (a, b) => {
  const ra = ranks(a);
  const rb = ranks(b);
  const mean = (ra.length - 1) / 2;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < ra.length; i++) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) ** 2;
    sbb += (rb[i] - mean) ** 2;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
};
const topSet = (v, k) => new Set([...v.keys()].sort((a, b) => v[b] - v[a]).slice(0, k));
// NDCG@10 with gain 2^label - 1 (labels 0..1: the fraction of the query's words the passage holds).
const ndcg = (scores, gains, k = 10) => {
  const dcg = (order) => order.slice(0, k).reduce((s, i, r) => s + (2 ** gains[i] - 1) / Math.log2(r + 2), 0);
  const ideal = dcg([...gains.keys()].sort((a, b) => gains[b] - gains[a]));
  return ideal > 0 ? dcg([...scores.keys()].sort((a, b) => scores[b] - scores[a])) / ideal : 1;
};
const groups = (v) =>
  Array.from({ length: pairs.length / perQuery }, (_, q) => [...v.slice(q * perQuery, (q + 1) * perQuery)]);
const mean = (v) => v.reduce((s, x) => s + x, 0) / v.length;
const maxAbs = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

const f32 = loaded.find((c) => c.name.startsWith('float32'));
const base = f32 ? median(f32.rates) : Number.NaN;
console.log(`\nRESULT threads=${threads} pairs=${nPairs} rounds=${rounds}`);
if (labels && torchLogits) {
  const t = groups(torchLogits).map((s, q) => spearman(s, groups(labels)[q]));
  const n = groups(torchLogits).map((s, q) => ndcg(s, groups(labels)[q]));
  console.log(
    `RESULT torch float64 (manifest) vs labels: Spearman ${mean(t).toFixed(4)}, NDCG@10 ${mean(n).toFixed(4)}`,
  );
}
for (const c of loaded) {
  const m = median(c.rates);
  const parts = [];
  if (f32) {
    const g = groups(c.logits);
    const r = groups(f32.logits);
    const rho = g.map((s, q) => spearman(s, r[q]));
    const top = g.filter((s, q) => [...topSet(r[q], 3)].every((i) => topSet(s, 3).has(i))).length / g.length;
    parts.push(
      `max |logit - f32| ${maxAbs(c.logits, f32.logits).toPrecision(3)}, Spearman vs f32 ${mean(rho).toFixed(4)} / min ${Math.min(...rho).toFixed(4)} / all pairs ${spearman([...c.logits], [...f32.logits]).toFixed(5)}, top-3 same ${(100 * top).toFixed(0)}%`,
    );
  }
  if (torchLogits) parts.push(`max |logit - torch f64| ${maxAbs(c.logits, torchLogits).toPrecision(3)}`);
  if (labels) {
    const g = groups(c.logits);
    const l = groups(labels);
    parts.push(
      `vs labels: Spearman ${mean(g.map((s, q) => spearman(s, l[q]))).toFixed(4)}, NDCG@10 ${mean(g.map((s, q) => ndcg(s, l[q]))).toFixed(4)}`,
    );
  }
  console.log(
    `RESULT ${c.name.padEnd(22)} ${m.toFixed(1).padStart(7)} pairs/s  ${(m / base).toFixed(2)}x float32  ` +
      `(rounds ${c.rates.map((x) => x.toFixed(1)).join(' ')}; ${parts.join('; ')})`,
  );
  await c.ce.dispose();
}
rmSync(dir, { recursive: true, force: true });
