/**
 * Engine replicas (src/engine-replicas.ts, the `engineReplicas` load option) on the real addon's cpu
 * engine: the same scores bit for bit as one engine, batches computed side by side (their engine
 * timelines overlap, which one engine thread never does), cancel routed to the replica that runs the
 * batch, and a failed load releasing the replicas already made.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadReplicas } from '../src/engine-replicas';
import { CrossEncoder } from '../src/index';
import type { BatchMetrics } from '../src/metrics';
import { loadModelSpec } from '../src/model';
import { type NativeEngine, native } from '../src/native';
import type { ModelFiles } from '../src/types';
import { cleanupModels, pairPool, sameBits, syntheticModel } from './helpers/api-model';

const BASE = { backend: 'cpu', maxLength: 128, threads: 1, warmup: false } as const;
const pool = pairPool(7, 120);

let files: ModelFiles;

beforeAll(async () => {
  files = await syntheticModel('tiny', 5);
});

afterAll(() => {
  cleanupModels();
});

/** Concurrent calls of 1..12 pairs over the pool; the batches' events; the results in call order. */
async function run(ce: CrossEncoder): Promise<{ out: Float32Array[]; batches: BatchMetrics[] }> {
  const batches: BatchMetrics[] = [];
  const onBatch = (b: BatchMetrics) => batches.push(b);
  ce.on('batch', onBatch);
  const calls = Array.from({ length: 60 }, (_, k) => pool.slice(k, k + 1 + (k % 12)));
  const out = await Promise.all(calls.map((c) => ce.predict(c, { activation: 'none' })));
  ce.off('batch', onBatch);
  return { out, batches };
}

/** Whether any two batches were on an engine thread at the same time. */
function overlapped(batches: BatchMetrics[]): boolean {
  const spans = batches
    .map((b) => b.engineTimes)
    .filter((t) => t !== undefined)
    .sort((a, b) => a.beganAt - b.beganAt);
  return spans.some((t, i) => i > 0 && t.beganAt < (spans[i - 1]?.endedAt ?? 0));
}

describe('engineReplicas', () => {
  it('two replicas score as one engine does, bit for bit, computing batches side by side', async () => {
    const one = await CrossEncoder.load(files, BASE);
    const two = await CrossEncoder.load(files, { ...BASE, engineReplicas: 2 });
    try {
      expect(one.info.engineReplicas).toBe(1);
      expect(two.info.engineReplicas).toBe(2);
      // The scheduler keeps each replica's batches in flight.
      expect(two.info.engineLimits.pipelineDepth).toBe(2 * one.info.engineLimits.pipelineDepth);
      const a = await run(one);
      const b = await run(two);
      expect(a.out.every((x, k) => sameBits(x, b.out[k] as Float32Array))).toBe(true);
      expect(a.batches.every((x) => x.engineTimes !== undefined)).toBe(true);
      expect(overlapped(a.batches)).toBe(false);
      expect(overlapped(b.batches)).toBe(true);
    } finally {
      await Promise.all([one.dispose(), two.dispose()]);
    }
  });

  it('cancel(batchId) stops the batch on the replica running it, not the other; a settled batch is not found', async () => {
    const spec = await loadModelSpec(files);
    const load = () =>
      native().loadEngine({ backend: 'cpu', device: 'cpu', weights: files.weights, spec, threads: 1 });
    const engine = await loadReplicas(2, load);
    try {
      // A long batch on each replica (ids 1 and 2), then cancel the second while both run.
      const tokens = Int32Array.from({ length: 4096 }, (_, i) => 1000 + (i % 500));
      const offsets = Int32Array.from({ length: 33 }, (_, i) => i * 128);
      const typeIds = new Int32Array(tokens.length);
      const first = engine.forward(tokens, typeIds, offsets, 1);
      const second = engine.forward(tokens, typeIds, offsets, 2);
      expect(engine.cancel(2)).toBe(true);
      const [r1, r2] = await Promise.all([first, second]);
      expect(r1.cancelled).toBe(false);
      expect(r1.logits.length).toBe(32 * spec.numLabels);
      expect(r2.cancelled).toBe(true);
      expect(engine.cancel(1)).toBe(false);
    } finally {
      await engine.dispose();
    }
  });

  it('a replica that fails to load fails the load and releases the ones that loaded', async () => {
    const spec = await loadModelSpec(files);
    const made: NativeEngine[] = [];
    let n = 0;
    const load = async () => {
      if (n++ === 1) throw new Error('no room for this one');
      const e = await native().loadEngine({
        backend: 'cpu',
        device: 'cpu',
        weights: files.weights,
        spec,
        threads: 1,
      });
      made.push(e);
      return e;
    };
    await expect(loadReplicas(3, load)).rejects.toThrow('no room for this one');
    expect(made.length).toBe(2);
    const tokens = Int32Array.from([101, 2000, 102]);
    for (const e of made) {
      await expect(e.forward(tokens, new Int32Array(3), Int32Array.from([0, 3]))).rejects.toMatchObject({
        code: 'E_DISPOSED',
      });
    }
  });
});
