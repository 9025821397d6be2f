/**
 * Character classes exactly as Hugging Face `tokenizers` (Rust) uses them in BertNormalizer and
 * BertPreTokenizer. The general categories come from the `unicode_categories` 0.1.1 crate (frozen at
 * an old Unicode version, see unicode-data.ts); whitespace is Rust's `char::is_whitespace`.
 *
 * Everything in the BMP is answered by one Uint8Array lookup; astral code points (rare) fall back to a
 * binary search over the range lists.
 */
import { MARK_NONSPACING_RANGES, OTHER_RANGES, PUNCTUATION_RANGES } from './unicode-data';

/** Rust `char::is_whitespace` (the White_Space property). */
export const F_WHITESPACE = 1;
/** `is_ascii_punctuation() || unicode_categories::is_punctuation()`: BertPreTokenizer isolates these. */
export const F_PUNCT = 2;
/** Cc, Cf, Co: BertNormalizer's clean_text removes these (except \t \n \r, which become spaces). */
export const F_OTHER = 4;
/** Mn: strip_accents drops these after NFD. */
export const F_MARK = 8;
/** BMP part of BertNormalizer's "Chinese character" blocks: padded with spaces. */
export const F_CJK = 16;
/** High surrogate: the code point is astral and must be decoded before classifying. */
export const F_HIGH = 32;

const WHITESPACE: readonly number[] = [
  0x09, 0x0d, 0x20, 0x20, 0x85, 0x85, 0xa0, 0xa0, 0x1680, 0x1680, 0x2000, 0x200a, 0x2028, 0x2029, 0x202f,
  0x202f, 0x205f, 0x205f, 0x3000, 0x3000,
];
const CJK: readonly number[] = [
  0x3400, 0x4dbf, 0x4e00, 0x9fff, 0xf900, 0xfaff, 0x20000, 0x2a6df, 0x2a700, 0x2b73f, 0x2b740, 0x2b81f,
  0x2b920, 0x2ceaf, 0x2f800, 0x2fa1f,
];

/** Flags of every BMP code unit. */
export const FLAGS: Uint8Array = buildFlags();

function buildFlags(): Uint8Array {
  const t = new Uint8Array(0x10000);
  const mark = (ranges: readonly number[], flag: number): void => {
    for (let i = 0; i + 1 < ranges.length; i += 2) {
      const lo = ranges[i] as number;
      const hi = Math.min(ranges[i + 1] as number, 0xffff);
      for (let c = lo; c <= hi; c++) t[c] = (t[c] as number) | flag;
    }
  };
  mark(WHITESPACE, F_WHITESPACE);
  mark(PUNCTUATION_RANGES, F_PUNCT);
  mark(OTHER_RANGES, F_OTHER);
  mark(MARK_NONSPACING_RANGES, F_MARK);
  mark(CJK, F_CJK);
  mark([0xd800, 0xdbff], F_HIGH);
  for (let c = 0x21; c < 0x7f; c++) {
    const isAlnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (!isAlnum) t[c] = (t[c] as number) | F_PUNCT; // Rust is_ascii_punctuation: $ + < = > ^ ` | ~ too
  }
  return t;
}

function inRanges(ranges: readonly number[], cp: number): boolean {
  let lo = 0;
  let hi = (ranges.length >> 1) - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < (ranges[2 * mid] as number)) hi = mid - 1;
    else if (cp > (ranges[2 * mid + 1] as number)) lo = mid + 1;
    else return true;
  }
  return false;
}

/** Flags of any code point (astral ones by binary search). */
export function flagsOf(cp: number): number {
  if (cp < 0x10000) return FLAGS[cp] as number;
  let f = 0;
  if (inRanges(PUNCTUATION_RANGES, cp)) f |= F_PUNCT;
  if (inRanges(OTHER_RANGES, cp)) f |= F_OTHER;
  if (inRanges(MARK_NONSPACING_RANGES, cp)) f |= F_MARK;
  if (inRanges(CJK, cp)) f |= F_CJK;
  return f;
}

const lowerCache = new Map<number, string>();

/**
 * Rust `char::to_lowercase` of one code point. JavaScript's toLowerCase on a lone character is the
 * same full mapping (e.g. U+0130 -> "i\u0307") with no Final_Sigma context, which is what
 * NormalizedString::lowercase does char by char.
 */
export function lowerOf(cp: number): string {
  let s = lowerCache.get(cp);
  if (s === undefined) {
    s = String.fromCodePoint(cp).toLowerCase();
    if (lowerCache.size < 0x10000) lowerCache.set(cp, s); // bounded: adversarial text cannot grow it
  }
  return s;
}
