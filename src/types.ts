/** Shapes shared by the TypeScript modules (see docs/architecture.md). */

export type Backend = 'mlx' | 'cpu';
export type DeviceKind = 'auto' | 'gpu' | 'cpu';
/** How weights are stored. */
export type WeightDType = 'float32' | 'float16' | 'bfloat16';
/** What an engine computes in: a storage dtype, or int8 (the cpu engine's quantised GEMMs). */
export type DType = WeightDType | 'int8';
export type Activation = 'none' | 'sigmoid' | 'softmax';

/** The model families the engines run (src/model.ts describes each; docs/models.md). */
export type ModelFamily = 'bert' | 'xlm-roberta' | 'electra' | 'modernbert';
export type HiddenAct = 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh' | 'relu';

/**
 * The architecture, as the engines read it (native/engine.h ModelSpec, native/model_spec.h): which
 * tensor names, and every structural choice, so that a BERT-like family is data.
 */
export interface ModelArch {
  family: ModelFamily; // the tensor names
  embeddingSize: number; // = hiddenSize, or (ELECTRA) the width embeddings_project maps to hiddenSize
  positions: 'absolute' | 'rotary';
  positionOffset: number; // absolute: the position id of a pair's first token (XLM-R: pad_token_id + 1)
  positionPadId: number; // RoBERTa: a token with this id takes position positionOffset - 1 and is not counted; -1: none
  typeEmbeddings: boolean;
  ropeTheta: number; // rotary: the global layers' theta
  ropeLocalTheta: number; // rotary: the sliding-window layers' theta
  localWindow: number; // sliding-window width (|i - j| <= localWindow / 2); 0: every layer global
  globalEvery: number; // with a window: layer l is global when l % globalEvery == 0
  mlp: 'dense' | 'glu';
  norm: 'post' | 'pre';
  attentionBias: boolean;
  mlpBias: boolean;
  normBias: boolean;
  headBias: boolean;
  pooling: 'cls' | 'mean';
  headAct: HiddenAct | 'tanh'; // head: dense -> headAct (-> norm when headNorm) -> output projection
  headNorm: boolean;
}

/** config.json of a BERT-like sequence classifier, normalised (src/model.ts). */
export interface ModelSpec {
  architecture: ModelFamily;
  modelType: string; // config.model_type, e.g. "bert"
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositions: number; // the longest pair (XLM-R: max_position_embeddings - positionOffset)
  typeVocabSize: number; // type ids accepted: [0, typeVocabSize); without a type table they are ignored
  numLabels: number;
  layerNormEps: number;
  hiddenAct: HiddenAct;
  padTokenId: number;
  arch: ModelArch;
  labels: string[]; // id2label in id order
  /** Default activation: the sentence-transformers config wins, else sigmoid for 1 label, none for more. */
  activation: Activation;
  /** True when made by `mlx-rerank synth` (random weights): reports say so. */
  synthetic: boolean;
}

/** A resolved model on local disk (src/hub.ts). */
export interface ModelFiles {
  dir: string;
  id: string; // the Hub id or the folder given
  revision?: string; // commit hash when it came from the Hub cache
  config: string; // path of config.json
  weights: string[]; // model.safetensors, or the shards in index order
  tokenizerJson?: string;
  vocabTxt?: string;
  tokenizerConfig?: string;
  specialTokensMap?: string;
  sentenceTransformersConfig?: string; // config_sentence_transformers.json, when present
}

/**
 * Engine tuning, for measuring and for tests: each option's default, range and environment variable
 * are declared in src/engine-options.ts (ENGINE_OPTIONS); docs/engine-options.md lists them.
 */
export interface EngineTuning {
  /** cpu engine: cap the instruction sets its kernels use (default: the best this CPU has). */
  cpuIsa?: 'amx' | 'avx512' | 'avx512f' | 'avxvnni' | 'avx2' | 'scalar';
  /** mlx engine: the attention layout (default: varlen on CUDA GPUs, coarse on other GPUs, fine on CPUs). */
  attention?: 'varlen' | 'flash' | 'coarse' | 'fine';
  /** mlx engine: round token rows up to row buckets (default: on GPUs only). */
  rowBuckets?: boolean;
  /** mlx engine on a GPU: warm-up visits every row bucket up to this many token rows (default 16384). */
  warmupRows?: number;
  /** mlx engine on a GPU: row-bucket warm-up forwards in flight at once, 1-8 (default 2). */
  warmupDepth?: number;
  /** mlx engine on a CPU device: use mx::compile there too (default false). */
  cpuCompile?: boolean;
  /** mlx engine: batches of at least this many tokens run a layer at a time, so cancel() can stop them (default 8192). */
  cancelRows?: number;
  /** mlx engine on CUDA: device-resident inputs and weights, fused embedding and residual + LayerNorm kernels (default: on for CUDA with float16/bfloat16). */
  fusedKernels?: boolean;
  /** mlx engine: build and queue the next batch while the device computes the current one (default: on for GPUs). */
  startAhead?: boolean;
  /** mlx engine on CUDA: where MLX keeps its compiled kernels (default: a per-user cache folder; 'none': MLX's default). */
  kernelCacheDir?: string;
}
