/**
 * Every failure a client can see, as Text Embeddings Inference answers it: a status code and a JSON
 * body `{error, error_type}`. Library errors map by their stable `code` (src/errors.ts).
 */
import { MlxRerankError } from '../errors';

export type ErrorType = 'Validation' | 'Overloaded' | 'Backend' | 'Unhealthy' | 'Unauthorized' | 'NotFound';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  validation?: unknown;
  message: string;
}

/**
 * The HTTP answer for an error thrown while handling a request. `retryAfterSeconds` is asked only for
 * an overload (how long the queue in front of a retry would take to drain).
 */
export function toHttpError(err: unknown, retryAfterSeconds: () => number): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof MlxRerankError) {
    switch (err.code) {
      case 'E_INPUT':
        return new HttpError(422, 'Validation', err.message);
      case 'E_QUEUE_FULL':
        return new HttpError(
          429,
          'Overloaded',
          `${err.message} Retry after the Retry-After header's seconds.`,
          {
            'retry-after': String(retryAfterSeconds()),
          },
        );
      case 'E_DISPOSED':
        return new HttpError(503, 'Unhealthy', 'The server is shutting down; retry on another replica.');
      default:
        return new HttpError(424, 'Backend', `${err.message} [${err.code}]`);
    }
  }
  const e = err as FastifyLikeError;
  if (e?.validation) return new HttpError(422, 'Validation', e.message);
  if (e?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return new HttpError(413, 'Validation', `${e.message}: send fewer or shorter documents per request.`);
  }
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    // Malformed JSON, wrong content type, ...: the client's mistake, said in Fastify's words.
    return new HttpError(e.statusCode, 'Validation', e.message);
  }
  return new HttpError(500, 'Backend', `Internal error: ${e?.message ?? String(err)}`);
}
