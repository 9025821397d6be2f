/**
 * The request and response shapes of every route, as JSON Schema. Fastify validates bodies against these
 * (src/server/app.ts) and `/openapi.json` is built from the very same objects (openApi below), so the
 * documentation cannot drift from what is enforced. Limits (documents per request) come from the
 * server's options, so the schemas are made per server.
 */

export interface SchemaLimits {
  /** Documents (TEI: texts, predict: pairs) per request at most. */
  maxDocuments: number;
}

const errorBody = {
  type: 'object',
  required: ['error', 'error_type'],
  properties: {
    error: { type: 'string', description: 'What was wrong and what to do.' },
    error_type: {
      type: 'string',
      enum: ['Validation', 'Overloaded', 'Backend', 'Unhealthy', 'Unauthorized', 'NotFound'],
    },
  },
} as const;

const truncationFields = {
  truncate: {
    type: 'boolean',
    description:
      'Truncate pairs longer than the model takes (default: the server option --auto-truncate, on). false: such a pair is a 422.',
  },
  truncation_direction: {
    type: 'string',
    enum: ['Right', 'right'],
    description: 'Only Right (the end of the pair is cut, as Hugging Face does) is supported.',
  },
} as const;

export function schemas(l: SchemaLimits) {
  const teiRerank = {
    type: 'object',
    required: ['query', 'texts'],
    properties: {
      query: { type: 'string' },
      texts: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: l.maxDocuments },
      raw_scores: {
        type: 'boolean',
        default: false,
        description: "true: the model's logits, no activation; false: the model's activation (sigmoid).",
      },
      return_text: { type: 'boolean', default: false },
      ...truncationFields,
    },
  } as const;

  const teiRerankResponse = {
    type: 'array',
    description: 'Best first (ties: lower index first).',
    items: {
      type: 'object',
      required: ['index', 'score'],
      properties: { index: { type: 'integer' }, score: { type: 'number' }, text: { type: 'string' } },
    },
  } as const;

  const pair = { type: 'array', items: { type: 'string' }, minItems: 2, maxItems: 2 } as const;
  const teiPredict = {
    type: 'object',
    required: ['inputs'],
    properties: {
      inputs: {
        description: 'One [query, document] pair, or a list of them.',
        anyOf: [pair, { type: 'array', items: pair, minItems: 1, maxItems: l.maxDocuments }],
      },
      raw_scores: { type: 'boolean', default: false },
      ...truncationFields,
    },
  } as const;

  const labelScores = {
    type: 'array',
    description: "The model's labels, highest score first.",
    items: {
      type: 'object',
      required: ['score', 'label'],
      properties: { score: { type: 'number' }, label: { type: 'string' } },
    },
  } as const;
  const teiPredictResponse = {
    description: 'For one pair: its label scores; for a list: one label-score list per pair, in order.',
    anyOf: [labelScores, { type: 'array', items: labelScores }],
  } as const;

  const document = {
    anyOf: [
      { type: 'string' },
      { type: 'object', required: ['text'], properties: { text: { type: 'string' } } },
    ],
  } as const;
  const cohereRerank = {
    type: 'object',
    required: ['query', 'documents'],
    properties: {
      model: { type: 'string', description: 'Accepted and echoed; the server serves one model.' },
      query: { type: 'string' },
      documents: { type: 'array', items: document, minItems: 1, maxItems: l.maxDocuments },
      top_n: { type: 'integer', minimum: 1, description: 'Keep the best top_n (default: all).' },
      return_documents: { type: 'boolean', default: false },
      max_tokens_per_doc: {
        type: 'integer',
        minimum: 1,
        default: 4096,
        description: 'Each document is cut to this many tokens before scoring (then the pair to the model).',
      },
      rank_fields: { type: 'array', items: { type: 'string' }, description: 'Accepted, ignored.' },
      max_chunks_per_doc: { type: 'integer', description: 'Accepted, ignored.' },
    },
  } as const;

  const cohereResponse = {
    type: 'object',
    required: ['id', 'results', 'meta'],
    properties: {
      id: { type: 'string' },
      model: { type: 'string' },
      results: {
        type: 'array',
        items: {
          type: 'object',
          required: ['index', 'relevance_score'],
          properties: {
            index: { type: 'integer' },
            relevance_score: { type: 'number' },
            document: { type: 'object', properties: { text: { type: 'string' } } },
          },
        },
      },
      meta: { type: 'object', additionalProperties: true },
      usage: { type: 'object', properties: { total_tokens: { type: 'integer' } } },
    },
  } as const;

  const info = {
    type: 'object',
    properties: {
      model_id: { type: 'string' },
      model_sha: { type: ['string', 'null'] },
      model_dtype: { type: 'string' },
      model_type: { type: 'object', additionalProperties: true },
      max_input_length: { type: 'integer' },
      max_client_batch_size: { type: 'integer' },
      max_batch_tokens: { type: 'integer' },
      max_batch_requests: { type: 'integer' },
      max_queue_pairs: { type: 'integer' },
      auto_truncate: { type: 'boolean' },
      backend: { type: 'string' },
      device: { type: 'string' },
      device_name: { type: 'string' },
      synthetic: { type: 'boolean' },
      version: { type: 'string' },
      workers: { type: 'integer' },
    },
  } as const;

  return { teiRerank, teiRerankResponse, teiPredict, teiPredictResponse, cohereRerank, cohereResponse, info };
}

export type Schemas = ReturnType<typeof schemas>;

type Json = Record<string, unknown>;

/** OpenAPI 3.1 (whose schema dialect is JSON Schema) of the routes, from `schemas(l)`. */
export function openApi(s: Schemas, version: string, auth: boolean): Json {
  const json = (schema: unknown) => ({ content: { 'application/json': { schema } } });
  const errors = Object.fromEntries(
    [
      ['401', 'API key missing or wrong'],
      ['413', 'Body larger than --max-body-bytes'],
      ['422', 'Validation error'],
      ['424', 'Model or engine error'],
      ['429', 'Overloaded: the queue is full; retry after the Retry-After header'],
      ['503', 'Not ready (loading, or shutting down)'],
    ].map(([code, description]) => [code, { description, ...json({ $ref: '#/components/schemas/Error' }) }]),
  );
  const scoring = (summary: string, body: unknown, response: unknown) => ({
    post: {
      summary,
      requestBody: { required: true, ...json(body) },
      responses: { '200': { description: 'OK', ...json(response) }, ...errors },
      ...(auth && { security: [{ bearer: [] }] }),
    },
  });
  const get = (summary: string, type: string, schema?: unknown) => ({
    get: {
      summary,
      responses: {
        '200': { description: 'OK', ...(schema ? json(schema) : { content: { [type]: {} } }) },
      },
    },
  });
  return {
    openapi: '3.1.0',
    info: { title: 'mlx-rerank serve', version },
    paths: {
      '/rerank': scoring(
        'Rerank texts against a query (Text Embeddings Inference)',
        s.teiRerank,
        s.teiRerankResponse,
      ),
      '/predict': scoring(
        'Score [query, document] pairs (Text Embeddings Inference)',
        s.teiPredict,
        s.teiPredictResponse,
      ),
      '/v1/rerank': scoring('Rerank documents (Cohere v1 / Jina)', s.cohereRerank, s.cohereResponse),
      '/v2/rerank': scoring('Rerank documents (Cohere v2)', s.cohereRerank, s.cohereResponse),
      '/info': {
        get: {
          ...get('Model, engine and limits', 'application/json', s.info).get,
          ...(auth && { security: [{ bearer: [] }] }),
        },
      },
      '/health': {
        get: {
          summary: 'Readiness: 200 once the model is loaded and warm, 503 while loading or shutting down',
          responses: { '200': { description: 'Ready' }, '503': errors['503'] },
        },
      },
      '/metrics': get('Prometheus metrics', 'text/plain'),
      '/': get('Live dashboard', 'text/html'),
      '/events': get('Dashboard samples, one a second (server-sent events)', 'text/event-stream'),
      '/openapi.json': get('This document', 'application/json'),
    },
    components: {
      schemas: { Error: errorBody },
      ...(auth && { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } }),
    },
  };
}
