/**
 * SentencePiece Unigram (XLM-RoBERTa layout) parity:
 *  - the golden set written by transformers 5's XLMRobertaTokenizer (the default reading) and, for the
 *    170 cases where it differs, by `tokenizers` reading tokenizer.json as written (reading 'file');
 *  - the Rust `tokenizers` binding on random hostile text and long documents, for both readings (the
 *    transformers reading through a tokenizer.json carrying the normalizer / pre-tokenizer transformers
 *    builds, recorded in the golden).
 */
import { describe, expect, it } from 'vitest';
import { InputError, TokenizerError } from '../src/errors';
import { Tokenizer, type UnigramReading } from '../src/tokenizer';
import { PrecompiledCharsmap } from '../src/tokenizer/precompiled';
import { msMarcoPairs } from '../src/workload';
import {
  hostileSoup,
  loadFamily,
  readConfig,
  readGolden,
  readTokenizerJson,
  rustFrom,
  same,
} from './helpers/family-goldens';

const golden = readGolden('unigram');
const fileJson = readTokenizerJson('unigram');
const transformersJson = {
  ...fileJson,
  normalizer: golden.transformersNormalizer,
  pre_tokenizer: golden.transformersPreTokenizer,
};
const readings: Record<UnigramReading, Tokenizer> = {
  transformers: loadFamily('unigram'),
  file: loadFamily('unigram', { reading: 'file' }),
};
const UNK = 3;

describe('Unigram golden parity (transformers 5.17 XLMRobertaTokenizer, tokenizers 0.23.2)', () => {
  it('has the cases the generator wrote', () => {
    expect(golden.cases.length).toBeGreaterThanOrEqual(3000);
    expect(golden.cases.filter((c) => c.fileIds !== undefined).length).toBe(golden.fileDiffers);
  });

  for (const reading of ['transformers', 'file'] as const) {
    it(`matches every case, reading '${reading}'`, () => {
      const tok = readings[reading];
      const bad: string[] = [];
      let errors = 0;
      for (const [i, c] of golden.cases.entries()) {
        const want = reading === 'file' && c.fileIds !== undefined ? c.fileIds : c.ids;
        const opts = { maxLength: c.maxLength, truncation: c.truncation };
        if (want === undefined) {
          errors++;
          expect(() => tok.encodePair(c.q, c.d, opts), `case ${i}`).toThrow(InputError);
          continue;
        }
        const got = tok.encodePair(c.q, c.d, opts);
        const typesOk = reading === 'file' || same(got.typeIds, c.typeIds ?? []);
        if (!same(got.ids, want) || !typesOk)
          bad.push(`case ${i}: ${JSON.stringify([c.q, c.d]).slice(0, 120)}`);
      }
      expect(bad).toEqual([]);
      expect(errors).toBeGreaterThan(0);
    });
  }

  it('encodePairs packs the same ids as encodePair', () => {
    const tok = readings.transformers;
    const cases = golden.cases.filter((c) => c.ids !== undefined && c.maxLength === 128).slice(0, 200);
    const batch = tok.encodePairs(
      cases.map((c) => [c.q, c.d] as [string, string]),
      { maxLength: 128 },
    );
    cases.forEach((c, i) => {
      const one = tok.encodePair(c.q, c.d, { maxLength: 128 });
      expect(Array.from(batch.tokens.subarray(batch.offsets[i], batch.offsets[i + 1]))).toEqual(
        Array.from(one.ids),
      );
    });
  });
});

describe('Unigram against the Rust tokenizers binding', () => {
  const oracles: Record<UnigramReading, ReturnType<typeof rustFrom>> = {
    transformers: rustFrom(transformersJson),
    file: rustFrom(fileJson),
  };
  const soup = hostileSoup(1500, 31, '<s></s><pad><unk><mask> <mask>');
  // Documents longer than a reading window (4,096 code units) so the safe cuts are exercised.
  const long = [
    msMarcoPairs(300, 4)
      .map((p) => p.join('  \t '))
      .join(' '),
    hostileSoup(400, 8, '<mask></s>').join(' '),
    `${'x'.repeat(9000)} ${'é'.repeat(5000)}`,
  ];
  for (const reading of ['transformers', 'file'] as const) {
    it(`gives the same ids on random hostile text and long documents, reading '${reading}'`, async () => {
      const tok = readings[reading];
      const texts = [...soup, ...long];
      const want = await Promise.all(texts.map((t) => oracles[reading].ids(t)));
      const bad = texts.filter((t, i) => !same(tok.tokenize(t), want[i] as number[]));
      expect(bad.map((t) => JSON.stringify(t).slice(0, 100))).toEqual([]);
    });
  }

  it('fuses consecutive unknown characters into one <unk> and keeps known pieces around them', async () => {
    // Characters that no piece covers (private use, astral): Viterbi gives each an unk edge.
    const text = 'ab\u{F0000}\u{F0001}\u{F0002}cd \u{F0003}';
    const ids = Array.from(readings.transformers.tokenize(text));
    expect(ids).toEqual(await oracles.transformers.ids(text));
    expect(ids.filter((id) => id === UNK).length).toBe(2); // one per run, not one per character
  });
});

describe('Unigram readings and edge cases', () => {
  const t = readings.transformers;
  const f = readings.file;

  it('the two readings differ on whitespace at the ends of a segment', () => {
    const space = 4; // the "▁" piece
    // The file as written keeps a lone "▁" pre-token for trailing whitespace (before the end or an
    // added token); transformers 5's WhitespaceSplit drops it.
    expect(Array.from(f.tokenize(' a '))).toEqual([...Array.from(f.tokenize('a')), space]);
    expect(Array.from(t.tokenize(' a '))).toEqual(Array.from(t.tokenize('a')));
    expect(Array.from(f.tokenize('x </s> y'))).toContain(space);
    expect(Array.from(t.tokenize('x </s> y'))).not.toContain(space);
    expect(Array.from(f.tokenize('\t'))).toEqual([space]);
    expect(t.tokenize('\t').length).toBe(0);
    // Inside a text both collapse whitespace runs (the file through Replace(" {2,}", " ")).
    for (const tok of [t, f])
      expect(Array.from(tok.tokenize('a \u3000\t b'))).toEqual(Array.from(tok.tokenize('a b')));
  });

  it('empty and whitespace-only texts give no tokens; pairs keep the template', () => {
    for (const tok of [t, f]) {
      expect(tok.tokenize('').length).toBe(0);
      expect(Array.from(tok.encodePair('', '', { maxLength: 16 }).ids)).toEqual([0, 2, 2, 2]); // <s> </s></s> </s>
    }
    expect(t.tokenize(' \t\n\u3000').length).toBe(0);
  });

  it('added tokens next to text are split out; <mask> swallows the whitespace on its left', () => {
    const mask = 4001;
    expect(Array.from(t.tokenize('x<mask>y'))).toContain(mask);
    expect(Array.from(t.tokenize('x   <mask>y'))).toEqual(Array.from(t.tokenize('x<mask>y')));
    expect(Array.from(t.tokenize('</s>x')).slice(0, 1)).toEqual([2]);
  });

  it('reads a lone surrogate as U+FFFD', () => {
    expect(Array.from(t.tokenize('a\ud800b'))).toEqual(Array.from(t.tokenize('a\ufffdb')));
  });

  it('a document of many MB costs about as much as the part that fits', () => {
    const [q, d] = msMarcoPairs(1, 3)[0] as [string, string];
    const huge = `${d} `.repeat(Math.ceil(4e6 / d.length));
    const head = huge.slice(0, 20_000);
    for (const truncation of ['longest_first', 'only_second'] as const) {
      const a = t.encodePair(q, huge, { maxLength: 128, truncation });
      const b = t.encodePair(q, head, { maxLength: 128, truncation });
      expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
    }
  });

  it('names its special ids as the file does, and chunks a long document with a stride', () => {
    const added = fileJson.added_tokens as Array<{ content: string; id: number }>;
    const idOf = (c: string) => added.find((a) => a.content === c)?.id;
    expect([t.clsId, t.sepId, t.padId, t.unkId]).toEqual([
      idOf('<s>'),
      idOf('</s>'),
      idOf('<pad>'),
      idOf('<unk>'),
    ]);
    const [q, d] = msMarcoPairs(1, 12)[0] as [string, string];
    const doc = `${d} ${d} ${d}`;
    const stride = 8;
    const chunks = t.encodeChunks(q, doc, { maxLength: 48, stride });
    const head = Array.from(t.encodePair(q, '', { maxLength: 48 }).ids).slice(0, -1); // <s> q </s></s>
    const stitched: number[] = [];
    chunks.forEach((c, i) => {
      const ids = Array.from(c.ids);
      expect(ids.slice(0, head.length)).toEqual(head);
      expect(ids.length).toBeLessThanOrEqual(48);
      stitched.push(...ids.slice(head.length + (i === 0 ? 0 : stride), -1));
    });
    expect(stitched).toEqual(Array.from(t.tokenize(doc)));
    expect(chunks.length).toBeGreaterThan(2);
  });

  it('rejects bad input and bad files with typed errors', () => {
    expect(() => t.encodePair('a', 1 as unknown as string, { maxLength: 16 })).toThrow(InputError);
    expect(() => t.encodePair('a', 'b', { maxLength: 3 })).toThrow(InputError);
    expect(() => Tokenizer.fromTokenizerJson({ ...fileJson, normalizer: { type: 'NFKC' } })).toThrow(
      TokenizerError,
    );
    const model = fileJson.model as Record<string, unknown>;
    expect(() => Tokenizer.fromTokenizerJson({ ...fileJson, model: { ...model, unk_id: 99999 } })).toThrow(
      TokenizerError,
    );
    expect(() => new PrecompiledCharsmap(new Uint8Array([255, 255, 0, 0, 1, 2, 3]))).toThrow(TokenizerError);
    expect(() =>
      Tokenizer.fromTokenizerJson(fileJson, readConfig('unigram'), { reading: 'x' as never }),
    ).toThrow(InputError);
  });
});
