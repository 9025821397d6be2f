/**
 * Writes graded ranking pairs (src/workload.ts gradedPairs) as JSONL, one `{"qid","query","passage","label"}`
 * a line, gzip-compressed when the file name ends in .gz: the training and held-out data of
 * scripts/gpu/train_bench_reranker.py, and the pairs scripts/cpu-dtypes-bench.mjs reads (--pairs-file)
 * where only dist/ is present.
 *
 *   node --import tsx scripts/gpu/graded-pairs.ts --queries N [--per-query 10] --seed S --out FILE[.gz]
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { flagInt } from '../../src/validate';
import { gradedPairs } from '../../src/workload';

const { values } = parseArgs({
  options: {
    queries: { type: 'string' },
    'per-query': { type: 'string', default: '10' },
    seed: { type: 'string' },
    out: { type: 'string' },
  },
});
if (values.out === undefined) throw new Error('--out FILE is required');
const queries = flagInt('queries', values.queries ?? '', 1, 1_000_000) as number;
const perQuery = flagInt('per-query', values['per-query'], 2, 1000) as number;
const seed = flagInt('seed', values.seed ?? '', 0, 2 ** 32 - 1) as number;
const text = gradedPairs(queries, perQuery, seed)
  .map((p) => JSON.stringify(p))
  .join('\n')
  .concat('\n');
writeFileSync(values.out, values.out.endsWith('.gz') ? gzipSync(text, { level: 9 }) : text);
console.log(`${values.out}: ${queries} queries x ${perQuery} passages, seed ${seed}`);
