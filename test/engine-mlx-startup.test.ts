/**
 * The mlx engine's start-up breakdown (NativeEngine.startup(), CrossEncoder info.startup) on a CUDA
 * GPU: the row-bucket sweep visits buckets up to warmupRows and no further, with any warmupDepth, and
 * the scores after a pipelined warm-up equal those after a serial one. Skipped without MLX's CUDA GPU;
 * the cpu engine reports an empty breakdown everywhere.
 */

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { backends } from '../src/backends';
import { type NativeEngineOptions, native } from '../src/native';
import { FIXTURE_MODELS_DIR, fixtureExpected, fixtureSpec, pack } from './helpers/cpu-model';

const dir = join(FIXTURE_MODELS_DIR, 'tiny-l2-h64');
const weights = [join(dir, 'float32', 'model.safetensors')];
const spec = fixtureSpec(dir);
const expected = fixtureExpected(dir);
const mlx = backends().mlx;
const cuda = mlx.available && (mlx.devices ?? []).includes('gpu') && process.platform === 'linux';

async function started(extra: Partial<NativeEngineOptions>) {
  const e = await native().loadEngine({ weights, spec, ...extra } as NativeEngineOptions);
  try {
    await e.warmup();
    if (!e.startup) throw new Error('NativeEngine has no startup()');
    const startup = await e.startup();
    const { logits } = await e.forward(...pack(expected.pairs));
    return { startup, logits };
  } finally {
    await e.dispose();
  }
}

describe('start-up breakdown', () => {
  it('the cpu engine reports none', async () => {
    expect((await started({ backend: 'cpu' })).startup).toEqual({});
  });

  it.skipIf(!cuda)(
    'mlx on a CUDA GPU: the sweep stops at warmupRows, at any depth, same scores',
    async () => {
      const gpu = { backend: 'mlx', device: 'gpu', dtype: 'float16' } as const;
      const none = await started({ ...gpu, warmupRows: 0 });
      expect(none.startup.bucketForwards).toBe(0);
      const serial = await started({ ...gpu, warmupRows: 300, warmupDepth: 1 });
      const piped = await started({ ...gpu, warmupRows: 300, warmupDepth: 3 });
      for (const s of [serial.startup, piped.startup]) {
        expect(s.bucketForwards).toBeGreaterThan(10);
        expect(s.bucketMaxRows).toBeLessThanOrEqual(300);
        expect(s.bucketMaxRows).toBeGreaterThan(290); // buckets are at most 3.1% apart
        expect(s.weightsMs).toBeGreaterThan(0);
        expect(s.firstForwardMs).toBeGreaterThan(0);
      }
      expect(piped.startup.bucketForwards).toBe(serial.startup.bucketForwards);
      expect(piped.startup.warmupDepth).toBe(3);
      expect(Array.from(piped.logits)).toEqual(Array.from(serial.logits));
    },
  );
});
