/**
 * Tokenizer throughput on the JS thread against N worker threads (src/tokenizer-pool.ts), side by
 * side in one run on the same pairs: chunks of 32 pairs, every worker kept busy, best of 3 rounds.
 *
 *   node --import tsx bench/tokenizer-threads.ts [MODEL_DIR] [--threads 0,1,2] [--pairs 4096]
 *
 * MODEL_DIR defaults to a synthetic 'tiny' model (its tokenizer is BERT's uncased WordPiece).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveModel } from '../src/hub';
import { type EncoderSpec, fingerprint, makeEncoder } from '../src/scheduler/encoder';
import { synthesizeModel } from '../src/synth';
import { Tokenizer } from '../src/tokenizer';
import { TokenizerPool } from '../src/tokenizer-pool';
import { msMarcoPairs } from '../src/workload';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { threads: { type: 'string', default: '0,1,2' }, pairs: { type: 'string', default: '4096' } },
});
const tmp = mkdtempSync(join(tmpdir(), 'tokthreads-'));
try {
  const files = positionals[0]
    ? await resolveModel(positionals[0], { offline: true })
    : await synthesizeModel({ shape: 'tiny', seed: 1, outDir: tmp });
  const pairs = msMarcoPairs(Number(values.pairs), 42);
  const spec: EncoderSpec = { mode: 'truncate', maxLength: 512, truncation: undefined, stride: 0 };
  const tokenizer = await Tokenizer.fromFiles(files);
  const encode = makeEncoder(tokenizer, spec);
  const rates: Record<number, number> = {};
  for (const threads of values.threads.split(',').map(Number)) {
    let best = Number.POSITIVE_INFINITY;
    if (threads === 0) {
      for (let round = 0; round < 3; round++) {
        const t0 = performance.now();
        for (const [q, d] of pairs) encode(q, d);
        best = Math.min(best, performance.now() - t0);
      }
    } else {
      const t0 = performance.now();
      const pool = new TokenizerPool({
        threads,
        files,
        encoder: spec,
        fingerprint: fingerprint(tokenizer, encode),
      });
      await pool.ready();
      const startMs = performance.now() - t0;
      for (let round = 0; round < 3; round++) {
        const t1 = performance.now();
        let next = 0;
        // One loop per chunk slot (2 a worker), each taking the next chunk when its last came back.
        const lane = async () => {
          for (let i = next; i < pairs.length; i = next) {
            next += 32;
            await pool.encode(i, pairs.slice(i, i + 32));
          }
        };
        await Promise.all(Array.from({ length: 2 * threads }, lane));
        best = Math.min(best, performance.now() - t1);
      }
      await pool.dispose();
      console.log(`  (${threads} workers ready in ${startMs.toFixed(0)} ms)`);
    }
    rates[threads] = (pairs.length * 1000) / best;
    const ratio = rates[0] ? ` (${((rates[threads] as number) / rates[0]).toFixed(2)}x threads 0)` : '';
    console.log(`tokenizerThreads ${threads}: ${(rates[threads] as number).toFixed(0)} pairs/s${ratio}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
