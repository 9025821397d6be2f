/**
 * `npm run bench:tokenizer-families` (or `node --import tsx bench/tokenizer-families.ts`): pairs/s of
 * the Unigram (XLM-RoBERTa layout) and byte-level BPE (ModernBERT layout) tokenizers
 * (src/tokenizer.ts over src/tokenizer/families.ts) on MS MARCO-like pairs (src/workload.ts, seeded), one core, truncation
 * longest_first at --max-length (default 512), side by side in one tinybench run with:
 *  - `tokenizers` (Hugging Face's Rust library, npm binding) on the same tokenizer.json, encode per
 *    pair with 32 in flight, rayon held to one thread and libuv's pool to two (with one, the run hangs:
 *    see bench/tokenizer.ts); compare the "pairs per CPU-second" column;
 *  - transformers.js AutoTokenizer on the same folder (tokenizer.json + tokenizer_config.json);
 *  - and, for reference, the WordPiece tokenizer (src/tokenizer.ts) on the same pairs.
 * The tokenizer files are the committed fixtures (test/fixtures/families/tokenizer/{unigram,bpe}).
 * Options: --pairs N (default 2048), --time MS per task (default 2000), --seed S, --max-length L.
 */
process.env.RAYON_NUM_THREADS = '1';
process.env.TOKENIZERS_PARALLELISM = 'false';
process.env.UV_THREADPOOL_SIZE ??= '2';

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { Tokenizer } from '../src/tokenizer';

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

const FIXTURES = join(import.meta.dirname, '..', 'test', 'fixtures', 'families', 'tokenizer');
const require = createRequire(import.meta.url);
interface RustTok {
  setTruncation(n: number, o: { strategy: string }): void;
  encode(a: string, b: string): Promise<{ getIds(): number[] }>;
}
const { Tokenizer: Rust } = require('tokenizers') as { Tokenizer: { fromString(s: string): RustTok } };
const transformers = await import('@huggingface/transformers');
transformers.env.allowRemoteModels = false;
transformers.env.localModelPath = '';

// Few iterations: the slower tokenizers take seconds a pass, and tinybench's default is 64 a task.
const bench = new Bench({ time: Number(values.time), warmupTime: 200, iterations: 3, warmupIterations: 1 });
const fns = new Map<string, () => unknown>();
const add = (name: string, fn: () => unknown) => {
  fns.set(name, fn);
  bench.add(name, fn);
};
const tokensPerPair = new Map<string, number>();
// The WordPiece tokenizer on the same pairs (bert-base-uncased vocabulary): the speed to keep up with.
const wordPiece = Tokenizer.fromVocab(bertUncasedVocab(), { do_lower_case: true });
add('wordpiece: ours encodePairs (batches of 32), for reference', () => {
  for (const b of batches) wordPiece.encodePairs(b, { maxLength });
});
for (const kind of ['unigram', 'bpe'] as const) {
  const dir = join(FIXTURES, kind);
  const text = readFileSync(join(dir, 'tokenizer.json'), 'utf8');
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const ours = Tokenizer.fromTokenizerJson(JSON.parse(text), config);
  tokensPerPair.set(kind, ours.encodePairs(pairs, { maxLength }).tokens.length / pairs.length);
  const rust = Rust.fromString(text);
  rust.setTruncation(maxLength, { strategy: 'LongestFirst' });
  const tjs = await transformers.AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  add(`${kind}: ours encodePairs (batches of 32)`, () => {
    for (const b of batches) ours.encodePairs(b, { maxLength });
  });
  add(`${kind}: tokenizers (Rust, npm) encode per pair, 1 thread`, async () => {
    for (const b of batches) await Promise.all(b.map(([q, d]) => rust.encode(q, d)));
  });
  add(`${kind}: transformers.js AutoTokenizer (batches of 32)`, () => {
    for (const b of batches) {
      tjs(
        b.map((p) => p[0]),
        { text_pair: b.map((p) => p[1]), truncation: true, max_length: maxLength, return_tensor: false },
      );
    }
  });
}

await bench.run();

// Wall-clock rates suffer on a shared machine; CPU time (this process, all its threads) less so.
const cpuRate = new Map<string, number>();
for (const [name, fn] of fns) {
  const rates: number[] = [];
  for (let r = 0; r < 3; r++) {
    const c0 = process.cpuUsage();
    await fn();
    const c = process.cpuUsage(c0);
    rates.push((count * 1e6) / (c.user + c.system));
  }
  rates.sort((a, b) => a - b);
  cpuRate.set(name, rates[1] as number);
}

const c = cpus();
console.log(
  `machine: ${c[0]?.model.trim()} (${c.length} logical CPUs), node ${process.version}; workload: ${count} ` +
    `msMarcoPairs(seed ${values.seed}) at maxLength ${maxLength}; tokens/pair: unigram ` +
    `${tokensPerPair.get('unigram')?.toFixed(1)}, bpe ${tokensPerPair.get('bpe')?.toFixed(1)}`,
);
console.table(
  bench.tasks.map((t) => {
    const r = t.result as unknown as { latency: { mean: number; rme: number }; error?: unknown };
    if (r.error !== undefined || r.latency === undefined)
      return { task: t.name, 'pairs/s': `error: ${String(r.error)}` };
    return {
      task: t.name,
      'pairs/s': Math.round((count * 1000) / r.latency.mean).toLocaleString('en-US'),
      '±%': r.latency.rme.toFixed(1),
      'pairs per CPU-second': Math.round(cpuRate.get(t.name) ?? 0).toLocaleString('en-US'),
    };
  }),
);
