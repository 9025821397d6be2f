/**
 * `mlx-rerank serve` in-process, listening on 127.0.0.1 with the tiny synthetic model on the cpu engine:
 * every route and error status through real HTTP, scores against the library called directly, the
 * official Cohere SDK and a TEI-style request, auth, limits, CORS, request ids, metrics and OpenAPI.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { CohereClient, CohereClientV2 } from 'cohere-ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossEncoder } from '../src/cross-encoder';
import { EngineError } from '../src/errors';
import { buildServer, type HttpOptions } from '../src/server/app';
import { parseServe } from '../src/server/args';
import { type RunningServer, type ServeOptions, startServer } from '../src/server/index';
import { schemas } from '../src/server/schemas';
import type { ModelFiles } from '../src/types';
import { cleanupModels, syntheticModel } from './helpers/api-model';

const KEY = 'test-key-0123456789';
let files: ModelFiles;
let ce: CrossEncoder; // the library in-process: the reference the server's answers are checked against
let open: RunningServer; // no API key, CORS for one origin
let locked: RunningServer; // API key, small limits

/** What `mlx-rerank serve` would run with these flags (its defaults), changed by `over`. */
function options(over: Partial<ServeOptions> = {}): ServeOptions {
  const flags = ['--model', files.dir, '--backend', 'cpu', '--threads', '1', '--offline', '--port', '0'];
  return { ...parseServe([...flags, '--shutdown-timeout', '10', '--log-level', 'silent'], {}), ...over };
}

async function post(base: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

const docs = [
  'a cat sat on the mat',
  'dogs bark at night',
  'the river flows to the sea',
  'cats purr',
  'music',
];
const query = 'what do cats do';

beforeAll(async () => {
  files = await syntheticModel('tiny', 7);
  ce = await CrossEncoder.load(files, { backend: 'cpu', threads: 1 });
  open = await startServer(options({ corsOrigins: ['https://ops.example'] }));
  locked = await startServer(options({ apiKeys: [KEY], maxBodyBytes: 4096, maxDocuments: 8 }));
  await Promise.all([open.loaded, locked.loaded]);
});

afterAll(async () => {
  await Promise.all([open?.close(), locked?.close(), ce?.dispose()]);
  cleanupModels();
});

describe('TEI routes', () => {
  it('POST /rerank: sorted by score, sigmoid unless raw_scores, texts on request, timing headers', async () => {
    const logits = await ce.predict(
      docs.map((d) => [query, d] as [string, string]),
      { activation: 'none' },
    );
    const res = await post(open.url, '/rerank', { query, texts: docs, return_text: true });
    expect(res.status).toBe(200);
    expect(res.body).toHaveLength(docs.length);
    const order = [...docs.keys()].sort((a, b) => (logits[b] as number) - (logits[a] as number) || a - b);
    expect(res.body.map((r: { index: number }) => r.index)).toEqual(order);
    for (const r of res.body as Array<{ index: number; score: number; text: string }>) {
      expect(r.score).toBeCloseTo(1 / (1 + Math.exp(-(logits[r.index] as number))), 5);
      expect(r.text).toBe(docs[r.index]);
    }
    const raw = await post(open.url, '/rerank', { query, texts: docs, raw_scores: true });
    for (const r of raw.body as Array<{ index: number; score: number; text?: string }>) {
      expect(r.score).toBeCloseTo(logits[r.index] as number, 5);
      expect(r.text).toBeUndefined();
    }
    for (const h of ['x-total-time', 'x-tokenization-time', 'x-queue-time', 'x-inference-time']) {
      expect(Number(res.headers.get(h)), h).toBeGreaterThanOrEqual(0);
    }
    const parts = ['x-tokenization-time', 'x-queue-time', 'x-inference-time'].map((h) =>
      Number(res.headers.get(h)),
    );
    expect(parts.reduce((a, b) => a + b)).toBeCloseTo(Number(res.headers.get('x-total-time')), 1);
    expect(res.headers.get('x-compute-type')).toBe('cpu');
  });

  it('POST /predict: one pair or a list, label scores', async () => {
    const pairs: Array<[string, string]> = [
      [query, docs[0] as string],
      [query, docs[1] as string],
    ];
    const want = await ce.predict(pairs);
    const one = await post(open.url, '/predict', { inputs: pairs[0] });
    expect(one.status).toBe(200);
    expect(one.body).toEqual([{ score: expect.closeTo(want[0] as number, 5), label: 'LABEL_0' }]);
    const many = await post(open.url, '/predict', { inputs: pairs, raw_scores: true });
    const raw = await ce.predict(pairs, { activation: 'none' });
    expect(many.body.map((r: Array<{ score: number }>) => r[0]?.score)).toEqual([
      expect.closeTo(raw[0] as number, 5),
      expect.closeTo(raw[1] as number, 5),
    ]);
  });

  it('truncate: false turns a pair longer than the model into a 422; truncate: true scores it', async () => {
    const long = 'cat '.repeat(ce.info.maxLength + 10);
    const refused = await post(open.url, '/rerank', { query, texts: [long], truncate: false });
    expect(refused.status).toBe(422);
    expect(refused.body.error_type).toBe('Validation');
    expect(refused.body.error).toMatch(/tokens/);
    const ok = await post(open.url, '/rerank', { query, texts: [long], truncate: true });
    expect(ok.status).toBe(200);
  });

  it('GET /info and /health', async () => {
    const info = await (await fetch(`${open.url}/info`)).json();
    expect(info).toMatchObject({
      model_id: files.dir,
      max_input_length: ce.info.maxLength,
      max_client_batch_size: 1000,
      backend: 'cpu',
      synthetic: true,
    });
    const health = await fetch(`${open.url}/health`);
    expect(health.status).toBe(200);
  });
});

describe('Cohere / Jina routes', () => {
  it('the official Cohere SDK (v1 and v2) gets the library ranking', async () => {
    const want = await ce.rank(query, docs, { topK: 3 });
    const v1 = new CohereClient({ token: KEY, environment: locked.url });
    const r1 = await v1.rerank({ model: 'any', query, documents: docs, topN: 3, returnDocuments: true });
    expect(r1.results.map((r) => r.index)).toEqual(want.map((r) => r.index));
    r1.results.forEach((r, i) => {
      expect(r.relevanceScore).toBeCloseTo(want[i]?.score as number, 5);
      expect(r.document?.text).toBe(docs[r.index]);
    });
    const v2 = new CohereClientV2({ token: KEY, environment: locked.url });
    const r2 = await v2.rerank({ model: 'any', query, documents: docs, topN: 2 });
    expect(r2.results.map((r) => r.index)).toEqual(want.slice(0, 2).map((r) => r.index));
    expect(r2.results[0]).not.toHaveProperty('document');
    expect(typeof r2.id).toBe('string');
  });

  it('documents as {text}, and max_tokens_per_doc cuts each document to its first tokens', async () => {
    const res = await post(open.url, '/v1/rerank', {
      query,
      documents: [{ text: 'cat cat cat cat cat cat cat cat cat' }, 'cat cat cat cat cat'],
      max_tokens_per_doc: 5,
      return_documents: true,
    });
    expect(res.status).toBe(200);
    const [a, b] = [0, 1].map((i) => res.body.results.find((r: { index: number }) => r.index === i));
    // Cut to five tokens, the longer document is the shorter one: same score; the text returned is the whole.
    expect(a.relevance_score).toBe(b.relevance_score);
    expect(a.relevance_score).toBeCloseTo((await ce.predict([query, 'cat cat cat cat cat'])) as number, 5);
    expect(a.document.text).toBe('cat cat cat cat cat cat cat cat cat');
  });
});

describe('errors, limits and auth', () => {
  it('401 without or with a wrong key; probes and the dashboard stay open', async () => {
    const body = { query, texts: ['x'] };
    expect((await post(locked.url, '/rerank', body)).status).toBe(401);
    const wrong = await post(locked.url, '/rerank', body, { authorization: 'Bearer test-key-0123456780' });
    expect(wrong.status).toBe(401);
    expect(wrong.body).toEqual({ error: expect.stringMatching(/API key/), error_type: 'Unauthorized' });
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer');
    expect((await fetch(`${locked.url}/info`)).status).toBe(401);
    expect((await post(locked.url, '/rerank', body, { authorization: `Bearer ${KEY}` })).status).toBe(200);
    for (const path of ['/health', '/metrics', '/openapi.json', '/']) {
      expect((await fetch(locked.url + path)).status, path).toBe(200);
    }
  });

  it('422 for invalid bodies and too many documents, 413 for a large body, 400 bad JSON, 404', async () => {
    const auth = { authorization: `Bearer ${KEY}` };
    for (const bad of [
      { query },
      { query: 1, texts: ['a'] },
      { query, texts: [] },
      { query, texts: ['a', 2] },
    ]) {
      const r = await post(locked.url, '/rerank', bad, auth);
      expect(r.status, JSON.stringify(bad)).toBe(422);
      expect(r.body.error_type).toBe('Validation');
    }
    const many = await post(locked.url, '/v2/rerank', { query, documents: Array(9).fill('a') }, auth);
    expect(many.status).toBe(422);
    expect(many.body.error).toMatch(/8/);
    const big = await post(locked.url, '/rerank', { query, texts: ['a'.repeat(5000)] }, auth);
    expect(big.status).toBe(413);
    expect(big.body.error_type).toBe('Validation');
    expect((await post(locked.url, '/rerank', '{"query":', auth)).status).toBe(400);
    // Unknown paths answer 401 to strangers (nothing is revealed) and 404 to clients with the key.
    expect((await fetch(`${locked.url}/nope`)).status).toBe(401);
    const missing = await fetch(`${locked.url}/nope`, { headers: auth });
    expect(missing.status).toBe(404);
    expect(JSON.parse(await missing.text()).error_type).toBe('NotFound');
  });

  it('429 with Retry-After when the queue is full; the rest succeed and the server keeps serving', async () => {
    const small = await startServer(
      // Batches can never fill (32 > the queue's 16 pairs), so the first pairs wait maxWaitMs in the
      // queue while the other requests arrive: the queue is full whatever the machine's speed.
      options({ load: { backend: 'cpu', threads: 1, maxQueuePairs: 16, maxBatchSize: 32, maxWaitMs: 300 } }),
    );
    try {
      await small.loaded;
      const texts = Array.from({ length: 8 }, (_, i) => `document ${i} ${'river music water '.repeat(20)}`);
      const results = await Promise.all(
        Array.from({ length: 24 }, () => post(small.url, '/rerank', { query, texts })),
      );
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
      expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
      for (const r of results.filter((x) => x.status === 429)) {
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
        expect(r.body.error_type).toBe('Overloaded');
      }
      expect((await post(small.url, '/rerank', { query, texts })).status).toBe(200);
      // More pairs than the whole queue holds: no retry could help, so not a 429.
      const huge = await post(small.url, '/v1/rerank', { query, documents: Array(17).fill('a') });
      expect(huge.status).toBe(422);
      expect(huge.body.error).toMatch(/--max-queue-pairs/);
    } finally {
      await small.close();
    }
  });

  it('readiness: 503 until a model is handed over, 424 for an engine failure', async () => {
    const http: HttpOptions = { ...options(), version: 't', machineLine: 'm', workers: 1 };
    const server = buildServer(http);
    const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const health = await fetch(`${url}/health`);
      expect(health.status).toBe(503);
      expect(JSON.parse(await health.text()).error_type).toBe('Unhealthy');
      const early = await post(url, '/rerank', { query, texts: ['a'] });
      expect(early.status).toBe(503);
      expect(early.headers.get('retry-after')).toBe('1');
      // No real engine fails on demand: this one's rank() rejects as a lost device would.
      const failing = Object.create(ce, {
        rank: { value: () => Promise.reject(new EngineError('device lost')) },
      }) as CrossEncoder;
      server.setEncoder(failing);
      expect((await fetch(`${url}/health`)).status).toBe(200);
      const failed = await post(url, '/rerank', { query, texts: ['a'] });
      expect(failed.status).toBe(424);
      expect(failed.body).toEqual({ error: 'device lost [E_ENGINE]', error_type: 'Backend' });
      server.startDraining();
      expect((await fetch(`${url}/health`)).status).toBe(503);
    } finally {
      server.metrics.detach();
      await server.app.close();
    }
  });
});

describe('plumbing', () => {
  it('request ids: a sane one is echoed, anything else is replaced', async () => {
    const given = await post(open.url, '/rerank', { query, texts: ['a'] }, { 'x-request-id': 'abc-123' });
    expect(given.headers.get('x-request-id')).toBe('abc-123');
    const evil = await post(open.url, '/rerank', { query, texts: ['a'] }, { 'x-request-id': 'a b\tc' });
    expect(evil.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('CORS: off unless configured; the configured origin gets headers and a preflight', async () => {
    const origin = { origin: 'https://ops.example' };
    const plain = await post(
      locked.url,
      '/rerank',
      { query, texts: ['a'] },
      { ...origin, authorization: `Bearer ${KEY}` },
    );
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
    expect((await fetch(`${locked.url}/rerank`, { method: 'OPTIONS', headers: origin })).status).toBe(404);
    const allowed = await post(open.url, '/rerank', { query, texts: ['a'] }, origin);
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://ops.example');
    const other = await post(
      open.url,
      '/rerank',
      { query, texts: ['a'] },
      { origin: 'https://evil.example' },
    );
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await fetch(`${open.url}/rerank`, { method: 'OPTIONS', headers: origin });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
  });

  it('GET /openapi.json is built from the schemas that validate', async () => {
    const doc = JSON.parse(await (await fetch(`${locked.url}/openapi.json`)).text());
    const s = schemas({ maxDocuments: 8 });
    const body = (path: string) => doc.paths[path].post.requestBody.content['application/json'].schema;
    expect(body('/rerank')).toEqual(JSON.parse(JSON.stringify(s.teiRerank)));
    expect(body('/v1/rerank')).toEqual(JSON.parse(JSON.stringify(s.cohereRerank)));
    expect(body('/v2/rerank').properties.documents.maxItems).toBe(8);
    expect(doc.paths['/rerank'].post.security).toEqual([{ bearer: [] }]);
    expect(Object.keys(doc.paths['/rerank'].post.responses)).toEqual(
      expect.arrayContaining(['200', '401', '413', '422', '424', '429', '503']),
    );
  });

  it('GET /metrics counts requests by route and status, and pairs scored', async () => {
    const server = await startServer(options());
    try {
      await server.loaded;
      for (let i = 0; i < 3; i++) await post(server.url, '/rerank', { query, texts: docs });
      await post(server.url, '/rerank', { query });
      const text = await (await fetch(`${server.url}/metrics`)).text();
      expect(text).toContain('mlx_rerank_http_requests_total{route="/rerank",method="POST",status="200"} 3');
      expect(text).toContain('mlx_rerank_http_requests_total{route="/rerank",method="POST",status="422"} 1');
      expect(text).toMatch(new RegExp(`^mlx_rerank_pairs_total ${3 * docs.length}$`, 'm'));
      for (const name of [
        'mlx_rerank_http_request_duration_seconds_bucket',
        'mlx_rerank_queue_depth',
        'mlx_rerank_batch_size_bucket',
        'mlx_rerank_batch_padding_ratio_bucket',
        'mlx_rerank_tokenize_seconds_bucket',
        'mlx_rerank_queue_seconds_bucket',
        'mlx_rerank_inference_seconds_bucket',
        'mlx_rerank_engine_memory_bytes{kind="active"}',
        'mlx_rerank_ready 1',
        'process_cpu_seconds_total',
        'process_resident_memory_bytes',
        'nodejs_eventloop_lag_p99_seconds',
      ]) {
        expect(text, name).toContain(name);
      }
    } finally {
      await server.close();
    }
  });

  it('GET / serves the dashboard, uPlot from the installed package, and /events streams samples', async () => {
    const page = await (await fetch(`${open.url}/`)).text();
    expect(page).toContain('<script src="/dashboard/uPlot.js">');
    const js = await (await fetch(`${open.url}/dashboard/uPlot.js`)).text();
    const installed = createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js');
    expect(js).toBe(readFileSync(installed, 'utf8'));
    const ac = new AbortController();
    const res = await fetch(`${open.url}/events`, { signal: ac.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    while (!/\ndata: \{"t":/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    const init = JSON.parse(/event: init\ndata: (.*)\n/.exec(text)?.[1] ?? '{}');
    expect(init.header.model).toBe(`${files.dir} (synthetic: random weights)`);
    expect(init.header.machine).toMatch(/cores/);
  });
});
