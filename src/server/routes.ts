/**
 * The scoring routes: Text Embeddings Inference's `POST /rerank` and `POST /predict`, and the Cohere
 * (v1, v2) / Jina `POST /v{1,2}/rerank`. Bodies are already validated against src/server/schemas.ts;
 * what is left to check here needs the model (token counts).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CrossEncoder } from '../cross-encoder';
import type { CallMetrics } from '../metrics';
import type { Tokenizer } from '../tokenizer';
import { HttpError } from './http-errors';
import type { Schemas } from './schemas';

export interface ScoringContext {
  /** The loaded model; throws a 503 HttpError while loading or shutting down. */
  encoder(): CrossEncoder;
  /** The model as the server was asked to serve it (echoed by the Cohere routes). */
  modelName(): string;
  /** Truncate long pairs when a request does not say (TEI's --auto-truncate). */
  autoTruncate: boolean;
  /** Aborted when the client goes away before its answer: its pairs leave the queue. */
  signal(request: FastifyRequest, reply: FastifyReply): AbortSignal;
}

interface TruncationFields {
  truncate?: boolean;
  truncation_direction?: string;
}
interface TeiRerankBody extends TruncationFields {
  query: string;
  texts: string[];
  raw_scores: boolean;
  return_text: boolean;
}
interface TeiPredictBody extends TruncationFields {
  inputs: [string, string] | Array<[string, string]>;
  raw_scores: boolean;
}
interface CohereBody {
  model?: string;
  query: string;
  documents: Array<string | { text: string }>;
  top_n?: number;
  return_documents: boolean;
  max_tokens_per_doc: number;
}

const ms = (v: number) => v.toFixed(3);

/** TEI's per-request timing headers, from the call's own metrics. */
function timing(reply: FastifyReply, ce: CrossEncoder, characters: number) {
  return (m: CallMetrics) => {
    reply.headers({
      'x-compute-type': ce.info.device,
      'x-compute-characters': String(characters),
      'x-total-time': ms(m.totalMs),
      'x-tokenization-time': ms(m.tokenizeMs),
      'x-queue-time': ms(m.queueWaitMs),
      'x-inference-time': ms(m.inferenceMs),
    });
  };
}

/** A request larger than the whole queue would get 429s forever: it is the client's error. */
function checkQueueFits(ce: CrossEncoder, n: number): void {
  if (n > ce.limits.maxQueuePairs) {
    throw new HttpError(
      422,
      'Validation',
      `This request has ${n} pairs and the server queues at most ${ce.limits.maxQueuePairs} (--max-queue-pairs): send fewer per request.`,
    );
  }
}

/** With truncation off, a pair longer than the model takes is the client's error (as TEI: 422). */
function checkLengths(
  ce: CrossEncoder,
  pairs: ReadonlyArray<readonly [string, string]>,
  truncate: boolean,
): void {
  if (truncate) return;
  const max = ce.info.maxLength;
  const specials = ce.tokenizer.numSpecialTokens; // 3 in [CLS] q [SEP] d [SEP], 4 in XLM-R's template
  const queryTokens = new Map<string, number>();
  for (let i = 0; i < pairs.length; i++) {
    const [q, d] = pairs[i] as readonly [string, string];
    // A token covers at least one character, so short pairs need no count.
    if (q.length + d.length + specials <= max) continue;
    const nq = queryTokens.get(q) ?? ce.tokenizer.tokenize(q).length;
    queryTokens.set(q, nq);
    const n = nq + ce.tokenizer.tokenize(d).length + specials;
    if (n > max) {
      throw new HttpError(
        422,
        'Validation',
        `Input validation error: pair ${i} has ${n} tokens and this model takes at most ${max}; send truncate: true or shorter texts.`,
      );
    }
  }
}

function truncation(ctx: ScoringContext, b: TruncationFields): boolean {
  return b.truncate ?? ctx.autoTruncate;
}

/**
 * The document cut to its first `maxTokens` WordPiece tokens, at a whitespace boundary. BERT splits text
 * at whitespace before anything else, so a text's tokens are its words' tokens in order.
 */
export function cutToTokens(tokenizer: Tokenizer, doc: string, maxTokens: number): string {
  if (doc.length <= maxTokens) return doc; // at least one character per token
  if (tokenizer.tokenize(doc).length <= maxTokens) return doc;
  let used = 0;
  const re = /\S+/g;
  for (let m = re.exec(doc); m !== null; m = re.exec(doc)) {
    used += tokenizer.tokenize(m[0]).length;
    if (used > maxTokens) return doc.slice(0, m.index).trimEnd();
  }
  return doc;
}

export function registerScoringRoutes(app: FastifyInstance, s: Schemas, ctx: ScoringContext): void {
  const replies = { 200: s.teiRerankResponse };
  app.post('/rerank', { schema: { body: s.teiRerank, response: replies } }, async (req, reply) => {
    const b = req.body as TeiRerankBody;
    const ce = ctx.encoder();
    checkQueueFits(ce, b.texts.length);
    checkLengths(
      ce,
      b.texts.map((t) => [b.query, t] as const),
      truncation(ctx, b),
    );
    const chars = b.texts.reduce((a, t) => a + t.length + b.query.length, 0);
    const ranked = await ce.rank(b.query, b.texts, {
      ...(b.raw_scores && { activation: 'none' as const }),
      returnDocuments: b.return_text,
      signal: ctx.signal(req, reply),
      onMetrics: timing(reply, ce, chars),
    });
    return ranked.map((r) => ({
      index: r.index,
      score: r.score,
      ...(b.return_text && { text: r.document }),
    }));
  });

  app.post('/predict', { schema: { body: s.teiPredict } }, async (req, reply) => {
    const b = req.body as TeiPredictBody;
    const ce = ctx.encoder();
    const single = typeof b.inputs[0] === 'string';
    const pairs = (single ? [b.inputs] : b.inputs) as Array<[string, string]>;
    checkQueueFits(ce, pairs.length);
    checkLengths(ce, pairs, truncation(ctx, b));
    const chars = pairs.reduce((a, [q, d]) => a + q.length + d.length, 0);
    const scores = await ce.predict(pairs, {
      ...(b.raw_scores && { activation: 'none' as const }),
      signal: ctx.signal(req, reply),
      onMetrics: timing(reply, ce, chars),
    });
    const labels = ce.info.spec.labels;
    const L = labels.length;
    const rows = pairs.map((_, i) =>
      labels
        .map((label, j) => ({ score: scores[i * L + j] as number, label }))
        .sort((x, y) => y.score - x.score),
    );
    return single ? rows[0] : rows;
  });

  const cohere = (version: 'v1' | 'v2') => async (req: FastifyRequest, reply: FastifyReply) => {
    const b = req.body as CohereBody;
    const ce = ctx.encoder();
    checkQueueFits(ce, b.documents.length);
    const docs = b.documents.map((d) => (typeof d === 'string' ? d : d.text));
    const cut = docs.map((d) => cutToTokens(ce.tokenizer, d, b.max_tokens_per_doc));
    const chars = cut.reduce((a, t) => a + t.length + b.query.length, 0);
    const ranked = await ce.rank(b.query, cut, {
      ...(b.top_n !== undefined && { topK: b.top_n }),
      signal: ctx.signal(req, reply),
      onMetrics: timing(reply, ce, chars),
    });
    return {
      id: randomUUID(),
      model: b.model ?? ctx.modelName(),
      results: ranked.map((r) => ({
        index: r.index,
        relevance_score: r.score,
        ...(b.return_documents && { document: { text: docs[r.index] as string } }),
      })),
      meta: { api_version: { version: version === 'v1' ? '1' : '2' }, billed_units: { search_units: 1 } },
    };
  };
  app.post('/v1/rerank', { schema: { body: s.cohereRerank } }, cohere('v1'));
  app.post('/v2/rerank', { schema: { body: s.cohereRerank } }, cohere('v2'));
}
