/**
 * CrossEncoder.load of each family after BERT from a loopback Hub serving the files its real repository
 * has (BAAI/bge-reranker-v2-m3, Alibaba-NLP/gte-reranker-modernbert-base, cross-encoder/ms-marco-electra-base),
 * then offline from the cache with the server gone. The model is the family's golden fixture with its
 * word embeddings grown to the fixture tokenizer's vocabulary (seeded rows), so the pair fits. The
 * expectation is the load path taken apart: the tokenizer read straight from the files (Tokenizer.fromFiles),
 * the spec from config.json (loadModelSpec) and the weights run on the real addon (native().loadEngine),
 * then sentence-transformers' default activation (sigmoid for one label, none for more: the ELECTRA and
 * ModernBERT fixtures have two). Also: backend 'auto' picks the engine (mlx on a GPU), maxLength defaults to the
 * position table's rows, and files the loader does not read (sentencepiece.bpe.model, a pickle) are
 * never fetched. The engine's numerics against transformers are families-engine.test.ts's concern.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { backends } from '../src/backends';
import { CrossEncoder } from '../src/cross-encoder';
import { loadModelSpec } from '../src/model';
import { native } from '../src/native';
import { safetensorsBytes, type TensorData } from '../src/safetensors';
import { synthesizeModel } from '../src/synth';
import { Tokenizer } from '../src/tokenizer';
import type { ModelFamily, ModelFiles } from '../src/types';
import { seededRandom } from '../src/workload';
import { FAMILY_FIXTURES } from './helpers/family-goldens';
import { type HubServer, hubOptions, startHubServer } from './helpers/hub-server';

const MODELS = join(import.meta.dirname, 'fixtures', 'families', 'models');
const work = mkdtempSync(join(tmpdir(), 'fam-load-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const servers: HubServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()?.close();
});

interface Case {
  family: ModelFamily;
  modelType: string;
  repo: string;
  fixture: string;
  /** The word-embedding tensor, named as transformers saves it. */
  embedding: string;
  kind: 'unigram' | 'bpe' | 'wordpiece';
  /** Files of the real repository besides config.json and model.safetensors. */
  tokenizerFiles: () => Promise<Record<string, Uint8Array>>;
}

const fileBytes = (path: string) => new Uint8Array(readFileSync(path));

/** The committed fixture tokenizer's files (Unigram: with sentencepiece.bpe.model, as bge-reranker-v2-m3). */
function fixtureTokenizer(kind: 'unigram' | 'bpe') {
  return async () => {
    const dir = join(FAMILY_FIXTURES, kind);
    const out: Record<string, Uint8Array> = {};
    for (const f of await readdir(dir)) out[f] = fileBytes(join(dir, f));
    return out;
  };
}

/** ms-marco-electra-base's files: BERT's uncased WordPiece as tokenizer.json and vocab.txt, ElectraTokenizer. */
async function electraTokenizer(): Promise<Record<string, Uint8Array>> {
  const bert = await synthesizeModel({ shape: 'tiny', outDir: join(work, 'electra-tok') });
  const config = JSON.parse(readFileSync(bert.tokenizerConfig as string, 'utf8'));
  const out: Record<string, Uint8Array> = {
    'tokenizer_config.json': new TextEncoder().encode(
      JSON.stringify({ ...config, tokenizer_class: 'ElectraTokenizer' }),
    ),
    // Only a pickle next to the safetensors: never to be fetched (hub.gets checks it).
    'pytorch_model.bin': new TextEncoder().encode('not a pickle'),
  };
  for (const f of ['tokenizer.json', 'vocab.txt', 'special_tokens_map.json'])
    out[f] = fileBytes(join(bert.dir, f));
  return out;
}

const CASES: Case[] = [
  {
    family: 'xlm-roberta',
    modelType: 'xlm-roberta',
    repo: 'BAAI/bge-reranker-v2-m3',
    fixture: 'xlmr-l2-h32',
    embedding: 'roberta.embeddings.word_embeddings.weight',
    kind: 'unigram',
    tokenizerFiles: fixtureTokenizer('unigram'),
  },
  {
    family: 'modernbert',
    modelType: 'modernbert',
    repo: 'Alibaba-NLP/gte-reranker-modernbert-base',
    fixture: 'modernbert-l4-h32-cls',
    embedding: 'model.embeddings.tok_embeddings.weight',
    kind: 'bpe',
    tokenizerFiles: fixtureTokenizer('bpe'),
  },
  {
    family: 'electra',
    modelType: 'electra',
    repo: 'cross-encoder/ms-marco-electra-base',
    fixture: 'electra-l2-h32-e24',
    embedding: 'electra.embeddings.word_embeddings.weight',
    kind: 'wordpiece',
    tokenizerFiles: electraTokenizer,
  },
];

/** Reads a float32 safetensors file into the writer's TensorData (the fixtures are all F32). */
function readF32Safetensors(path: string): Record<string, TensorData> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out: Record<string, TensorData> = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    expect(t.dtype).toBe('F32');
    const bytes = buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
    const data = new Float32Array(bytes.length / 4);
    for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(i * 4);
    out[name] = { dtype: 'F32', shape: t.shape, data };
  }
  return out;
}

/**
 * The fixture model with `tensor` grown from the fixture's vocabulary to `vocab` rows (the new rows
 * seeded uniform noise, the size of the trained ones) and config.json's vocab_size to match.
 */
function extendedModel(c: Case, vocab: number): Record<string, Uint8Array> {
  const dir = join(MODELS, c.fixture);
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const tensors = readF32Safetensors(join(dir, 'float32', 'model.safetensors'));
  const emb = tensors[c.embedding] as TensorData;
  const [rows, width] = emb.shape as [number, number];
  expect(rows).toBe(config.vocab_size);
  expect(vocab).toBeGreaterThan(rows); // what makes the unextended pair refused
  const data = new Float32Array(vocab * width);
  data.set(emb.data);
  const rng = seededRandom(16);
  for (let i = rows * width; i < data.length; i++) data[i] = (rng() - 0.5) * 0.1;
  tensors[c.embedding] = { dtype: 'F32', shape: [vocab, width], data };
  return {
    'config.json': new TextEncoder().encode(JSON.stringify({ ...config, vocab_size: vocab }, null, 2)),
    'model.safetensors': new Uint8Array(safetensorsBytes(tensors)),
  };
}

/** Pairs of several scripts, one long enough to be truncated at maxLength. */
const PAIRS: [string, string][] = [
  ['what is the capital of France?', 'Paris is the capital and largest city of France.'],
  ['¿Dónde está la estación?', 'La estación de tren está a dos calles, junto al río.'],
  ['东京的人口', '東京都の人口は約1400万人です。 Tokyo 🗼'],
  ['how do vaccines work', 'Vaccines train the immune system. '.repeat(40)],
  ['x', 'a  b\tc — “quoted” naïve café'],
  // whitespace at the ends: where XLM-R's two readings of tokenizer.json differ (load takes transformers')
  [' padded query\t', 'x </s> y '],
];
const MAX_LENGTH = 64;

/** The expected scores: tokenizer, spec and weights from the files, run on the addon, then the activation. */
async function expectedScores(
  files: ModelFiles,
): Promise<{ scores: number[]; ids: Int32Array; numLabels: number }> {
  const tok = await Tokenizer.fromFiles(files);
  const spec = await loadModelSpec(files);
  const batch = tok.encodePairs(PAIRS, { maxLength: MAX_LENGTH });
  expect(batch.truncated).toBeGreaterThan(0);
  const engine = await native().loadEngine({ backend: 'cpu', device: 'cpu', weights: files.weights, spec });
  try {
    const { logits } = await engine.forward(batch.tokens, batch.typeIds, batch.offsets);
    const numLabels = spec.numLabels;
    expect(logits.length).toBe(PAIRS.length * numLabels);
    const act = (x: number) => (numLabels === 1 ? 1 / (1 + Math.exp(-x)) : x);
    return { scores: Array.from(logits, act), ids: batch.tokens, numLabels };
  } finally {
    await engine.dispose();
  }
}

function expectClose(got: ArrayLike<number>, want: number[]): void {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => {
    expect(Math.abs((got[i] as number) - w)).toBeLessThanOrEqual(1e-5);
  });
}

describe('CrossEncoder.load of each family from a Hub repository laid out as the real one', () => {
  for (const c of CASES) {
    it(`${c.family}: ${c.repo} online, then offline from the cache; 'auto' picks the engine`, async () => {
      const tokFiles = await c.tokenizerFiles();
      const local = join(work, c.fixture);
      mkdirSync(local, { recursive: true });
      for (const [f, b] of Object.entries(tokFiles)) writeFileSync(join(local, f), b);
      const localTok = await Tokenizer.fromFiles({
        tokenizerJson: join(local, 'tokenizer.json'),
        tokenizerConfig: join(local, 'tokenizer_config.json'),
        specialTokensMap: join(local, 'special_tokens_map.json'),
      });
      expect(localTok.kind).toBe(c.kind);
      const model = extendedModel(c, localTok.vocabSize);
      for (const [f, b] of Object.entries(model)) writeFileSync(join(local, f), b);
      const files: ModelFiles = {
        dir: local,
        id: local,
        config: join(local, 'config.json'),
        weights: [join(local, 'model.safetensors')],
        tokenizerJson: join(local, 'tokenizer.json'),
        tokenizerConfig: join(local, 'tokenizer_config.json'),
        specialTokensMap: join(local, 'special_tokens_map.json'),
      };
      const want = await expectedScores(files);
      const fixtureVocab = JSON.parse(
        readFileSync(join(MODELS, c.fixture, 'config.json'), 'utf8'),
      ).vocab_size;
      expect(want.ids.some((id) => id >= fixtureVocab)).toBe(true); // the grown rows are read

      const commit = 'e'.repeat(40);
      const hub = await startHubServer({
        repos: { [c.repo]: { commits: { [commit]: { ...tokFiles, ...model } }, refs: { main: commit } } },
      });
      servers.push(hub);
      const cacheDir = join(work, `cache-${c.fixture}`);
      const opts = {
        ...hubOptions(hub, cacheDir),
        backend: 'cpu' as const,
        warmup: false,
        maxLength: MAX_LENGTH,
      };
      const online = await CrossEncoder.load(c.repo, opts);
      try {
        expect(online.info.modelId).toBe(c.repo);
        expect(online.info.revision).toBe(commit);
        expect(online.info.backend).toBe('cpu');
        expect(online.info.spec.architecture).toBe(c.family);
        expect(online.info.spec.arch.family).toBe(c.family);
        expect(online.info.spec.modelType).toBe(c.modelType);
        expect(online.info.spec.vocabSize).toBe(localTok.vocabSize);
        expect(online.info.activation).toBe(want.numLabels === 1 ? 'sigmoid' : 'none');
        expect(online.tokenizer.kind).toBe(c.kind);
        expectClose(await online.predict(PAIRS), want.scores);
      } finally {
        await online.dispose();
      }
      // The weights came by the CDN redirect (LFS); nothing the loader does not read was fetched.
      expect(hub.gets('model.safetensors')).toBe(1);
      for (const f of ['sentencepiece.bpe.model', 'pytorch_model.bin']) expect(hub.gets(f)).toBe(0);
      await hub.close();
      servers.pop();

      const offline = await CrossEncoder.load(c.repo, { ...opts, offline: true });
      try {
        expect(offline.info.revision).toBe(commit);
        expect(offline.tokenizer.kind).toBe(c.kind);
        expectClose(await offline.predict(PAIRS), want.scores);
      } finally {
        await offline.dispose();
      }
      // backend 'auto' (the default): the mlx engine where MLX has a GPU, else the cpu engine.
      // maxLength left to the model too: the position table's rows (XLM-R's start at pad_token_id + 1),
      // and a pair that long scores.
      const { backend: _, maxLength: __, ...autoOpts } = opts;
      const auto = await CrossEncoder.load(c.repo, { ...autoOpts, offline: true });
      try {
        const mlx = backends().mlx;
        expect(auto.info.backend).toBe(mlx.available && mlx.devices?.includes('gpu') ? 'mlx' : 'cpu');
        const config = JSON.parse(readFileSync(join(local, 'config.json'), 'utf8'));
        const offset = c.family === 'xlm-roberta' ? config.pad_token_id + 1 : 0;
        expect(auto.info.maxLength).toBe(config.max_position_embeddings - offset);
        const long: [string, string] = ['long', 'word '.repeat(2000)];
        const full = auto.tokenizer.encodePair(...long, { maxLength: auto.info.maxLength });
        expect(full.ids.length).toBe(auto.info.maxLength);
        const scores = await auto.predict([long]);
        expect(scores.length).toBe(want.numLabels);
        for (const x of scores) expect(Number.isFinite(x)).toBe(true);
      } finally {
        await auto.dispose();
      }
    });
  }

  it('the fixture model as committed does not fit the fixture tokenizer: E_BAD_TOKENIZER names the vocabulary', async () => {
    // Why the test grows the embeddings: the pair as is would be refused at load.
    const c = CASES[0] as Case;
    const dir = join(work, 'unextended');
    mkdirSync(dir, { recursive: true });
    for (const [f, b] of Object.entries(await c.tokenizerFiles())) writeFileSync(join(dir, f), b);
    copyFileSync(join(MODELS, c.fixture, 'config.json'), join(dir, 'config.json'));
    copyFileSync(join(MODELS, c.fixture, 'float32', 'model.safetensors'), join(dir, 'model.safetensors'));
    await expect(CrossEncoder.load(dir, { backend: 'cpu', warmup: false })).rejects.toMatchObject({
      code: 'E_BAD_TOKENIZER',
      message: expect.stringMatching(/vocab/),
    });
  });
});
