/**
 * Mid-batch cancellation on the mlx engine through the real addon (issue 15): a batch of at least
 * `cancelRows` tokens (8,192 by default) given a batch id runs a layer at a time and cancel(id) stops it
 * at a layer boundary;
 * with an id but never cancelled it gives the logits it gives without one; a batch cancelled while it
 * waits behind another never starts. The layer counts the addon reports say so, not timings.
 *
 * Runs only when the addon was built with MLX (test/engine-mlx.test.ts says why it is skipped); the
 * GPU case only where MLX has a GPU. The cpu engine's cancellation is tested in
 * test/scheduler-cancel.test.ts and native/test/engine_check.cpp.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../src/backends';
import { type NativeEngine, native } from '../src/native';
import { pack, randomBert, writeModel } from './helpers/cpu-model';
import { LARGE_BATCH, LAYERED_SPEC, seededPairs } from './helpers/mlx-layered';

const mlx = backends().mlx;
const devices = mlx.available ? (mlx.devices ?? []) : [];

const spec = LAYERED_SPEC;

// Without MLX in the build: one skipped suite (test/engine-mlx.test.ts warns why).
describe.skipIf(devices.length === 0).each(devices.length > 0 ? devices : ['cpu' as const])(
  'mlx engine on %s: cancel(batchId)',
  (device) => {
    let dir: string;
    let engine: NativeEngine;
    const size = LARGE_BATCH[device];
    const bigTokens = size.pairs * size.len;
    const big = pack(seededPairs(1, size.pairs, size.len));
    const small = pack(seededPairs(2, 4, 32));

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'mlx-rerank-cancel-'));
      const file = writeModel(dir, spec, randomBert(spec, 31), 'F32');
      engine = await native().loadEngine({
        backend: 'mlx',
        device,
        weights: [file],
        spec,
        ...(size.cancelRows !== undefined && { cancelRows: size.cancelRows }),
      });
      await engine.warmup();
    });
    afterAll(async () => {
      await engine?.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('a large batch with an id but not cancelled gives the logits it gives without one', async () => {
      const plain = await engine.forward(...big);
      const withId = await engine.forward(...big, 1);
      expect([withId.cancelled, withId.layersRun]).toEqual([false, spec.numLayers]);
      const tol = device === 'gpu' ? 2e-2 : 1e-5; // float16 on a GPU, float32 on the CPU
      let worst = 0;
      plain.logits.forEach((v, i) => {
        worst = Math.max(worst, Math.abs(v - (withId.logits[i] as number)));
      });
      expect(worst).toBeLessThanOrEqual(tol);
      // What evaluating layer by layer costs a large batch (printed, not asserted: timings are the
      // bench's business): median of 5 forwards each way, interleaved.
      const times: [number[], number[]] = [[], []];
      for (let i = 0; i < 5; i++) {
        for (const [k, id] of [[0, undefined] as const, [1, 10 + i] as const]) {
          const t0 = performance.now();
          await engine.forward(...big, id);
          times[k].push(performance.now() - t0);
        }
      }
      const med = (v: number[]) => [...v].sort((x, y) => x - y)[2] as number;
      console.log(
        `[engine-mlx-cancel] ${device}: ${bigTokens}-token forward ${med(times[0]).toFixed(2)} ms as one graph, ` +
          `${med(times[1]).toFixed(2)} ms layer by layer (cancellable): ${(med(times[1]) / med(times[0])).toFixed(3)}x`,
      );
    });

    it('cancel(id) a third of the way in stops the large batch at a layer boundary', async () => {
      const t0 = performance.now();
      await engine.forward(...big, 2);
      const fullMs = performance.now() - t0;
      const p = engine.forward(...big, 3);
      // Spin rather than setTimeout: on a GPU the whole batch may take only a few milliseconds.
      const t1 = performance.now();
      while (performance.now() - t1 < fullMs / 3) {
        // the engine works on its own thread meanwhile
      }
      expect(engine.cancel(3)).toBe(true);
      const r = await p;
      expect(r.cancelled).toBe(true);
      expect(r.logits.length).toBe(0);
      expect(r.layersRun).toBeLessThan(spec.numLayers);
      expect(engine.cancel(3)).toBe(false); // settled: the id is forgotten
      // The engine is fine afterwards.
      const after = await engine.forward(...small);
      expect(after.logits.length).toBe(4 * spec.numLabels);
    });

    it('a batch cancelled while it waits behind another never starts', async () => {
      const first = engine.forward(...big);
      const queued = engine.forward(...small, 4);
      engine.cancel(4);
      const [a, b] = await Promise.all([first, queued]);
      expect(a.cancelled).toBe(false);
      expect([b.cancelled, b.layersRun, b.logits.length]).toEqual([true, 0, 0]);
    });
  },
);
