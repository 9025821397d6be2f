/** The standard scenarios (`--scenarios`), numbered like the seed report (03_backend_mlx). */
import type { DType, WeightDType } from '../types';

export interface EngineSpec {
  /** 'auto': what CrossEncoder.load picks (mlx on a GPU when available, else cpu). */
  backend: 'auto' | 'cpu' | 'mlx';
  device: 'auto' | 'gpu' | 'cpu';
  dtype?: DType;
}

export interface ScenarioSpec {
  number: string;
  name: string;
  description: string;
  engines: EngineSpec[];
  batches: number[];
  concurrencies: number[];
  /**
   * How the weights are stored: a synthetic model is made so, a real float32 model is converted into
   * a cached copy. Default float32 (as published).
   */
  weights?: WeightDType;
}

export const STANDARD_SCENARIOS: ScenarioSpec[] = [
  {
    number: '01',
    name: 'backend_cpu',
    description: 'CPU engine, float32 weights',
    engines: [{ backend: 'cpu', device: 'cpu', dtype: 'float32' }],
    batches: [32],
    concurrencies: [1],
  },
  {
    number: '02',
    name: 'backend_cpu_f16',
    description: 'CPU engine with 16-bit (float16) stored weights, float32 arithmetic',
    engines: [{ backend: 'cpu', device: 'cpu', dtype: 'float32' }],
    batches: [32],
    concurrencies: [1],
    weights: 'float16',
  },
  {
    number: '03',
    name: 'backend_mlx',
    description: 'MLX engine (16-bit on a GPU, float32 on the CPU)',
    engines: [{ backend: 'mlx', device: 'auto' }],
    batches: [32],
    concurrencies: [1],
  },
  {
    number: '04',
    name: 'concurrency_sweep',
    description:
      'Concurrency sweep: requests of 32 pairs from 1, 4 and 16 concurrent clients (the default engine: mlx on a GPU, else cpu)',
    engines: [{ backend: 'auto', device: 'auto' }],
    batches: [32],
    concurrencies: [1, 4, 16],
  },
];

/** A scenario from command-line flags; numbered and named as the standard one it matches, if any. */
export function customScenario(
  engines: EngineSpec[],
  batches: number[],
  concurrencies: number[],
  name?: string,
  number?: string,
  weights?: WeightDType,
): ScenarioSpec {
  const key = (e: EngineSpec): string =>
    `${e.backend}:${e.dtype ?? (e.backend === 'cpu' ? 'float32' : 'auto')}`;
  const grid = `batch ${batches.join(',')} x concurrency ${concurrencies.join(',')}`;
  const w = weights ?? 'float32';
  const std =
    engines.length === 1 && batches.length === 1 && concurrencies.length === 1
      ? STANDARD_SCENARIOS.slice(0, 3).find(
          (s) =>
            key(s.engines[0] as EngineSpec) === key(engines[0] as EngineSpec) &&
            (s.weights ?? 'float32') === w,
        )
      : undefined;
  const derived = `backend_${engines.map((e) => key(e).replace(':', '_').replace('_auto', '')).join('_vs_')}${w === 'float32' ? '' : `_weights_${w}`}`;
  return {
    number: number ?? std?.number ?? '00',
    name: name ?? std?.name ?? derived,
    description:
      std?.description ??
      `${engines.map(key).join(' vs ')}${w === 'float32' ? '' : `, ${w} stored weights`}; ${grid}`,
    engines,
    batches,
    concurrencies,
    ...(weights ? { weights } : {}),
  };
}
