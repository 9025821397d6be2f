/** Shapes shared by the TypeScript modules (see docs/architecture.md). */

export type Backend = 'mlx' | 'cpu';
export type DeviceKind = 'auto' | 'gpu' | 'cpu';
/** How weights are stored. */
export type WeightDType = 'float32' | 'float16' | 'bfloat16';
/** What an engine computes in: a storage dtype, or int8 (the cpu engine's quantised GEMMs). */
export type DType = WeightDType | 'int8';
export type Activation = 'none' | 'sigmoid' | 'softmax';

/** config.json of a BERT-family sequence classifier, normalised (src/model.ts). */
export interface ModelSpec {
  architecture: 'bert';
  modelType: string; // config.model_type, e.g. "bert"
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositions: number;
  typeVocabSize: number;
  numLabels: number;
  layerNormEps: number;
  hiddenAct: 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh' | 'relu';
  padTokenId: number;
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
  cpuIsa?: 'avx512' | 'avxvnni' | 'avx2' | 'scalar';
  /** mlx engine: the attention layout (default: varlen on CUDA GPUs, coarse on other GPUs, fine on CPUs). */
  attention?: 'varlen' | 'coarse' | 'fine';
  /** mlx engine: round token rows up to row buckets (default: on GPUs only). */
  rowBuckets?: boolean;
  /** mlx engine on a GPU: warm-up visits every row bucket up to this many token rows (default 65536). */
  warmupRows?: number;
  /** mlx engine on a CPU device: use mx::compile there too (default false). */
  cpuCompile?: boolean;
  /** mlx engine: batches of at least this many tokens run a layer at a time, so cancel() can stop them (default 8192). */
  cancelRows?: number;
}
