/**
 * Tokenizer parity and behaviour.
 *
 * Parity is checked against two independent references:
 *  - golden files written by transformers' BertTokenizerFast (scripts run where Python has it):
 *    test/fixtures/tokenizer/golden-{uncased,cased}.json.gz, through both loading paths;
 *  - Hugging Face's Rust `tokenizers` (npm binding, the implementation BertTokenizerFast runs) on
 *    generated MS MARCO-like pairs, hand-written edge cases and random Unicode soup.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError, TokenizerError } from '../src/errors';
import { type EncodeOptions, Tokenizer, type Truncation } from '../src/tokenizer';
import { bertUncasedVocab, msMarcoPairs, seededRandom } from '../src/workload';
import {
  type BertJsonOptions,
  bertTokenizerJson,
  rustEncodePairs,
  rustTokenizer,
  syntheticCasedVocab,
} from './helpers/tokenizer-oracle';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'tokenizer');
const uncasedVocab = bertUncasedVocab();
const casedVocab = syntheticCasedVocab(uncasedVocab);

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ------------------------------------------------------------------------------------------ corpus

const EDGE_TEXTS: string[] = [
  // accents and combining marks
  'Café naïve résumé Ångström façade',
  'e\u0301 a\u0308 o\u0302\u0323 u\u0308\u0301 combining',
  'İstanbul ıi ΣΊΣΥΦΟΣ σοφός straße ǅ Ǆ ﬁne',
  'Ꭰ ꭰ Ⅻ ⅻ Ⓐ ⓐ Ａｂｃ',
  // CJK and other scripts
  '我爱北京天安门 日本語のテキスト 한국어 텍스트 𠀀𠀁 丽',
  'مرحبا بالعالم العربية، ١٢٣',
  'नमस्ते दुनिया क्षत्रिय हिन्दी।',
  'ไทย ελληνικά русский ПРИВЕТ עברית ქართული',
  // emoji and other astral characters
  'I ❤️ 🍕 👨‍👩‍👧‍👦 🇫🇷 👍🏽 🥰 🪐',
  '𝐀𝐁𝐂 𝟎𝟏 𐄀 𞥞 mathematical',
  // control and zero-width characters
  'a\u0000b c\u0007d e\u007ff g\u0085h',
  'zero\u200bwidth joiner\u200dhere non\u200cjoiner word\u2060joiner',
  'soft\u00adhyphen bom\ufeffx rtl\u202emark lrm\u200e',
  'private\ue000use \u{F0000} replacement\ufffdchar',
  // NBSP and other Unicode spaces
  'a\u00a0b c\u2003d e\u3000f g\u202fh i\u205fj k\u1680l m\u2028n o\u2029p',
  'tab\tnew\nline\r\ncarriage\rreturn\u000bvt\u000cff',
  // punctuation
  '!!!???...;;;:::,,,',
  '--==>><<||~~^^``',
  '\'\'""«»‘’“”„‹›—–…¡¿※‼',
  '$100,000.00 e-mail@example.com C++ & C# 50% (a) [b] {c}',
  "U.S.A. Ph.D. i.e., e.g.; don't won't it's",
  // long words
  'a'.repeat(100),
  'a'.repeat(101),
  'supercalifragilisticexpialidocious'.repeat(3),
  'é'.repeat(101),
  '😀'.repeat(60),
  `${'b'.repeat(99)}é`,
  // empty and whitespace only
  '',
  ' ',
  '\n\t \r',
  '\u200b\u200b',
  '\u00a0\u3000',
  // special tokens written in the text
  '[CLS] [SEP] [MASK] [PAD] [UNK]',
  'x[SEP]y [cls] [[MASK]] [SEP',
  // numbers
  '3.14159 1,000,000 2nd 1990s 10km 5G',
];

function lengthen(s: string, words: number): string {
  const parts: string[] = [];
  let i = 0;
  while (parts.length < words) parts.push(`${s} ${i++}`);
  return parts.join(' ');
}

/** Query/document pairs: edge texts against each other and against long, truncation-forcing texts. */
function edgePairs(): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  const r = seededRandom(5);
  for (const q of EDGE_TEXTS) {
    for (let k = 0; k < 4; k++) pairs.push([q, EDGE_TEXTS[Math.floor(r() * EDGE_TEXTS.length)] as string]);
    pairs.push([q, lengthen(q || 'filler', 120)]);
    pairs.push([lengthen(q || 'query', 40), q]);
  }
  const [a, b] = msMarcoPairs(1, 9)[0] as [string, string];
  for (const n of [10, 20, 40, 100, 300, 600]) {
    pairs.push([lengthen(a, n), b], [a, lengthen(b, n)], [lengthen(a, n), lengthen(b, n + 3)]);
  }
  return pairs;
}

/** Random strings from a mixture of scripts, marks, spaces, controls, punctuation and astral chars. */
function unicodeSoup(count: number, seed: number): string[] {
  const pools = [
    'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
    ' \t\n\r\x0b\x0c\x00\x01\x1f\x7f\x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000\u200b\u200c\u200d\u2060\ufeff\u00ad\ufffd\u180e',
    '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»‘’“”„‹›—–…·•§¶†‡※‼⁇⁈⁉。、，！？：；「」『』【】〈〉《》',
    'àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿĀāĂăĄąĆćČčĎďĒēĖėĘęĚěĞğĪīİıĶķĹĺĽľŁłŃńŇňŌōŐőŒœŔŕŘřŚśŞşŠšŢţŤťẞßǅǈǋ',
    '\u0300\u0301\u0302\u0303\u0308\u030a\u0327\u0328\u0323\u0331\u05b0\u064b\u0670\u093c\u094d\u0e31\u0e34\u20d0\u0d00\u1abf\u1dfa\ufe20',
    '你好世界中文字符漢字日本語𠀀𠀁𪜀𫝀𬺰丽丸ひらがなカタカナ한국어',
    'مرحبا بالعالم العربية नमस्ते दुनिया हिन्दी ไทย ελληνικά ΣΊΣΥΦΟΣ русский ПРИВЕТ עברית',
    '😀😁👍🏽👨‍👩‍👧‍👦🇫🇷🥰🦄🧀🪐\u{1FAE0}\u{1D400}\u{1D7CE}\u{10100}\u{1E95E}\u{16FE2}\u{11A41}\u{E0041}\u{F0000}\u{10FFFD}',
    // assigned after the Unicode version of Rust's unicode_categories tables: JS /\p{..}/u disagrees
    '\u2e43\u2e4e\u2e52\u2e5d\u0d4f\u061d\u0890\u08e2\u{110cd}\u{13430}\u{1bca0}',
    '[CLS][SEP][MASK]',
  ].map((p) => [...p]);
  const r = seededRandom(seed);
  const out: string[] = [];
  for (let n = 0; n < count; n++) {
    let s = '';
    const len = 1 + Math.floor(r() * 60);
    for (let i = 0; i < len; i++) {
      const pool = pools[Math.floor(r() * pools.length)] as string[];
      s += pool[Math.floor(r() * pool.length)];
      if (r() < 0.1) s += ' ';
    }
    if (r() < 0.1) s += '\ud800'; // lone surrogates
    if (r() < 0.1) s = `\udc00${s}`;
    out.push(s);
  }
  // Long runs without ASCII (normalized in pieces) and long texts (normalized in windows).
  const nonAscii = pools.slice(3, 9).flat();
  for (let n = 0; n < 40; n++) {
    let s = '';
    const len = 200 + Math.floor(r() * 3000);
    for (let i = 0; i < len; i++) s += nonAscii[Math.floor(r() * nonAscii.length)];
    out.push(s, `${out[n] ?? ''} ${s} `.repeat(3));
  }
  return out;
}

// ------------------------------------------------------------------------------------------ oracle

interface Variant {
  name: string;
  vocab: string[];
  json: BertJsonOptions;
  config: Record<string, unknown>;
}

const VARIANTS: Variant[] = [
  { name: 'uncased', vocab: uncasedVocab, json: { lowercase: true }, config: { do_lower_case: true } },
  { name: 'cased', vocab: casedVocab, json: { lowercase: false }, config: { do_lower_case: false } },
  {
    name: 'lowercase, keep accents',
    vocab: uncasedVocab,
    json: { lowercase: true, stripAccents: false },
    config: { do_lower_case: true, strip_accents: false },
  },
  {
    name: 'cased, strip accents, no CJK split',
    vocab: casedVocab,
    json: { lowercase: false, stripAccents: true, handleChineseChars: false },
    config: { do_lower_case: false, strip_accents: true, tokenize_chinese_chars: false },
  },
];

describe.each(VARIANTS)('parity with Rust tokenizers: $name', (v) => {
  const json = bertTokenizerJson(v.vocab, v.json);
  const rust = rustTokenizer(json);
  const loaders: Array<[string, () => Tokenizer]> = [
    ['tokenizer.json', () => Tokenizer.fromTokenizerJson(json)],
    ['vocab.txt + config', () => Tokenizer.fromVocab(`${v.vocab.join('\n')}\n`, v.config)],
  ];

  it.each(loaders)('single texts, loaded from %s: edge cases and Unicode soup', async (_, load) => {
    const ours = load();
    const texts = [...EDGE_TEXTS, ...unicodeSoup(2500, 17)];
    const theirs = await Promise.all(texts.map((t) => rust.encode(t, null, { addSpecialTokens: false })));
    const bad = texts.filter(
      (t, i) => !same(ours.tokenize(t), (theirs[i] as { getIds(): number[] }).getIds()),
    );
    expect(bad.slice(0, 5)).toEqual([]);
  });

  // The Rust side is computed once per setting and shared by both loaders.
  const pairs = [...msMarcoPairs(300, 3), ...edgePairs()];
  const rustCache = new Map<string, ReturnType<typeof rustEncodePairs>>();
  const rustPairs = (maxLength: number, truncation: Truncation) => {
    const key = `${maxLength}/${truncation}`;
    let r = rustCache.get(key);
    if (r === undefined) {
      rust.setTruncation(maxLength, {
        strategy: truncation === 'only_second' ? 'OnlySecond' : 'LongestFirst',
      });
      r = rustEncodePairs(rust, pairs);
      rustCache.set(key, r);
    }
    return r;
  };
  const cases: Array<[number, Truncation]> = [
    [512, 'longest_first'],
    [128, 'longest_first'],
    [32, 'longest_first'],
    [31, 'longest_first'],
    [7, 'longest_first'],
    [128, 'only_second'],
    [32, 'only_second'],
  ];
  it.each(loaders)('pairs, loaded from %s, at 512/128/32/31/7 tokens, both truncations', async (_, load) => {
    const ours = load();
    let compared = 0;
    for (const [maxLength, truncation] of cases) {
      const theirs = await rustPairs(maxLength, truncation);
      const bad: unknown[] = [];
      pairs.forEach(([q, d], i) => {
        const t = theirs[i] as { ids: number[]; typeIds: number[] } | { error: string };
        let o: ReturnType<Tokenizer['encodePair']> | InputError;
        try {
          o = ours.encodePair(q, d, { maxLength, truncation });
        } catch (err) {
          o = err as InputError;
        }
        const ok =
          'error' in t
            ? o instanceof InputError // HF: "Sequence to truncate too short to respect the provided max_length"
            : !(o instanceof Error) && same(o.ids, t.ids) && same(o.typeIds, t.typeIds);
        if (!ok) bad.push({ maxLength, truncation, q: q.slice(0, 80), d: d.slice(0, 80) });
        compared++;
      });
      expect(bad.slice(0, 3)).toEqual([]);
    }
    expect(compared).toBe(pairs.length * cases.length);
  });
});

describe('encodeChunks', () => {
  const json = bertTokenizerJson(uncasedVocab, { lowercase: true });
  const ours = Tokenizer.fromTokenizerJson(json);

  // Hugging Face's overflowing windows are no reference here: tokenizers 0.23 stops encoding the
  // document after max_length tokens when truncation is on, so its windows never reach past that.
  it('the first window is the only_second encoding of the pair', () => {
    for (const [q, d] of msMarcoPairs(30, 21)) {
      const doc = `${d} ${d} ${d}`;
      for (const [maxLength, stride] of [
        [64, 16],
        [128, 0],
        [40, 10],
      ] as const) {
        const first = ours.encodeChunks(q, doc, { maxLength, stride })[0];
        expect(first).toEqual(ours.encodePair(q, doc, { maxLength, truncation: 'only_second' }));
      }
    }
  });

  it('windows cover the whole document, overlap by stride, and keep the query whole when it fits', () => {
    const [q, d] = msMarcoPairs(1, 4)[0] as [string, string];
    const doc = lengthen(d, 150); // ~87k code units: within what chunk mode reads (MAX_READ)
    const qIds = ours.tokenize(q);
    const dIds = Array.from(ours.tokenize(doc));
    const chunks = ours.encodeChunks(q, doc, { maxLength: 96, stride: 24 });
    const room = 96 - 3 - qIds.length;
    const rebuilt: number[] = [];
    chunks.forEach((c, i) => {
      expect(Array.from(c.ids.subarray(1, 1 + qIds.length))).toEqual(Array.from(qIds));
      const docPart = Array.from(c.ids.subarray(2 + qIds.length, c.ids.length - 1));
      expect(docPart).toEqual(dIds.slice(i * (room - 24), i * (room - 24) + docPart.length));
      rebuilt.splice(i * (room - 24), docPart.length, ...docPart);
      expect(c.truncated).toBe(true);
    });
    expect(rebuilt).toEqual(dIds);
  });

  it('an empty document gives one window; a huge query is cut to half the room; a stride too large is an InputError', () => {
    expect(
      ours.encodeChunks('hello', '', { maxLength: 16, stride: 4 }).map((c) => Array.from(c.ids)),
    ).toEqual([[ours.clsId, ...ours.tokenize('hello'), ours.sepId, ours.sepId]]);
    const long = ours.encodeChunks(lengthen('query', 100), 'short doc', { maxLength: 33, stride: 2 });
    expect(long[0]?.ids.length).toBe(1 + 15 + 1 + 2 + 1); // query floor(30 / 2) = 15 tokens
    expect(long[0]?.truncated).toBe(true);
    expect(() => ours.encodeChunks('q', 'd', { maxLength: 16, stride: 13 })).toThrow(InputError);
  });
});

// ------------------------------------------------------------------------------------------ truncation

describe('longest_first follows tokenizers/src/utils/truncation.rs', () => {
  const ours = Tokenizer.fromVocab(uncasedVocab);
  const text = (n: number) => Array.from({ length: n }, () => 'the').join(' ');

  // The table of truncate_encodings_longest_first in truncation.rs: max_length 7 for the two
  // sequences (so 10 with [CLS] [SEP] [SEP]), lengths 0 / 2 / 4 / 8.
  it.each([
    [0, 0, 0, 0],
    [0, 2, 0, 2],
    [0, 4, 0, 4],
    [0, 8, 0, 7],
    [2, 0, 2, 0],
    [2, 2, 2, 2],
    [2, 4, 2, 4],
    [2, 8, 2, 5],
    [4, 0, 4, 0],
    [4, 2, 4, 2],
    [4, 4, 3, 4],
    [4, 8, 3, 4],
    [8, 0, 7, 0],
    [8, 2, 5, 2],
    [8, 4, 4, 3],
    [8, 8, 3, 4],
  ])('%i + %i tokens -> %i + %i', (a, b, ea, eb) => {
    const e = ours.encodePair(text(a), text(b), { maxLength: 10 });
    const seps = [...e.ids.keys()].filter((i) => e.ids[i] === ours.sepId);
    expect(seps[0]).toBe(1 + ea);
    expect(e.ids.length).toBe(ea + eb + 3);
    expect(e.truncated).toBe(a + b > 7);
  });

  it('max_length 3 leaves only the specials; below that is an InputError', () => {
    expect(Array.from(ours.encodePair('a b', 'c', { maxLength: 3 }).ids)).toEqual([
      ours.clsId,
      ours.sepId,
      ours.sepId,
    ]);
    expect(() => ours.encodePair('a', 'b', { maxLength: 2 })).toThrow(InputError);
  });

  it('decides "longer" on lengths capped at maxLength, as tokenizers 0.23 does', () => {
    // room 29, maxLength 32: 60 and 40 tokens both count as 32, a tie, so the document gets the odd
    // token; 60 against 31 makes the query the longer one.
    expect(ours.encodePair(text(60), text(40), { maxLength: 32 }).ids.indexOf(ours.sepId)).toBe(15);
    expect(ours.encodePair(text(60), text(31), { maxLength: 32 }).ids.indexOf(ours.sepId)).toBe(16);
    expect(ours.encodePair(text(31), text(60), { maxLength: 32 }).ids.indexOf(ours.sepId)).toBe(15);
  });

  it('kept lengths equal the Rust tokenizer for every query/document length up to 14 and maxLength 3..14', async () => {
    const json = bertTokenizerJson(uncasedVocab, { lowercase: true });
    const rust = rustTokenizer(json);
    const pairs: Array<[string, string]> = [];
    for (let a = 0; a <= 14; a++) for (let b = 0; b <= 14; b++) pairs.push([text(a), text(b)]);
    for (let maxLength = 3; maxLength <= 14; maxLength++) {
      for (const truncation of ['longest_first', 'only_second'] as const) {
        rust.setTruncation(maxLength, {
          strategy: truncation === 'only_second' ? 'OnlySecond' : 'LongestFirst',
        });
        const theirs = await rustEncodePairs(rust, pairs);
        pairs.forEach(([q, d], i) => {
          const t = theirs[i] as { ids: number[] } | { error: string };
          let o: number[] | 'error';
          try {
            o = Array.from(ours.encodePair(q, d, { maxLength, truncation }).ids);
          } catch {
            o = 'error';
          }
          expect(o).toEqual('error' in t ? 'error' : t.ids);
        });
      }
    }
  });

  it('only_second: the query must leave room for a document token, else an InputError', () => {
    expect(() => ours.encodePair(text(29), 'doc', { maxLength: 32, truncation: 'only_second' })).toThrow(
      /no room for the document/,
    );
    const e = ours.encodePair(text(28), text(10), { maxLength: 32, truncation: 'only_second' });
    expect(e.ids.length).toBe(32);
    expect(e.truncated).toBe(true);
    expect(ours.encodePair(text(29), '', { maxLength: 32, truncation: 'only_second' }).truncated).toBe(false);
  });
});

// ------------------------------------------------------------------------------------------ batches

describe('encodePairs', () => {
  const ours = Tokenizer.fromVocab(uncasedVocab);
  it('packs exactly the concatenation of encodePair, with offsets and the truncated count', () => {
    const pairs = msMarcoPairs(50, 8);
    const opts: EncodeOptions = { maxLength: 64 };
    const batch = ours.encodePairs(pairs, opts);
    expect(batch.offsets.length).toBe(51);
    let truncated = 0;
    pairs.forEach(([q, d], i) => {
      const e = ours.encodePair(q, d, opts);
      if (e.truncated) truncated++;
      const a = batch.offsets[i] as number;
      const b = batch.offsets[i + 1] as number;
      expect(same(batch.tokens.subarray(a, b), e.ids)).toBe(true);
      expect(same(batch.typeIds.subarray(a, b), e.typeIds)).toBe(true);
    });
    expect(batch.truncated).toBe(truncated);
    expect(truncated).toBeGreaterThan(0);
    expect(batch.tokens.length).toBe(batch.offsets[50]);
    expect(ours.encodePairs([], opts).offsets).toEqual(new Int32Array([0]));
  });

  it('rejects what is not a list of string pairs, naming the place', () => {
    const opts = { maxLength: 32 };
    expect(() => ours.encodePairs('x' as never, opts)).toThrow(InputError);
    expect(() => ours.encodePairs([['q', 3]] as never, opts)).toThrow(
      /pairs\[0\]\[1\] \(document\) must be a string \(got the number 3\)/,
    );
    expect(() => ours.encodePairs([['q']] as never, opts)).toThrow(
      /pairs\[0\] must be a \[query, document\]/,
    );
    expect(() => ours.encodePairs([[null, 'd']] as never, opts)).toThrow(
      /query\) must be a string \(got null\)/,
    );
    expect(() => ours.encodePair('q', {} as never, opts)).toThrow(InputError);
    expect(() => ours.tokenize(undefined as never)).toThrow(InputError);
    expect(() => ours.encodePair('q', 'd', { maxLength: 1.5 })).toThrow(InputError);
    expect(() => ours.encodePair('q', 'd', { maxLength: 32, truncation: 'only_first' as never })).toThrow(
      InputError,
    );
    expect(() => ours.encodePair('q', 'd', undefined as never)).toThrow(InputError);
  });
});

// ------------------------------------------------------------------------------------------ bad input

describe('hostile text', () => {
  const json = bertTokenizerJson(uncasedVocab, { lowercase: true });
  const ours = Tokenizer.fromTokenizerJson(json);
  const rust = rustTokenizer(json);

  it('lone surrogates read as U+FFFD, which clean_text removes', () => {
    const s = 'ab\ud800cd \udc00ef \ud83d';
    expect(Array.from(ours.tokenize(s))).toEqual(
      Array.from(ours.tokenize(s.replace(/[\ud800-\udfff]/g, '\ufffd'))),
    );
    expect(Array.from(ours.tokenize(s))).toEqual(Array.from(ours.tokenize('abcd ef ')));
  });

  it('documents of several MB: the truncation holds and matches Hugging Face', async () => {
    const [q, d] = msMarcoPairs(1, 12)[0] as [string, string];
    const mb = (n: number) => d.repeat(Math.ceil(n / d.length));
    const cjk = '中'.repeat(300_000);
    rust.setTruncation(128, { strategy: 'LongestFirst' });
    const checked: Array<[string, string]> = [
      [q, mb(1_000_000)],
      [mb(1_000_000), q],
      [q, cjk],
      [mb(500_000), mb(500_000)],
    ];
    const theirs = await rustEncodePairs(rust, checked);
    checked.forEach(([a, b], i) => {
      const o = ours.encodePair(a, b, { maxLength: 128 });
      expect(Array.from(o.ids)).toEqual((theirs[i] as { ids: number[] }).ids);
      expect(o.truncated).toBe(true);
    });
    // Bigger ones: only the beginning matters, so they must equal a checked pair.
    expect(ours.encodePair(q, mb(8_000_000), { maxLength: 128 })).toEqual(
      ours.encodePair(q, mb(1_000_000), { maxLength: 128 }),
    );
    expect(ours.encodePair(mb(8_000_000), mb(8_000_000), { maxLength: 128 })).toEqual(
      ours.encodePair(mb(500_000), mb(500_000), { maxLength: 128 }),
    );
    // One 3 MB "word" is a single [UNK], as in Hugging Face; past the read limit the text was not
    // looked at, which counts as truncated.
    const word = ours.encodePair(q, 'x'.repeat(3_000_000), { maxLength: 128 });
    expect(Array.from(word.ids.slice(-2))).toEqual([ours.unkId, ours.sepId]);
    expect(word.truncated).toBe(true);
    expect(ours.tokenize('é'.repeat(1_000_000))).toEqual(new Int32Array([ours.unkId]));
  });

  it('uses the unicode_categories tables of Rust, not the newer ones of JavaScript', () => {
    // U+2E43 (Unicode 10) is punctuation for JS but unknown to the Rust tables, so it does not split.
    expect(/\p{P}/u.test('\u2e43')).toBe(true);
    expect(ours.tokenize('a\u2e43b').length).toBe(1);
    expect(ours.tokenize('a\u2e2eb').length).toBe(3); // U+2E2E REVERSED QUESTION MARK (Unicode 5.1)
  });
});

// ------------------------------------------------------------------------------------------ loading

describe('loading and validating tokenizer files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tok-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const json = bertTokenizerJson(uncasedVocab, { lowercase: true });

  it('loads from files by both paths, with the same result and the config values', async () => {
    const tokenizerJson = write('tokenizer.json', JSON.stringify(json));
    const vocabTxt = write('vocab.txt', `${uncasedVocab.join('\n')}\n`);
    const tokenizerConfig = write(
      'tokenizer_config.json',
      JSON.stringify({ do_lower_case: true, model_max_length: 512, unk_token: '[UNK]' }),
    );
    const a = await Tokenizer.fromFiles({ tokenizerJson, tokenizerConfig });
    const b = await Tokenizer.fromFiles({ vocabTxt, tokenizerConfig });
    for (const t of [a, b]) {
      expect([t.modelMaxLength, t.vocabSize, t.clsId, t.sepId, t.padId, t.unkId]).toEqual([
        512, 30522, 101, 102, 0, 100,
      ]);
    }
    const [q, d] = msMarcoPairs(1, 2)[0] as [string, string];
    expect(a.encodePair(q, d, { maxLength: 64 })).toEqual(b.encodePair(q, d, { maxLength: 64 }));
  });

  it("HF's 'no limit' model_max_length is Infinity; special_tokens_map.json overrides the config", async () => {
    const tokenizerConfig = write('c2.json', JSON.stringify({ model_max_length: 1e30, pad_token: '[PAD]' }));
    const specialTokensMap = write('s2.json', JSON.stringify({ pad_token: { content: '[MASK]' } }));
    const vocabTxt = write('vocab2.txt', uncasedVocab.join('\r\n'));
    const t = await Tokenizer.fromFiles({ vocabTxt, tokenizerConfig, specialTokensMap });
    expect(t.modelMaxLength).toBe(Number.POSITIVE_INFINITY);
    expect(t.padId).toBe(103);
  });

  it('a tokenizer_config.json that disagrees with tokenizer.json wins, as in BertTokenizerFast', async () => {
    const tokenizerJson = write(
      't3.json',
      JSON.stringify(bertTokenizerJson(casedVocab, { lowercase: false })),
    );
    const lower = await Tokenizer.fromFiles({
      tokenizerJson,
      tokenizerConfig: write('c3.json', '{"do_lower_case": true}'),
    });
    const cased = await Tokenizer.fromFiles({
      tokenizerJson,
      tokenizerConfig: write('c4.json', '{"do_lower_case": false}'),
    });
    expect(lower.tokenize('Paris Café')).toEqual(Tokenizer.fromVocab(casedVocab).tokenize('paris cafe'));
    expect(cased.tokenize('Paris')).not.toEqual(lower.tokenize('Paris'));
  });

  it('bad files are TokenizerErrors that say what is wrong', async () => {
    const bad = async (files: Parameters<typeof Tokenizer.fromFiles>[0], re: RegExp) => {
      const err = await Tokenizer.fromFiles(files).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TokenizerError);
      expect(String((err as Error).message)).toMatch(re);
    };
    await bad({ tokenizerJson: write('m.json', '{"model": ') }, /not valid JSON/);
    await bad({ tokenizerJson: join(dir, 'missing.json') }, /Cannot read/);
    await bad({}, /No tokenizer files/);
    await bad({ vocabTxt: write('v.txt', 'a\nb\n') }, /"\[UNK\]" is not in the vocabulary/);
    const variant = (patch: (j: Record<string, unknown>) => void) => {
      const j = structuredClone(json) as Record<string, unknown>;
      patch(j);
      return write(`j${Math.random()}.json`, JSON.stringify(j));
    };
    await bad(
      { tokenizerJson: variant((j) => Object.assign(j.model as object, { type: 'WordLevel' })) },
      /model type "WordLevel" is not supported: .*WordPiece.*Unigram.*BPE/,
    );
    await bad({ tokenizerJson: variant((j) => (j.normalizer = { type: 'NFKC' })) }, /normalizer "NFKC"/);
    await bad({ tokenizerJson: variant((j) => (j.pre_tokenizer = { type: 'Whitespace' })) }, /pre_tokenizer/);
    await bad({ tokenizerJson: variant((j) => (j.post_processor = null)) }, /post_processor/);
    await bad(
      {
        tokenizerJson: variant((j) => {
          delete (j.model as { vocab: Record<string, number> }).vocab['[CLS]'];
          j.added_tokens = (j.added_tokens as Array<{ content: string }>).filter(
            (t) => t.content !== '[CLS]',
          );
        }),
      },
      /\[CLS\]/,
    );
    await bad(
      { tokenizerJson: variant((j) => Object.assign(j.model as object, { vocab: { a: -1 } })) },
      /non-negative integer/,
    );
    expect(() => Tokenizer.fromTokenizerJson(null)).toThrow(TokenizerError);
    expect(() => Tokenizer.fromTokenizerJson([1, 2])).toThrow(TokenizerError);
    expect(() => Tokenizer.fromVocab([])).toThrow(TokenizerError);
    expect(() => Tokenizer.fromVocab(uncasedVocab, { do_lower_case: 'yes' })).toThrow(TokenizerError);
  });
});

// ------------------------------------------------------------------------------------------ golden

interface GoldenCase {
  q: string;
  d: string;
  maxLength: number;
  truncation: Truncation;
  ids?: number[];
  typeIds?: number[];
  error?: string;
}

for (const flavour of ['uncased', 'cased'] as const) {
  const golden = join(FIXTURES, `golden-${flavour}.json.gz`);
  // The golden files are committed fixtures (scripts/golden/make_tokenizer.py): a missing one fails.
  describe(`golden file from transformers' BertTokenizerFast (${flavour})`, () => {
    const f = (name: string) => join(FIXTURES, name);
    const optional = (name: string) => (existsSync(f(name)) ? f(name) : undefined);
    const loadGolden = () =>
      JSON.parse(gunzipSync(readFileSync(golden)).toString('utf8')) as { vocab: string; cases: GoldenCase[] };
    const paths: Array<[string, () => Promise<Tokenizer>]> = [
      [
        'tokenizer.json',
        () =>
          Tokenizer.fromFiles({
            tokenizerJson: f(`tokenizer-${flavour}.json`),
            tokenizerConfig: optional(`tokenizer_config-${flavour}.json`),
            specialTokensMap: optional(`special_tokens_map-${flavour}.json`),
          }),
      ],
      [
        'vocab.txt + tokenizer_config.json',
        () =>
          Tokenizer.fromFiles({
            vocabTxt: f(`vocab-${flavour}.txt`),
            tokenizerConfig: optional(`tokenizer_config-${flavour}.json`),
            specialTokensMap: optional(`special_tokens_map-${flavour}.json`),
          }),
      ],
    ];
    it('the fixture files describe one vocabulary (else: regenerate them together)', () => {
      const json = JSON.parse(readFileSync(f(`tokenizer-${flavour}.json`), 'utf8')) as {
        model: { vocab: Record<string, number> };
      };
      const lines = readFileSync(f(`vocab-${flavour}.txt`), 'utf8').split('\n');
      const differing = Object.entries(json.model.vocab).filter(([tok, id]) => lines[id] !== tok);
      expect(differing.slice(0, 3)).toEqual([]);
    });
    it.each(paths)('all ids and type ids match, loaded from %s', async (_, load) => {
      const t = await load();
      const { vocab, cases } = loadGolden();
      expect(vocab).toBe(flavour);
      expect(cases.length).toBeGreaterThan(0);
      const bad: unknown[] = [];
      // The golden file holds transformers' batch call - what CrossEncoder.predict does - which keeps an
      // empty document as [CLS] q [SEP] [SEP] (its single-pair call would drop it): every case counts.
      for (const c of cases) {
        let ok: boolean;
        try {
          const e = t.encodePair(c.q, c.d, { maxLength: c.maxLength, truncation: c.truncation });
          ok = c.ids !== undefined && same(e.ids, c.ids) && same(e.typeIds, c.typeIds ?? []);
        } catch (err) {
          ok = c.ids === undefined && err instanceof InputError;
        }
        if (!ok)
          bad.push({
            q: c.q.slice(0, 60),
            d: c.d.slice(0, 60),
            maxLength: c.maxLength,
            truncation: c.truncation,
          });
      }
      expect({ mismatches: bad.length, of: cases.length, first: bad.slice(0, 3) }).toEqual({
        mismatches: 0,
        of: cases.length,
        first: [],
      });
    });
  });
}
