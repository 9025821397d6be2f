/**
 * SentencePiece's `Precompiled` normalizer (the `precompiled_charsmap` of an nmt_nfkc model), applied
 * exactly as Hugging Face `tokenizers` does it through the `spm_precompiled` crate:
 *
 *  - the blob is a little-endian uint32 trie size in bytes, a Darts double-array trie over UTF-8 bytes
 *    of that size, then the replacement strings (NUL-terminated, UTF-8) the trie's values point into;
 *  - the text is walked grapheme by grapheme (extended grapheme clusters). A grapheme shorter than
 *    6 UTF-8 bytes is looked up whole; otherwise, or when it has no entry, each of its characters is
 *    looked up alone and kept unchanged when it has none;
 *  - a lookup takes the SHORTEST trie key that is a prefix of the chunk (not the longest, as
 *    sentencepiece itself does) and replaces the WHOLE chunk with it. That is what the crate does
 *    ("Yes, this is weird"), so it is what XLM-RoBERTa's fast tokenizer gives.
 *
 * ASCII text never needs a grapheme segmenter: between two ASCII characters there is always a
 * grapheme break except inside CR LF, so only the stretches around non-ASCII characters go through
 * Intl.Segmenter.
 */
import { TokenizerError } from '../errors';
import { LONE_SURROGATES } from './fields';

const MAX_CHARSMAP_BYTES = 64 << 20;
/** Graphemes of this many UTF-8 bytes or more are looked up character by character (the crate's rule). */
const WHOLE_GRAPHEME_BYTES = 6;
const GRAPHEME_CACHE_MAX = 20_000;
/**
 * Characters that can join a grapheme with a neighbour (Grapheme_Cluster_Break Extend, SpacingMark,
 * ZWJ, Prepend, Regional_Indicator, Hangul L/V/T/LV/LVT, CR): a stretch without any has one grapheme
 * per code point and needs no segmenter. Marks (\p{M}) cover most of Extend and SpacingMark; the rest
 * are listed.
 */
const JOINS =
  /\u200c|\u200d|[\r\p{M}\uff9e\uff9f\u0e33\u0eb3\u1100-\u11ff\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff\u0600-\u0605\u06dd\u070f\u0890\u0891\u08e2\u0d4e\u{110bd}\u{110cd}\u{111c2}\u{111c3}\u{1193f}\u{11941}\u{11a3a}\u{11a84}-\u{11a89}\u{11d46}\u{11f02}\u{13430}-\u{1343f}\u{1f1e6}-\u{1f1ff}\u{1f3fb}-\u{1f3ff}\u{e0000}-\u{e0fff}]/u;

export class PrecompiledCharsmap {
  private readonly trie: Uint32Array;
  private readonly pool: Uint8Array;
  private readonly decoded = new Map<number, string>();
  /** transform() of each single ASCII character: its replacement, or undefined when unchanged. */
  private readonly ascii: Array<string | undefined> = [];
  /** 1 for an ASCII character normalize() cannot pass over unread: one the charsmap maps, or CR (CR LF). */
  private readonly asciiStop = new Uint8Array(128);
  private readonly graphemeCache = new Map<string, string>();
  private readonly codePointCache = new Map<number, string | null>();
  private readonly utf8 = new Uint8Array(4 * 64);
  private segmenter: Intl.Segmenter | undefined;

  /** From the raw blob (tokenizer.json holds it base64-encoded). */
  constructor(blob: Uint8Array, where = 'precompiled_charsmap') {
    if (blob.length < 4 || blob.length > MAX_CHARSMAP_BYTES) {
      throw new TokenizerError(`${where}: ${blob.length} bytes is not a SentencePiece charsmap`);
    }
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const trieBytes = view.getUint32(0, true);
    if (trieBytes % 4 !== 0 || trieBytes === 0 || 4 + trieBytes > blob.length) {
      throw new TokenizerError(
        `${where}: its trie size (${trieBytes} bytes) does not fit the ${blob.length}-byte blob; the file is corrupt`,
      );
    }
    this.trie = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.trie.length; i++) this.trie[i] = view.getUint32(4 + 4 * i, true);
    this.pool = blob.slice(4 + trieBytes);
    for (let c = 0; c < 128; c++) {
      this.utf8[0] = c;
      this.ascii.push(this.lookup(this.utf8, 1));
      this.asciiStop[c] = this.ascii[c] !== undefined || c === 13 ? 1 : 0;
    }
  }

  /** Whether the charsmap changes this ASCII character on its own. */
  maps(c: number): boolean {
    return this.ascii[c] !== undefined;
  }

  static fromBase64(b64: string, where?: string): PrecompiledCharsmap {
    return new PrecompiledCharsmap(Buffer.from(b64, 'base64'), where);
  }

  /** The normalized text (lone surrogates read as U+FFFD). */
  normalize(text: string): string {
    const n = text.length;
    // Most text is ASCII the charsmap leaves alone: skip it without building anything. An ASCII
    // character before a non-ASCII one may start a grapheme with it, so the loop below starts there.
    const stop = this.asciiStop;
    let i = 0;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80 || stop[c] !== 0) break;
    }
    if (i === n) return text;
    if (i > 0 && text.charCodeAt(i) >= 0x80) i--;
    let out = '';
    let copied = 0; // text[copied, i) is unchanged and not yet in `out`
    while (i < n) {
      const c = text.charCodeAt(i);
      const next = i + 1 < n ? text.charCodeAt(i + 1) : 0;
      if (c < 0x80 && next < 0x80 && !(c === 13 && next === 10)) {
        const rep = this.ascii[c];
        if (rep !== undefined) {
          out += text.slice(copied, i) + rep;
          copied = i + 1;
        }
        i++;
        continue;
      }
      // A stretch up to the next certain grapheme break (two ASCII characters other than CR LF).
      let j = i + 1;
      while (j < n) {
        const a = text.charCodeAt(j - 1);
        const b = text.charCodeAt(j);
        if (a < 0x80 && b < 0x80 && !(a === 13 && b === 10)) break;
        j++;
      }
      out += text.slice(copied, i) + this.normalizeStretch(text.slice(i, j));
      copied = j;
      i = j;
    }
    return copied === 0 ? text : out + text.slice(copied);
  }

  private normalizeStretch(s: string): string {
    // A lone surrogate reads as U+FFFD: what any UTF-8 encoding of the JS string gives Python / Rust.
    s = s.replace(LONE_SURROGATES, '\ufffd');
    if (!JOINS.test(s)) return this.normalizeCodePoints(s);
    this.segmenter ??= new Intl.Segmenter(undefined, { granularity: 'grapheme' });
    let out = '';
    for (const { segment } of this.segmenter.segment(s)) out += this.grapheme(segment);
    return out;
  }

  /** A stretch where every code point is a grapheme of its own (no character in JOINS). */
  private normalizeCodePoints(s: string): string {
    let out = '';
    let copied = 0;
    for (let i = 0; i < s.length; ) {
      const cp = s.codePointAt(i) as number;
      const w = cp > 0xffff ? 2 : 1;
      let rep = this.codePointCache.get(cp);
      if (rep === undefined) {
        rep = this.lookup(this.utf8, this.encode(s, i, i + w)) ?? null;
        if (this.codePointCache.size >= GRAPHEME_CACHE_MAX) this.codePointCache.clear();
        this.codePointCache.set(cp, rep);
      }
      if (rep !== null) {
        out += s.slice(copied, i) + rep;
        copied = i + w;
      }
      i += w;
    }
    return copied === 0 ? s : out + s.slice(copied);
  }

  private grapheme(g: string): string {
    const hit = this.graphemeCache.get(g);
    if (hit !== undefined) return hit;
    let res: string | undefined;
    const bytes = this.encode(g, 0, g.length);
    if (bytes < WHOLE_GRAPHEME_BYTES) res = this.lookup(this.utf8, bytes);
    if (res === undefined) {
      res = '';
      for (let k = 0; k < g.length; ) {
        const w = (g.codePointAt(k) as number) > 0xffff ? 2 : 1;
        const len = this.encode(g, k, k + w);
        res += this.lookup(this.utf8, len) ?? g.slice(k, k + w);
        k += w;
      }
    }
    if (this.graphemeCache.size >= GRAPHEME_CACHE_MAX) this.graphemeCache.clear();
    if (g.length <= 16) this.graphemeCache.set(g, res);
    return res;
  }

  /** UTF-8 of s[from, to) into this.utf8 (grown as needed); returns the byte count. */
  private encode(s: string, from: number, to: number): number {
    // Callers use the bytes only when there are fewer than 6 (or one character): past the buffer,
    // only the count matters, and any count >= 6 will do.
    const buf = this.utf8;
    let k = 0;
    for (let i = from; i < to; i++) {
      let cp = s.charCodeAt(i);
      if (cp >= 0xd800 && cp < 0xdc00 && i + 1 < to) {
        cp = s.codePointAt(i) as number;
        i++;
      }
      if (k + 4 > buf.length) return k + 4;
      if (cp < 0x80) buf[k++] = cp;
      else if (cp < 0x800) {
        buf[k++] = 0xc0 | (cp >> 6);
        buf[k++] = 0x80 | (cp & 63);
      } else if (cp < 0x10000) {
        buf[k++] = 0xe0 | (cp >> 12);
        buf[k++] = 0x80 | ((cp >> 6) & 63);
        buf[k++] = 0x80 | (cp & 63);
      } else {
        buf[k++] = 0xf0 | (cp >> 18);
        buf[k++] = 0x80 | ((cp >> 12) & 63);
        buf[k++] = 0x80 | ((cp >> 6) & 63);
        buf[k++] = 0x80 | (cp & 63);
      }
    }
    return k;
  }

  /** The replacement of the shortest trie key that prefixes bytes[0, len), if any (Darts walk). */
  private lookup(bytes: Uint8Array, len: number): string | undefined {
    const trie = this.trie;
    let pos = offsetOf(trie[0] as number);
    for (let i = 0; i < len; i++) {
      const c = bytes[i] as number;
      if (c === 0) return undefined;
      pos ^= c;
      if (pos >= trie.length) return undefined;
      const unit = trie[pos] as number;
      if ((unit & 0x800000ff) >>> 0 !== c) return undefined;
      pos ^= offsetOf(unit);
      if (pos >= trie.length) return undefined;
      if ((unit >>> 8) & 1) return this.replacement((trie[pos] as number) & 0x7fffffff);
    }
    return undefined;
  }

  private replacement(at: number): string {
    let s = this.decoded.get(at);
    if (s === undefined) {
      let end = at;
      while (end < this.pool.length && this.pool[end] !== 0) end++;
      s = Buffer.from(this.pool.subarray(Math.min(at, this.pool.length), end)).toString('utf8');
      this.decoded.set(at, s);
    }
    return s;
  }
}

function offsetOf(unit: number): number {
  return (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
}
