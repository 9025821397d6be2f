/**
 * Ids of recently seen words, looked up straight from a span of the text (FNV-1a over its UTF-16
 * code units) without slicing a string or allocating: most words of a corpus repeat, and a Map of
 * strings to Int32Arrays cost more per word than tokenizing it again. Bounded: when the table is
 * half full or its pools are spent it starts over.
 */
import type { IdBuffer } from './ids';

export const FNV_OFFSET = 0x811c9dc5 | 0;
export const FNV_PRIME = 0x01000193;
/** Longer words are not cached (rare, and they would crowd the pools). */
export const WORD_CACHE_MAX_KEY = 64;

// Up to 65,536 words (about 10 MB): MS MARCO-like text has ~38,000 distinct words per 2,000 pairs.
const SLOT_BITS = 17;
const CHAR_POOL = 1 << 21;
const ID_POOL = 1 << 20;

export function hashSpan(s: string, a: number, b: number): number {
  let h = FNV_OFFSET;
  for (let k = a; k < b; k++) h = Math.imul(h ^ s.charCodeAt(k), FNV_PRIME);
  return h;
}

export class WordCache {
  /** 5 ints a slot: hash, char offset, char length (0 = empty), id offset, id count. */
  private readonly slots = new Int32Array(5 << SLOT_BITS);
  private readonly chars = new Uint16Array(CHAR_POOL);
  private readonly ids = new Int32Array(ID_POOL);
  private readonly mask = (1 << SLOT_BITS) - 1;
  private charUsed = 0;
  private idUsed = 0;
  private count = 0;

  /** Appends the cached ids of s[a, b) (hash h) to out and returns true, or returns false. */
  get(s: string, a: number, b: number, h: number, out: IdBuffer): boolean {
    const { slots, chars } = this;
    const n = b - a;
    for (let k = h & this.mask; ; k = (k + 1) & this.mask) {
      const at = 5 * k;
      const len = slots[at + 2] as number;
      if (len === 0) return false;
      if (slots[at] !== h || len !== n) continue;
      const off = slots[at + 1] as number;
      let eq = true;
      for (let i = 0; i < n; i++) {
        if (chars[off + i] !== s.charCodeAt(a + i)) {
          eq = false;
          break;
        }
      }
      if (!eq) continue;
      const idOff = slots[at + 3] as number;
      const m = slots[at + 4] as number;
      const data = out.reserve(m);
      const src = this.ids;
      let o = out.length;
      for (let i = 0; i < m; i++) data[o++] = src[idOff + i] as number;
      out.length = o;
      return true;
    }
  }

  /** Remembers ids[from, to) as the ids of s[a, b) (hash h, not cached yet). */
  set(s: string, a: number, b: number, h: number, ids: Int32Array, from: number, to: number): void {
    const n = b - a;
    const m = to - from;
    if (n === 0 || n > WORD_CACHE_MAX_KEY) return;
    if ((this.count + 1) * 2 > this.mask + 1 || this.charUsed + n > CHAR_POOL || this.idUsed + m > ID_POOL) {
      this.slots.fill(0);
      this.count = 0;
      this.charUsed = 0;
      this.idUsed = 0;
    }
    let k = h & this.mask;
    while ((this.slots[5 * k + 2] as number) !== 0) k = (k + 1) & this.mask;
    const at = 5 * k;
    this.slots[at] = h;
    this.slots[at + 1] = this.charUsed;
    this.slots[at + 2] = n;
    this.slots[at + 3] = this.idUsed;
    this.slots[at + 4] = m;
    for (let i = 0; i < n; i++) this.chars[this.charUsed++] = s.charCodeAt(a + i);
    for (let i = from; i < to; i++) this.ids[this.idUsed++] = ids[i] as number;
    this.count++;
  }
}
