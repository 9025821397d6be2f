/**
 * Loading the right tokenizer from a model's files: Tokenizer.fromFiles and CrossEncoder.load pick
 * WordPiece, Unigram or byte-level BPE by tokenizer.json's model.type, as the Hub repositories of
 * BERT / ELECTRA, XLM-RoBERTa (bge-reranker) and ModernBERT (gte-reranker-modernbert) lay them out,
 * and the ids are the goldens' (the Python fast tokenizer's). Bad tokenizer.json files are
 * TokenizerErrors that say what is unsupported.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CrossEncoder } from '../src/cross-encoder';
import { InputError, TokenizerError } from '../src/errors';
import { resolveModel } from '../src/hub';
import { synthesizeModel } from '../src/synth';
import { Tokenizer } from '../src/tokenizer';
import { FAMILY_FIXTURES, readGolden, same } from './helpers/family-goldens';
import { caught, type HubServer, hubOptions, startHubServer } from './helpers/hub-server';

const work = mkdtempSync(join(tmpdir(), 'tok-load-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const servers: HubServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()?.close();
});

/** The fixture's tokenizer files in a folder, named as on the Hub. */
function familyDir(kind: 'unigram' | 'bpe', name: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const files = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];
  if (kind === 'unigram') files.push('sentencepiece.bpe.model'); // bge-reranker-v2-m3 ships it too
  for (const f of files) copyFileSync(join(FAMILY_FIXTURES, kind, f), join(dir, f));
  return dir;
}

const tokenizerFiles = (dir: string) => ({
  tokenizerJson: join(dir, 'tokenizer.json'),
  tokenizerConfig: join(dir, 'tokenizer_config.json'),
  specialTokensMap: join(dir, 'special_tokens_map.json'),
});

/** Every golden case with ids (the errors are checked by the family tests) gives those ids. */
function expectGoldenIds(tok: Tokenizer, kind: 'unigram' | 'bpe', reading: 'transformers' | 'file'): void {
  let checked = 0;
  for (const [i, c] of readGolden(kind).cases.entries()) {
    const want = reading === 'file' && c.fileIds !== undefined ? c.fileIds : c.ids;
    if (want === undefined) continue;
    const got = tok.encodePair(c.q, c.d, { maxLength: c.maxLength, truncation: c.truncation });
    if (!same(got.ids, want))
      throw new Error(`${kind} case ${i}: ${JSON.stringify([c.q, c.d]).slice(0, 100)}`);
    checked++;
  }
  expect(checked).toBeGreaterThan(3000);
}

describe('Tokenizer.fromFiles picks the tokenizer by tokenizer.json', () => {
  it('XLM-RoBERTa (Unigram): the transformers 5 reading by default, the file as written on request', async () => {
    const files = tokenizerFiles(familyDir('unigram', 'xlmr'));
    const tok = await Tokenizer.fromFiles(files);
    expect(tok.kind).toBe('unigram');
    expect([tok.clsId, tok.sepId, tok.padId, tok.unkId, tok.numSpecialTokens]).toEqual([0, 2, 1, 3, 4]);
    expect(tok.typeVocabSize).toBe(1);
    expectGoldenIds(tok, 'unigram', 'transformers');
    const file = await Tokenizer.fromFiles(files, { reading: 'file' });
    expectGoldenIds(file, 'unigram', 'file');
    expect(readGolden('unigram').fileDiffers).toBeGreaterThan(0); // the two readings are told apart
    await expect(Tokenizer.fromFiles(files, { reading: 'sentencepiece' as never })).rejects.toThrow(
      InputError,
    );
    await expect(Tokenizer.fromFiles(files, { readng: 'file' } as never)).rejects.toThrow(
      /did you mean 'reading'/,
    );
  });

  it('ModernBERT (byte-level BPE)', async () => {
    const tok = await Tokenizer.fromFiles(tokenizerFiles(familyDir('bpe', 'modernbert')));
    expect(tok.kind).toBe('bpe');
    expect(tok.modelMaxLength).toBe(8192);
    expectGoldenIds(tok, 'bpe', 'transformers');
  });

  it('ELECTRA (WordPiece tokenizer.json, ElectraTokenizer config) reads as BERT does', async () => {
    const bert = await synthesizeModel({ shape: 'tiny', outDir: join(work, 'electra') });
    const config = JSON.parse(readFileSync(bert.tokenizerConfig as string, 'utf8'));
    writeFileSync(
      bert.tokenizerConfig as string,
      JSON.stringify({ ...config, tokenizer_class: 'ElectraTokenizer' }),
    );
    const electra = await Tokenizer.fromFiles({ ...bert, vocabTxt: undefined });
    const fromVocab = Tokenizer.fromVocab(readFileSync(bert.vocabTxt as string, 'utf8'), config);
    expect(electra.kind).toBe('wordpiece');
    const q = 'Who wrote “Le Petit Prince”?';
    const d = 'Antoine de Saint-Exupéry, in 1943 — [SEP] 中文 🙂';
    expect(electra.encodePair(q, d, { maxLength: 32 })).toEqual(
      fromVocab.encodePair(q, d, { maxLength: 32 }),
    );
  });

  it('an unsupported or broken tokenizer.json is a TokenizerError saying what and what to do', async () => {
    const dir = familyDir('bpe', 'broken');
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    const bad = async (patch: Record<string, unknown>, re: RegExp) => {
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ ...json, ...patch }));
      const err = await Tokenizer.fromFiles(tokenizerFiles(dir)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TokenizerError);
      expect((err as Error).message).toMatch(re);
    };
    await bad(
      { model: { ...json.model, type: 'WordLevel' } },
      /"WordLevel" is not supported: .*BPE \(ModernBERT\)/,
    );
    await bad({ pre_tokenizer: { type: 'Whitespace' } }, /ByteLevel/);
    await bad({ post_processor: { type: 'ByteLevel' } }, /post_processor type "ByteLevel" is not supported/);
    await bad({ model: 'BPE' }, /"model" is missing/);
  });
});

describe('CrossEncoder.load gets the family tokenizer', () => {
  it('from a Hub repository laid out as BAAI/bge-reranker-v2-m3, and offline afterwards', async () => {
    // A BERT model under the tokenizer (the model families are loaded by src/model.ts): what is
    // checked here is that load tokenizes with the repository's Unigram tokenizer.
    const model = await synthesizeModel({ shape: 'tiny', seed: 3, outDir: join(work, 'bge-src') });
    const files: Record<string, Uint8Array> = {};
    for (const f of ['config.json', 'model.safetensors'])
      files[f] = new Uint8Array(await readFile(join(model.dir, f)));
    const tokDir = familyDir('unigram', 'bge-tok');
    for (const f of await readdir(tokDir)) files[f] = new Uint8Array(await readFile(join(tokDir, f)));
    const commit = 'd'.repeat(40);
    const hub = await startHubServer({
      repos: { 'BAAI/bge-reranker-v2-m3': { commits: { [commit]: files }, refs: { main: commit } } },
    });
    servers.push(hub);
    const cacheDir = join(work, 'cache');
    const opts = { ...hubOptions(hub, cacheDir), backend: 'cpu' as const, warmup: false };
    const ce = await CrossEncoder.load('BAAI/bge-reranker-v2-m3', opts);
    try {
      expect(ce.tokenizer.kind).toBe('unigram');
      const local = await Tokenizer.fromFiles(tokenizerFiles(tokDir));
      const q = 'what is the capital of France?';
      const d = 'Paris is the capital and largest city of France.  ';
      expect(ce.tokenizer.encodePair(q, d, { maxLength: 64 })).toEqual(
        local.encodePair(q, d, { maxLength: 64 }),
      );
      const [score] = await ce.rank(q, [d]).then((r) => r.map((x) => x.score));
      expect(Number.isFinite(score)).toBe(true);
    } finally {
      await ce.dispose();
    }
    await hub.close();
    servers.pop();
    const offline = await CrossEncoder.load('BAAI/bge-reranker-v2-m3', { ...opts, offline: true });
    try {
      expect(offline.tokenizer.kind).toBe('unigram');
      const r = await resolveModel(
        'BAAI/bge-reranker-v2-m3',
        hubOptions(undefined, cacheDir, { offline: true }),
      );
      expect(r.tokenizerJson).toBeDefined();
      expect(r.vocabTxt).toBeUndefined();
    } finally {
      await offline.dispose();
    }
  });

  it('a tokenizer.json it cannot read fails the load with E_BAD_TOKENIZER', async () => {
    const model = await synthesizeModel({ shape: 'tiny', outDir: join(work, 'badtok') });
    const json = JSON.parse(readFileSync(model.tokenizerJson as string, 'utf8'));
    writeFileSync(
      model.tokenizerJson as string,
      JSON.stringify({ ...json, model: { ...json.model, type: 'WordLevel' } }),
    );
    const err = await caught(CrossEncoder.load(model, { backend: 'cpu', warmup: false }));
    expect(err.code).toBe('E_BAD_TOKENIZER');
    expect(err.message).toMatch(/WordLevel/);
  });
});
