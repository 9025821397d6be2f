/**
 * The model families after BERT (XLM-RoBERTa, ELECTRA, ModernBERT) on the cpu engine through the real
 * addon: every fixture x storage dtype against Python transformers' float64 logits
 * (scripts/golden/make_family_models.py), pairs of 2..8,192 tokens, and a pair scoring the same alone and
 * in any batch.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { specFromConfig } from '../src/model';
import { native } from '../src/native';
import type { ModelArch } from '../src/types';
import {
  type CpuSpec,
  FIXTURE_DTYPES,
  type FixtureExpected,
  fixtureExpected,
  fixtureSpec,
  pack,
  randomBert,
  referenceLogits,
  safetensorsBytes,
  type Tensor,
} from './helpers/cpu-model';

const DIR = join(import.meta.dirname, 'fixtures', 'families', 'models');
const models = readdirSync(DIR).sort();
type Pair = FixtureExpected['pairs'][0];

function load(dir: string, dtype: string) {
  return native().loadEngine({
    backend: 'cpu',
    device: 'auto',
    weights: [join(dir, dtype, 'model.safetensors')],
    spec: fixtureSpec(dir),
  });
}

function maxError(expected: number[][], logits: Float32Array, numLabels: number): number {
  let err = 0;
  expected.forEach((row, i) => {
    row.forEach((v, j) => {
      err = Math.max(err, Math.abs(v - (logits[i * numLabels + j] as number)));
    });
  });
  return err;
}

describe('family golden numerics (Python transformers, float64 reference)', () => {
  it('has every family fixture', () => {
    expect(models).toEqual([
      'electra-l2-h32-e24',
      'modernbert-l3-h32-mean',
      'modernbert-l4-h32-cls',
      'modernbert-long-l3-h16',
      'xlmr-l2-h32',
      'xlmr-long-l1-h16',
    ]);
  });

  for (const name of models) {
    for (const dtype of FIXTURE_DTYPES) {
      it(`${name} ${dtype}: max abs error <= 1e-4 over all pairs, batched`, async () => {
        const dir = join(DIR, name);
        const spec = fixtureSpec(dir);
        const expected = fixtureExpected(dir);
        const engine = await load(dir, dtype);
        try {
          // Long pairs go a few at a time, as the scheduler would send them (maxBatchTokens).
          const logits: number[] = [];
          let batch: Pair[] = [];
          let tokens = 0;
          const flush = async () => {
            if (batch.length === 0) return;
            const res = await engine.forward(...pack(batch));
            expect(res.computedSlots).toBe(tokens);
            logits.push(...res.logits);
            batch = [];
            tokens = 0;
          };
          for (const p of expected.pairs) {
            if (tokens + p.ids.length > 16384) await flush();
            batch.push(p);
            tokens += p.ids.length;
          }
          await flush();
          expect(logits.length).toBe(expected.pairs.length * spec.numLabels);
          expect(
            maxError(expected.logits[dtype], Float32Array.from(logits), spec.numLabels),
          ).toBeLessThanOrEqual(1e-4);
        } finally {
          await engine.dispose();
        }
      });
    }
  }
});

describe('family batching invariants', () => {
  for (const name of [
    'xlmr-l2-h32',
    'electra-l2-h32-e24',
    'modernbert-l4-h32-cls',
    'modernbert-l3-h32-mean',
  ]) {
    it(`${name}: a pair scores bit-identically alone, inside a batch, and in any order of the batch`, async () => {
      const dir = join(DIR, name);
      const L = fixtureSpec(dir).numLabels;
      const pairs = fixtureExpected(dir).pairs.slice(0, 32);
      const engine = await load(dir, 'float32');
      try {
        const batch = (await engine.forward(...pack(pairs))).logits;
        const order = pairs.map((_, i) => i).reverse();
        const reversed = (await engine.forward(...pack(order.map((i) => pairs[i] as Pair)))).logits;
        for (let i = 0; i < pairs.length; i++) {
          const alone = (await engine.forward(...pack([pairs[i] as Pair]))).logits;
          expect(Array.from(alone)).toEqual(Array.from(batch.subarray(i * L, i * L + L)));
          const r = order.indexOf(i);
          expect(Array.from(reversed.subarray(r * L, r * L + L))).toEqual(Array.from(alone));
        }
      } finally {
        await engine.dispose();
      }
    });
  }
});

describe('token type ids', () => {
  it('ModernBERT accepts the 0 / 1 type ids of a pair template and ignores them, as transformers', async () => {
    const dir = join(DIR, 'modernbert-l4-h32-cls');
    const pairs = fixtureExpected(dir).pairs.slice(0, 24);
    const engine = await load(dir, 'float32');
    try {
      const zeros = (await engine.forward(...pack(pairs))).logits;
      const segmented = pairs.map((p) => ({
        ids: p.ids,
        typeIds: p.ids.map((_, i) => (i >= p.ids.length / 2 ? 1 : 0)),
      }));
      expect(segmented.some((p) => p.typeIds.includes(1))).toBe(true);
      expect(Array.from((await engine.forward(...pack(segmented))).logits)).toEqual(Array.from(zeros));
    } finally {
      await engine.dispose();
    }
  });
});

describe('XLM-RoBERTa positions', () => {
  // transformers' create_position_ids_from_input_ids: positions count the non-padding tokens from
  // pad_token_id + 1; a padding id takes position pad_token_id. The expectation: the independent float64
  // BERT forward (test/helpers/cpu-model.ts) with the position table gathered by that rule.
  it('a padding id inside a pair takes position pad_token_id and is not counted', async () => {
    const pad = 1;
    const bert: CpuSpec = {
      vocabSize: 40,
      hiddenSize: 16,
      numLayers: 2,
      numHeads: 2,
      intermediateSize: 32,
      maxPositions: 10 + pad + 1,
      typeVocabSize: 1,
      numLabels: 1,
      layerNormEps: 1e-5,
      hiddenAct: 'gelu',
    };
    const tensors = randomBert(bert, 41, 4);
    const renamed: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(tensors)) {
      const n = name
        .replace(/^bert\.pooler\.dense\./, 'classifier.dense.')
        .replace(/^classifier\.(weight|bias)$/, 'classifier.out_proj.$1')
        .replace(/^bert\./, 'roberta.');
      renamed[n] = t;
    }
    const dir = mkdtempSync(join(tmpdir(), 'xlmr-pos-'));
    try {
      const file = join(dir, 'model.safetensors');
      writeFileSync(file, safetensorsBytes(renamed, 'F32'));
      const spec = specFromConfig({
        model_type: 'xlm-roberta',
        architectures: ['XLMRobertaForSequenceClassification'],
        vocab_size: bert.vocabSize,
        hidden_size: bert.hiddenSize,
        num_hidden_layers: bert.numLayers,
        num_attention_heads: bert.numHeads,
        intermediate_size: bert.intermediateSize,
        max_position_embeddings: bert.maxPositions,
        type_vocab_size: 1,
        num_labels: 1,
        layer_norm_eps: 1e-5,
        pad_token_id: pad,
      });
      const table = tensors['bert.embeddings.position_embeddings.weight'] as Tensor;
      const H = bert.hiddenSize;
      const reference = (ids: number[]) => {
        let seen = 0;
        const positions = ids.map((id) => (id === pad ? pad : pad + ++seen));
        const gathered = new Float32Array(ids.length * H);
        positions.forEach((p, t) => {
          gathered.set(table.data.subarray(p * H, p * H + H), t * H);
        });
        const t2 = {
          ...tensors,
          'bert.embeddings.position_embeddings.weight': { shape: [ids.length, H], data: gathered },
        };
        const zeros = ids.map(() => 0);
        return referenceLogits({ ...bert, maxPositions: ids.length }, t2, 'F32', ids, zeros)[0] as number;
      };
      const pairs = [
        [0, 7, 9, 2, 2, 11, 13, 2],
        [0, 7, pad, 9, 2, 2, pad, pad, 11, 2],
      ];
      const score = async (arch: ModelArch, ids: number[]) => {
        const engine = await native().loadEngine({
          backend: 'cpu',
          device: 'auto',
          weights: [file],
          spec: { ...spec, arch },
        });
        try {
          const res = await engine.forward(...pack([{ ids, typeIds: ids.map(() => 0) }]));
          return res.logits[0] as number;
        } finally {
          await engine.dispose();
        }
      };
      for (const ids of pairs) {
        expect(Math.abs((await score(spec.arch, ids)) - reference(ids))).toBeLessThanOrEqual(1e-4);
      }
      // the rule is what makes the difference: counting the padding ids moves the later positions
      const counted = await score({ ...spec.arch, positionPadId: -1 }, pairs[1] as number[]);
      expect(Math.abs(counted - reference(pairs[1] as number[]))).toBeGreaterThan(1e-3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('long pairs', () => {
  it('attention holds memory linear in the pair: 8,192 tokens take about twice what 4,096 do', async () => {
    const dir = join(DIR, 'xlmr-long-l1-h16');
    const engine = await load(dir, 'float32');
    const pair = (n: number): Pair => ({
      ids: [0, ...Array.from({ length: n - 2 }, (_, i) => 5 + (i % 200)), 2],
      typeIds: new Array(n).fill(0),
    });
    try {
      const weights = engine.memory().activeBytes; // nothing but the weights before the first forward
      await engine.forward(...pack([pair(4096)]));
      const at4k = engine.memory().peakBytes - weights;
      await engine.forward(...pack([pair(8192)]));
      const at8k = engine.memory().peakBytes - weights;
      expect(at8k / at4k).toBeLessThan(2.5); // quadratic would be 4
      expect(at8k).toBeLessThan(8192 * 8192 * 4); // less than one 8,192 x 8,192 float32 score matrix
    } finally {
      await engine.dispose();
    }
  });
});

describe('errors', () => {
  it('refuses an unknown family and a spec the weights do not match, with typed errors', async () => {
    const xlmr = join(DIR, 'xlmr-l2-h32');
    const spec = fixtureSpec(xlmr);
    const weights = [join(xlmr, 'float32', 'model.safetensors')];
    const opts = { backend: 'cpu', device: 'auto', weights } as const;
    await expect(
      native().loadEngine({
        ...opts,
        spec: { ...spec, arch: { ...(spec.arch as ModelArch), family: 'gpt2' as ModelArch['family'] } },
      }),
    ).rejects.toMatchObject({ code: 'E_BAD_CONFIG', message: expect.stringMatching(/family "gpt2"/) });
    const modern = fixtureSpec(join(DIR, 'modernbert-l4-h32-cls'));
    await expect(native().loadEngine({ ...opts, spec: modern })).rejects.toMatchObject({
      code: 'E_BAD_WEIGHTS',
      message: expect.stringMatching(/tensor\(s\) the config needs are missing \(classifier\.bias/),
    });
  });
});
