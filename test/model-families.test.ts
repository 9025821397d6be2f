/**
 * config.json -> ModelSpec for the families after BERT (src/model.ts FAMILIES): the configs transformers
 * 5 wrote for the family fixtures, the transformers 4 spelling of ModernBERT's, and what is refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MlxRerankError } from '../src/errors';
import { specFromConfig } from '../src/model';

const DIR = join(import.meta.dirname, 'fixtures', 'families', 'models');
const config = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(DIR, name, 'config.json'), 'utf8'));

function expectError(fn: () => unknown, code: string, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(MlxRerankError);
  expect((caught as MlxRerankError).code).toBe(code);
  expect((caught as Error).message).toMatch(pattern);
}

describe('XLM-RoBERTa / CamemBERT', () => {
  it('positions start at pad_token_id + 1, so the longest pair is max_position_embeddings - 2', () => {
    const spec = specFromConfig(config('xlmr-l2-h32'));
    expect(spec).toMatchObject({
      architecture: 'xlm-roberta',
      modelType: 'xlm-roberta',
      maxPositions: 512, // max_position_embeddings 514
      typeVocabSize: 1,
      layerNormEps: 1e-5,
      padTokenId: 1,
      numLabels: 1,
    });
    expect(spec.arch).toMatchObject({
      family: 'xlm-roberta',
      positions: 'absolute',
      positionOffset: 2,
      positionPadId: 1,
      norm: 'post',
      mlp: 'dense',
      pooling: 'cls',
      headAct: 'tanh',
      headNorm: false,
    });
  });

  it('reads CamemBERT as the same architecture', () => {
    const c = {
      ...config('xlmr-l2-h32'),
      model_type: 'camembert',
      architectures: ['CamembertForSequenceClassification'],
    };
    expect(specFromConfig(c).arch.family).toBe('xlm-roberta');
  });

  it('refuses a table with no room after the offset, and the bare encoder', () => {
    expectError(
      () => specFromConfig({ ...config('xlmr-l2-h32'), max_position_embeddings: 2 }),
      'E_BAD_CONFIG',
      /max_position_embeddings 2/,
    );
    expectError(
      () => specFromConfig({ ...config('xlmr-l2-h32'), architectures: ['XLMRobertaModel'] }),
      'E_UNSUPPORTED_MODEL',
      /XLMRobertaForSequenceClassification/,
    );
  });
});

describe('ELECTRA', () => {
  it('keeps embedding_size apart from hidden_size; the head is dense -> GELU -> out_proj', () => {
    const spec = specFromConfig(config('electra-l2-h32-e24'));
    expect(spec).toMatchObject({ architecture: 'electra', hiddenSize: 32, numLabels: 2, typeVocabSize: 2 });
    expect(spec.arch).toMatchObject({
      family: 'electra',
      embeddingSize: 24,
      positionOffset: 0,
      headAct: 'gelu',
    });
    // transformers' ElectraConfig default
    const { embedding_size, ...bare } = config('electra-l2-h32-e24');
    expect(specFromConfig(bare).arch.embeddingSize).toBe(128);
  });
});

describe('ModernBERT', () => {
  it('reads transformers 5 configs (rope_parameters, layer_types)', () => {
    const spec = specFromConfig(config('modernbert-l4-h32-cls'));
    expect(spec).toMatchObject({
      architecture: 'modernbert',
      maxPositions: 512,
      typeVocabSize: 2, // accepted and ignored: no type table
      layerNormEps: 1e-5,
      hiddenAct: 'gelu',
      numLabels: 2,
    });
    expect(spec.arch).toEqual({
      family: 'modernbert',
      embeddingSize: 32,
      positions: 'rotary',
      positionOffset: 0,
      positionPadId: -1,
      typeEmbeddings: false,
      ropeTheta: 160000,
      ropeLocalTheta: 10000,
      localWindow: 8,
      globalEvery: 2,
      mlp: 'glu',
      norm: 'pre',
      attentionBias: false,
      mlpBias: false,
      normBias: false,
      headBias: false,
      pooling: 'cls',
      headAct: 'gelu',
      headNorm: true,
    });
    expect(specFromConfig(config('modernbert-l3-h32-mean')).arch.pooling).toBe('mean');
  });

  it('reads the transformers 4 spelling (global_rope_theta / local_rope_theta, no layer_types)', () => {
    const { rope_parameters, layer_types, ...v4 } = config('modernbert-l3-h32-mean');
    const spec = specFromConfig({ ...v4, global_rope_theta: 80000, local_rope_theta: 20000 });
    expect(spec.arch).toMatchObject({
      ropeTheta: 80000,
      ropeLocalTheta: 20000,
      localWindow: 16,
      globalEvery: 3,
    });
  });

  it('refuses what the engines do not run', () => {
    const c = config('modernbert-l3-h32-mean');
    expectError(
      () => specFromConfig({ ...c, layer_types: ['full_attention', 'full_attention', 'sliding_attention'] }),
      'E_UNSUPPORTED_MODEL',
      /layer_types/,
    );
    expectError(
      () => specFromConfig({ ...c, classifier_pooling: 'max' }),
      'E_UNSUPPORTED_MODEL',
      /classifier_pooling "max"/,
    );
    expectError(
      () =>
        specFromConfig({
          ...c,
          rope_parameters: { full_attention: { rope_type: 'yarn', rope_theta: 1e4 }, sliding_attention: {} },
        }),
      'E_UNSUPPORTED_MODEL',
      /rope_type/,
    );
    expectError(() => specFromConfig({ ...c, hidden_activation: 'silu' }), 'E_UNSUPPORTED_MODEL', /silu/);
    expectError(
      () => specFromConfig({ ...c, hidden_size: 36, num_attention_heads: 4 }),
      'E_BAD_CONFIG',
      /even/,
    );
    expectError(() => specFromConfig({ ...c, norm_bias: 'no' }), 'E_BAD_CONFIG', /norm_bias/);
  });
});

it('names every supported model_type when refusing one', () => {
  expectError(
    () => specFromConfig({ ...config('xlmr-l2-h32'), model_type: 'deberta-v2', architectures: [] }),
    'E_UNSUPPORTED_MODEL',
    /"deberta-v2".*"bert", "xlm-roberta", "camembert", "electra", "modernbert"/,
  );
});
