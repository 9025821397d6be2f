/**
 * mlx-rerank: fast cross-encoder reranking for Node.js.
 *
 * ```ts
 * import { CrossEncoder } from 'mlx-rerank';
 * const ce = await CrossEncoder.load('cross-encoder/ms-marco-MiniLM-L-6-v2');
 * const ranked = await ce.rank('how do cats purr', documents, { topK: 5 });
 * ```
 */
export { backends } from './backends';
export {
  activate,
  type BatchTokensChoice,
  CrossEncoder,
  type CrossEncoderInfo,
  type LoadOptions,
  type PredictOptions,
  type RankOptions,
  type RankResult,
} from './cross-encoder';
export * from './errors';
export { resolveModel } from './hub';
export type { BatchMetrics, CallMetrics, Percentiles, Stats } from './metrics';
export { loadModelSpec } from './model';
export type {
  EngineInfo,
  EngineLimits,
  EngineMemory,
  EngineTimes,
  NativeBackendInfo,
  NativeBackends,
} from './native';
export { DEFAULT_LIMITS, GPU_BATCH_LIMITS, type SchedulerLimits } from './scheduler';
export type { CurvePoint } from './scheduler/batch-curve';
export { synthesizeModel } from './synth';
export { Tokenizer } from './tokenizer';
export type { Activation, Backend, DeviceKind, DType, EngineTuning, ModelFiles, ModelSpec } from './types';
