/**
 * Issue 13, tokenizer side: the tokenizer is checked against the model at load (item 5), its time is
 * linear in the text and bounded per text whatever the text is (item 6), and its files are refused by
 * size and entry counts before anything large is built (item 12).
 */
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type MlxRerankError, TokenizerError } from '../src/errors';
import { CrossEncoder } from '../src/index';
import {
  assertTokenizerFitsModel,
  MAX_CHUNK_TOKENS,
  TOKENIZER_FILE_LIMITS,
  Tokenizer,
} from '../src/tokenizer';
import { AddedTokenMatcher } from '../src/tokenizer/added-tokens';
import { TOKENIZER_LIMITS } from '../src/tokenizer/fields';
import { MAX_READ } from '../src/tokenizer/wordpiece';
import { bertUncasedVocab } from '../src/workload';
import { cleanupModels, syntheticModel } from './helpers/api-model';
import { bertTokenizerJson } from './helpers/tokenizer-oracle';

const vocab = bertUncasedVocab();
const baseJson = () => bertTokenizerJson(vocab, { lowercase: true });
const MODEL = { vocabSize: vocab.length, typeVocabSize: 2, maxPositions: 512 };

function withAddedToken(json: Record<string, unknown>, content: string, id: number) {
  (json.added_tokens as unknown[]).push({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return json;
}

function badTokenizer(fn: () => unknown, re: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(TokenizerError);
  expect((err as MlxRerankError).code).toBe('E_BAD_TOKENIZER');
  expect((err as Error).message).toMatch(re);
}

const dir = mkdtempSync(join(tmpdir(), 'tok-hard-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  cleanupModels();
});

describe('the tokenizer must fit the model (assertTokenizerFitsModel)', () => {
  it('accepts the tokenizer made for the model', () => {
    expect(() => assertTokenizerFitsModel(Tokenizer.fromTokenizerJson(baseJson()), MODEL)).not.toThrow();
  });

  it('refuses any id the tokenizer can emit without an embedding row', () => {
    const added = Tokenizer.fromTokenizerJson(withAddedToken(baseJson(), '<e1>', vocab.length));
    badTokenizer(() => assertTokenizerFitsModel(added, MODEL), /id 30522 \("<e1>"\).*vocab_size is 30522/);
    const json = baseJson();
    (json.model as { vocab: Record<string, number> }).vocab.zzz = vocab.length + 7;
    badTokenizer(
      () => assertTokenizerFitsModel(Tokenizer.fromTokenizerJson(json), MODEL),
      /id 30529 \("zzz"\)/,
    );
    const tpl = baseJson();
    const pp = tpl.post_processor as { special_tokens: Record<string, { ids: number[] }> };
    (pp.special_tokens['[SEP]'] as { ids: number[] }).ids = [vocab.length];
    badTokenizer(
      () => assertTokenizerFitsModel(Tokenizer.fromTokenizerJson(tpl), MODEL),
      /special token of the pair template/,
    );
    // The same tokenizer fits a model with one more row.
    expect(() => assertTokenizerFitsModel(added, { ...MODEL, vocabSize: vocab.length + 1 })).not.toThrow();
  });

  it('refuses a pair template type id >= type_vocab_size', () => {
    const json = baseJson();
    const pair = (json.post_processor as { pair: Array<Record<string, { type_id: number }>> }).pair;
    (pair[3]?.Sequence as { type_id: number }).type_id = 2;
    badTokenizer(
      () => assertTokenizerFitsModel(Tokenizer.fromTokenizerJson(json), MODEL),
      /type id 2.*type_vocab_size is 2/,
    );
    expect(() =>
      assertTokenizerFitsModel(Tokenizer.fromTokenizerJson(json), { ...MODEL, typeVocabSize: 3 }),
    ).not.toThrow();
  });

  it('refuses a model_max_length (or max_position_embeddings) too small for [CLS] q [SEP] d [SEP]', () => {
    const short = Tokenizer.fromVocab(vocab, { model_max_length: 4 });
    badTokenizer(() => assertTokenizerFitsModel(short, MODEL), /model_max_length 4.*need 5/);
    expect(() =>
      assertTokenizerFitsModel(Tokenizer.fromVocab(vocab, { model_max_length: 5 }), MODEL),
    ).not.toThrow();
    const t = Tokenizer.fromTokenizerJson(baseJson());
    badTokenizer(
      () => assertTokenizerFitsModel(t, { ...MODEL, maxPositions: 4 }),
      /max_position_embeddings 4/,
    );
    // Larger than the model's positions is not an error: CrossEncoder.load clamps the default maxLength.
    expect(() =>
      assertTokenizerFitsModel(Tokenizer.fromVocab(vocab, { model_max_length: 4096 }), MODEL),
    ).not.toThrow();
  });

  it('CrossEncoder.load refuses such a model with E_BAD_TOKENIZER, before the engine loads', async () => {
    const files = await syntheticModel('tiny');
    const path = files.tokenizerJson as string;
    const json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    writeFileSync(path, JSON.stringify(withAddedToken(json, '<e1>', vocab.length)));
    const err = await CrossEncoder.load(files, { backend: 'cpu', warmup: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenizerError);
    expect((err as MlxRerankError).code).toBe('E_BAD_TOKENIZER');
    expect((err as Error).message).toMatch(/vocab_size/);
  });
});

describe('tokenizer files are refused by size and entry counts before they are built', () => {
  const write = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('a file larger than its limit is refused by its size, unread', async () => {
    const big = join(dir, 'big.json');
    writeFileSync(big, '');
    truncateSync(big, TOKENIZER_FILE_LIMITS.tokenizerJson + 1); // sparse: stat says so, nothing on disk
    const err = await Tokenizer.fromFiles({ tokenizerJson: big }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenizerError);
    expect((err as Error).message).toMatch(/bytes, more than the 33554432/);
    const cfg = join(dir, 'big-config.json');
    writeFileSync(cfg, '');
    truncateSync(cfg, TOKENIZER_FILE_LIMITS.config + 1);
    const err2 = await Tokenizer.fromFiles({
      tokenizerJson: write('ok.json', JSON.stringify(baseJson())),
      tokenizerConfig: cfg,
    }).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(TokenizerError);
    expect((err2 as Error).message).toMatch(/more than the 4194304/);
  });

  it('more vocabulary entries than the limit are refused before a vocabulary is built', async () => {
    const lines = `${'[UNK]\n[CLS]\n[SEP]\n[PAD]\n'}${'x\n'.repeat(TOKENIZER_LIMITS.vocabEntries)}`;
    const err = await Tokenizer.fromFiles({ vocabTxt: write('v.txt', lines) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenizerError);
    expect((err as Error).message).toMatch(/more than 1048576 vocabulary entries/);
  });

  it('more added tokens than the limit, or a huge one, are refused', () => {
    const json = baseJson();
    const added = json.added_tokens as unknown[];
    for (let i = 0; i <= TOKENIZER_LIMITS.addedTokens; i++)
      added.push({ id: 100, content: `<t${i}>`, normalized: false });
    badTokenizer(() => Tokenizer.fromTokenizerJson(json), /more than 65536 added tokens/);
    badTokenizer(
      () => Tokenizer.fromTokenizerJson(withAddedToken(baseJson(), 'x'.repeat(2000), 100)),
      /2000 code units long/,
    );
  });
});

// ------------------------------------------------------------------------------------------ time

/** Smallest of `reps` timings of fn (ms): the least disturbed by other processes on the machine. */
function minTime(fn: () => unknown, reps = 5): number {
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** A flat string of n code units (V8 flattens a rope on first access: a cost that is not ours). */
function fill(unit: string, n: number): string {
  return Buffer.from(unit.repeat(Math.ceil(n / unit.length)).slice(0, n), 'utf16le').toString('utf16le');
}

describe('time per text is bounded: only what can reach maxLength tokens is read', () => {
  const tok = Tokenizer.fromTokenizerJson(withAddedToken(baseJson(), '<e1>', 1));

  it.each([
    ['"[" with an extra added token', '['],
    ['one word of "a"', 'a'],
    ['combining marks', '\u0301\u0316'],
    ['emoji ZWJ sequences', '👨\u200d👩\u200d👧'],
    ['zero-width and control characters', '\u200b\u0007'],
  ])('%s: a 16 MB document costs about what a 256 kB one does', (_name, unit) => {
    const small = fill(unit, 1 << 18);
    const big = fill(unit, 1 << 24);
    const run = (d: string) => () => tok.encodePair('what is it', d, { maxLength: 512 });
    run(small)();
    run(big)(); // warm up
    const ts = minTime(run(small));
    const tb = minTime(run(big));
    // Reading all of it would be 64x; generous bounds for a loaded machine.
    expect(tb).toBeLessThan(4 * ts + 10);
  });

  it('text past the read limit is not read, and the pair says it was truncated', () => {
    const hidden = `${'\u200b'.repeat(1 << 20)} hello`; // 1M removed characters, then a word
    const e = tok.encodePair('q', hidden, { maxLength: 512 });
    expect(e.ids.length).toBe(3 + tok.tokenize('q').length); // "hello" lies past the limit
    expect(e.truncated).toBe(true);
    expect(Array.from(tok.tokenize(hidden))).toEqual(Array.from(tok.tokenize('hello'))); // tokenize() reads all
  });
});

describe('chunk mode reads a bounded part of the document', () => {
  const tok = Tokenizer.fromTokenizerJson(baseJson());

  it('windows cover the first MAX_CHUNK_TOKENS tokens of a longer document, and say truncated', () => {
    const doc = '中'.repeat(MAX_CHUNK_TOKENS + 5000); // a token per code unit: within MAX_READ
    expect(doc.length).toBeLessThan(MAX_READ);
    const chunks = tok.encodeChunks('q', doc, { maxLength: 512, stride: 128 });
    const room = 512 - 3 - 1;
    const covered = (chunks.length - 1) * (room - 128) + ((chunks.at(-1)?.ids.length ?? 0) - 4);
    expect(covered).toBe(MAX_CHUNK_TOKENS);
    expect(chunks.every((c) => c.truncated)).toBe(true);
  });
});

describe('added-token matching (src/tokenizer/added-tokens.ts)', () => {
  /** The first match starting in [from, limit) and ending by end, longest of those starting there. */
  function naive(tokens: string[], text: string, from: number, end: number, limit: number) {
    for (let i = from; i < limit; i++) {
      let best = -1;
      for (const [k, t] of tokens.entries()) {
        const fits = i + t.length <= end && text.startsWith(t, i);
        if (fits && (best < 0 || t.length > (tokens[best] as string).length)) best = k;
      }
      if (best >= 0) return { at: i, len: (tokens[best] as string).length, id: 100 + best };
    }
    return { at: -1 };
  }

  // 2 distinct first characters (found with indexOf) and 7 (found with the first-character table).
  const sets = [
    ['[CLS]', '[SEP]', '[S', '<s>', '</s>'],
    ['[SEP]', '<mask>', '|||EMAIL|||', 'ab', 'b', 'xyz', 'zz', '\u{1F600}!', 'a'],
  ];
  it('is leftmost-longest from any start, limit and end, as a naive scan', () => {
    let seed = 7;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (const tokens of sets) {
      const m = new AddedTokenMatcher(
        tokens.map((content, i) => ({ content, id: 100 + i, lstrip: false, rstrip: false })),
      );
      const alphabet = [...'[]<>/|abSEPCLzxy s!\u{1F600}', ...tokens];
      for (let n = 0; n < 400; n++) {
        let text = '';
        const len = rand(40) * (n % 40 === 0 ? 150 : 1); // some longer than a 4096 block
        while (text.length < len) text += alphabet[rand(alphabet.length)];
        const end = text.length - rand(Math.min(8, text.length + 1));
        let from = 0;
        m.reset();
        for (;;) {
          const limit = Math.max(from, end - rand(6));
          const want = naive(tokens, text, from, end, limit);
          const at = m.find(text, from, end, limit);
          expect(at, `${JSON.stringify(tokens)} ${JSON.stringify(text)} ${from} ${limit} ${end}`).toBe(
            want.at,
          );
          if (at < 0) break;
          expect([m.len, m.id]).toEqual([want.len, want.id]);
          from = at + m.len;
        }
      }
    }
  });
});
