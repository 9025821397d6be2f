/**
 * `npm run bench:tokenizer-families` (or `node --import tsx bench/tokenizer-families.ts`): pairs/s of
 * the Unigram (XLM-RoBERTa layout) and byte-level BPE (ModernBERT layout) tokenizers
 * (src/tokenizer.ts) on MS MARCO-like pairs (src/workload.ts, seeded), one core, truncation
 * longest_first at --max-length (default 512), side by side in one tinybench run with:
 *  - `tokenizers` (Hugging Face's Rust library, npm binding) on the same tokenizer.json, encode per
 *    pair with 32 in flight, rayon held to one thread and libuv's pool to two (with one, the run hangs:
 *    see bench/tokenizer.ts); compare the "pairs per CPU-second" column;
 *  - transformers.js AutoTokenizer on the same folder (tokenizer.json + tokenizer_config.json);
 *  - and, for reference, the WordPiece tokenizer (src/tokenizer.ts) on the same pairs.
 * The tokenizer files are the committed fixtures (test/fixtures/families/tokenizer/{unigram,bpe}).
 * Options: --pairs N (default 2048), --time MS per task (default 2000), --seed S, --max-length L.
 */
// One core as far as possible, as bench/tokenizer.ts (which says why libuv's pool has 2 threads, not 1).
process.env.RAYON_NUM_THREADS = '1';
process.env.TOKENIZERS_PARALLELISM = 'false';
process.env.UV_THREADPOOL_SIZE ??= '2';

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Tokenizer } from '../src/tokenizer';
import { bertUncasedVocab } from '../src/workload';
import { TokenizerBench, tokenizerWorkload } from './lib/tokenizer-bench';

const w = tokenizerWorkload();
const { count, maxLength, pairs, batches } = w;

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
const bench = new TokenizerBench(w, { warmupTime: 200, iterations: 3, warmupIterations: 1 });
const tokensPerPair = new Map<string, number>();
// The WordPiece tokenizer on the same pairs (bert-base-uncased vocabulary): the speed to keep up with.
const wordPiece = Tokenizer.fromVocab(bertUncasedVocab(), { do_lower_case: true });
bench.add('wordpiece: ours encodePairs (batches of 32), for reference', () => {
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
  bench.add(`${kind}: ours encodePairs (batches of 32)`, () => {
    for (const b of batches) ours.encodePairs(b, { maxLength });
  });
  bench.add(`${kind}: tokenizers (Rust, npm) encode per pair, 1 thread`, async () => {
    for (const b of batches) await Promise.all(b.map(([q, d]) => rust.encode(q, d)));
  });
  bench.add(`${kind}: transformers.js AutoTokenizer (batches of 32)`, () => {
    for (const b of batches) {
      tjs(
        b.map((p) => p[0]),
        { text_pair: b.map((p) => p[1]), truncation: true, max_length: maxLength, return_tensor: false },
      );
    }
  });
}

await bench.run(3);
bench.print(
  `${count} msMarcoPairs(seed ${w.seed}) at maxLength ${maxLength}; tokens/pair: unigram ` +
    `${tokensPerPair.get('unigram')?.toFixed(1)}, bpe ${tokensPerPair.get('bpe')?.toFixed(1)}`,
);
