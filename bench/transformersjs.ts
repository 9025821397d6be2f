/**
 * transformers.js (ONNX Runtime, float32, padding to the longest pair) on a MiniLM-L6-shaped model:
 * the baseline of the cpu engine's speed target.
 *
 *   node --import tsx bench/transformersjs.ts [--pairs 320] [--batch 32] [--seed 42] [--threads N]
 *                                             [--model DIR] [--runs 3]
 *
 * Without --model it uses the bench's synthetic MiniLM-L6 model (seeded random weights, the real
 * uncased vocabulary), exported once to ONNX under the OS temp folder.
 */
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { syntheticModel } from '../src/bench/model';
import { median } from '../src/bench/stats';
import { msMarcoPairs } from '../src/workload';
import { cachedOnnx } from './lib/onnx-export';
import { runTransformersJs } from './lib/transformersjs';

const { values } = parseArgs({
  options: {
    pairs: { type: 'string', default: '320' },
    batch: { type: 'string', default: '32' },
    seed: { type: 'string', default: '42' },
    threads: { type: 'string', default: '0' },
    runs: { type: 'string', default: '3' },
    model: { type: 'string' },
  },
});
async function main(): Promise<void> {
  const seed = Number(values.seed);
  const batch = Number(values.batch);
  const modelDir = resolve(values.model ?? (await syntheticModel('minilm-l6', 'float32')));
  const onnxDir = await cachedOnnx(modelDir);
  const pairs = msMarcoPairs(Number(values.pairs), seed);
  const c = cpus();
  console.log(`machine: ${c[0]?.model.trim()} x${c.length} logical CPUs, node ${process.version}`);
  console.log(
    `model: ${modelDir} -> ${onnxDir}/onnx/model.onnx; ${pairs.length} MS MARCO-like pairs (seed ${seed})`,
  );
  for (let r = 0; r < Number(values.runs); r++) {
    const res = await runTransformersJs(onnxDir, pairs, batch, { intraOpNumThreads: Number(values.threads) });
    const batchMs = median(res.batchInferenceMs);
    console.log(
      `run ${r + 1}: transformers.js ${res.transformersVersion} fp32, batch ${batch}, intraOpNumThreads ` +
        `${res.intraOpNumThreads || 'ORT default'}: ${res.pairsPerSec.toFixed(1)} pairs/s end to end, ` +
        `${res.inferencePairsPerSec.toFixed(1)} pairs/s inference only (median batch ${batchMs.toFixed(0)} ms), ` +
        `${((res.pairs / res.cpuMs) * 1000).toFixed(1)} pairs per CPU-second, tokenize ${res.tokenizeMs.toFixed(0)} ms, ${(res.realTokens / res.pairs).toFixed(1)} tokens/pair, ` +
        `padding waste ${res.paddingWastePct.toFixed(1)}%, load average ${loadavg()[0]?.toFixed(1)}`,
    );
  }
}

await main();
