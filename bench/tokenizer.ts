/**
 * `npm run bench:tokenizer`: pairs/s of BERT pair tokenization on MS MARCO-like pairs (src/workload.ts,
 * seeded), one core, truncation longest_first at --max-length (default 512), in one tinybench run:
 *  - ours (src/tokenizer.ts): encodePairs in batches of 32 (what the scheduler does), and encodePair;
 *  - `tokenizers` (Hugging Face's Rust library, npm binding): encode per pair, 32 in flight (its
 *    encodeBatch takes no pairs), libuv pool and rayon held to one thread;
 *  - transformers.js: AutoTokenizer from a local folder, tokenizer(queries, { text_pair, truncation });
 *  - @huggingface/tokenizers (the tokenizer library transformers.js uses) encode(q, { text_pair }), no
 *    truncation (it has none of its own).
 * All read the same tokenizer.json (real bert-base-uncased vocabulary). Options: --pairs N (default
 * 2048), --time MS per task (default 2000), --seed S, --max-length L.
 */
// One core as far as possible: rayon is held to one thread (set before the binding starts it). The
// Rust binding's encode runs on libuv's pool (its encodeBatch takes no pairs); the npm script sets that
// pool to 2 threads, not 1: with one, the run hangs before printing anything (the pool's only thread
// is taken while other work queued behind it waits). Compare the "pairs per CPU-second" column.
process.env.RAYON_NUM_THREADS = '1';
process.env.TOKENIZERS_PARALLELISM = 'false';

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { Tokenizer } from '../src/tokenizer';
import { bertTokenizerJson } from '../src/tokenizer/tokenizer-json';
import { bertUncasedVocab, msMarcoPairs } from '../src/workload';

const { values } = parseArgs({
  options: {
    pairs: { type: 'string', default: '2048' },
    time: { type: 'string', default: '2000' },
    seed: { type: 'string', default: '42' },
    'max-length': { type: 'string', default: '512' },
  },
});
const count = Number(values.pairs);
const maxLength = Number(values['max-length']);
const BATCH = 32;
const pairs = msMarcoPairs(count, Number(values.seed));
const batches: Array<Array<[string, string]>> = [];
for (let i = 0; i < pairs.length; i += BATCH) batches.push(pairs.slice(i, i + BATCH));

const json = bertTokenizerJson(bertUncasedVocab(), {
  lowercase: true,
  stripAccents: null,
  chineseChars: true,
});
const config = {
  do_lower_case: true,
  model_max_length: 512,
  tokenizer_class: 'BertTokenizer',
  cls_token: '[CLS]',
  sep_token: '[SEP]',
  pad_token: '[PAD]',
  unk_token: '[UNK]',
  mask_token: '[MASK]',
};

// ours
const ours = Tokenizer.fromTokenizerJson(json);
const tokensPerPair = ours.encodePairs(pairs, { maxLength }).tokens.length / pairs.length;

// tokenizers (Rust)
const require = createRequire(import.meta.url);
interface RustTok {
  setTruncation(n: number, o: { strategy: string }): void;
  encodeBatch(inputs: unknown[]): Promise<unknown[]>;
  encode(a: string, b: string): Promise<{ getIds(): number[] }>;
}
const rust = (
  require('tokenizers') as { Tokenizer: { fromString(s: string): RustTok } }
).Tokenizer.fromString(JSON.stringify(json));
rust.setTruncation(maxLength, { strategy: 'LongestFirst' });
let rustBatch = true;
try {
  await rust.encodeBatch([[pairs[0]?.[0], pairs[0]?.[1]]]);
} catch {
  rustBatch = false; // this binding takes no pair tuples in encodeBatch: fall back to encode per pair
}

// transformers.js AutoTokenizer from a local folder
const dir = mkdtempSync(join(tmpdir(), 'bench-tok-'));
writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
const transformers = await import('@huggingface/transformers');
transformers.env.allowRemoteModels = false;
transformers.env.localModelPath = '';
const tjs = await transformers.AutoTokenizer.from_pretrained(dir, { local_files_only: true });
const { Tokenizer: HfTokenizer } = await import('@huggingface/tokenizers');
const hfts = new HfTokenizer(json as never, config as never);

// Few iterations: the slower tokenizers take seconds a pass, and tinybench's default is 64 a task
// (over ten minutes for transformers.js on a loaded machine).
const bench = new Bench({ time: Number(values.time), warmupTime: 500, iterations: 3, warmupIterations: 1 });
const fns = new Map<string, () => unknown>();
const add = (name: string, fn: () => unknown) => {
  fns.set(name, fn);
  bench.add(name, fn);
};
add('ours: encodePairs (batches of 32)', () => {
  for (const b of batches) ours.encodePairs(b, { maxLength });
});
add('ours: encodePair (one pair at a time)', () => {
  for (const [q, d] of pairs) ours.encodePair(q, d, { maxLength });
});
add(`tokenizers (Rust, npm): ${rustBatch ? 'encodeBatch of 32' : 'encode per pair'}, 1 thread`, async () => {
  if (rustBatch) for (const b of batches) await rust.encodeBatch(b);
  else for (const b of batches) await Promise.all(b.map(([q, d]) => rust.encode(q, d)));
});
add('transformers.js AutoTokenizer (batches of 32)', () => {
  for (const b of batches) {
    tjs(
      b.map((p) => p[0]),
      { text_pair: b.map((p) => p[1]), truncation: true, max_length: maxLength, return_tensor: false },
    );
  }
});
add('@huggingface/tokenizers encode (no truncation)', () => {
  for (const [q, d] of pairs) hfts.encode(q, { text_pair: d });
});

await bench.run();

// Wall-clock rates suffer on a shared machine; CPU time (this process, all its threads) less so.
const cpuRate = new Map<string, number>();
for (const [name, fn] of fns) {
  const rates: number[] = [];
  for (let r = 0; r < 5; r++) {
    const c0 = process.cpuUsage();
    await fn();
    const c = process.cpuUsage(c0);
    rates.push((count * 1e6) / (c.user + c.system));
  }
  rates.sort((a, b) => a - b);
  cpuRate.set(name, rates[2] as number);
}
rmSync(dir, { recursive: true, force: true });

const c = cpus();
console.log(
  `machine: ${c[0]?.model.trim()} (${c.length} logical CPUs), node ${process.version}; workload: ` +
    `${count} msMarcoPairs(seed ${values.seed}), ${tokensPerPair.toFixed(1)} tokens/pair at maxLength ${maxLength}`,
);
const rows = bench.tasks.map((t) => {
  const r = t.result as unknown as { latency: { mean: number; rme: number }; error?: unknown };
  if (r.error !== undefined || r.latency === undefined)
    return { task: t.name, 'pairs/s': `error: ${String(r.error)}` };
  return {
    task: t.name,
    'pairs/s': Math.round((count * 1000) / r.latency.mean).toLocaleString('en-US'),
    'ms per pass': r.latency.mean.toFixed(2),
    '±%': r.latency.rme.toFixed(1),
    'pairs per CPU-second': Math.round(cpuRate.get(t.name) ?? 0).toLocaleString('en-US'),
  };
});
console.table(rows);
