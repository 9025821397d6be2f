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
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '../src/tokenizer';
import { bertTokenizerJson } from '../src/tokenizer/tokenizer-json';
import { bertUncasedVocab } from '../src/workload';
import { TokenizerBench, tokenizerWorkload } from './lib/tokenizer-bench';

const w = tokenizerWorkload();
const { count, maxLength, pairs, batches } = w;

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
const bench = new TokenizerBench(w, { warmupTime: 500, iterations: 3, warmupIterations: 1 });
bench.add('ours: encodePairs (batches of 32)', () => {
  for (const b of batches) ours.encodePairs(b, { maxLength });
});
bench.add('ours: encodePair (one pair at a time)', () => {
  for (const [q, d] of pairs) ours.encodePair(q, d, { maxLength });
});
bench.add(
  `tokenizers (Rust, npm): ${rustBatch ? 'encodeBatch of 32' : 'encode per pair'}, 1 thread`,
  async () => {
    if (rustBatch) for (const b of batches) await rust.encodeBatch(b);
    else for (const b of batches) await Promise.all(b.map(([q, d]) => rust.encode(q, d)));
  },
);
bench.add('transformers.js AutoTokenizer (batches of 32)', () => {
  for (const b of batches) {
    tjs(
      b.map((p) => p[0]),
      { text_pair: b.map((p) => p[1]), truncation: true, max_length: maxLength, return_tensor: false },
    );
  }
});
bench.add('@huggingface/tokenizers encode (no truncation)', () => {
  for (const [q, d] of pairs) hfts.encode(q, { text_pair: d });
});

await bench.run(5);
rmSync(dir, { recursive: true, force: true });
bench.print(
  `${count} msMarcoPairs(seed ${w.seed}), ${tokensPerPair.toFixed(1)} tokens/pair at maxLength ${maxLength}`,
);
