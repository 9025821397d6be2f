/**
 * The synthetic XLM-RoBERTa, ELECTRA and ModernBERT models (`synth --shape xlmr-base|modernbert-base|electra-base`):
 * tensor names and shapes as transformers' save_pretrained writes them (checked against the family fixtures,
 * which transformers saved), config.json read as the real checkpoints' dimensions, and small variants that
 * CrossEncoder.load runs on the cpu engine. The base shapes are checked through their layout (hundreds of MB
 * are not written here).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossEncoder } from '../src/cross-encoder';
import { specFromConfig } from '../src/model';
import { synthCli, synthesizeModel, synthLayout } from '../src/synth';
import { msMarcoPairs } from '../src/workload';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mlx-rerank-synth-fam-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const FIXTURES = join(import.meta.dirname, 'fixtures', 'families', 'models');

/** name -> shape of a safetensors file's header. */
function header(path: string): Map<string, number[]> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const h = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { shape: number[] }>;
  return new Map(Object.entries(h).flatMap(([k, v]) => (k === '__metadata__' ? [] : [[k, v.shape]])));
}

// The fixture whose dimensions each small synthetic model copies.
const CASES = [
  {
    fixture: 'xlmr-l2-h32',
    family: 'xlm-roberta',
    shape: { hiddenSize: 32, numLayers: 2, numHeads: 4, intermediateSize: 64, numLabels: 1 },
    embedding: 'roberta.embeddings.word_embeddings.weight',
  },
  {
    fixture: 'electra-l2-h32-e24',
    family: 'electra',
    shape: {
      hiddenSize: 32,
      numLayers: 2,
      numHeads: 4,
      intermediateSize: 64,
      numLabels: 2,
      embeddingSize: 24,
    },
    embedding: 'electra.embeddings.word_embeddings.weight',
  },
  {
    fixture: 'modernbert-l4-h32-cls',
    family: 'modernbert',
    shape: {
      hiddenSize: 32,
      numLayers: 4,
      numHeads: 2,
      intermediateSize: 40,
      numLabels: 2,
      localWindow: 8,
      globalEvery: 2,
      pooling: 'cls',
      maxPositions: 512,
    },
    embedding: 'model.embeddings.tok_embeddings.weight',
  },
] as const;

describe('synthetic family models', () => {
  for (const c of CASES) {
    it(`${c.family}: the tensors transformers saved for ${c.fixture}, and its config's architecture`, async () => {
      const files = await synthesizeModel({
        shape: { family: c.family, ...c.shape },
        seed: 3,
        outDir: join(work, c.fixture),
      });
      const ours = header(files.weights[0] as string);
      const theirs = header(join(FIXTURES, c.fixture, 'float32', 'model.safetensors'));
      expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
      for (const [name, shape] of theirs) {
        // Only the vocabulary differs: the fixture's is its own, ours the family tokenizer's.
        if (name === c.embedding) expect(ours.get(name)?.[1]).toBe(shape[1]);
        else expect(ours.get(name), name).toEqual(shape);
      }
      const config = JSON.parse(await readFile(files.config, 'utf8'));
      const fixtureConfig = JSON.parse(readFileSync(join(FIXTURES, c.fixture, 'config.json'), 'utf8'));
      // The vocabulary and (ModernBERT) the padding id are the tokenizer's: ours is not the fixture's.
      const { vocabSize: _a, padTokenId: _p, ...spec } = specFromConfig(config);
      const { vocabSize: _b, padTokenId: _q, ...want } = specFromConfig(fixtureConfig);
      expect({ ...spec, synthetic: false }).toEqual(want);
      expect(config.mlx_rerank_synthetic).toBe(true);
    });
  }

  const base = {
    'xlmr-base': {
      spec: {
        architecture: 'xlm-roberta',
        hiddenSize: 768,
        numLayers: 12,
        numHeads: 12,
        intermediateSize: 3072,
      },
      more: { vocabSize: 250002, maxPositions: 512, padTokenId: 1, typeVocabSize: 1, numLabels: 1 },
      arch: { positionOffset: 2, positions: 'absolute' },
      params: [277e6, 280e6], // xlm-roberta-base / bge-reranker-base: 278M
    },
    'modernbert-base': {
      spec: {
        architecture: 'modernbert',
        hiddenSize: 768,
        numLayers: 22,
        numHeads: 12,
        intermediateSize: 1152,
      },
      more: { vocabSize: 50368, maxPositions: 8192, numLabels: 1 },
      arch: {
        localWindow: 128,
        globalEvery: 3,
        ropeTheta: 160000,
        ropeLocalTheta: 10000,
        mlp: 'glu',
        norm: 'pre',
      },
      params: [148e6, 151e6], // ModernBERT-base: 149M
    },
    'electra-base': {
      spec: { architecture: 'electra', hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 3072 },
      more: { vocabSize: 30522, maxPositions: 512, numLabels: 1 },
      arch: { embeddingSize: 768, headAct: 'gelu' },
      params: [108e6, 111e6], // electra-base discriminator + classifier: 109M
    },
  } as const;
  for (const [name, want] of Object.entries(base)) {
    it(`${name}: the real checkpoint's dimensions and parameter count (layout only)`, () => {
      const layout = synthLayout(name as keyof typeof base);
      const spec = specFromConfig(layout.config);
      expect(spec).toMatchObject({ ...want.spec, ...want.more, arch: want.arch });
      const params = layout.tensors.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
      expect(params).toBeGreaterThanOrEqual(want.params[0]);
      expect(params).toBeLessThanOrEqual(want.params[1]);
      // Every layer has the same tensors as layer 1 (ModernBERT's layer 0 has no attn_norm).
      const perLayer = (l: number) =>
        layout.tensors
          .filter((t) => new RegExp(`\\.(layer|layers)\\.${l}\\.`).test(t.name))
          .map((t) => `${t.name.replace(/\.\d+\./, '.N.')} ${t.shape}`);
      const layer1 = perLayer(1);
      expect(layer1.length).toBeGreaterThan(5);
      expect(perLayer(spec.numLayers - 1)).toEqual(layer1);
      expect(perLayer(spec.numLayers)).toEqual([]);
    });
  }

  const addon = existsSync(join(import.meta.dirname, '..', 'build', 'Release'));
  it.skipIf(!addon)(
    'small variants load with CrossEncoder.load and score pairs on the cpu engine',
    async () => {
      const pairs = msMarcoPairs(12, 5);
      for (const c of CASES) {
        const files = await synthesizeModel({
          shape: { family: c.family, ...c.shape, numLabels: 1 },
          seed: 2,
          outDir: join(work, `load-${c.family}`),
        });
        const ce = await CrossEncoder.load(files.dir, { backend: 'cpu' });
        try {
          const scores = Array.from(await ce.predict(pairs));
          expect(scores.every((s) => s > 0 && s < 1)).toBe(true); // one label: sigmoid
          expect(Math.max(...scores) - Math.min(...scores), c.family).toBeGreaterThan(0.05);
          const alone = await ce.predict([pairs[3] as [string, string]]);
          expect(alone[0]).toBe(scores[3]);
        } finally {
          await ce.dispose();
        }
      }
    },
  );

  it('synth --pairs N writes the bench workload as pairs.jsonl; unknown shapes list the family ones', async () => {
    const sink = { write: () => true } as unknown as NodeJS.WritableStream;
    const dir = join(work, 'cli-pairs');
    expect(await synthCli(['--shape', 'tiny', '--out', dir, '--pairs', '7'], sink)).toBe(0);
    const lines = (await readFile(join(dir, 'pairs.jsonl'), 'utf8')).trim().split('\n');
    expect(lines.map((l) => JSON.parse(l))).toEqual(
      msMarcoPairs(7, 42).map(([query, document]) => ({ query, document })),
    );
    const err = await synthCli(['--shape', 'xlmr-large', '--out', dir], sink).catch((e) => e);
    expect(err).toMatchObject({ code: 'E_INPUT', message: expect.stringContaining('modernbert-base') });
    await expect(synthCli(['--shape', 'tiny', '--out', dir, '--pairs', '0'], sink)).rejects.toMatchObject({
      code: 'E_INPUT',
    });
  });
});
