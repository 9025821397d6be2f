/**
 * Shared by test/tokenizer-unigram.test.ts and test/tokenizer-bpe.test.ts: the committed family
 * tokenizer fixtures and goldens (scripts/golden/make_family_tokenizers.py), the Rust `tokenizers`
 * binding as a second oracle, and random hostile text.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Tokenizer, type TokenizerOptions, type Truncation } from '../../src/tokenizer';
import { seededRandom } from '../../src/workload';

export const FAMILY_FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'families', 'tokenizer');

export interface GoldenCase {
  q: string;
  d: string;
  maxLength: number;
  truncation: Truncation;
  ids?: number[];
  typeIds?: number[];
  error?: string;
  fileIds?: number[];
}
export interface Golden {
  reference: string;
  transformersNormalizer: unknown;
  transformersPreTokenizer: unknown;
  fileDiffers: number;
  cases: GoldenCase[];
}

export function readGolden(kind: 'unigram' | 'bpe'): Golden {
  return JSON.parse(
    gunzipSync(readFileSync(join(FAMILY_FIXTURES, `golden-${kind}.json.gz`))).toString('utf8'),
  );
}

export function readTokenizerJson(kind: 'unigram' | 'bpe'): Record<string, unknown> {
  return JSON.parse(readFileSync(join(FAMILY_FIXTURES, kind, 'tokenizer.json'), 'utf8'));
}

export function readConfig(kind: 'unigram' | 'bpe'): Record<string, unknown> {
  const dir = join(FAMILY_FIXTURES, kind);
  return {
    ...JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')),
    ...JSON.parse(readFileSync(join(dir, 'special_tokens_map.json'), 'utf8')),
  };
}

export function loadFamily(kind: 'unigram' | 'bpe', options?: TokenizerOptions): Tokenizer {
  return Tokenizer.fromTokenizerJson(readTokenizerJson(kind), readConfig(kind), options);
}

interface RustTok {
  encode(a: string, b?: string | null, o?: { addSpecialTokens?: boolean }): Promise<{ getIds(): number[] }>;
}
/** Hugging Face's Rust `tokenizers` (npm binding) on a tokenizer.json, no truncation: ids of one text. */
export function rustFrom(json: Record<string, unknown>): { ids(text: string): Promise<number[]> } {
  const require = createRequire(import.meta.url);
  const { Tokenizer } = require('tokenizers') as { Tokenizer: { fromString(s: string): RustTok } };
  const t = Tokenizer.fromString(JSON.stringify(json));
  return { ids: (text) => t.encode(text, null, { addSpecialTokens: false }).then((e) => e.getIds()) };
}

/** Random strings mixing scripts, marks, spaces, controls, punctuation, astral chars and specials. */
export function hostileSoup(count: number, seed: number, specials: string): string[] {
  const pools = [
    'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
    '     ',
    ' \t\n\r\x0b\x0c\x00\x01\x1f\x7f\x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000\u200b\u200c\u200d\u2060\ufeff\u00ad\ufffd\u180e',
    '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»‘’“”„‹›—–…·•§¶†‡※‼。、，！？「」『』',
    "'s 't 're 've 'm 'll 'd 'S",
    'àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿĀāĂăĄąĆćČčĎďĒēĖėĘęĚěĞğĪīİıĶķĹĺĽľŁłŃńŇňŌōŐőŒœẞßǅǈǋﬁ',
    '\u0300\u0301\u0302\u0303\u0308\u030a\u0327\u0328\u0323\u05b0\u064b\u0670\u093c\u094d\u0e31\u0e34\u20d0\u1abf\ufe20',
    '你好世界中文字符漢字日本語𠀀𠀁𪜀ひらがなカタカナ한국어각㍻㌀①Ⅻ',
    'مرحبا بالعالم नमस्ते क्षत्रिय ไทย ελληνικά русский עברית',
    '😀👍🏽👨‍👩‍👧‍👦🇫🇷🥰\u{1D400}\u{1D7CE}\u{10100}\u{F0000}',
    '\u2581▁',
    specials,
  ].map((p) => [...p]);
  const r = seededRandom(seed);
  const out: string[] = [];
  for (let n = 0; n < count; n++) {
    let s = '';
    const len = Math.floor(r() * 50);
    for (let i = 0; i < len; i++) {
      const pool = pools[Math.floor(r() * pools.length)] as string[];
      const run = 1 + Math.floor(r() * 4);
      for (let k = 0; k < run; k++) s += pool[Math.floor(r() * pool.length)];
    }
    out.push(s);
  }
  return out;
}

export function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
