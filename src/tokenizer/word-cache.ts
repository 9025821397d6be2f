/**
 * Ids of recently seen words, looked up straight from a span of the text (FNV-1a over its UTF-16
 * code units) without slicing a string or allocating: most words of a corpus repeat, and a Map of
 * strings to Int32Arrays cost more per word than tokenizing it again. Bounded: when the table is
 * half full or its pools are spent it starts over, keeping the words looked up since the last start
 * (up to a quarter of the table), so that the frequent words of a long stream of new text are not
 * all tokenized again each time (with a pretrained vocabulary a missed word costs over ten hits).
 *
 * A lookup is memory-bound (tens of thousands of distinct words do not fit a core's cache), so a
 * word of up to INLINE_CHARS code units and INLINE_IDS ids - nearly every word of real text - lives
 * whole in its 64-byte slot: hash, lengths, code units and ids in one cache line. Longer ones keep
 * their code units and ids in two pools, which a hit then reads too.
 */
import type { IdBuffer } from './ids';

export const FNV_OFFSET = 0x811c9dc5 | 0;
export const FNV_PRIME = 0x01000193;
/** Longer words are not cached (rare, and they would crowd the pools). */
export const WORD_CACHE_MAX_KEY = 64;

// Up to 131,072 words in 2^18 slots of 64 bytes (16 MB) plus 4 MB of pools: MS MARCO-like text has
// ~38,000 distinct words per 2,000 pairs and ~134,000 per 24,000; with half that room, a stream of
// new pairs missed twice as many words (9% instead of 4%, nearly all of them new words).
const SLOT_BITS = 18;
const SLOT_INTS = 16;
/** Slot layout: [hash, meta, 6 ints of code units (2 a int), 8 ids]; meta 0 = empty. */
const CHARS_AT = 2;
const IDS_AT = 8;
const INLINE_CHARS = 12;
const INLINE_IDS = 8;
/** meta = chars | ids << 8 | POOLED (then ints 2 and 3 are the offsets into the pools). */
const POOLED = 1 << 16;
/** Set in meta when a get() finds the word: it survives the next start-over. */
const HIT = 1 << 17;
const CHAR_POOL = 1 << 20;
const ID_POOL = 1 << 19;

// Module-local copies: an imported binding is read through a checked cell (a getter call when the
// module is run through tsx) on every use, which shows in these per-character loops.
const OFFSET = FNV_OFFSET;
const PRIME = FNV_PRIME;

export function hashSpan(s: string, a: number, b: number): number {
  let h = OFFSET;
  for (let k = a; k < b; k++) h = Math.imul(h ^ s.charCodeAt(k), PRIME);
  return h;
}

export class WordCache {
  private slots = new Int32Array(SLOT_INTS << SLOT_BITS);
  private readonly chars = new Uint16Array(CHAR_POOL);
  private readonly ids = new Int32Array(ID_POOL);
  private readonly mask = (1 << SLOT_BITS) - 1;
  private charUsed = 0;
  private idUsed = 0;
  private count = 0;

  /** Appends the cached ids of s[a, b) (hash h) to out and returns true, or returns false. */
  get(s: string, a: number, b: number, h: number, out: IdBuffer): boolean {
    const slots = this.slots;
    const n = b - a;
    for (let k = h & this.mask; ; k = (k + 1) & this.mask) {
      const at = k * SLOT_INTS;
      const meta = slots[at + 1] as number;
      if (meta === 0) return false;
      if (slots[at] !== h || (meta & 0xff) !== n) continue;
      if ((meta & POOLED) === 0) {
        if (!sameInline(slots, at + CHARS_AT, s, a, n)) continue;
        if ((meta & HIT) === 0) slots[at + 1] = meta | HIT;
        const m = (meta >> 8) & 0xff;
        const data = out.reserve(m);
        let o = out.length;
        for (let i = at + IDS_AT, e = i + m; i < e; i++) data[o++] = slots[i] as number;
        out.length = o;
        return true;
      }
      const off = slots[at + CHARS_AT] as number;
      const chars = this.chars;
      let eq = true;
      for (let i = 0; i < n; i++) {
        if (chars[off + i] !== s.charCodeAt(a + i)) {
          eq = false;
          break;
        }
      }
      if (!eq) continue;
      const idOff = slots[at + CHARS_AT + 1] as number;
      const m = (meta >> 8) & 0xff;
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
    if (n === 0 || n > WORD_CACHE_MAX_KEY || m > 0xff) return;
    const inline = n <= INLINE_CHARS && m <= INLINE_IDS;
    if (
      (this.count + 1) * 2 > this.mask + 1 ||
      (!inline && (this.charUsed + n > CHAR_POOL || this.idUsed + m > ID_POOL))
    ) {
      this.startOver();
    }
    const slots = this.slots;
    let k = h & this.mask;
    while ((slots[k * SLOT_INTS + 1] as number) !== 0) k = (k + 1) & this.mask;
    const at = k * SLOT_INTS;
    slots[at] = h;
    if (inline) {
      slots[at + 1] = n | (m << 8);
      for (let i = 0; i < n; i += 2) {
        const hi = i + 1 < n ? s.charCodeAt(a + i + 1) : 0;
        slots[at + CHARS_AT + (i >> 1)] = s.charCodeAt(a + i) | (hi << 16);
      }
      for (let i = 0; i < m; i++) slots[at + IDS_AT + i] = ids[from + i] as number;
    } else {
      slots[at + 1] = n | (m << 8) | POOLED;
      slots[at + CHARS_AT] = this.charUsed;
      slots[at + CHARS_AT + 1] = this.idUsed;
      for (let i = 0; i < n; i++) this.chars[this.charUsed++] = s.charCodeAt(a + i);
      for (let i = from; i < to; i++) this.ids[this.idUsed++] = ids[i] as number;
    }
    this.count++;
  }

  /**
   * A new table holding the inline words found since the last start-over (at most a quarter of the
   * slots, so at least as many new words fit before the next one), with their marks cleared.
   */
  private startOver(): void {
    const old = this.slots;
    const slots = new Int32Array(old.length);
    const keep = (this.mask + 1) >> 2;
    let count = 0;
    for (let at = 0; at < old.length && count < keep; at += SLOT_INTS) {
      const meta = old[at + 1] as number;
      if ((meta & HIT) === 0 || (meta & POOLED) !== 0) continue;
      let k = (old[at] as number) & this.mask;
      while ((slots[k * SLOT_INTS + 1] as number) !== 0) k = (k + 1) & this.mask;
      slots.set(old.subarray(at, at + SLOT_INTS), k * SLOT_INTS);
      slots[k * SLOT_INTS + 1] = meta & ~HIT;
      count++;
    }
    this.slots = slots;
    this.count = count;
    this.charUsed = 0;
    this.idUsed = 0;
  }
}

/** Whether s[a, a + n) is the code units packed two to an int at slots[at...] (zero-padded). */
function sameInline(slots: Int32Array, at: number, s: string, a: number, n: number): boolean {
  let i = 0;
  for (; i + 1 < n; i += 2) {
    if (slots[at + (i >> 1)] !== (s.charCodeAt(a + i) | (s.charCodeAt(a + i + 1) << 16))) return false;
  }
  return i === n || slots[at + (i >> 1)] === s.charCodeAt(a + i);
}
