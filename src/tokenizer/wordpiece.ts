/**
 * One concern, kept in one file because it is one fused loop: the WordPiece text core (BERT, MiniLM,
 * ELECTRA), BertNormalizer + BertPreTokenizer + WordPiece over char codes, writing ids into a growable
 * Int32Array (the pair template and truncation around it are ./pair.ts). Semantics follow Hugging
 * Face `tokenizers` (Rust) step by step:
 *
 *   added tokens  split the raw text first (leftmost-longest; their id is emitted as is)
 *   clean_text    drop U+0000, U+FFFD and Cc/Cf/Co (but \t \n \r); every whitespace char -> ' '
 *   chinese       ' ' + c + ' ' around CJK ideographs
 *   strip_accents NFD, then drop Mn
 *   lowercase     per code point (no Final_Sigma context)
 *   pre-tokenize  split on whitespace (removed) and punctuation (isolated)
 *   WordPiece     greedy longest prefix, "##" continuations, [UNK] for a word with no split or more
 *                 than max_input_chars_per_word code points
 *
 * Speed: ASCII is normalized through a 128-entry table; only runs of non-ASCII characters go through
 * the general (cached) path. WordPiece walks a trie over UTF-16 code units, so a word costs one hash
 * probe per character and no string is created.
 *
 * Bounded work: text is processed in windows cut at characters that end a word whatever their
 * neighbours are (whitespace, punctuation, CJK), so encoding stops soon after `limit` ids exist even for
 * a document of several MB.
 *
 * Lone surrogates (possible in JS strings, impossible in Rust ones) are read as U+FFFD, which is what
 * any UTF-8 conversion of the string (Buffer, TextEncoder, the `tokenizers` binding) produces.
 */
import { type AddedToken, AddedTokenMatcher } from './added-tokens';
import type { IdBuffer, TextCore } from './ids';
import * as U from './unicode';
import * as W from './word-cache';

// Module-local copies: V8 reads imported bindings through a checked cell on every use, which costs
// measurably in the per-character loops below (about 2x when run unbundled).
const F_CJK = U.F_CJK;
const F_HIGH = U.F_HIGH;
const F_MARK = U.F_MARK;
const F_OTHER = U.F_OTHER;
const F_PUNCT = U.F_PUNCT;
const F_WHITESPACE = U.F_WHITESPACE;
const FLAGS: Uint8Array = U.FLAGS;
const flagsOf = U.flagsOf;
const lowerOf = U.lowerOf;

export interface NormalizerOptions {
  cleanText: boolean;
  handleChineseChars: boolean;
  stripAccents: boolean;
  lowercase: boolean;
}

export interface CoreSpec {
  vocab: ReadonlyMap<string, number>;
  unkId: number;
  continuingSubwordPrefix: string;
  maxInputCharsPerWord: number;
  normalizer: NormalizerOptions;
  /** Matched on the raw text before normalization (normalized: false). */
  addedTokens: readonly AddedToken[];
}

const FNV_OFFSET = W.FNV_OFFSET;
const FNV_PRIME = W.FNV_PRIME;
const RUN_CACHE_MAX_KEY = 64;
const RUN_PIECE = 48;
const RUN_CACHE_MAX_SIZE = 50_000;
const MAX_WINDOW = 1 << 16;
/** Runs of non-ASCII longer than RUN_CACHE_MAX_KEY go in pieces of at most this many code units. */
const MAX_PIECE = 64;

/**
 * How much of a text is read: at most MAX_CHARS_PER_TOKEN code units per token wanted (at least
 * MIN_READ), and never more than MAX_READ. Text of any language needs far fewer (English about 5 per
 * token, CJK 1 or 2, even a text of 101-character [UNK] words 51). What only hostile text needs -
 * megabytes of one "word", of marks, of characters clean_text removes - is then not read at all,
 * which bounds the time one text costs.
 */
export const MAX_CHARS_PER_TOKEN = 64;
export const MIN_READ = 1 << 12;
export const MAX_READ = 1 << 17;

/** Code units read for `tokens` tokens; no bound for Infinity (tokenize(): all of the text). */
export function readLimitFor(tokens: number): number {
  if (tokens === Number.POSITIVE_INFINITY) return tokens;
  return Math.min(MAX_READ, Math.max(MIN_READ, tokens * MAX_CHARS_PER_TOKEN));
}

export class WordPieceCore implements TextCore {
  private readonly unkId: number;
  private readonly maxChars: number;
  private readonly opts: NormalizerOptions;
  /** ASCII normalization: -1 = removed, else the code unit it becomes. */
  private readonly asciiMap = new Int32Array(128);
  private readonly boundaryMask: number;
  // Trie over UTF-16 code units. Node 0 is the root; contRoot is the node of the "##" prefix (-1 if none).
  private tokId: Int32Array;
  private nodeCount = 1;
  // Open addressing, 4 ints a slot so that one probe touches one cache line:
  // [parent node + 1 (0 = empty), code unit, child node, unused].
  private hTab: Int32Array;
  private hMask: number;
  private hShift: number;
  private readonly rootNext = new Int32Array(0x10000).fill(-1);
  private readonly contNext = new Int32Array(0x10000).fill(-1);
  // Whole-word table: most words are one vocabulary entry, found with one hash probe (FNV-1a over
  // the code units, computed while the pre-tokenizer scans the word) instead of a walk down the trie.
  // 4 ints a slot: [hash, id (-1 = empty), offset of its chars in wChars, length].
  private readonly wTab: Int32Array;
  private readonly wChars: Uint16Array;
  private readonly wMask: number;
  /** Whether the last encode() stopped reading at its readLimit. */
  capped = false;
  private readonly added: AddedTokenMatcher | null;
  // Scratch: the normalized text of the current window.
  private norm = new Uint16Array(4096);
  private readonly runCache = new Map<string, string>();

  constructor(spec: CoreSpec) {
    this.unkId = spec.unkId;
    this.maxChars = spec.maxInputCharsPerWord;
    this.opts = { ...spec.normalizer };
    for (let c = 0; c < 128; c++) this.asciiMap[c] = this.normalizeAscii(c);
    this.boundaryMask = F_WHITESPACE | F_PUNCT | (this.opts.handleChineseChars ? F_CJK : 0);

    let chars = 0;
    for (const k of spec.vocab.keys()) chars += k.length;
    this.tokId = new Int32Array(chars + 2).fill(-1);
    let slots = 1024;
    while (slots < chars * 2) slots *= 2;
    this.hTab = new Int32Array(slots * 4);
    this.hMask = slots - 1;
    this.hShift = 32 - Math.log2(slots);
    for (const [token, id] of spec.vocab) {
      let node = 0;
      for (let i = 0; i < token.length; i++) node = this.insertChild(node, token.charCodeAt(i));
      this.tokId[node] = id;
    }
    // -1 when no vocab entry starts with the prefix: every continuation then fails, as in Rust.
    const cont = this.walk(0, spec.continuingSubwordPrefix);
    // Dense first steps from the two roots: the most frequent lookups.
    for (let c = 0; c < 0x10000; c++) {
      this.rootNext[c] = this.child(0, c);
      if (cont >= 0) this.contNext[c] = this.child(cont, c);
    }

    let wSlots = 1024;
    while (wSlots < spec.vocab.size * 2) wSlots *= 2;
    this.wMask = wSlots - 1;
    const wTab = new Int32Array(wSlots * 4);
    for (let k = 1; k < wTab.length; k += 4) wTab[k] = -1;
    this.wTab = wTab;
    this.wChars = new Uint16Array(chars);
    let off = 0;
    for (const [token, id] of spec.vocab) {
      if (token.length === 0) continue;
      let h = FNV_OFFSET;
      for (let i = 0; i < token.length; i++) {
        const c = token.charCodeAt(i);
        this.wChars[off + i] = c;
        h = Math.imul(h ^ c, FNV_PRIME);
      }
      let k = h & this.wMask;
      while ((wTab[4 * k + 1] as number) >= 0) k = (k + 1) & this.wMask;
      wTab[4 * k] = h;
      wTab[4 * k + 1] = id;
      wTab[4 * k + 2] = off;
      wTab[4 * k + 3] = token.length;
      off += token.length;
    }

    this.added = spec.addedTokens.length > 0 ? new AddedTokenMatcher(spec.addedTokens) : null;
  }

  /**
   * Appends the ids of `text` to `out` and returns how many were appended: all of them, or - once at
   * least `limit` exist - the ids up to the end of the word that reached `limit` (the rest of the
   * text is then not looked at). Stopping after whole words is what `tokenizers` 0.23 does when
   * truncation is on, and the count it compares in longest_first.
   *
   * At most `readLimit` code units of the text are read (see readLimitFor): past them the text is
   * taken to end. `capped` tells whether that happened.
   */
  encode(text: string, out: IdBuffer, limit: number, readLimit = readLimitFor(limit)): number {
    const start = out.length;
    const stop = start + limit;
    let end = text.length;
    this.capped = end > readLimit;
    if (this.capped) {
      end = readLimit;
      const c = text.charCodeAt(end - 1);
      if (c >= 0xd800 && c <= 0xdbff) end--; // not half a surrogate pair
    }
    const added = this.added;
    added?.reset();
    let pos = 0;
    while (pos < end && out.length < stop) {
      const at = added === null ? -1 : added.find(text, pos, end);
      const segEnd = at < 0 ? end : at;
      if (segEnd > pos) this.encodeSegment(text, pos, segEnd, out, stop);
      if (at < 0 || added === null) break;
      if (out.length < stop) out.reserve(1)[out.length++] = added.id;
      pos = at + added.len;
    }
    // A huge window leaves a huge scratch buffer behind; do not keep it alive between calls.
    if (this.norm.length > 1 << 18) this.norm = new Uint16Array(4096);
    return out.length - start;
  }

  // ---------------------------------------------------------------- windows

  private encodeSegment(text: string, a: number, b: number, out: IdBuffer, stop: number): void {
    let p = a;
    // About 6 characters per id in English; doubling keeps the number of windows logarithmic.
    let w = Math.min(MAX_WINDOW, Math.max(256, (stop - out.length) * 6));
    while (p < b && out.length < stop) {
      const q = b - p > w ? this.findBoundary(text, p + w, b) : b;
      const len = this.normalize(text, p, q);
      this.pretokenize(len, out, stop);
      p = q;
      w = Math.min(MAX_WINDOW, w * 2);
    }
  }

  /** First index >= from whose character ends any word before it and is unchanged by its neighbours. */
  private findBoundary(text: string, from: number, b: number): number {
    const mask = this.boundaryMask;
    const clean = this.opts.cleanText;
    for (let i = from; i < b; i++) {
      const f = FLAGS[text.charCodeAt(i)] as number;
      if ((f & mask) !== 0 && !(clean && (f & F_OTHER) !== 0)) return i;
    }
    return b;
  }

  // ---------------------------------------------------------------- normalizer

  private normalizeAscii(c: number): number {
    const { cleanText, lowercase } = this.opts;
    if (cleanText) {
      if (c === 9 || c === 10 || c === 13) return 32;
      if (c < 32 || c === 127) return -1;
    }
    if (lowercase && c >= 65 && c <= 90) return c + 32;
    return c;
  }

  /** Normalizes text[p, q) into this.norm; returns its length. */
  private normalize(text: string, p: number, q: number): number {
    if (this.norm.length < q - p) this.norm = new Uint16Array(Math.max(q - p, this.norm.length * 2));
    const norm = this.norm;
    const ascii = this.asciiMap;
    let n = 0;
    for (let i = p; i < q; i++) {
      const c = text.charCodeAt(i);
      if (c < 128) {
        const m = ascii[c] as number;
        if (m >= 0) norm[n++] = m;
        continue;
      }
      let j = i + 1;
      while (j < q && text.charCodeAt(j) >= 128) j++;
      n = this.normalizeRun(text, i, j, n, q - j);
      if (this.norm !== norm) return this.normalizeRest(text, j, q, n);
      i = j - 1;
    }
    return n;
  }

  /** normalize() after its buffer was replaced: the same loop over the rest, on the new buffer. */
  private normalizeRest(text: string, p: number, q: number, n0: number): number {
    let n = n0;
    for (let i = p; i < q; i++) {
      const c = text.charCodeAt(i);
      if (c < 128) {
        const m = this.asciiMap[c] as number;
        if (m >= 0) (this.norm as Uint16Array)[n++] = m;
        continue;
      }
      let j = i + 1;
      while (j < q && text.charCodeAt(j) >= 128) j++;
      n = this.normalizeRun(text, i, j, n, q - j);
      i = j - 1;
    }
    return n;
  }

  /**
   * Normalizes the non-ASCII run text[i, j) into this.norm at n (room kept for `after` more code
   * units); returns the new length. Long runs (a word of several MB without ASCII in it...) go in
   * pieces, cut before characters of canonical combining class 0, across which NFD never reorders. A
   * run with no such character for MAX_PIECE code units (emoji, marks: not text) is cut there anyway,
   * so that NFD's reordering (quadratic in V8 on a long run of marks) only ever sees a bounded piece.
   * Each piece goes straight into the buffer: no string of the whole run is built.
   */
  private normalizeRun(text: string, i: number, j: number, n: number, after: number): number {
    let a = i;
    let at = n;
    while (j - a > RUN_CACHE_MAX_KEY) {
      const lim = Math.min(j, a + MAX_PIECE);
      let k = a + RUN_PIECE;
      while (k < lim && !isStarter(text.charCodeAt(k))) k++;
      if (k >= j) break;
      const c = text.charCodeAt(k);
      if (c >= 0xdc00 && c <= 0xdfff) k--; // not between the halves of a surrogate pair
      at = this.append(this.normalizePiece(text, a, k), at, j - k + after);
      a = k;
    }
    return this.append(this.normalizePiece(text, a, j), at, after);
  }

  /** Copies s into this.norm at n, growing it to keep `after` more code units of room. */
  private append(s: string, n: number, after: number): number {
    let norm = this.norm;
    if (n + s.length + after > norm.length) {
      const next = new Uint16Array((n + s.length + after) * 2);
      next.set(norm.subarray(0, n));
      this.norm = norm = next;
    }
    let k = n;
    for (let x = 0; x < s.length; x++) norm[k++] = s.charCodeAt(x);
    return k;
  }

  /** One piece of a run, through the cache when it is short. */
  private normalizePiece(text: string, i: number, j: number): string {
    const s = text.slice(i, j);
    if (j - i > RUN_CACHE_MAX_KEY) return this.normalizeGeneral(s);
    let r = this.runCache.get(s);
    if (r === undefined) {
      r = this.normalizeGeneral(s);
      if (this.runCache.size >= RUN_CACHE_MAX_SIZE) this.runCache.clear();
      // A slice of 13+ code units points into the caller's text: a copy as the key, so that the cache
      // never keeps a document of many MB alive.
      this.runCache.set(` ${s}`.slice(1), r);
    }
    return r;
  }

  /** BertNormalizer on any string (code point by code point, NFD over the whole run). */
  private normalizeGeneral(s: string): string {
    const { cleanText, handleChineseChars, stripAccents, lowercase } = this.opts;
    let out = '';
    for (let k = 0; k < s.length; k++) {
      let cp = s.charCodeAt(k);
      if (cp >= 0xd800 && cp <= 0xdfff) {
        const lo = k + 1 < s.length ? s.charCodeAt(k + 1) : 0;
        if (cp <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) {
          cp = ((cp - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
          k++;
        } else {
          cp = 0xfffd; // lone surrogate
        }
      }
      const f = flagsOf(cp);
      if (cleanText) {
        if (cp === 0 || cp === 0xfffd || (f & F_OTHER) !== 0) {
          if (cp === 9 || cp === 10 || cp === 13) out += ' ';
          continue;
        }
        if ((f & F_WHITESPACE) !== 0) {
          out += ' ';
          continue;
        }
      }
      const ch = String.fromCodePoint(cp);
      out += handleChineseChars && (f & F_CJK) !== 0 ? ` ${ch} ` : ch;
    }
    if (stripAccents) {
      const d = out.normalize('NFD');
      out = '';
      for (const ch of d) if ((flagsOf(ch.codePointAt(0) as number) & F_MARK) === 0) out += ch;
    }
    if (lowercase) {
      const src = out;
      out = '';
      for (const ch of src) out += lowerOf(ch.codePointAt(0) as number);
    }
    return out;
  }

  // ---------------------------------------------------------------- pre-tokenizer + WordPiece

  private pretokenize(len: number, out: IdBuffer, stop: number): void {
    const norm = this.norm;
    let i = 0;
    while (i < len && out.length < stop) {
      let f = FLAGS[norm[i] as number] as number;
      let w = 1;
      if ((f & F_HIGH) !== 0) {
        f = flagsOf(codePointAt(norm, i, len));
        w = 2;
      }
      if ((f & F_WHITESPACE) !== 0) {
        i += w;
        continue;
      }
      if ((f & F_PUNCT) !== 0) {
        this.wordPiece(i, i + w, out, w === 1 ? Math.imul(FNV_OFFSET ^ (norm[i] as number), FNV_PRIME) : 0);
        i += w;
        continue;
      }
      let h = FNV_OFFSET;
      for (let k = i; k < i + w; k++) h = Math.imul(h ^ (norm[k] as number), FNV_PRIME);
      let j = i + w;
      while (j < len) {
        const c = norm[j] as number;
        const g = FLAGS[c] as number;
        if ((g & (F_WHITESPACE | F_PUNCT)) !== 0) break;
        if ((g & F_HIGH) !== 0) {
          if ((flagsOf(codePointAt(norm, j, len)) & (F_WHITESPACE | F_PUNCT)) !== 0) break;
          h = Math.imul(h ^ c, FNV_PRIME);
          h = Math.imul(h ^ (norm[j + 1] as number), FNV_PRIME);
          j += 2;
        } else {
          h = Math.imul(h ^ c, FNV_PRIME);
          j++;
        }
      }
      this.wordPiece(i, j, out, h);
      i = j;
    }
  }

  /**
   * WordPiece of the word norm[a, b) (`hash`: FNV-1a of its code units): the word itself when the
   * vocabulary has it, else the greedy longest-prefix split, or one [UNK].
   */
  private wordPiece(a: number, b: number, out: IdBuffer, hash: number): void {
    const norm = this.norm;
    const n0 = b - a;
    // A word gives at most one id per code unit, and one [UNK] when it has more than maxChars.
    const room = (n0 <= this.maxChars ? n0 : 1) + 1;
    if (out.length + room > out.data.length) out.reserve(room);
    const data = out.data;
    if (n0 <= this.maxChars) {
      const wTab = this.wTab;
      const mask = this.wMask;
      for (let k = hash & mask; ; k = (k + 1) & mask) {
        const id = wTab[4 * k + 1] as number;
        if (id < 0) break;
        if (wTab[4 * k] === hash && wTab[4 * k + 3] === n0) {
          const off = (wTab[4 * k + 2] as number) - a;
          const chars = this.wChars;
          let i = a;
          while (i < b && chars[off + i] === norm[i]) i++;
          if (i === b) {
            data[out.length++] = id;
            return;
          }
        }
      }
    }
    if (b - a > this.maxChars) {
      let chars = b - a;
      for (let i = a; i < b; i++) {
        const c = norm[i] as number;
        if (c >= 0xdc00 && c <= 0xdfff) chars--;
      }
      if (chars > this.maxChars) {
        data[out.length++] = this.unkId;
        return;
      }
    }
    const tokId = this.tokId;
    const hTab = this.hTab;
    const shift = this.hShift;
    const mask = this.hMask;
    let n = out.length;
    let pos = a;
    let first = true;
    while (pos < b) {
      let node = (first ? this.rootNext : this.contNext)[norm[pos] as number] as number;
      let bestId = -1;
      let bestEnd = pos;
      let i = pos + 1;
      while (node >= 0) {
        const id = tokId[node] as number;
        if (id >= 0) {
          bestId = id;
          bestEnd = i;
        }
        if (i >= b) break;
        // Inlined child(node, c).
        const c = norm[i] as number;
        let h = Math.imul(Math.imul(node, 0x01000193) ^ c, 0x9e3779b1) >>> shift;
        let next = -1;
        for (;;) {
          const p = hTab[4 * h] as number;
          if (p === 0) break;
          if (p === node + 1 && hTab[4 * h + 1] === c) {
            next = hTab[4 * h + 2] as number;
            break;
          }
          h = (h + 1) & mask;
        }
        node = next;
        i++;
      }
      if (bestId < 0) {
        data[out.length] = this.unkId;
        out.length++;
        return;
      }
      data[n++] = bestId;
      pos = bestEnd;
      first = false;
    }
    out.length = n;
  }

  // ---------------------------------------------------------------- trie

  /** The slot of (node, c): where it is, or the empty slot where it would go. */
  private slot(node: number, c: number): number {
    const t = this.hTab;
    let h = Math.imul(Math.imul(node, 0x01000193) ^ c, 0x9e3779b1) >>> this.hShift;
    for (;;) {
      const p = t[4 * h] as number;
      if (p === 0 || (p === node + 1 && t[4 * h + 1] === c)) return h;
      h = (h + 1) & this.hMask;
    }
  }

  private child(node: number, c: number): number {
    const h = this.slot(node, c);
    return this.hTab[4 * h] === 0 ? -1 : (this.hTab[4 * h + 2] as number);
  }

  private insertChild(node: number, c: number): number {
    const h = this.slot(node, c);
    if (this.hTab[4 * h] !== 0) return this.hTab[4 * h + 2] as number;
    const id = this.nodeCount++;
    this.hTab[4 * h] = node + 1;
    this.hTab[4 * h + 1] = c;
    this.hTab[4 * h + 2] = id;
    return id;
  }

  private walk(node: number, s: string): number {
    let cur = node;
    for (let i = 0; i < s.length && cur >= 0; i++) cur = this.child(cur, s.charCodeAt(i));
    return cur;
  }
}

/**
 * Where a long run may be cut: characters of canonical combining class 0 that decompose to nothing
 * else (letters of a few scripts), and high surrogates - astral characters are emoji, CJK and symbols
 * of class 0 but for a few marks, which only move under NFD next to other marks in non-canonical order.
 */
function isStarter(c: number): boolean {
  return (
    (c >= 0xd800 && c <= 0xdbff) ||
    (c >= 0x0e01 && c <= 0x0e30) || // Thai consonants and vowels of class 0
    (c >= 0x0621 && c <= 0x064a) || // Arabic letters
    (c >= 0x05d0 && c <= 0x05ea) || // Hebrew letters
    (c >= 0x0915 && c <= 0x0939) || // Devanagari consonants
    (c >= 0x80 && c < 0x300) ||
    (c >= 0x400 && c <= 0x482) ||
    (c >= 0x48a && c <= 0x52f) ||
    (c >= 0x3041 && c <= 0x3096) ||
    (c >= 0x30a1 && c <= 0x30fa) ||
    (c >= 0x4e00 && c <= 0x9fff) ||
    (c >= 0xac00 && c <= 0xd7a3)
  );
}

function codePointAt(buf: Uint16Array, i: number, len: number): number {
  const hi = buf[i] as number;
  const lo = i + 1 < len ? (buf[i + 1] as number) : 0;
  return ((hi - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
}
