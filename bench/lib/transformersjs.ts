/**
 * The baseline the cpu engine is measured against: transformers.js (ONNX Runtime, float32 or q8) run the way
 * its users run a cross-encoder: the tokenizer pads each batch to its longest pair, then one session
 * run per batch. Give it a folder made by exportBertOnnx (or any transformers.js model folder).
 */
import { availableParallelism } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { InputError } from '../../src/errors';

export interface TransformersJsOptions {
  /** Batches run first and left out of the figures (default 1). */
  warmupBatches?: number;
  /** ORT intra-op threads; 0 or absent leaves ORT's default (one per physical core). */
  intraOpNumThreads?: number;
  /** Keep the logits (input order) in the result, to compare engines. */
  keepLogits?: boolean;
  /** 'fp32' (onnx/model.onnx, the default) or 'q8' (onnx/model_quantized.onnx). */
  dtype?: 'fp32' | 'q8';
}

export interface TransformersJsResult {
  pairs: number;
  batch: number;
  batches: number;
  /** End to end: tokenize + pad + tensors + ONNX Runtime + reading the logits, over the wall time. */
  pairsPerSec: number;
  /** ONNX Runtime (model call) time only. */
  inferencePairsPerSec: number;
  wallMs: number;
  tokenizeMs: number;
  inferenceMs: number;
  /**
   * CPU time of this process (all threads) over the timed batches. On a shared machine, pairs per
   * CPU-second with one intra-op thread is the figure that load on other processes barely moves.
   */
  cpuMs: number;
  /** ONNX Runtime time of each timed batch, in order (for medians when the machine is noisy). */
  batchInferenceMs: number[];
  /** 1 - real tokens / token slots computed (batch x longest pair), in percent. */
  paddingWastePct: number;
  realTokens: number;
  computedSlots: number;
  /** What was passed to ORT: 0 means ORT's default (one thread per physical core). */
  intraOpNumThreads: number;
  logicalCpus: number;
  transformersVersion: string;
  dtype: 'fp32' | 'q8';
  numLabels: number;
  logits?: Float32Array;
}

interface Encoded {
  input_ids: { dims: number[]; data: BigInt64Array };
  attention_mask: { dims: number[]; data: BigInt64Array };
}

export async function runTransformersJs(
  modelOnnxDir: string,
  pairs: Array<[string, string]>,
  batch: number,
  opts: TransformersJsOptions = {},
): Promise<TransformersJsResult> {
  if (!Number.isInteger(batch) || batch < 1)
    throw new InputError(`batch must be a positive integer (got ${batch}).`);
  if (pairs.length === 0) throw new InputError('runTransformersJs needs at least one pair.');
  const tjs = await import('@huggingface/transformers');
  const dir = resolve(modelOnnxDir);
  // Offline and from this folder only: the id is the folder's name under its parent.
  tjs.env.allowRemoteModels = false;
  tjs.env.allowLocalModels = true;
  tjs.env.localModelPath = dirname(dir);
  const threads = opts.intraOpNumThreads ?? 0;
  const tokenizer = await tjs.AutoTokenizer.from_pretrained(basename(dir));
  const model = await tjs.AutoModelForSequenceClassification.from_pretrained(basename(dir), {
    dtype: opts.dtype ?? 'fp32',
    ...(threads > 0 ? { session_options: { intraOpNumThreads: threads } } : {}),
  });
  try {
    const run = async (chunk: Array<[string, string]>) => {
      const t0 = performance.now();
      const inputs = tokenizer(
        chunk.map((p) => p[0]),
        { text_pair: chunk.map((p) => p[1]), padding: true, truncation: true },
      ) as unknown as Encoded;
      const t1 = performance.now();
      const { logits } = (await model(inputs)) as { logits: { dims: number[]; data: Float32Array } };
      const t2 = performance.now();
      let real = 0;
      for (const m of inputs.attention_mask.data) real += Number(m);
      return { tokenizeMs: t1 - t0, inferenceMs: t2 - t1, real, slots: inputs.input_ids.data.length, logits };
    };

    for (let w = 0; w < (opts.warmupBatches ?? 1); w++) await run(pairs.slice(0, batch));

    let tokenizeMs = 0;
    let inferenceMs = 0;
    let realTokens = 0;
    let computedSlots = 0;
    let numLabels = 0;
    const kept: Float32Array[] = [];
    const batchInferenceMs: number[] = [];
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    for (let i = 0; i < pairs.length; i += batch) {
      const r = await run(pairs.slice(i, i + batch));
      tokenizeMs += r.tokenizeMs;
      inferenceMs += r.inferenceMs;
      batchInferenceMs.push(r.inferenceMs);
      realTokens += r.real;
      computedSlots += r.slots;
      numLabels = r.logits.dims[1] ?? 1;
      if (opts.keepLogits) kept.push(Float32Array.from(r.logits.data));
    }
    const wallMs = performance.now() - start;
    const cpu = process.cpuUsage(cpu0);
    const result: TransformersJsResult = {
      pairs: pairs.length,
      batch,
      batches: Math.ceil(pairs.length / batch),
      pairsPerSec: (pairs.length / wallMs) * 1000,
      inferencePairsPerSec: (pairs.length / inferenceMs) * 1000,
      wallMs,
      tokenizeMs,
      inferenceMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      batchInferenceMs,
      paddingWastePct: (1 - realTokens / computedSlots) * 100,
      realTokens,
      computedSlots,
      intraOpNumThreads: threads,
      logicalCpus: availableParallelism(),
      transformersVersion: tjs.env.version,
      dtype: opts.dtype ?? 'fp32',
      numLabels,
    };
    if (opts.keepLogits) {
      const all = new Float32Array(pairs.length * numLabels);
      let o = 0;
      for (const k of kept) {
        all.set(k, o);
        o += k.length;
      }
      result.logits = all;
    }
    return result;
  } finally {
    await model.dispose();
  }
}
