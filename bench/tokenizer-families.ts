/**
 * `npm run bench:tokenizer-families` (or `node --import tsx bench/tokenizer-families.ts`): pairs/s of
 * the Unigram (XLM-RoBERTa layout) and byte-level BPE (ModernBERT layout) tokenizers
 * (src/tokenizer.ts) on MS MARCO-like pairs (src/workload.ts, seeded), one core, truncation
 * longest_first at --max-length (default 512), side by side in one tinybench run with:
 *  - ours on a new slice of the pairs every pass ("fresh pairs"): the same pairs again and again end
 *    up all in the word cache, new text misses it on its rarer words, which then go through
 *    Viterbi / the merges;
 *  - `tokenizers` (Hugging Face's Rust library, npm binding) on the same tokenizer.json, encode per
 *    pair with 32 in flight, rayon held to one thread and libuv's pool to two (with one, the run hangs:
 *    see bench/tokenizer.ts); compare the "pairs per CPU-second" column;
 *  - transformers.js AutoTokenizer on the same folder (tokenizer.json + tokenizer_config.json);
 *  - and, for reference, the WordPiece tokenizer (src/tokenizer.ts) on the same pairs.
 * --vocab fixture (default): the committed fixtures (test/fixtures/families/tokenizer/{unigram,bpe},
 * 4,002 pieces and 2,742 merges); large: the same extended to XLM-R's 250,002 pieces and ModernBERT's
 * 50,000 merges (synthetic, bench/lib/large-vocab.ts says how); both: the two, one after the other.
 * --others no leaves out `tokenizers` and transformers.js (a quicker run).
 * Options: --pairs N (default 2048), --time MS per task (default 2000), --seed S, --max-length L.
 */
// One core as far as possible, as bench/tokenizer.ts (which says why libuv's pool has 2 threads, not 1).
process.env.RAYON_NUM_THREADS = '1';
process.env.TOKENIZERS_PARALLELISM = 'false';
process.env.UV_THREADPOOL_SIZE ??= '2';

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '../src/tokenizer';
import { bertUncasedVocab, msMarcoPairs } from '../src/workload';
import { largeBpe, largeUnigram } from './lib/large-vocab';
import { BATCH, TokenizerBench, tokenizerWorkload } from './lib/tokenizer-bench';

const w = tokenizerWorkload(undefined, { vocab: 'fixture', others: 'yes' });
const { count, maxLength, pairs, batches } = w;
const vocabs = w.options.vocab === 'both' ? ['fixture', 'large'] : [w.options.vocab];
if (!vocabs.every((v) => v === 'fixture' || v === 'large')) {
  throw new Error(`--vocab must be fixture, large or both, got ${w.options.vocab}`);
}
const others = w.options.others !== 'no';

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

// Fresh pairs: slices of `count` new pairs (another seed), one a pass: 4 untimed passes (the
// cache then holds the frequent words, as when serving), then the 3 CPU rounds.
const FRESH_WARMUP = 4;
const FRESH_SLICES = FRESH_WARMUP + 3;
const freshPool = msMarcoPairs(count * FRESH_SLICES, w.seed + 1);

type Json = Record<string, unknown>;

/** tokenizer.json of a family at the chosen size, in a folder transformers.js can read. */
function familyFiles(kind: 'unigram' | 'bpe', vocab: string): { dir: string; json: Json; config: Json } {
  const dir = join(FIXTURES, kind);
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as Json;
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Json;
  if (vocab === 'fixture') return { dir, json, config };
  let large: Json;
  if (kind === 'unigram') large = largeUnigram(json);
  else {
    const fixture = Tokenizer.fromTokenizerJson(json, config);
    const tokenOf: string[] = [];
    for (const [t, id] of Object.entries((json.model as { vocab: Record<string, number> }).vocab)) {
      tokenOf[id] = t;
    }
    large = largeBpe(json, (text) => Array.from(fixture.tokenize(text), (id) => tokenOf[id] as string));
  }
  const tmp = mkdtempSync(join(tmpdir(), `mlx-rerank-${kind}-`));
  writeFileSync(join(tmp, 'tokenizer.json'), JSON.stringify(large));
  writeFileSync(join(tmp, 'tokenizer_config.json'), JSON.stringify(config));
  process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
  return { dir: tmp, json: large, config };
}

// Few iterations: the slower tokenizers take seconds a pass, and tinybench's default is 64 a task.
const bench = new TokenizerBench(w, { warmupTime: 200, iterations: 3, warmupIterations: 1 });
const notes: string[] = [];
// The WordPiece tokenizer on the same pairs (bert-base-uncased vocabulary): the speed to keep up with.
const wordPiece = Tokenizer.fromVocab(bertUncasedVocab(), { do_lower_case: true });
bench.add('wordpiece: ours encodePairs (batches of 32), for reference', () => {
  for (const b of batches) wordPiece.encodePairs(b, { maxLength });
});
for (const vocab of vocabs) {
  for (const kind of ['unigram', 'bpe'] as const) {
    const { dir, json, config } = familyFiles(kind, vocab);
    const model = json.model as { vocab: unknown[] | Json; merges?: unknown[] };
    const size =
      kind === 'unigram'
        ? `${(model.vocab as unknown[]).length.toLocaleString('en-US')} pieces`
        : `${model.merges?.length.toLocaleString('en-US')} merges`;
    const label = `${kind} (${vocab}, ${size})`;
    const t0 = performance.now();
    const ours = Tokenizer.fromTokenizerJson(json, config);
    const loadMs = performance.now() - t0;
    const tokens = ours.encodePairs(pairs, { maxLength }).tokens.length / pairs.length;
    notes.push(`${label}: ${tokens.toFixed(1)} tokens a pair, loaded in ${loadMs.toFixed(0)} ms`);
    bench.add(`${label}: ours encodePairs (batches of 32)`, () => {
      for (const b of batches) ours.encodePairs(b, { maxLength });
    });
    let slice = 0;
    bench.addCpuOnly(
      `${label}: ours encodePairs, fresh pairs each pass`,
      () => {
        const from = (slice++ % FRESH_SLICES) * count;
        for (let i = from; i < from + count; i += BATCH) {
          ours.encodePairs(freshPool.slice(i, i + BATCH), { maxLength });
        }
      },
      FRESH_WARMUP,
    );
    if (!others) continue;
    const rust = Rust.fromString(JSON.stringify(json));
    rust.setTruncation(maxLength, { strategy: 'LongestFirst' });
    const tjs = await transformers.AutoTokenizer.from_pretrained(dir, { local_files_only: true });
    bench.add(`${label}: tokenizers (Rust, npm) encode per pair, 1 thread`, async () => {
      for (const b of batches) await Promise.all(b.map(([q, d]) => rust.encode(q, d)));
    });
    bench.add(`${label}: transformers.js AutoTokenizer (batches of 32)`, () => {
      for (const b of batches) {
        tjs(
          b.map((p) => p[0]),
          { text_pair: b.map((p) => p[1]), truncation: true, max_length: maxLength, return_tensor: false },
        );
      }
    });
  }
}

await bench.run(3);
bench.print(`${count} msMarcoPairs(seed ${w.seed}) at maxLength ${maxLength}`);
for (const n of notes) console.log(n);
