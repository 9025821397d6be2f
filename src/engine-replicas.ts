/**
 * Several engines of one model behind one NativeEngine (the `engineReplicas` load option): each has its
 * own native thread and, on a GPU, its own MLX stream, so that their hosts build forwards in parallel and
 * the device runs their work side by side. Why: an mlx forward costs the host 1-2 ms of graph building
 * and launching whatever its size (H200, MiniLM-L6: 1.07 ms at 32 pairs, 1.81 ms at 512), so one engine
 * thread is the bottleneck of batches of up to a few hundred pairs; two engines ran 64-pair batches at
 * 1.6x and 128-pair ones at 1.4x the pairs/s of one (docs/latency-gpu.md, fourth run). Each replica holds
 * its own copy of the weights.
 *
 * A batch goes to the replica with the fewest batches in flight (ties: the first), so an idle replica
 * takes the next batch at once; cancel(batchId) reaches whichever runs it. The scheduler keeps
 * `pipelineDepth` batches in each (info() reports the sum) and lets a batch of a call still being
 * tokenized leave early while a replica is idle.
 */
import type { EngineInfo, EngineMemory, ForwardResult, NativeEngine } from './native';

/** `n` engines made by `load` (side by side) as one; when one fails the others are released. */
export async function loadReplicas(n: number, load: () => Promise<NativeEngine>): Promise<NativeEngine> {
  const settled = await Promise.allSettled(Array.from({ length: n }, load));
  const loaded = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await Promise.all(loaded.map((e) => e.dispose().catch(() => undefined)));
    throw failed.reason;
  }
  return replicate(loaded);
}

function replicate(engines: readonly NativeEngine[]): NativeEngine {
  const [only] = engines;
  if (engines.length === 1 && only) return only;
  return new Replicas(engines);
}

class Replicas implements NativeEngine {
  private readonly inFlight: number[];

  constructor(private readonly engines: readonly NativeEngine[]) {
    this.inFlight = engines.map(() => 0);
  }

  forward(
    tokens: Int32Array,
    typeIds: Int32Array,
    offsets: Int32Array,
    batchId?: number,
  ): Promise<ForwardResult> {
    let k = 0;
    for (let i = 1; i < this.engines.length; i++)
      if ((this.inFlight[i] as number) < (this.inFlight[k] as number)) k = i;
    const engine = this.engines[k] as NativeEngine;
    this.inFlight[k] = (this.inFlight[k] as number) + 1;
    const settled = () => {
      this.inFlight[k] = (this.inFlight[k] as number) - 1;
    };
    let p: Promise<ForwardResult>;
    try {
      p = engine.forward(tokens, typeIds, offsets, batchId);
    } catch (err) {
      p = Promise.reject(err);
    }
    return p.finally(settled);
  }

  /** Every replica is asked: batches forwarded with one id may run on several. */
  cancel(batchId: number): boolean {
    let found = false;
    for (const e of this.engines) found = e.cancel(batchId) || found;
    return found;
  }

  /** Warms the replicas up side by side; resolves with the longest. */
  async warmup(): Promise<number> {
    const ms = await Promise.all(this.engines.map((e) => e.warmup()));
    return Math.max(...ms);
  }

  startup(): Promise<Record<string, number>> {
    return this.first().startup?.() ?? Promise.resolve({});
  }

  /** The first replica's, with every replica's batches in flight. */
  info(): EngineInfo {
    const i = this.first().info();
    return { ...i, pipelineDepth: i.pipelineDepth * this.engines.length };
  }

  /** MLX's figures are the process's (every replica reports the same); the cpu engine's its own. */
  memory(): EngineMemory {
    if (this.first().info().backend === 'mlx') return this.first().memory();
    const total = { activeBytes: 0, peakBytes: 0, cacheBytes: 0 };
    for (const e of this.engines) {
      const m = e.memory();
      total.activeBytes += m.activeBytes;
      total.peakBytes += m.peakBytes;
      total.cacheBytes += m.cacheBytes;
    }
    return total;
  }

  async dispose(): Promise<void> {
    await Promise.all(this.engines.map((e) => e.dispose()));
  }

  private first(): NativeEngine {
    return this.engines[0] as NativeEngine;
  }
}
