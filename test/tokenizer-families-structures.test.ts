/**
 * The data structures behind the Unigram / BPE tokenizers' speed, against plain-Map references:
 * the word cache (src/tokenizer/word-cache.ts: inline and pooled words, its start-over keeping the
 * words in use) and the Unigram piece trie (src/tokenizer/piece-trie.ts: direct tables, binary and
 * linear child search, repeated pieces); and a tokenizer whose cache has started over gives the
 * ids of a fresh one.
 */
import { describe, expect, it } from 'vitest';
import { IdBuffer } from '../src/tokenizer/ids';
import { PieceTrie } from '../src/tokenizer/piece-trie';
import { hashSpan, WordCache } from '../src/tokenizer/word-cache';
import { msMarcoPairs, seededRandom } from '../src/workload';
import { loadFamily } from './helpers/family-goldens';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz\u00e9\u2581\u4e2d\u8000\uffff\ud83d\ude00';

function randomWord(u: () => number, maxLen: number): string {
  let w = '';
  const n = 1 + Math.floor(u() * maxLen);
  for (let i = 0; i < n; i++) w += ALPHABET[Math.floor(u() * ALPHABET.length)];
  return w;
}

/** Looks w up in the cache (inside a longer text, as the tokenizers do): its ids, or undefined. */
function cached(cache: WordCache, w: string): number[] | undefined {
  const text = `<<${w}>>`;
  const out = new IdBuffer(4);
  return cache.get(text, 2, 2 + w.length, hashSpan(text, 2, 2 + w.length), out)
    ? Array.from(out.data.subarray(0, out.length))
    : undefined;
}

function remember(cache: WordCache, w: string, ids: number[]): void {
  const text = `[${w}]`;
  cache.set(text, 1, 1 + w.length, hashSpan(text, 1, 1 + w.length), Int32Array.from(ids), 0, ids.length);
}

describe('WordCache', () => {
  it('gives back the ids of every word it holds and nothing for others (short, long, any code unit)', () => {
    const u = seededRandom(5);
    const cache = new WordCache();
    const ref = new Map<string, number[]>();
    for (let i = 0; i < 8000; i++) {
      // Up to 40 code units and 20 ids: both the inline slots (<= 12 and <= 8) and the pools.
      const w = randomWord(u, i % 3 === 0 ? 40 : 12);
      if (ref.has(w)) continue;
      const ids = Array.from({ length: Math.floor(u() * (i % 5 === 0 ? 20 : 8)) }, () =>
        Math.floor(u() * 2 ** 31),
      );
      remember(cache, w, ids);
      ref.set(w, ids);
    }
    const wrong = [...ref].filter(([w, ids]) => JSON.stringify(cached(cache, w)) !== JSON.stringify(ids));
    expect(wrong).toEqual([]);
    // Words that differ from held ones in one code unit, or by one more or one fewer.
    let probes = 0;
    const found: string[] = [];
    for (const w of ref.keys()) {
      for (const v of [`${w}a`, w.slice(0, -1), `${w.slice(0, -1)}\u8001`]) {
        if (v.length > 0 && !ref.has(v)) {
          if (cached(cache, v) !== undefined) found.push(v);
          probes++;
        }
      }
    }
    expect(found).toEqual([]);
    expect(probes).toBeGreaterThan(15_000);
  });

  it('starting over keeps the words looked up since the last start and forgets the rest', () => {
    const cache = new WordCache();
    const hot = Array.from({ length: 1000 }, (_, i) => `hot${i}`);
    for (const [i, w] of hot.entries()) remember(cache, w, [i, i + 1]);
    // 200,000 new words: several start-overs; the hot words are looked up all along.
    const lost: string[] = [];
    for (let i = 0; i < 200_000; i++) {
      remember(cache, `cold${i}`, [i]);
      if (i % 20 === 0) {
        const h = (i / 20) % hot.length;
        const got = cached(cache, hot[h] as string);
        if (got?.[0] !== h || got[1] !== h + 1) lost.push(`${hot[h]} at ${i}`);
      }
    }
    expect(lost).toEqual([]);
    expect(cached(cache, 'cold0')).toBeUndefined(); // forgotten: never looked up
    expect(cached(cache, 'cold199999')).toEqual([199_999]); // the newest are there
  });
});

describe('PieceTrie', () => {
  it('finds every piece (the last id of a repeated one) and nothing else, with its score', () => {
    const u = seededRandom(11);
    const pieces: string[] = [];
    // Wide nodes (the root, "▁" with 2,000+ children: direct tables), mid-size ones (binary search)
    // and narrow ones (linear search), astral and high code units, repeated pieces.
    for (let i = 0; i < 3000; i++) pieces.push(`\u2581${String.fromCharCode(0x100 + i)}`);
    for (let i = 0; i < 12_000; i++) pieces.push(randomWord(u, 9));
    for (let i = 0; i < 500; i++) pieces.push(pieces[Math.floor(u() * pieces.length)] as string);
    const scores = Float64Array.from(pieces, () => -20 * u());
    const trie = new PieceTrie(pieces, scores);
    const last = new Map<string, number>();
    pieces.forEach((p, i) => {
      last.set(p, i);
    });
    const wrong: string[] = [];
    for (const [p, id] of last) {
      let node = trie.rootChild(p.charCodeAt(0));
      for (let i = 1; i < p.length; i++) node = trie.child(node, p.charCodeAt(i));
      if (trie.lookup(p) !== id || trie.scoreAt(node) !== scores[id]) wrong.push(p);
    }
    expect(wrong).toEqual([]);
    let absent = 0;
    for (let i = 0; i < 10_000; i++) {
      const w = randomWord(u, 10);
      if (!last.has(w)) {
        if (trie.lookup(w) !== -1) wrong.push(w);
        absent++;
      }
    }
    expect(wrong).toEqual([]);
    expect(absent).toBeGreaterThan(1000);
  });
});

describe('family tokenizers with a cache that has started over', () => {
  for (const kind of ['unigram', 'bpe'] as const) {
    it(`${kind}: the same ids as a fresh tokenizer`, () => {
      const busy = loadFamily(kind);
      // 140,000 distinct words (letters only: one pre-token each) go through the cache first, the
      // MS MARCO-like words among them: it starts over, keeping those.
      const common = msMarcoPairs(50, 77).join(' ');
      for (let i = 0; i < 140; i++) {
        const words = Array.from(
          { length: 1000 },
          (_, j) =>
            `q${(i * 1000 + j).toString(26).replace(/\d/g, (c) => 'klmnopqrst'[Number(c)] as string)}`,
        );
        busy.tokenize(`${words.join(' ')} ${common}`);
      }
      const pairs = msMarcoPairs(300, 78);
      const fresh = loadFamily(kind);
      const opts = { maxLength: 512 };
      const a = busy.encodePairs(pairs, opts);
      const b = fresh.encodePairs(pairs, opts);
      expect(Array.from(a.tokens)).toEqual(Array.from(b.tokens));
      expect(Array.from(a.offsets)).toEqual(Array.from(b.offsets));
    });
  }
});
