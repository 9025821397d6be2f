/**
 * An in-test engine for the scheduler's queue logic ONLY (the acceptance tests use the real addon).
 * It does real arithmetic: each pair's logits are a fixed float32 function of its own tokens, so a
 * pair's result is the same whatever batch it rides in, and the tests can compute the expected value
 * independently with `referenceLogits`. Batches run one at a time, like the engine thread.
 */
import { EngineError } from '../../src/errors';
import type { EngineMemory, ForwardResult } from '../../src/native';
import type { Segment } from '../../src/scheduler';
import { seededRandom } from '../../src/workload';

export const CLS = 101;
export const SEP = 102;
/** A token id that makes the engine fail the whole batch (as a native error with a code). */
export const POISON = 7;

export function referenceLogits(ids: Int32Array, typeIds: Int32Array, numLabels: number): Float32Array {
  const out = new Float32Array(numLabels);
  for (let j = 0; j < numLabels; j++) {
    let acc = Math.fround(0);
    for (let t = 0; t < ids.length; t++) {
      const v = (((ids[t] as number) * 31 + (typeIds[t] as number) * 7 + t * 13 + j * 5) % 97) / 97 - 0.5;
      acc = Math.fround(acc + Math.fround(v));
    }
    out[j] = Math.fround(acc / Math.sqrt(ids.length));
  }
  return out;
}

/** `[CLS] q [SEP] d [SEP]` with char codes as ids, truncated (document first) to maxLength. */
export function encodeChars(q: string, d: string, maxLength: number): Segment {
  const qa = Array.from(q, (c) => c.codePointAt(0) ?? 0);
  let da = Array.from(d, (c) => c.codePointAt(0) ?? 0);
  const room = Math.max(0, maxLength - 3 - qa.length);
  const truncated = da.length > room;
  da = da.slice(0, room);
  const ids = Int32Array.from([CLS, ...qa, SEP, ...da, SEP]);
  const typeIds = new Int32Array(ids.length);
  typeIds.fill(1, qa.length + 2);
  return { ids, typeIds, truncated };
}

/** Windows of the document (`stride` chars shared by neighbours), each with the whole query. */
export function encodeCharChunks(q: string, d: string, maxLength: number, stride: number): Segment[] {
  const room = maxLength - 3 - q.length;
  if (d.length <= room) return [encodeChars(q, d, maxLength)];
  const out: Segment[] = [];
  for (let start = 0; ; start += room - stride) {
    out.push(encodeChars(q, d.slice(start, start + room), maxLength));
    if (start + room >= d.length) break;
  }
  return out;
}

export interface TestEngineOptions {
  numLabels?: number;
  /** Milliseconds each batch takes (a timer: the JS thread stays free, as with the native thread). */
  delayMs?: number;
  /** Report computed slots as if the batch were padded to its longest sequence. */
  padToLongest?: boolean;
}

export class TestEngine {
  readonly numLabels: number;
  readonly batches: Array<{ offsets: Int32Array; tokens: number }> = [];
  inFlight = 0;
  maxInFlight = 0;
  disposeCalls = 0;
  disposed = false;
  delayMs: number;
  private readonly padToLongest: boolean;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(o: TestEngineOptions = {}) {
    this.numLabels = o.numLabels ?? 1;
    this.delayMs = o.delayMs ?? 0;
    this.padToLongest = o.padToLongest ?? false;
  }

  forward(tokens: Int32Array, typeIds: Int32Array, offsets: Int32Array): Promise<ForwardResult> {
    if (this.disposed)
      return Promise.reject(Object.assign(new Error('engine disposed'), { code: 'E_ENGINE' }));
    const t = Int32Array.from(tokens);
    const ty = Int32Array.from(typeIds);
    const off = Int32Array.from(offsets);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const run = this.chain.then(async () => {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      this.inFlight--;
      const B = off.length - 1;
      this.batches.push({ offsets: off, tokens: t.length });
      if (t.includes(POISON)) throw Object.assign(new Error('poisoned batch'), { code: 'E_ENGINE' });
      const logits = new Float32Array(B * this.numLabels);
      let longest = 0;
      for (let i = 0; i < B; i++) {
        const a = off[i] as number;
        const b = off[i + 1] as number;
        longest = Math.max(longest, b - a);
        logits.set(referenceLogits(t.subarray(a, b), ty.subarray(a, b), this.numLabels), i * this.numLabels);
      }
      return {
        logits,
        inferenceMs: this.delayMs,
        computedSlots: this.padToLongest ? B * longest : t.length,
      };
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  memory(): EngineMemory {
    if (this.disposed) throw new EngineError('disposed');
    return { activeBytes: 1000, peakBytes: 2000, cacheBytes: 0 };
  }

  async dispose(): Promise<void> {
    this.disposeCalls++;
    await this.chain;
    this.disposed = true;
  }
}

/** A seeded PRNG (mulberry32, src/workload.ts) for workloads. */
export const rng = seededRandom;

export function randomText(r: () => number, min: number, max: number): string {
  const n = min + Math.floor(r() * (max - min + 1));
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(97 + Math.floor(r() * 26));
  return s;
}
