/**
 * A batch the engine refuses because of ONE pair fails only that pair's call (issue 13, item 5): the
 * other callers' pairs in the batch are tried again without it and get exactly what they get alone.
 * Real parts throughout: a synthetic model on the cpu engine, and the package's tokenizer loaded from a
 * tokenizer.json with an added token whose id is past the model's vocabulary, so that one caller's
 * text makes an id the engine refuses (E_INPUT). The scheduler is driven directly: CrossEncoder.load
 * may refuse such a tokenizer outright, and the scheduler must hold regardless.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatchMetrics } from '../src/metrics';
import { loadModelSpec } from '../src/model';
import { type NativeEngine, native } from '../src/native';
import { Scheduler } from '../src/scheduler';
import { Tokenizer } from '../src/tokenizer';
import { cleanupModels, pairPool, sameBits, syntheticModel } from './helpers/api-model';

type Pair = readonly [string, string];
const OOB = '<oob>';
const pool = pairPool(11, 40, 30);
let engine: NativeEngine;
let tokenizer: Tokenizer;
let alone: Float32Array[];

function scheduler(batches: BatchMetrics[] = []): Scheduler {
  return new Scheduler({
    engine: { forward: engine.forward, memory: engine.memory, dispose: async () => undefined },
    encode: (q, d) => [tokenizer.encodePair(q, d, { maxLength: 64 })],
    numLabels: 1,
    maxBatchSize: 64,
    onBatch: (b) => batches.push(b),
  });
}

beforeAll(async () => {
  const files = await syntheticModel('tiny', 6);
  const spec = await loadModelSpec(files);
  const json = JSON.parse(readFileSync(files.tokenizerJson as string, 'utf8'));
  json.added_tokens.push({ id: spec.vocabSize + 5, content: OOB, normalized: false, special: false });
  writeFileSync(files.tokenizerJson as string, JSON.stringify(json));
  tokenizer = await Tokenizer.fromFiles(files);
  expect(Math.max(...tokenizer.encodePair('q', `a ${OOB} b`, { maxLength: 64 }).ids)).toBe(
    spec.vocabSize + 5,
  );
  engine = await native().loadEngine({ backend: 'cpu', device: 'cpu', weights: files.weights, spec });
  const s = scheduler();
  alone = [];
  for (const p of pool) alone.push((await s.submit([p])).logits);
});

afterAll(async () => {
  await engine?.dispose();
  cleanupModels();
});

describe('one bad pair in a shared batch', () => {
  it('fails only its own call; every other caller in the batch gets its results alone', async () => {
    const batches: BatchMetrics[] = [];
    const s = scheduler(batches);
    const calls = [0, 1, 2, 3, 4].map((k) => pool.slice(k * 6, k * 6 + 6));
    const badCall: Pair[] = [pool[30] as Pair, ['what is oob', `text ${OOB} here`], pool[31] as Pair];
    // All calls join the queue in one tick, so they share the first batch with the bad pair.
    const ps = [...calls.slice(0, 2), badCall, ...calls.slice(2)].map((c) => s.submit(c));
    const settled = await Promise.allSettled(ps);
    const bad = settled.splice(2, 1)[0];
    expect(bad?.status).toBe('rejected');
    expect((bad as PromiseRejectedResult).reason).toMatchObject({ code: 'E_INPUT', name: 'InputError' });
    expect(String((bad as PromiseRejectedResult).reason.message)).toMatch(/vocabulary/);
    settled.forEach((r, k) => {
      expect(r.status).toBe('fulfilled');
      const want = (calls[k] as Pair[]).map((_, i) => alone[k * 6 + i] as Float32Array);
      const got = (r as PromiseFulfilledResult<{ logits: Float32Array }>).value.logits;
      expect(sameBits(got, Float32Array.from(want.map((x) => x[0] as number)))).toBe(true);
    });
    // The retries ran as batches of one call each, and only the good calls' sequences were scored.
    expect(batches.reduce((a, b) => a + b.pairs, 0)).toBe(30);
    expect(batches.length).toBe(5);
    expect(s.stats()).toMatchObject({ calls: 5, failedCalls: 1, queueDepth: 0, inFlightBatches: 0 });
    await s.dispose();
  });

  it('two bad calls in one batch each fail alone; a call that is all good in between resolves', async () => {
    const s = scheduler();
    const b1: Pair[] = [['x', OOB]];
    const b2: Pair[] = [pool[0] as Pair, [OOB, 'y']];
    const good = pool.slice(5, 12);
    const [bad1, ok, bad2] = await Promise.allSettled([s.submit(b1), s.submit(good), s.submit(b2)]);
    expect(bad1).toMatchObject({ status: 'rejected', reason: { code: 'E_INPUT' } });
    expect(bad2).toMatchObject({ status: 'rejected', reason: { code: 'E_INPUT' } });
    const want = Float32Array.from(alone.slice(5, 12).map((x) => x[0] as number));
    expect(sameBits((ok as PromiseFulfilledResult<{ logits: Float32Array }>).value.logits, want)).toBe(true);
    await s.dispose();
  });
});
