/**
 * Issue 18: tokenizing in worker threads (src/tokenizer-pool.ts) gives exactly what the JS thread gives:
 * the golden tokenizer fixtures (WordPiece, Unigram, BPE; both truncations) through the pool, chunk
 * mode's windows, and CrossEncoder's logits bit for bit; and the scheduler's guarantees hold with
 * workers: abort, dispose, a worker that dies, a tokenizer that changed on disk, the event loop.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossEncoder } from '../src/cross-encoder';
import { EngineError, InputError, TokenizerError } from '../src/errors';
import { type ChunkEncoder, type EncodedChunk, Scheduler } from '../src/scheduler';
import { type EncoderSpec, fingerprint, makeEncoder } from '../src/scheduler/encoder';
import { Tokenizer, type TokenizerFiles } from '../src/tokenizer';
import { TokenizerPool } from '../src/tokenizer-pool';
import type { ModelFiles } from '../src/types';
import { msMarcoPairs } from '../src/workload';
import { encodeChars, referenceLogits, TestEngine } from './helpers/api-engine';
import { cleanupModels, pairPool, sameBits, syntheticModel } from './helpers/api-model';
import { FAMILY_FIXTURES, type GoldenCase } from './helpers/family-goldens';

const BERT = join(import.meta.dirname, 'fixtures', 'tokenizer');

const SOURCES: Record<string, { files: TokenizerFiles; golden: string }> = {
  'WordPiece (tokenizer.json)': {
    files: {
      tokenizerJson: join(BERT, 'tokenizer-uncased.json'),
      tokenizerConfig: join(BERT, 'tokenizer_config-uncased.json'),
    },
    golden: join(BERT, 'golden-uncased.json.gz'),
  },
  'WordPiece (vocab.txt, cased)': {
    files: {
      vocabTxt: join(BERT, 'vocab-cased.txt'),
      tokenizerConfig: join(BERT, 'tokenizer_config-cased.json'),
    },
    golden: join(BERT, 'golden-cased.json.gz'),
  },
  ...Object.fromEntries(
    (['unigram', 'bpe'] as const).map((kind) => [
      kind === 'unigram' ? 'Unigram' : 'BPE',
      {
        files: {
          tokenizerJson: join(FAMILY_FIXTURES, kind, 'tokenizer.json'),
          tokenizerConfig: join(FAMILY_FIXTURES, kind, 'tokenizer_config.json'),
          specialTokensMap: join(FAMILY_FIXTURES, kind, 'special_tokens_map.json'),
        },
        golden: join(FAMILY_FIXTURES, `golden-${kind}.json.gz`),
      },
    ]),
  ),
};

/** A pool whose workers are ready; it must match the JS thread's encoder for `spec`. */
async function startPool(files: TokenizerFiles, spec: EncoderSpec, threads: number): Promise<TokenizerPool> {
  const t = await Tokenizer.fromFiles(files);
  const pool = new TokenizerPool({
    threads,
    files,
    encoder: spec,
    fingerprint: fingerprint(t, makeEncoder(t, spec)),
  });
  await pool.ready();
  return pool;
}

/** The sequences of each pair of a chunk, as plain arrays (ids then type ids per window). */
function unpack(c: EncodedChunk): number[][][] {
  const out: number[][][] = [];
  let k = 0;
  let start = 0;
  for (const n of c.segsPerPair) {
    const windows: number[][] = [];
    for (let w = 0; w < n; w++, k++) {
      const end = c.ends[k] as number;
      windows.push([...c.ids.subarray(start, end), -1, ...c.typeIds.subarray(start, end)]);
      start = end;
    }
    out.push(windows);
  }
  return out;
}

function workersOf(pool: TokenizerPool): Worker[] {
  return [...(pool as unknown as { slots: Set<{ worker: Worker }> }).slots].map((s) => s.worker);
}

/** The goldens' groups run through workers: both truncations, cut (32) and mostly whole (512). */
const GROUPS = [
  { maxLength: 512, truncation: 'longest_first' },
  { maxLength: 32, truncation: 'only_second' },
] as const;

describe('golden tokenizer fixtures through the worker pool', () => {
  it.each(Object.entries(SOURCES))(
    '%s: every case of both truncations',
    async (_, src) => {
      const { cases } = JSON.parse(gunzipSync(readFileSync(src.golden)).toString('utf8')) as {
        cases: GoldenCase[];
      };
      // One worker per group, started together (a worker's start is mostly reading the tokenizer).
      const pools = await Promise.all(
        GROUPS.map((g) => startPool(src.files, { mode: 'truncate', ...g, stride: 0 }, 1)),
      );
      let checked = 0;
      let want = 0;
      try {
        const jobs: Promise<void>[] = [];
        for (const [gi, g] of GROUPS.entries()) {
          const pool = pools[gi] as TokenizerPool;
          const group = cases.filter((c) => c.maxLength === g.maxLength && c.truncation === g.truncation);
          want += group.length;
          const good = group.filter((c) => c.ids !== undefined);
          for (let i = 0; i < good.length; i += 32) {
            const slice = good.slice(i, i + 32);
            jobs.push(
              pool
                .encode(
                  i,
                  slice.map((c) => [c.q, c.d] as const),
                )
                .then((r) => {
                  const got = unpack(r).map((w) => w[0]);
                  expect(got).toEqual(slice.map((c) => [...(c.ids ?? []), -1, ...(c.typeIds ?? [])]));
                  checked += slice.length;
                }),
            );
          }
          // Hugging Face refuses these (only_second with no room for the document): an InputError here too.
          for (const c of group.filter((x) => x.ids === undefined)) {
            jobs.push(
              expect(pool.encode(0, [[c.q, c.d]]))
                .rejects.toBeInstanceOf(InputError)
                .then(() => void checked++),
            );
          }
        }
        await Promise.all(jobs);
      } finally {
        await Promise.all(pools.map((p) => p.dispose()));
      }
      expect(want).toBeGreaterThan(700);
      expect(checked).toBe(want);
    },
    120_000,
  );

  it("chunk mode: the workers' windows are the JS thread's", async () => {
    const files = SOURCES['WordPiece (tokenizer.json)']?.files as TokenizerFiles;
    const spec: EncoderSpec = { mode: 'chunk', maxLength: 64, truncation: undefined, stride: 16 };
    const t = await Tokenizer.fromFiles(files);
    const here = makeEncoder(t, spec);
    const pairs = msMarcoPairs(64, 5).map(([q, d], i) => [q, i % 3 === 0 ? d.repeat(6) : d] as const);
    const pool = await startPool(files, spec, 2);
    try {
      const got = unpack(await pool.encode(0, pairs));
      const want = pairs.map(([q, d]) => here(q, d).map((s) => [...s.ids, -1, ...s.typeIds]));
      expect(got).toEqual(want);
      expect(want.some((w) => w.length > 1)).toBe(true);
    } finally {
      await pool.dispose();
    }
  });
});

describe('the pool on its own', () => {
  const files = SOURCES['WordPiece (tokenizer.json)']?.files as TokenizerFiles;
  const spec: EncoderSpec = { mode: 'truncate', maxLength: 128, truncation: undefined, stride: 0 };

  it("refuses workers whose tokenizer differs from the JS thread's (files changed on disk)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tokpool-'));
    try {
      const t = await Tokenizer.fromFiles(files);
      const print = fingerprint(t, makeEncoder(t, spec));
      // The files change after the JS thread read them: 'cat' and 'dog' swap ids in the workers' vocabulary.
      const json = JSON.parse(readFileSync(files.tokenizerJson as string, 'utf8'));
      const v = json.model.vocab as Record<string, number>;
      [v.cat, v.dog] = [v.dog as number, v.cat as number];
      const changed = { ...files, tokenizerJson: join(dir, 'tokenizer.json') };
      writeFileSync(changed.tokenizerJson, JSON.stringify(json));
      const pool = new TokenizerPool({ threads: 1, files: changed, encoder: spec, fingerprint: print });
      await expect(pool.ready()).rejects.toBeInstanceOf(TokenizerError);
      expect(pool.usable()).toBe(false);
      await pool.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a worker that cannot load its tokenizer is not started again; ready() says why, typed', async () => {
    const missing = { tokenizerJson: join(tmpdir(), 'no-such-dir-tokpool', 'tokenizer.json') };
    const pool = new TokenizerPool({ threads: 2, files: missing, encoder: spec, fingerprint: 'x' });
    await expect(pool.ready()).rejects.toMatchObject({ code: 'E_BAD_TOKENIZER' });
    // ready() rejects with the first failure; the other worker fails the same way soon after.
    for (let i = 0; i < 1000 && pool.usable(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(pool.usable()).toBe(false);
    expect(pool.idle()).toBe(0);
    await pool.dispose();
  });

  it('a worker that dies fails the chunks it held with an EngineError and is replaced', async () => {
    const pool = await startPool(files, spec, 1);
    try {
      const [w] = workersOf(pool);
      const pairs = msMarcoPairs(32, 1);
      const held = pool.encode(0, pairs);
      void (w as Worker).terminate();
      await expect(held).rejects.toBeInstanceOf(EngineError);
      const t0 = performance.now();
      while (pool.idle() === 0 && performance.now() - t0 < 30_000)
        await new Promise((r) => setTimeout(r, 20));
      expect(workersOf(pool)).toHaveLength(1);
      expect(workersOf(pool)[0]).not.toBe(w);
      const t = await Tokenizer.fromFiles(files);
      const again = unpack(await pool.encode(0, pairs)).map((x) => x[0]);
      expect(again).toEqual(
        pairs.map(([q, d]) => makeEncoder(t, spec)(q, d).map((s) => [...s.ids, -1, ...s.typeIds])[0]),
      );
    } finally {
      await pool.dispose();
    }
  });

  it('dispose rejects what the workers held and stops them', async () => {
    const pool = await startPool(files, spec, 2);
    const exits = workersOf(pool).map((w) => new Promise((r) => w.once('exit', r)));
    const held = expect(pool.encode(0, msMarcoPairs(32, 2))).rejects.toMatchObject({ code: 'E_DISPOSED' });
    await pool.dispose();
    await held;
    await Promise.all(exits);
    expect(pool.usable()).toBe(false);
    await expect(pool.encode(0, [['a', 'b']])).rejects.toMatchObject({ code: 'E_DISPOSED' });
  });
});

/**
 * A ChunkEncoder whose chunks come back only when the test says (the pool's timing cannot be steered),
 * encoding as test/helpers/api-engine.ts's encodeChars; it records how many batches were in the
 * engine whenever it was handed a chunk.
 */
class HeldEncoder implements ChunkEncoder {
  readonly threads = 2;
  onIdle: (() => void) | undefined;
  readonly held: Array<() => void> = [];
  readonly inEngineAtHandover: number[] = [];
  constructor(private readonly engine: TestEngine) {}
  idle(): number {
    return 2 * this.threads - this.held.length;
  }
  usable(): boolean {
    return true;
  }
  encode(_first: number, pairs: readonly (readonly [string, string])[]): Promise<EncodedChunk> {
    this.inEngineAtHandover.push(this.engine.inFlight);
    const segs = pairs.map(([q, d]) => encodeChars(q, d, 64));
    const ends = new Int32Array(segs.length);
    let at = 0;
    segs.forEach((x, i) => {
      at += x.ids.length;
      ends[i] = at;
    });
    const cat = (f: (x: (typeof segs)[number]) => Int32Array) => {
      const out = new Int32Array(at);
      let o = 0;
      for (const x of segs) {
        out.set(f(x), o);
        o += f(x).length;
      }
      return out;
    };
    const chunk: EncodedChunk = {
      ids: cat((x) => x.ids),
      typeIds: cat((x) => x.typeIds),
      ends,
      segsPerPair: new Int32Array(segs.length).fill(1),
      truncated: new Uint8Array(segs.length),
      ms: 0,
    };
    return new Promise((resolve) => this.held.push(() => resolve(chunk)));
  }
  release(): void {
    this.held.shift()?.();
  }
  async dispose(): Promise<void> {}
}

/** Hands the held chunks back one at a time until the call settles; its logits. */
async function releaseUntilDone(
  held: HeldEncoder,
  call: Promise<{ logits: Float32Array }>,
): Promise<Float32Array> {
  let done = false;
  void call.then(() => {
    done = true;
  });
  while (!done) {
    held.release();
    await new Promise((r) => setTimeout(r, 2));
  }
  return (await call).logits;
}

/** What the test engine scores for each pair, computed on its own. */
function referenceFor(pairs: ReadonlyArray<readonly [string, string]>): Float32Array {
  return new Float32Array(
    pairs.map(([q, d]) => {
      const x = encodeChars(q, d, 64);
      return referenceLogits(x.ids, x.typeIds, 1)[0] as number;
    }),
  );
}

describe('pipelining (scheduler with chunks tokenized elsewhere)', () => {
  it('a full batch goes to the engine while later pairs still tokenize; chunks are handed over while batches compute', async () => {
    const engine = new TestEngine({ delayMs: 5 });
    const held = new HeldEncoder(engine);
    const s = new Scheduler({ engine, encode: () => [], tokenizer: held, numLabels: 1, maxBatchSize: 8 });
    const pairs = pairPool(9, 100, 30);
    const call = s.submit(pairs);
    await new Promise((r) => setImmediate(r));
    expect(held.held.length).toBeGreaterThan(0);
    expect(engine.inFlight).toBe(0);
    held.release(); // the first chunk: more than a batch of pairs
    await new Promise((r) => setImmediate(r));
    expect(engine.inFlight).toBe(2); // two batches in the engine (pipelineDepth 2) ...
    expect(s.queueDepth).toBeGreaterThan(50); // ... while most pairs are still to tokenize
    expect(sameBits(await releaseUntilDone(held, call), referenceFor(pairs))).toBe(true);
    expect(held.inEngineAtHandover.filter((n) => n > 0).length).toBeGreaterThan(0);
    expect(engine.batches.every((b) => b.offsets.length - 1 <= 8)).toBe(true);
    await s.dispose();
  });

  it('earlyBatchTokens: an idle engine starts on the tokenized part of a call; 0 waits for the whole call', async () => {
    const run = async (earlyBatchTokens: number) => {
      const engine = new TestEngine({ delayMs: 5 });
      const held = new HeldEncoder(engine);
      const s = new Scheduler({
        engine,
        encode: () => [],
        tokenizer: held,
        numLabels: 1,
        maxBatchSize: 1024,
        maxBatchTokens: 1 << 20,
        earlyBatchTokens,
      });
      const pairs = pairPool(9, 100, 30);
      const call = s.submit(pairs);
      await new Promise((r) => setImmediate(r));
      held.release(); // the first chunk of several: less than a full batch
      await new Promise((r) => setImmediate(r));
      const inEngineAfterOneChunk = engine.inFlight;
      expect(sameBits(await releaseUntilDone(held, call), referenceFor(pairs))).toBe(true);
      await s.dispose();
      return { inEngineAfterOneChunk, batches: engine.batches.length };
    };
    const waiting = await run(0);
    expect(waiting).toEqual({ inEngineAfterOneChunk: 0, batches: 1 });
    const early = await run(64);
    expect(early.inEngineAfterOneChunk).toBe(1);
    expect(early.batches).toBeGreaterThan(1);
  });
});

describe('CrossEncoder with tokenizer workers (cpu engine, tiny model)', () => {
  let files: ModelFiles;
  const BASE = { backend: 'cpu', maxLength: 128, warmup: false, maxBatchSize: 16 } as const;
  beforeAll(async () => {
    files = await syntheticModel('tiny', 7);
  });
  afterAll(() => cleanupModels());

  it('scores bit for bit as the JS thread does, truncating and chunking, one call or many', async () => {
    const pairs = pairPool(3, 150, 400);
    for (const longDocuments of ['truncate', 'chunk'] as const) {
      const a = await CrossEncoder.load(files, { ...BASE, longDocuments, tokenizerThreads: 0 });
      const b = await CrossEncoder.load(files, { ...BASE, longDocuments, tokenizerThreads: 2 });
      try {
        expect([a.info.tokenizerThreads, b.info.tokenizerThreads]).toEqual([0, 2]);
        const want = await a.predict(pairs);
        expect(sameBits(await b.predict(pairs), want)).toBe(true);
        const parts = await Promise.all([0, 50, 100].map((i) => b.predict(pairs.slice(i, i + 50))));
        expect(sameBits(Float32Array.from(parts.flatMap((p) => [...p])), want)).toBe(true);
        expect(b.stats().pairs).toBe(2 * pairs.length);
      } finally {
        await Promise.all([a.dispose(), b.dispose()]);
      }
    }
  });

  it('validates tokenizerThreads', async () => {
    for (const bad of [-1, 1.5, 65, '2']) {
      await expect(CrossEncoder.load(files, { ...BASE, tokenizerThreads: bad as number })).rejects.toThrow(
        /tokenizerThreads/,
      );
    }
  });

  it('an aborted call fails alone, its chunks are dropped, and nothing stays in the queue or the workers', async () => {
    const ce = await CrossEncoder.load(files, { ...BASE, tokenizerThreads: 2 });
    try {
      const pairs = pairPool(4, 400, 100);
      const ac = new AbortController();
      const aborted = ce.predict(pairs, { signal: ac.signal });
      const other = ce.predict(pairs.slice(0, 40));
      setImmediate(() => ac.abort());
      await expect(aborted).rejects.toMatchObject({ code: 'E_ABORTED' });
      const ref = await CrossEncoder.load(files, { ...BASE, tokenizerThreads: 0 });
      expect(sameBits(await other, await ref.predict(pairs.slice(0, 40)))).toBe(true);
      await ref.dispose();
      expect(ce.stats().pairs).toBeLessThan(pairs.length);
      expect(ce.stats().queueDepth).toBe(0);
      const pool = (ce as unknown as { scheduler: { tokenizer: TokenizerPool } }).scheduler.tokenizer;
      expect(pool.idle()).toBe(4); // 2 workers x 2 chunks: none held
    } finally {
      await ce.dispose();
    }
  });

  it('QueueFull counts pairs in the workers; a deadline passing while pairs are there fails the call alone', async () => {
    const ce = await CrossEncoder.load(files, { ...BASE, tokenizerThreads: 1, maxQueuePairs: 100 });
    const ref = await CrossEncoder.load(files, { ...BASE, tokenizerThreads: 0 });
    try {
      const pairs = pairPool(6, 100, 100);
      const first = ce.predict(pairs.slice(0, 80));
      await new Promise((r) => setImmediate(r)); // its first chunks are in the worker now
      await expect(ce.predict(pairs.slice(0, 21))).rejects.toMatchObject({ code: 'E_QUEUE_FULL' });
      const late = ce.predict(pairs.slice(80, 100), { deadlineMs: 0 });
      await expect(late).rejects.toMatchObject({ code: 'E_DEADLINE' });
      expect(sameBits(await first, await ref.predict(pairs.slice(0, 80)))).toBe(true);
      expect(ce.stats().queueDepth).toBe(0);
    } finally {
      await Promise.all([ce.dispose(), ref.dispose()]);
    }
  });

  it('a worker that dies fails only the calls whose pairs it held; the others and later calls succeed', async () => {
    const ce = await CrossEncoder.load(files, { ...BASE, tokenizerThreads: 1 });
    const ref = await CrossEncoder.load(files, { ...BASE, tokenizerThreads: 0 });
    try {
      const pool = (ce as unknown as { scheduler: { tokenizer: TokenizerPool } }).scheduler.tokenizer;
      const pairs = pairPool(5, 200, 100);
      const first = ce.predict(pairs.slice(0, 100)); // its first chunks go to the worker at once
      const second = ce.predict(pairs.slice(100)); // waits in the queue behind it
      await new Promise((r) => setImmediate(r));
      void (workersOf(pool)[0] as Worker).terminate();
      await expect(first).rejects.toBeInstanceOf(EngineError);
      expect(sameBits(await second, await ref.predict(pairs.slice(100)))).toBe(true);
      expect(sameBits(await ce.predict(pairs.slice(0, 100)), await ref.predict(pairs.slice(0, 100)))).toBe(
        true,
      );
    } finally {
      await Promise.all([ce.dispose(), ref.dispose()]);
    }
  });

  it('dispose with chunks in the workers: every call rejects E_DISPOSED, the workers stop', async () => {
    const ce = await CrossEncoder.load(files, { ...BASE, tokenizerThreads: 2 });
    const pool = (ce as unknown as { scheduler: { tokenizer: TokenizerPool } }).scheduler.tokenizer;
    const exits = workersOf(pool).map((w) => new Promise((r) => w.once('exit', r)));
    const calls = [0, 1, 2].map((i) => ce.predict(pairPool(10 + i, 100)));
    const settled = Promise.allSettled(calls);
    await new Promise((r) => setImmediate(r));
    await ce.dispose();
    for (const r of await settled)
      expect(r).toMatchObject({ status: 'rejected', reason: { code: 'E_DISPOSED' } });
    await Promise.all(exits);
  });

  it('keeps the event loop responsive (p99 delay < 20 ms) with the engine saturated', async () => {
    const ce = await CrossEncoder.load(files, {
      backend: 'cpu',
      threads: 1,
      maxBatchSize: 64,
      tokenizerThreads: 1,
    });
    try {
      const pairs = msMarcoPairs(512, 3);
      const h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      const t0 = performance.now();
      let n = 0;
      const client = async () => {
        while (performance.now() - t0 < 4000) {
          const start = (n++ * 32) % pairs.length;
          await ce.predict(pairs.slice(start, start + 32));
        }
      };
      await Promise.all(Array.from({ length: 8 }, client));
      h.disable();
      const p99 = h.percentile(99) / 1e6;
      console.log(
        `tokenizerThreads 1: event loop delay p99 ${p99.toFixed(2)} ms, max ${(h.max / 1e6).toFixed(2)} ms`,
      );
      expect(p99).toBeLessThan(20);
    } finally {
      await ce.dispose();
    }
  }, 60_000);

  it('a process that never disposes still exits (idle workers keep nothing alive)', () => {
    const script = `
      import { CrossEncoder } from './src/index.ts';
      const ce = await CrossEncoder.load(${JSON.stringify(files.dir)}, { backend: 'cpu', warmup: false, tokenizerThreads: 2 });
      console.log((await ce.predict([['a cat', 'a small mammal'], ['b', 'c']])).length);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: join(import.meta.dirname, '..'),
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.stderr).not.toMatch(/Error/);
    expect({ status: r.status, signal: r.signal, out: r.stdout.trim() }).toEqual({
      status: 0,
      signal: null,
      out: '2',
    });
  }, 90_000);
});
