/**
 * SentencePiece Unigram tokenization as Hugging Face `tokenizers` runs it for XLM-RoBERTa:
 * Precompiled normalizer (./precompiled.ts), then either
 *  - transformers 5's reading (the default): WhitespaceSplit, then Metaspace on each word, or
 *  - the file as written (transformers 4's converter): Replace(" {2,}", " "), then Metaspace on the
 *    whole segment,
 * then the Unigram model (Viterbi over piece scores, unknown characters fused into one unk) on each
 * pre-token. See docs/tokenizers.md for where the two readings differ.
 *
 * The lattice is built over UTF-16 code units stepping by code point, which has the same nodes and
 * edges as the Rust one over UTF-8 bytes stepping by char; scores are float64 in both, summed in the
 * same order, and ties keep the first candidate (shorter pieces first, the unk edge last), as in Rust.
 */
import { LONE_SURROGATE, LONE_SURROGATES } from './fields';
import type { IdBuffer } from './ids';
import { fail } from './pair';
import { PieceTrie } from './piece-trie';
import type { PrecompiledCharsmap } from './precompiled';
import * as W from './word-cache';

// Module-local copies: an imported binding is read through a checked cell (a getter call when run
// through tsx) on every use, which shows in the per-character loops below.
const FNV_OFFSET = W.FNV_OFFSET;
const FNV_PRIME = W.FNV_PRIME;
const WordCache = W.WordCache;

/** `tokenizers`' K_UNK_PENALTY: an unknown character scores the lowest piece score minus this. */
const UNK_PENALTY = 10;
const METASPACE = 0x2581; // ▁
export const MAX_PIECES = 2_000_000;
const MAX_PIECE_LENGTH = 256;
/** Total characters over all pieces: bounds the trie before it is built (XLM-R's 250k pieces: ~1.7M). */
export const MAX_PIECE_CHARS = 32_000_000;

export type PrependScheme = 'always' | 'first' | 'never';

/** Rust's char::is_whitespace (Unicode White_Space), which WhitespaceSplit splits on. */
export function isRustWhitespace(c: number): boolean {
  if (c <= 32) return c === 32 || (c >= 9 && c <= 13);
  if (c < 0x85) return false;
  return (
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

export interface UnigramSpec {
  pieces: ReadonlyArray<readonly [string, number]>;
  unkId: number;
  byteFallback: boolean;
}

/** The Unigram model: one pre-token in, its ids out. */
export class UnigramModel {
  private readonly trie: PieceTrie;
  private readonly unkId: number;
  private readonly unkScore: number;
  private readonly byteIds: Int32Array | undefined;
  private best = new Float64Array(64);
  private from = new Int32Array(64);
  private idAt = new Int32Array(64);
  private path = new Int32Array(64);

  constructor(spec: UnigramSpec, where: string) {
    const n = spec.pieces.length;
    if (n === 0 || n > MAX_PIECES) fail(where, `the Unigram vocabulary has ${n} pieces (1..${MAX_PIECES})`);
    if (!(spec.unkId >= 0 && spec.unkId < n)) fail(where, `unk_id ${spec.unkId} is not a piece id`);
    const scores = new Float64Array(n);
    const strings: string[] = new Array(n);
    let chars = 0;
    let minScore = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const [piece, score] = spec.pieces[i] as readonly [string, number];
      if (piece.length === 0 || piece.length > MAX_PIECE_LENGTH) {
        fail(where, `piece ${i} has length ${piece.length} (1..${MAX_PIECE_LENGTH})`);
      }
      scores[i] = score;
      strings[i] = piece;
      if (score < minScore) minScore = score;
      chars += piece.length;
    }
    if (chars > MAX_PIECE_CHARS)
      fail(where, `the pieces hold ${chars} characters (at most ${MAX_PIECE_CHARS})`);
    this.trie = new PieceTrie(strings, scores);
    this.unkId = spec.unkId;
    this.unkScore = minScore - UNK_PENALTY;
    if (spec.byteFallback) {
      this.byteIds = new Int32Array(256);
      for (let b = 0; b < 256; b++) {
        this.byteIds[b] = this.lookup(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      }
    }
  }

  /** The id of a whole piece, or -1. */
  lookup(piece: string): number {
    return this.trie.lookup(piece);
  }

  /** Viterbi over s[start, end), ids appended to out (consecutive unknowns fused, as fuse_unk does). */
  encode(s: string, start: number, end: number, out: IdBuffer): void {
    const len = end - start;
    if (len === 0) return;
    if (this.best.length <= len) {
      const cap = Math.max(len + 1, this.best.length * 2);
      this.best = new Float64Array(cap);
      this.from = new Int32Array(cap);
      this.idAt = new Int32Array(cap);
      this.path = new Int32Array(cap);
    }
    const { best, from, idAt, trie } = this;
    from.fill(-1, 0, len + 1);
    best[0] = 0;
    for (let at = 0; at < len; ) {
      const here = best[at] as number;
      const c = s.charCodeAt(start + at);
      const charLen = c >= 0xd800 && c < 0xdc00 && at + 1 < len ? 2 : 1;
      let single = false;
      let node = 0;
      for (let k = at; k < len; k++) {
        node = k === at ? trie.rootChild(c) : trie.child(node, s.charCodeAt(start + k));
        if (node < 0) break;
        const id = trie.pieceAt(node);
        if (id < 0) continue;
        const to = k + 1;
        const score = here + trie.scoreAt(node);
        if (from[to] === -1 || score > (best[to] as number)) {
          best[to] = score;
          from[to] = at;
          idAt[to] = id;
        }
        if (to - at === charLen) single = true;
      }
      if (!single) {
        const to = at + charLen;
        const score = here + this.unkScore;
        if (from[to] === -1 || score > (best[to] as number)) {
          best[to] = score;
          from[to] = at;
          idAt[to] = this.unkId;
        }
      }
      at += charLen;
    }
    // Back from the end: the path's end positions, then ids in order.
    const path = this.path;
    let np = 0;
    for (let e = len; e > 0; e = from[e] as number) path[np++] = e;
    let begin = 0;
    for (let i = np - 1; i >= 0; i--) {
      const e = path[i] as number;
      const id = idAt[e] as number;
      if (id === this.unkId) {
        let last = e;
        while (i > 0 && idAt[path[i - 1] as number] === this.unkId) last = path[--i] as number;
        this.pushUnknown(s, start + begin, start + last, out);
        begin = last;
        continue;
      }
      const data = out.reserve(1);
      data[out.length++] = id;
      begin = e;
    }
  }

  private pushUnknown(s: string, from: number, to: number, out: IdBuffer): void {
    if (this.byteIds !== undefined) {
      const bytes = Buffer.from(s.slice(from, to), 'utf8');
      let ok = true;
      for (const b of bytes) if ((this.byteIds[b] as number) < 0) ok = false;
      if (ok) {
        const data = out.reserve(bytes.length);
        for (const b of bytes) data[out.length++] = this.byteIds[b] as number;
        return;
      }
    }
    const data = out.reserve(1);
    data[out.length++] = this.unkId;
  }
}

export interface UnigramPipelineSpec {
  model: UnigramSpec;
  charsmap: PrecompiledCharsmap | undefined;
  /** true: transformers 5 (WhitespaceSplit + Metaspace); false: the file as written (Replace + Metaspace). */
  whitespaceSplit: boolean;
  /** Replace(" {2,}", " ") after the charsmap (the file as written). */
  collapseSpaces: boolean;
  prependScheme: PrependScheme;
  split: boolean;
}

/** Normalizer + pre-tokenizer + model for a text segment between added tokens. */
export class UnigramPipeline {
  private readonly model: UnigramModel;
  private readonly cache = new WordCache();

  constructor(
    private readonly spec: UnigramPipelineSpec,
    where: string,
  ) {
    this.model = new UnigramModel(spec.model, where);
  }

  /** The id of a whole piece, or -1. */
  pieceId(piece: string): number {
    return this.model.lookup(piece);
  }

  /** A cut before text[p] leaves every pre-token and normalization the same (see families.ts). */
  safeCut(text: string, p: number): boolean {
    const prev = text.charCodeAt(p - 1);
    return (
      text.charCodeAt(p) === 32 &&
      prev < 0x80 &&
      prev !== 32 &&
      (this.spec.charsmap === undefined || this.spec.charsmap.maps(prev) === false)
    );
  }

  /**
   * Encodes text[start, end); `atTextStart` when it begins the whole text (prepend_scheme first).
   * Stops after the pre-token that brings out to `cap` ids.
   */
  encode(text: string, start: number, end: number, atTextStart: boolean, out: IdBuffer, cap: number): void {
    let norm = text.slice(start, end);
    if (this.spec.charsmap !== undefined) norm = this.spec.charsmap.normalize(norm);
    else if (LONE_SURROGATE.test(norm)) norm = norm.replace(LONE_SURROGATES, '\ufffd');
    if (!this.spec.whitespaceSplit) {
      if (this.spec.collapseSpaces && norm.includes('  ')) norm = norm.replace(/ {2,}/g, ' ');
      if (norm.includes(' ')) norm = norm.replaceAll(' ', '\u2581');
      this.metaspace(norm, atTextStart, out, cap, true);
      return;
    }
    const n = norm.length;
    const firstScheme = this.spec.prependScheme === 'first';
    let i = 0;
    while (i < n && out.length < cap) {
      let c = norm.charCodeAt(i);
      while (c <= 32 || c >= 0x85 ? isRustWhitespace(c) : false) {
        if (++i >= n) return;
        c = norm.charCodeAt(i);
      }
      let h = FNV_OFFSET;
      let j = i;
      for (; j < n; j++) {
        c = norm.charCodeAt(j);
        if (c <= 32 || c >= 0x85 ? isRustWhitespace(c) : false) break;
        h = Math.imul(h ^ c, FNV_PRIME);
      }
      const head = firstScheme && atTextStart && i === 0;
      if (!head && this.cache.get(norm, i, j, h, out)) {
        i = j;
        continue;
      }
      const before = out.length;
      const w = norm.slice(i, j);
      if (this.metaspace(w.includes(' ') ? w.replaceAll(' ', '\u2581') : w, head, out, cap, false) && !head) {
        this.cache.set(norm, i, j, h, out.data, before, out.length);
      }
      i = j;
    }
  }

  /**
   * Metaspace on s (spaces already ▁): the prepend scheme, then a pre-token before each ▁ (when
   * split). Returns false when it stopped early at `cap`. `cachePieces`: remember each pre-token's
   * ids (off when the caller caches the whole word, so a word takes one cache entry, not two).
   */
  private metaspace(
    s: string,
    atTextStart: boolean,
    out: IdBuffer,
    cap: number,
    cachePieces: boolean,
  ): boolean {
    if (s.length === 0) return true;
    const prepend =
      this.spec.prependScheme === 'always' || (this.spec.prependScheme === 'first' && atTextStart);
    if (prepend && s.charCodeAt(0) !== METASPACE) s = `\u2581${s}`;
    const n = s.length;
    if (!this.spec.split) {
      this.model.encode(s, 0, n, out);
      return true;
    }
    for (let i = 0; i < n; ) {
      let h = Math.imul(FNV_OFFSET ^ s.charCodeAt(i), FNV_PRIME);
      let j = i + 1;
      for (; j < n; j++) {
        const c = s.charCodeAt(j);
        if (c === METASPACE) break;
        h = Math.imul(h ^ c, FNV_PRIME);
      }
      if (!cachePieces) this.model.encode(s, i, j, out);
      else if (!this.cache.get(s, i, j, h, out)) {
        const before = out.length;
        this.model.encode(s, i, j, out);
        this.cache.set(s, i, j, h, out.data, before, out.length);
      }
      i = j;
      if (out.length >= cap && i < n) return false;
    }
    return true;
  }
}
