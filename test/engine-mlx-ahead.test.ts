/**
 * Pipelining across batches on the mlx engine through the real addon (issue 18, `startAhead`): with
 * batches queued, the engine thread starts each one (builds its graph, queues its work) while the batch
 * before it waits for the device; every batch still gives the logits it gives alone; with startAhead off
 * none is started early; a batch started early and then cancelled stops at a layer boundary after the
 * two layers it queued, and one cancelled before it starts never starts. The engine's own report
 * (`startedAhead`, `layersRun`) says so, not timings.
 *
 * Runs only when the addon was built with MLX (test/engine-mlx.test.ts says why it is skipped); the GPU
 * case only where MLX has a GPU. On MLX's CPU device (whose stream also runs asynchronously) startAhead is
 * asked for explicitly: it is on by default on GPUs only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../src/backends';
import { type ForwardResult, type NativeEngine, native } from '../src/native';
import { pack, randomBert, writeModel } from './helpers/cpu-model';
import { LARGE_BATCH, LAYERED_SPEC, seededPairs } from './helpers/mlx-layered';

const mlx = backends().mlx;
const devices = mlx.available ? (mlx.devices ?? []) : [];

const spec = LAYERED_SPEC;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  a.forEach((v, i) => {
    m = Math.max(m, Math.abs(v - (b[i] as number)));
  });
  return m;
}

describe.skipIf(devices.length === 0).each(devices.length > 0 ? devices : ['cpu' as const])(
  'mlx engine on %s: startAhead',
  (device) => {
    let dir: string;
    const engines: NativeEngine[] = [];
    const size = LARGE_BATCH[device];
    const big = (seed: number) => pack(seededPairs(seed, size.pairs, size.len));
    const small = (seed: number) => pack(seededPairs(seed, 4, 32));
    // Batches of both kinds, with and without an id (an id makes a large batch run a layer at a time).
    const batches = [
      { batch: big(1), id: 1 },
      { batch: small(2), id: undefined },
      { batch: big(3), id: undefined },
      { batch: small(4), id: 4 },
      { batch: big(5), id: 5 },
      { batch: small(6), id: undefined },
    ];
    const load = async (startAhead: boolean) => {
      const file = writeModel(dir, spec, randomBert(spec, 41), 'F32');
      const e = await native().loadEngine({
        backend: 'mlx',
        device,
        weights: [file],
        spec,
        startAhead,
        ...(size.cancelRows !== undefined && { cancelRows: size.cancelRows }),
      });
      engines.push(e);
      await e.warmup();
      return e;
    };
    const alone = async (e: NativeEngine) => {
      const out: ForwardResult[] = [];
      for (const { batch, id } of batches) out.push(await e.forward(...batch, id));
      return out;
    };
    const queued = (e: NativeEngine) => Promise.all(batches.map(({ batch, id }) => e.forward(...batch, id)));
    const tol = device === 'gpu' ? 2e-3 : 1e-6;

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'mlx-rerank-ahead-'));
    });
    afterAll(async () => {
      for (const e of engines) await e.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('queued batches are each started while the one before waits, with the logits each gives alone', async () => {
      const e = await load(true);
      const reference = await alone(e);
      // One at a time there is never a batch behind to start.
      expect(reference.map((r) => r.startedAhead)).toEqual(batches.map(() => false));
      const piped = await queued(e);
      // All six were posted before the engine thread finished building the first.
      expect(piped.map((r) => r.startedAhead)).toEqual(batches.map((_, i) => i > 0));
      piped.forEach((r, i) => {
        expect([r.cancelled, r.layersRun]).toEqual([false, spec.numLayers]);
        expect(
          maxAbsDiff(r.logits, (reference[i] as ForwardResult).logits),
          `batch ${i}`,
        ).toBeLessThanOrEqual(tol);
      });
    });

    it('with startAhead off no batch is started early, and the logits are the same', async () => {
      const on = engines[0] ?? (await load(true));
      const off = await load(false);
      const [a, b] = [await queued(on), await queued(off)];
      expect(b.map((r) => r.startedAhead)).toEqual(batches.map(() => false));
      a.forEach((r, i) => {
        expect(maxAbsDiff(r.logits, (b[i] as ForwardResult).logits), `batch ${i}`).toBeLessThanOrEqual(tol);
      });
    });

    it('a batch started early stops at a layer boundary when cancelled; one cancelled before it starts never starts', async () => {
      const e = engines[0] ?? (await load(true));
      // Made before any is posted: building a large batch in JS takes longer than the engine thread
      // takes to reach the first batch's wait.
      const [b7, b8, b9] = [big(7), big(8), small(9)];
      const first = e.forward(...b7);
      const started = e.forward(...b8, 21);
      const never = e.forward(...b9, 22);
      expect(e.cancel(22)).toBe(true); // before the engine thread reaches it
      // Batch 21 was started (its first two layers queued) before the first batch's logits were read.
      const cancelled = first.then(() => e.cancel(21));
      const [a, b, c] = await Promise.all([first, started, never]);
      expect(await cancelled).toBe(true);
      expect([a.cancelled, a.layersRun]).toEqual([false, spec.numLayers]);
      expect(b.startedAhead).toBe(true);
      expect(b.cancelled).toBe(true);
      expect(b.logits.length).toBe(0);
      expect(b.layersRun).toBeGreaterThanOrEqual(2);
      expect(b.layersRun).toBeLessThan(spec.numLayers);
      expect([c.cancelled, c.startedAhead, c.layersRun, c.logits.length]).toEqual([true, false, 0, 0]);
      // The engine is fine afterwards.
      expect((await e.forward(...small(10))).logits.length).toBe(4 * spec.numLabels);
    });
  },
);
