import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlxRerankError } from '../src/errors';
import { loadModelSpec, specFromConfig } from '../src/model';

// config.json of cross-encoder/ms-marco-MiniLM-L-6-v2 as published on the Hub (transformers 4.6.1 era),
// plus the "sentence_transformers" block sentence-transformers v4 adds when it saves a CrossEncoder.
const MINILM = {
  _name_or_path: 'nreimers/MiniLM-L6-H384-uncased',
  architectures: ['BertForSequenceClassification'],
  attention_probs_dropout_prob: 0.1,
  gradient_checkpointing: false,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  hidden_size: 384,
  id2label: { '0': 'LABEL_0' },
  initializer_range: 0.02,
  intermediate_size: 1536,
  label2id: { LABEL_0: 0 },
  layer_norm_eps: 1e-12,
  max_position_embeddings: 512,
  model_type: 'bert',
  num_attention_heads: 12,
  num_hidden_layers: 6,
  pad_token_id: 0,
  position_embedding_type: 'absolute',
  transformers_version: '4.6.1',
  type_vocab_size: 2,
  use_cache: true,
  vocab_size: 30522,
};

function expectError(fn: () => unknown, code: string, pattern: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MlxRerankError);
    expect((err as MlxRerankError).code).toBe(code);
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('expected an error');
}

describe('specFromConfig', () => {
  it('reads the MiniLM-L6 cross-encoder config', () => {
    expect(specFromConfig(MINILM)).toEqual({
      architecture: 'bert',
      modelType: 'bert',
      vocabSize: 30522,
      hiddenSize: 384,
      numLayers: 6,
      numHeads: 12,
      intermediateSize: 1536,
      maxPositions: 512,
      typeVocabSize: 2,
      numLabels: 1,
      layerNormEps: 1e-12,
      hiddenAct: 'gelu',
      padTokenId: 0,
      // BERT's architecture: learned positions from 0, post-norm GELU MLP with biases, pooler on [CLS]
      arch: {
        family: 'bert',
        embeddingSize: 384,
        positions: 'absolute',
        positionOffset: 0,
        positionPadId: -1,
        typeEmbeddings: true,
        ropeTheta: 10000,
        ropeLocalTheta: 10000,
        localWindow: 0,
        globalEvery: 1,
        mlp: 'dense',
        norm: 'post',
        attentionBias: true,
        mlpBias: true,
        normBias: true,
        headBias: true,
        pooling: 'cls',
        headAct: 'tanh',
        headNorm: false,
      },
      labels: ['LABEL_0'],
      activation: 'sigmoid',
      synthetic: false,
    });
  });

  it('applies transformers defaults: 2 labels without id2label/num_labels, type_vocab 2, eps 1e-12, gelu', () => {
    const { id2label, label2id, type_vocab_size, layer_norm_eps, hidden_act, ...bare } = MINILM;
    const spec = specFromConfig(bare);
    expect(spec.numLabels).toBe(2);
    expect(spec.labels).toEqual(['LABEL_0', 'LABEL_1']);
    expect(spec.activation).toBe('none'); // several labels: identity, as sentence-transformers
    expect(spec.typeVocabSize).toBe(2);
    expect(spec.layerNormEps).toBe(1e-12);
    expect(spec.hiddenAct).toBe('gelu');
    expect(specFromConfig({ ...bare, num_labels: 3 }).labels).toEqual(['LABEL_0', 'LABEL_1', 'LABEL_2']);
    expect(specFromConfig({ ...MINILM, id2label: { 1: 'pos', 0: 'neg' } }).labels).toEqual(['neg', 'pos']);
  });

  it('takes the activation sentence-transformers saved, in its precedence order', () => {
    const sig = 'torch.nn.modules.activation.Sigmoid';
    const id = 'torch.nn.modules.linear.Identity';
    const soft = 'torch.nn.modules.activation.Softmax';
    // v4+: config.json's "sentence_transformers" block
    expect(
      specFromConfig({ ...MINILM, sentence_transformers: { activation_fn: id, version: '4.0.1' } })
        .activation,
    ).toBe('none');
    // older: sbert_ce_default_activation_function in config.json
    expect(specFromConfig({ ...MINILM, sbert_ce_default_activation_function: id }).activation).toBe('none');
    // the block wins over the legacy key, and the ST config file wins over both
    expect(
      specFromConfig({
        ...MINILM,
        sentence_transformers: { activation_fn: sig },
        sbert_ce_default_activation_function: id,
      }).activation,
    ).toBe('sigmoid');
    expect(
      specFromConfig({ ...MINILM, sentence_transformers: { activation_fn: sig } }, { activation_fn: soft })
        .activation,
    ).toBe('softmax');
    // like ST without trust_remote_code: non-torch class paths are ignored
    expect(
      specFromConfig({ ...MINILM, sbert_ce_default_activation_function: 'evil.module.Thing' }).activation,
    ).toBe('sigmoid');
    expectError(
      () =>
        specFromConfig({
          ...MINILM,
          sbert_ce_default_activation_function: 'torch.nn.modules.activation.Tanh',
        }),
      'E_UNSUPPORTED_MODEL',
      /Tanh/,
    );
  });

  it('marks synthetic models', () => {
    expect(specFromConfig({ ...MINILM, mlx_rerank_synthetic: true }).synthetic).toBe(true);
  });

  it('refuses other architectures by name', () => {
    expectError(
      () => specFromConfig({ ...MINILM, model_type: 'xlm-roberta' }),
      'E_UNSUPPORTED_MODEL',
      /"xlm-roberta"/,
    );
    expectError(
      () => specFromConfig({ ...MINILM, model_type: 'modernbert' }),
      'E_UNSUPPORTED_MODEL',
      /"modernbert"/,
    );
    expectError(
      () => specFromConfig({ ...MINILM, architectures: ['BertModel'] }),
      'E_UNSUPPORTED_MODEL',
      /BertModel/,
    );
    expectError(
      () => specFromConfig({ ...MINILM, position_embedding_type: 'relative_key' }),
      'E_UNSUPPORTED_MODEL',
      /relative_key/,
    );
    expectError(() => specFromConfig({ ...MINILM, hidden_act: 'swish' }), 'E_UNSUPPORTED_MODEL', /swish/);
    const { model_type, ...noType } = MINILM;
    expect(specFromConfig(noType).architecture).toBe('bert'); // architectures alone is enough
    expectError(() => specFromConfig({ ...noType, architectures: [] }), 'E_UNSUPPORTED_MODEL', /\(missing\)/);
  });

  it('validates every number', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ hidden_size: 0 }, /hidden_size/],
      [{ hidden_size: 384.5 }, /hidden_size/],
      [{ hidden_size: '384' }, /hidden_size/],
      [{ num_attention_heads: 7 }, /multiple of num_attention_heads/],
      [{ num_hidden_layers: -1 }, /num_hidden_layers/],
      [{ vocab_size: 1e12 }, /vocab_size/],
      [{ intermediate_size: null }, /intermediate_size/],
      [{ max_position_embeddings: 1 << 20 }, /max_position_embeddings/],
      [{ layer_norm_eps: 0 }, /layer_norm_eps/],
      [{ pad_token_id: 30522 }, /pad_token_id/],
      [{ id2label: { '0': 'a', '2': 'b' } }, /id2label/],
      [{ id2label: {}, num_labels: 1 }, /id2label/],
      [{ num_labels: 4 }, /disagrees/],
    ];
    for (const [patch, pattern] of bad)
      expectError(() => specFromConfig({ ...MINILM, ...patch }), 'E_BAD_CONFIG', pattern);
    const { vocab_size, ...missing } = MINILM;
    expectError(() => specFromConfig(missing), 'E_BAD_CONFIG', /"vocab_size" is missing/);
    expectError(() => specFromConfig([1, 2]), 'E_BAD_CONFIG', /JSON object/);
  });
});

describe('loadModelSpec', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mlx-rerank-model-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads config.json and config_sentence_transformers.json', async () => {
    await writeFile(join(dir, 'config.json'), JSON.stringify(MINILM));
    await writeFile(
      join(dir, 'st.json'),
      JSON.stringify({ activation_fn: 'torch.nn.modules.linear.Identity' }),
    );
    const files = { dir, id: dir, config: join(dir, 'config.json'), weights: [] };
    expect((await loadModelSpec(files)).activation).toBe('sigmoid');
    expect(
      (await loadModelSpec({ ...files, sentenceTransformersConfig: join(dir, 'st.json') })).activation,
    ).toBe('none');
  });

  it('names the file when it is not JSON or not valid', async () => {
    await writeFile(join(dir, 'broken.json'), '{"model_type": "bert",');
    await writeFile(join(dir, 'invalid.json'), JSON.stringify({ ...MINILM, num_attention_heads: 5 }));
    for (const name of ['broken.json', 'invalid.json', 'absent.json']) {
      const err = await loadModelSpec({ dir, id: dir, config: join(dir, name), weights: [] }).catch((e) => e);
      expect(err).toBeInstanceOf(MlxRerankError);
      expect(err.code).toBe('E_BAD_CONFIG');
      expect(err.message).toContain(join(dir, name));
    }
  });

  it('refuses a config.json over 4 MiB before reading it', async () => {
    // Valid JSON (a huge id2label) that would otherwise load: the size alone refuses it.
    const id2label = { '0': 'x'.repeat(4 << 20) };
    await writeFile(join(dir, 'huge.json'), JSON.stringify({ ...MINILM, id2label }));
    const err = await loadModelSpec({ dir, id: dir, config: join(dir, 'huge.json'), weights: [] }).catch(
      (e) => e,
    );
    expect(err.code).toBe('E_BAD_CONFIG');
    expect(err.message).toMatch(/huge\.json is \d+ bytes, more than the 4194304/);
  });
});
