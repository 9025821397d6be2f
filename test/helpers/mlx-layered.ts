/**
 * What the mlx engine's layer-by-layer tests share (test/engine-mlx-cancel.test.ts, engine-mlx-ahead.test.ts;
 * engine-mlx.test.ts takes the shape with fewer layers): a MiniLM-proportioned spec (head dim 32, FFN 4x),
 * narrow so that tests stay quick, with many thin layers so that a cancel lands well inside a forward and
 * "fewer layers than the model has" shows; seeded pairs; and the large batch per device.
 */
import { type CpuSpec, rng } from './cpu-model';

export const LAYERED_SPEC: CpuSpec = {
  vocabSize: 500,
  hiddenSize: 96,
  numLayers: 12,
  numHeads: 3,
  intermediateSize: 384,
  maxPositions: 512,
  typeVocabSize: 2,
  numLabels: 2,
  layerNormEps: 1e-12,
  hiddenAct: 'gelu',
};

/** `count` seeded pairs of `len` tokens (ids within `spec`'s vocabulary; the second half type 1). */
export function seededPairs(seed: number, count: number, len: number, spec: CpuSpec = LAYERED_SPEC) {
  const r = rng(seed);
  return Array.from({ length: count }, () => ({
    ids: Array.from({ length: len }, () => 1 + Math.floor(r() * (spec.vocabSize - 1))),
    typeIds: Array.from({ length: len }, (_, t) => (t < len / 2 ? 0 : 1)),
  }));
}

// The large batch per device: on a GPU 32,768 tokens, above the default 8,192 from which a batch with an
// id is evaluated layer by layer (cancelRows). On MLX's CPU device a batch that size takes many seconds a
// forward (the cancel test ran past its time limits there), so it is 2,048 tokens with cancelRows lowered
// to 1,024: the same mechanism, in well under a second a forward.
export const LARGE_BATCH = {
  gpu: { pairs: 128, len: 256, cancelRows: undefined },
  cpu: { pairs: 32, len: 64, cancelRows: 1024 },
} as const;
