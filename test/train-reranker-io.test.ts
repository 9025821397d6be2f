// scripts/gpu/reranker_io.py is what writes the trained model of issue 17 on the GPU machine (no way to run
// it there twice): here its safetensors writer and split/join are checked against our own loader. A tiny
// synthetic model's tensors are rewritten by the Python writer (F32, and F16 as numpy rounds), split into
// parts and joined back by its command line; the engine must score the F32 copy exactly as the original and
// the F16 copy exactly as synth's own float16 model of the same seed (an independent rounding to nearest
// even). Also runs the module's own unittest. Skipped where python3 with numpy is missing.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CrossEncoder } from '../src/cross-encoder';
import { synthesizeModel } from '../src/synth';
import { gradedPairs } from '../src/workload';

const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;
const work = mkdtempSync(join(tmpdir(), 'mlx-rerank-reranker-io-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function python(script: string, ...args: string[]): string {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8', cwd: process.cwd() });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}

const REWRITE = `
import json, os, sys
sys.path.insert(0, "scripts/gpu")
import reranker_io as io
src, dst, dtype = sys.argv[1:4]
t = io.read_safetensors(os.path.join(src, "model.safetensors"))
os.makedirs(os.path.join(dst, "w"), exist_ok=True)
io.write_safetensors(os.path.join(dst, "w", "model.safetensors"), list(t.items()), dtype=dtype)
entry = io.split_file(os.path.join(dst, "w", "model.safetensors"), dst, 100_000)
json.dump({"weights": entry, "config": json.load(open(os.path.join(src, "config.json")))}, open(os.path.join(dst, "m.json"), "w"))
`;

async function scores(dir: string): Promise<Float32Array> {
  const pairs = gradedPairs(3, 10, 5).map((p) => [p.query, p.passage] as [string, string]);
  const ce = await CrossEncoder.load(dir, { backend: 'cpu', threads: 1, warmup: false });
  try {
    return await ce.predict(pairs, { activation: 'none' });
  } finally {
    await ce.dispose();
  }
}

describe.skipIf(!hasNumpy)("reranker_io.py (the trained model's writer) against our loader", () => {
  it('passes its own unittest', () => {
    const r = spawnSync('python3', ['-m', 'unittest', 'scripts/gpu/test_reranker_io.py'], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
  });

  it('F32 and F16 files, split and joined, score as the originals', async () => {
    const f32 = join(work, 'f32');
    const f16 = join(work, 'f16');
    await synthesizeModel({ shape: 'tiny', seed: 9, outDir: f32 });
    await synthesizeModel({ shape: 'tiny', seed: 9, dtype: 'float16', outDir: f16 });
    for (const [src, dtype] of [
      [f32, 'F32'],
      [f32, 'F16'],
    ] as const) {
      const parts = join(work, `parts-${dtype}`);
      python(REWRITE, src, parts, dtype);
      const joined = join(work, `joined-${dtype}`);
      python(
        'import sys; sys.path.insert(0, "scripts/gpu"); import reranker_io; reranker_io._join_cli(sys.argv[1:])',
        join(parts, 'm.json'),
        joined,
        '--base',
        src,
      );
      cpSync(join(src, 'config.json'), join(joined, 'config.json'));
      const want = await scores(dtype === 'F32' ? f32 : f16);
      expect(Array.from(await scores(joined))).toEqual(Array.from(want));
    }
  }, 60_000);
});
