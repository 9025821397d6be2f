/**
 * Byte-level BPE (GPT-2 / ModernBERT): the ByteLevel pre-tokenizer (GPT-2's split regex, then every
 * UTF-8 byte as one of 256 printable characters) and the BPE model (merges applied lowest rank
 * first, leftmost first among equal ranks, as `tokenizers`' Word::merge_all does with its heap).
 *
 * The split regex is the one `tokenizers` runs with Oniguruma, where \s is Unicode White_Space; in a
 * JS regex \s also takes U+FEFF and leaves out U+0085, so the class is spelt out.
 */
import type { IdBuffer } from './ids';
import { fail } from './pair';
import * as W from './word-cache';

// Module-local copies: an imported binding is read through a checked cell (a getter call when run
// through tsx) on every use, which shows in the per-word code below.
const hashSpan = W.hashSpan;
const WORD_CACHE_MAX_KEY = W.WORD_CACHE_MAX_KEY;
const WordCache = W.WordCache;

const WS = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const GPT2_SPLIT = new RegExp(
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`,
  'gu',
);
export const MAX_VOCAB = 5_000_000;
export const MAX_MERGES = 5_000_000;
/** Heap keys are rank * 2^27 + position. */
const POS_BITS = 2 ** 27;

/** GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to U+0100 onwards. */
export function byteToChar(): string[] {
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return out;
}

export interface BpeSpec {
  vocab: ReadonlyMap<string, number>;
  /** In rank order: [left, right] token strings. */
  merges: ReadonlyArray<readonly [string, string]>;
  addPrefixSpace: boolean;
  useRegex: boolean;
}

export class BytePairEncoder {
  /** Vocabulary id of each byte's character, or -1 (then the byte is dropped, as without unk_token). */
  private readonly byteIds = new Int32Array(256);
  /**
   * (left id, right id) -> merge index (= rank), open addressing, 4 ints a slot so that a probe
   * touches one cache line: [left + 1 (0 = empty), right, rank, unused]. A Map keyed on
   * left * stride + right (a heap number past 2^31) cost a fifth of the time with 50,000 merges.
   */
  private readonly mergeTab: Int32Array;
  private readonly mergeMask: number;
  private readonly mergedId: Int32Array;
  private readonly cache = new WordCache();
  private sym = new Int32Array(64);
  private next = new Int32Array(64);
  private prev = new Int32Array(64);
  private heap = new Float64Array(64);
  /** The rank of the pair starting at each live symbol (-1: none), so a popped entry is checked without a lookup. */
  private pairRank = new Int32Array(64);

  constructor(
    private readonly spec: BpeSpec,
    where: string,
  ) {
    if (spec.vocab.size > MAX_VOCAB)
      fail(where, `the vocabulary has ${spec.vocab.size} entries (at most ${MAX_VOCAB})`);
    if (spec.merges.length > MAX_MERGES) fail(where, `${spec.merges.length} merges (at most ${MAX_MERGES})`);
    const chars = byteToChar();
    for (let b = 0; b < 256; b++) this.byteIds[b] = spec.vocab.get(chars[b] as string) ?? -1;
    let slots = 1024;
    while (slots < spec.merges.length * 2) slots *= 2;
    this.mergeTab = new Int32Array(4 * slots);
    this.mergeMask = slots - 1;
    this.mergedId = new Int32Array(spec.merges.length);
    spec.merges.forEach(([a, b], rank) => {
      const ia = spec.vocab.get(a);
      const ib = spec.vocab.get(b);
      const merged = spec.vocab.get(a + b);
      if (ia === undefined || ib === undefined || merged === undefined) {
        fail(
          where,
          `merge ${rank} (${JSON.stringify(a)} ${JSON.stringify(b)}) uses a token that is not in the vocabulary`,
        );
      }
      this.addMerge(ia, ib, rank); // a repeated pair keeps its first rank
      this.mergedId[rank] = merged;
    });
  }

  /** A cut before text[p] splits no regex match: text[p] is a space after a non-space ASCII char. */
  safeCut(text: string, p: number): boolean {
    const prev = text.charCodeAt(p - 1);
    return text.charCodeAt(p) === 32 && prev < 0x80 && prev > 32;
  }

  /** Encodes text[start, end), stopping after the pre-token that brings out to `cap` ids. */
  encode(text: string, start: number, end: number, atTextStart: boolean, out: IdBuffer, cap: number): void {
    let s = text;
    let a = start;
    let b = end;
    if (this.spec.addPrefixSpace && atTextStart && a < b && text.charCodeAt(a) !== 32) {
      s = ` ${text.slice(a, b)}`;
      a = 0;
      b = s.length;
    }
    if (!this.spec.useRegex) {
      this.word(s, a, b, out);
      return;
    }
    // ASCII needs no regex: the scanner gives the regex's pre-tokens up to the first point where a
    // non-ASCII character could matter, and the regex (which has no lookbehind) goes on from there.
    let i = a;
    while (i < b && out.length < cap) {
      const t = asciiToken(s, i, b);
      if (t < 0) break;
      this.word(s, i, t, out);
      i = t;
    }
    if (i >= b || out.length >= cap) return;
    const rest = s.slice(i, b);
    GPT2_SPLIT.lastIndex = 0;
    for (let m = GPT2_SPLIT.exec(rest); m !== null && out.length < cap; m = GPT2_SPLIT.exec(rest)) {
      this.word(rest, m.index, m.index + m[0].length, out);
    }
  }

  private word(s: string, a: number, b: number, out: IdBuffer): void {
    const cacheable = b - a <= WORD_CACHE_MAX_KEY;
    const h = cacheable ? hashSpan(s, a, b) : 0;
    if (cacheable && this.cache.get(s, a, b, h, out)) return;
    const before = out.length;
    this.mergeAll(this.symbols(s, a, b), out);
    if (cacheable) this.cache.set(s, a, b, h, out.data, before, out.length);
  }

  /** The byte symbols of s[a, b) into this.sym; returns their count. */
  private symbols(w: string, a: number, b: number): number {
    if (this.sym.length < 4 * (b - a)) {
      const cap = 4 * (b - a) + 16;
      this.sym = new Int32Array(cap);
      this.next = new Int32Array(cap);
      this.prev = new Int32Array(cap);
      this.heap = new Float64Array(2 * cap); // each merge pops one entry and pushes at most two
      this.pairRank = new Int32Array(cap);
    }
    const sym = this.sym;
    const ids = this.byteIds;
    let n = 0;
    const push = (byte: number) => {
      const id = ids[byte] as number;
      if (id >= 0) sym[n++] = id;
    };
    for (let i = a; i < b; i++) {
      let cp = w.charCodeAt(i);
      if (cp >= 0xd800 && cp < 0xdc00 && i + 1 < b) {
        const lo = w.charCodeAt(i + 1);
        if (lo >= 0xdc00 && lo < 0xe000) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          i++;
        }
      }
      if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd; // a lone surrogate reads as U+FFFD
      if (cp < 0x80) push(cp);
      else if (cp < 0x800) {
        push(0xc0 | (cp >> 6));
        push(0x80 | (cp & 63));
      } else if (cp < 0x10000) {
        push(0xe0 | (cp >> 12));
        push(0x80 | ((cp >> 6) & 63));
        push(0x80 | (cp & 63));
      } else {
        push(0xf0 | (cp >> 18));
        push(0x80 | ((cp >> 12) & 63));
        push(0x80 | ((cp >> 6) & 63));
        push(0x80 | (cp & 63));
      }
    }
    return n;
  }

  private addMerge(a: number, b: number, rank: number): void {
    const tab = this.mergeTab;
    let k = mergeHash(a, b) & this.mergeMask;
    for (; tab[4 * k] !== 0; k = (k + 1) & this.mergeMask) {
      if (tab[4 * k] === a + 1 && tab[4 * k + 1] === b) return;
    }
    tab[4 * k] = a + 1;
    tab[4 * k + 1] = b;
    tab[4 * k + 2] = rank;
  }

  /** The rank of the merge (a, b), or -1. */
  private rank(a: number, b: number): number {
    const tab = this.mergeTab;
    const a1 = a + 1;
    for (let k = mergeHash(a, b) & this.mergeMask; ; k = (k + 1) & this.mergeMask) {
      const at = 4 * k;
      const x = tab[at] as number;
      if (x === a1 && tab[at + 1] === b) return tab[at + 2] as number;
      if (x === 0) return -1;
    }
  }

  /** Word::merge_all: a heap of (rank, position), stale entries skipped; O(n log n) per word. */
  private mergeAll(n: number, out: IdBuffer): void {
    const { sym, next, prev, heap, pairRank } = this;
    let size = 0;
    const push = (key: number) => {
      let i = size++;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if ((heap[p] as number) <= key) break;
        heap[i] = heap[p] as number;
        i = p;
      }
      heap[i] = key;
    };
    const pop = (): number => {
      const top = heap[0] as number;
      const last = heap[--size] as number;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= size) break;
        const r = l + 1;
        const c = r < size && (heap[r] as number) < (heap[l] as number) ? r : l;
        if ((heap[c] as number) >= last) break;
        heap[i] = heap[c] as number;
        i = c;
      }
      if (size > 0) heap[i] = last;
      return top;
    };
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    for (let i = 0; i < n; i++) {
      const r = i + 1 < n ? this.rank(sym[i] as number, sym[i + 1] as number) : -1;
      pairRank[i] = r;
      if (r >= 0) push(r * POS_BITS + i);
    }
    while (size > 0) {
      const key = pop();
      const r = Math.floor(key / POS_BITS);
      const pos = key - r * POS_BITS;
      if (pairRank[pos] !== r) continue; // stale: pos was merged away or its pair changed
      const nx = next[pos] as number;
      sym[pos] = this.mergedId[r] as number;
      sym[nx] = -1;
      pairRank[nx] = -1;
      const nn = next[nx] as number;
      next[pos] = nn;
      if (nn >= 0) prev[nn] = pos;
      const pv = prev[pos] as number;
      if (pv >= 0) {
        const rp = this.rank(sym[pv] as number, sym[pos] as number);
        pairRank[pv] = rp;
        if (rp >= 0) push(rp * POS_BITS + pv);
      }
      const rn = nn >= 0 ? this.rank(sym[pos] as number, sym[nn] as number) : -1;
      pairRank[pos] = rn;
      if (rn >= 0) push(rn * POS_BITS + pos);
    }
    let count = 0;
    for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i] as number) count++;
    const data = out.reserve(count);
    for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i] as number) data[out.length++] = sym[i] as number;
  }
}

function mergeHash(a: number, b: number): number {
  const h = Math.imul(a, 0x9e3779b1) ^ Math.imul(b, 0x85ebca6b);
  return h ^ (h >>> 15);
}

// ASCII classes for the scanner: 1 letter, 2 digit, 3 whitespace (\s), 4 other (punctuation etc.).
const CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) CLASS[c] = 1;
  else if (c >= 48 && c <= 57) CLASS[c] = 2;
  else if (c === 32 || (c >= 9 && c <= 13)) CLASS[c] = 3;
  else CLASS[c] = 4;
}

/**
 * The end of GPT-2's regex match at s[i] when only ASCII decides it, else -1. The alternatives in
 * the regex's order: contractions, ` ?` letters, ` ?` digits, ` ?` other, whitespace not followed
 * by a non-space (`\s+(?!\S)`), whitespace.
 */
function asciiToken(s: string, i: number, b: number): number {
  const c = s.charCodeAt(i);
  if (c >= 0x80) return -1;
  const next = i + 1 < b ? s.charCodeAt(i + 1) : -1;
  if (next >= 0x80) return -1;
  if (c === 39 /* ' */ && next >= 0) {
    if (next === 115 || next === 116 || next === 109 || next === 100) return i + 2; // 's 't 'm 'd
    const third = i + 2 < b ? s.charCodeAt(i + 2) : -1;
    if ((next === 114 || next === 118) && third === 101) return i + 3; // 're 've
    if (next === 108 && third === 108) return i + 3; // 'll
  }
  let k = i;
  let cls = CLASS[c] as number;
  if (c === 32 && next >= 0 && CLASS[next] !== 3) {
    k = i + 1; // ` ?` takes the space into the word that follows
    cls = CLASS[next] as number;
  }
  if (cls !== 3) {
    let j = k + 1;
    for (; j < b; j++) {
      const d = s.charCodeAt(j);
      if (d >= 0x80) return -1;
      if (CLASS[d] !== cls) break;
    }
    return j;
  }
  let j = i + 1;
  for (; j < b; j++) {
    const d = s.charCodeAt(j);
    if (d >= 0x80) return -1;
    if (CLASS[d] !== 3) break;
  }
  if (j === b || j - i === 1) return j;
  return j - 1; // the last whitespace character goes with what follows (or stands alone)
}
