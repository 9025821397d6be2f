/**
 * The HTTP application: Fastify with the scoring routes (src/server/routes.ts), `/info`, `/health`,
 * `/metrics`, `/openapi.json` and the dashboard; API keys, CORS, request ids, limits and the mapping of
 * every error to TEI's `{error, error_type}`. It starts with no model (`/health` answers 503) and is
 * handed one by `setEncoder` once loaded and warm; src/server/index.ts runs the lifecycle.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { CrossEncoder } from '../cross-encoder';
import { registerDashboard, type SampleSource } from './dashboard';
import { HttpError, toHttpError } from './http-errors';
import { ServerMetrics } from './metrics';
import { registerScoringRoutes } from './routes';
import { openApi, schemas } from './schemas';

/** What the HTTP layer needs to know; the CLI's flags (src/server/args.ts) fill it. */
export interface HttpOptions {
  /** Accepted bearer tokens; empty: no authentication. */
  apiKeys: string[];
  /** Request body bytes at most (413 beyond). */
  maxBodyBytes: number;
  /** Documents (or pairs) per request at most (422 beyond). */
  maxDocuments: number;
  /** Truncate long pairs unless a request says `truncate: false`. */
  autoTruncate: boolean;
  /** Origins allowed by CORS ('*' for any); empty: no CORS headers at all. */
  corsOrigins: string[];
  /** pino level: fatal, error, warn, info, debug, trace or silent. */
  logLevel: string;
  /** Package version (for /openapi.json and /info). */
  version: string;
  /** The model, engine and machine line of the dashboard (src/bench's machine description). */
  machineLine: string;
  /** Workers behind the port (for /info). */
  workers: number;
}

/** Routes anyone may call even when API keys are set: probes, scrapers and the dashboard. */
const OPEN_ROUTES = new Set([
  '/health',
  '/metrics',
  '/openapi.json',
  '/',
  '/events',
  '/dashboard/uPlot.js',
  '/dashboard/uPlot.css',
]);

/** Request ids we accept from clients: short and printable, so they are safe in logs and headers. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Constant-time check of a bearer token against each key (hashing first makes the lengths equal). */
export function keyMatches(token: string, keys: readonly Buffer[]): boolean {
  const digest = createHash('sha256').update(token).digest();
  let ok = false;
  for (const k of keys) ok = timingSafeEqual(digest, k) || ok; // no early exit: every key is compared
  return ok;
}

export interface Server {
  app: FastifyInstance;
  metrics: ServerMetrics;
  /** Hands the loaded, warmed model to the routes (`/health` turns 200); `name` is the model as asked for. */
  setEncoder(ce: CrossEncoder, name?: string): void;
  /** `/health` turns 503 and new scoring requests get 503 (requests already queued finish). */
  startDraining(): void;
  readonly encoder: CrossEncoder | undefined;
}

/** What a cluster worker replaces (src/server/cluster.ts): samples and /metrics for all workers. */
export interface ServerHooks {
  samples?: SampleSource;
  metricsText?: () => Promise<string>;
}

export function buildServer(o: HttpOptions, hooks: ServerHooks = {}): Server {
  const app = Fastify({
    logger: { level: o.logLevel },
    bodyLimit: o.maxBodyBytes,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    requestIdHeader: false,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    return503OnClosing: true,
  });
  const metrics = new ServerMetrics();
  const s = schemas({ maxDocuments: o.maxDocuments });
  const keys = o.apiKeys.map((k) => createHash('sha256').update(k).digest());
  let ce: CrossEncoder | undefined;
  let modelName = '';
  let draining = false;
  const started = new WeakMap<FastifyRequest, number>();

  const retryAfter = () => {
    // From the last second's sample: stats() summarises thousands of samples, too dear per rejection.
    const rate = metrics.recentPairsPerSecond();
    const depth = metrics.history.at(-1)?.queueDepth ?? 0;
    return rate > 0 ? Math.max(1, Math.ceil(depth / rate)) : 1;
  };

  app.addHook('onRequest', async (req, reply) => {
    started.set(req, performance.now());
    reply.header('x-request-id', req.id);
    const origin = req.headers.origin;
    if (o.corsOrigins.length && origin && (o.corsOrigins.includes('*') || o.corsOrigins.includes(origin))) {
      reply.header('access-control-allow-origin', o.corsOrigins.includes('*') ? '*' : origin);
      reply.header('vary', 'Origin');
      reply.header(
        'access-control-expose-headers',
        'x-request-id, x-total-time, x-tokenization-time, x-queue-time, x-inference-time, retry-after',
      );
    }
    if (keys.length && req.method !== 'OPTIONS' && !OPEN_ROUTES.has(req.routeOptions.url ?? '')) {
      const auth = req.headers.authorization ?? '';
      const token = /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim() ?? '';
      if (!keyMatches(token, keys)) {
        reply.header('www-authenticate', 'Bearer');
        throw new HttpError(
          401,
          'Unauthorized',
          'Missing or wrong API key: send "Authorization: Bearer <key>".',
        );
      }
    }
  });

  // While draining, every answer closes its connection: keep-alive sockets would hold the process open.
  app.addHook('onSend', async (_req, reply) => {
    if (draining) reply.header('connection', 'close');
  });

  app.addHook('onResponse', async (req, reply) => {
    const t0 = started.get(req) ?? performance.now();
    const ms = performance.now() - t0;
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.response(route, req.method, reply.statusCode, ms / 1000);
    req.log.info(
      { method: req.method, route, status: reply.statusCode, ms: Math.round(ms * 1000) / 1000 },
      'request',
    );
  });

  app.setErrorHandler((err, req, reply) => {
    const h = toHttpError(err, retryAfter);
    if (h.status === 500 || h.status === 424) req.log.error({ err }, 'request failed');
    else req.log.info({ status: h.status, error: h.message }, 'request rejected');
    reply.status(h.status).headers(h.headers).send({ error: h.message, error_type: h.type });
  });

  app.setNotFoundHandler((req, reply) => {
    reply
      .status(404)
      .send({ error: `No route ${req.method} ${req.url}; see /openapi.json.`, error_type: 'NotFound' });
  });

  if (o.corsOrigins.length) {
    app.options('*', async (_req, reply) => {
      reply
        .header('access-control-allow-methods', 'GET, POST, OPTIONS')
        .header('access-control-allow-headers', 'authorization, content-type, x-request-id')
        .header('access-control-max-age', '600')
        .status(204)
        .send();
      return reply;
    });
  }

  const encoder = (): CrossEncoder => {
    if (draining)
      throw new HttpError(503, 'Unhealthy', 'The server is shutting down; retry on another replica.', {
        'retry-after': '1',
      });
    if (!ce)
      throw new HttpError(503, 'Unhealthy', 'The model is still loading; retry shortly.', {
        'retry-after': '1',
      });
    return ce;
  };
  const signal = (req: FastifyRequest, reply: FastifyReply): AbortSignal => {
    const ac = new AbortController();
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) ac.abort(new Error(`client of ${req.id} went away`));
    });
    return ac.signal;
  };
  registerScoringRoutes(app, s, {
    encoder,
    modelName: () => modelName,
    autoTruncate: o.autoTruncate,
    signal,
  });

  app.get('/health', async (_req, reply) => {
    if (draining) throw new HttpError(503, 'Unhealthy', 'Shutting down.');
    if (!ce) throw new HttpError(503, 'Unhealthy', 'Loading the model.');
    reply.status(200).send();
  });

  app.get('/info', async () => {
    const c = encoder();
    return {
      model_id: modelName,
      model_sha: c.info.revision ?? null,
      model_dtype: c.info.dtype,
      model_type: {
        reranker: { id2label: Object.fromEntries(c.info.spec.labels.map((l, i) => [String(i), l])) },
      },
      max_input_length: c.info.maxLength,
      max_client_batch_size: o.maxDocuments,
      max_batch_tokens: c.limits.maxBatchTokens,
      max_batch_requests: c.limits.maxBatchSize,
      max_queue_pairs: c.limits.maxQueuePairs,
      auto_truncate: o.autoTruncate,
      backend: c.info.backend,
      device: c.info.device,
      device_name: c.info.deviceName,
      synthetic: c.info.synthetic,
      version: o.version,
      workers: o.workers,
    };
  });

  app.get('/metrics', async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return hooks.metricsText ? hooks.metricsText() : metrics.registry.metrics();
  });

  const doc = openApi(s, o.version, keys.length > 0);
  app.get('/openapi.json', async () => doc);

  registerDashboard(app, hooks.samples ?? metrics, () => ({
    model: ce ? `${modelName}${ce.info.synthetic ? ' (synthetic: random weights)' : ''}` : 'loading…',
    engine: ce
      ? `${ce.info.backend} on ${ce.info.deviceName} (${ce.info.device}), ${ce.info.dtype}, max ${ce.info.maxLength} tokens`
      : '',
    machine: o.machineLine,
    workers: o.workers,
    version: o.version,
  }));

  return {
    app,
    metrics,
    setEncoder(c, name) {
      ce = c;
      modelName = name ?? c.info.modelId;
      metrics.attach(c);
      metrics.ready = !draining;
    },
    startDraining() {
      draining = true;
      metrics.ready = false;
    },
    get encoder() {
      return ce;
    },
  };
}
