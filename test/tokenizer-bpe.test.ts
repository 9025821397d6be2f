/**
 * Byte-level BPE (ModernBERT layout) parity: the golden set written by transformers 5.17
 * (TokenizersBackend, which reads this tokenizer.json as written), and the Rust `tokenizers` binding on
 * random hostile text and long documents.
 */
import { describe, expect, it } from 'vitest';
import { InputError, TokenizerError } from '../src/errors';
import { Tokenizer } from '../src/tokenizer';
import { byteToChar } from '../src/tokenizer/bpe';
import { msMarcoPairs } from '../src/workload';
import {
  hostileSoup,
  loadFamily,
  readGolden,
  readTokenizerJson,
  rustFrom,
  same,
} from './helpers/family-goldens';

const golden = readGolden('bpe');
const json = readTokenizerJson('bpe');
const tok = loadFamily('bpe');
const vocab = (json.model as { vocab: Record<string, number> }).vocab;

describe('BPE golden parity (transformers 5.17, tokenizers 0.23.2)', () => {
  it('matches every case, ids and type ids; errors where Python raised', () => {
    expect(golden.cases.length).toBeGreaterThanOrEqual(3000);
    const bad: string[] = [];
    let errors = 0;
    for (const [i, c] of golden.cases.entries()) {
      const opts = { maxLength: c.maxLength, truncation: c.truncation };
      if (c.ids === undefined) {
        errors++;
        expect(() => tok.encodePair(c.q, c.d, opts), `case ${i}`).toThrow(InputError);
        continue;
      }
      const got = tok.encodePair(c.q, c.d, opts);
      if (!same(got.ids, c.ids) || !same(got.typeIds, c.typeIds ?? [])) {
        bad.push(`case ${i}: ${JSON.stringify([c.q, c.d]).slice(0, 120)}`);
      }
    }
    expect(bad).toEqual([]);
    expect(errors).toBeGreaterThan(0);
  });
});

describe('BPE against the Rust tokenizers binding', () => {
  const rust = rustFrom(json);

  it('gives the same ids on random hostile text and long documents', async () => {
    const texts = [
      ...hostileSoup(1500, 23, '[CLS][SEP][MASK] [MASK]|||EMAIL_ADDRESS||||||PHONE_NUMBER|||<|endoftext|>'),
      msMarcoPairs(300, 4)
        .map((p) => p.join('  \t\n '))
        .join(' '),
      `${'a'.repeat(9000)} ${'1'.repeat(5000)}!!!${' '.repeat(5000)}x`,
      "it's  I'M   we've they'll 're 'd 's't",
    ];
    const want = await Promise.all(texts.map((t) => rust.ids(t)));
    const bad = texts.filter((t, i) => !same(tok.tokenize(t), want[i] as number[]));
    expect(bad.map((t) => JSON.stringify(t).slice(0, 100))).toEqual([]);
  });
});

describe('BPE edge cases', () => {
  const id = (token: string) => vocab[token] as number;
  const g = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => byteToChar()[b]).join('');

  it('a leading space belongs to the word after it, and runs of spaces leave their last one to it', () => {
    // " the" is one pre-token (" ?\p{L}+"); "a  b" splits as "a", " ", " b".
    const ids = Array.from(tok.tokenize('a  b'));
    expect(ids[0]).toBe(id('a'));
    expect(ids.slice(1)).toEqual([id(g(' ')), ...Array.from(tok.tokenize(' b'))]);
    expect(Array.from(tok.tokenize(' b'))).not.toEqual(Array.from(tok.tokenize('b')));
  });

  it('added tokens next to text: specials on the raw text, [MASK] swallowing the whitespace on its left', () => {
    const mask = 3006;
    const email = 3000;
    expect(Array.from(tok.tokenize('x[MASK]y'))).toEqual([id('x'), mask, id('y')]);
    expect(Array.from(tok.tokenize('x  \t[MASK]y'))).toEqual([id('x'), mask, id('y')]);
    expect(Array.from(tok.tokenize('mail|||EMAIL_ADDRESS|||now'))).toContain(email);
  });

  it('empty texts give no tokens; the pair template stays', () => {
    expect(tok.tokenize('').length).toBe(0);
    expect(Array.from(tok.encodePair('', '', { maxLength: 8 }).ids)).toEqual([3003, 3004, 3004]);
  });

  it('merges run by rank over a word of any length in n log n (a 200,000-letter word)', async () => {
    const word = 'ab'.repeat(100_000);
    expect(Array.from(tok.tokenize(word))).toEqual(await rustFrom(json).ids(word));
  });

  it('a document of many MB costs about as much as the part that fits', () => {
    const [q, d] = msMarcoPairs(1, 3)[0] as [string, string];
    const huge = `${d} `.repeat(Math.ceil(4e6 / d.length));
    const head = huge.slice(0, 20_000);
    const a = tok.encodePair(q, huge, { maxLength: 128 });
    const b = tok.encodePair(q, head, { maxLength: 128 });
    expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
  });

  it('names its special ids as the file does', () => {
    const added = json.added_tokens as Array<{ content: string; id: number }>;
    const idOf = (c: string) => added.find((a) => a.content === c)?.id;
    expect([tok.clsId, tok.sepId, tok.padId, tok.unkId]).toEqual([
      idOf('[CLS]'),
      idOf('[SEP]'),
      idOf('[PAD]'),
      idOf('[UNK]'),
    ]);
  });

  it('rejects bad files with typed errors', () => {
    const model = json.model as Record<string, unknown>;
    const bad = (m: Record<string, unknown>) => () =>
      Tokenizer.fromTokenizerJson({ ...json, model: { ...model, ...m } });
    expect(bad({ merges: [['zz-not-a-token', 'q']] })).toThrow(TokenizerError);
    expect(bad({ merges: 'nope' })).toThrow(TokenizerError);
    expect(bad({ dropout: 0.1 })).toThrow(TokenizerError);
    expect(() => Tokenizer.fromTokenizerJson({ ...json, post_processor: null })).toThrow(TokenizerError);
    expect(() => Tokenizer.fromTokenizerJson({ ...json, model: { type: 'WordLevel' } })).toThrow(
      TokenizerError,
    );
  });
});
